//! Origin routes: the node as a reverse proxy for a host and path (pure CDN mode), through one
//! pooled HTTP client (keep-alive HTTP/1.1, HTTP/2 by ALPN) and, with `cache = true`, the cache.
//!
//! A request to an origin route goes to `ORIGIN` + the request's path and query (the route's
//! path prefix is not stripped). Hop-by-hop headers are dropped both ways (RFC 9110 §7.6.1);
//! the origin gets `Host` of its own URL, and `X-Forwarded-For`, `X-Forwarded-Host`,
//! `X-Forwarded-Proto` and `Via` saying who asked. An origin that cannot be reached answers
//! 502, one that does not answer in time 504.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt as _;

use crate::ResponseBody;

/// How long an origin may take to send its response headers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1) nor stored by the cache.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client every origin route shares: connections are pooled and kept alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(DEFAULT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .no_proxy()
        .build()
        .expect("an HTTP client with rustls")
}

/// One origin a route points at.
#[derive(Debug)]
pub struct Origin {
    /// `scheme://authority` with no trailing slash, as the route names it.
    base: String,
    /// Its authority, for `Host`.
    host: HeaderValue,
    /// The name it goes by in logs and metrics: `origin:HOST`.
    name: Arc<str>,
    client: reqwest::Client,
}

/// Why an origin URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("origin {url:?} {why}; write it as http://HOST[:PORT] or https://HOST[:PORT]")]
pub struct BadOrigin {
    url: String,
    why: &'static str,
}

impl Origin {
    /// The origin at `url` (`http(s)://host[:port]`), reached through `client`.
    ///
    /// # Errors
    /// `url` is not an absolute http(s) URL with a host and no path.
    pub fn new(url: &str, client: reqwest::Client) -> Result<Self, BadOrigin> {
        let bad = |why| BadOrigin {
            url: url.to_owned(),
            why,
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("is not http:// or https://")),
        }
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(bad("has a path; the request's own path is appended"));
        }
        Ok(Self {
            base: format!("{}://{authority}", uri.scheme_str().unwrap_or("https")),
            host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("has a bad host"))?,
            name: format!("origin:{}", authority.host()).into(),
            client,
        })
    }

    /// `origin:HOST`.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Sends `request` to the origin; its response, streamed, or 502/504 naming the problem.
    pub async fn forward<B>(
        &self,
        request: Request<B>,
        client_addr: std::net::SocketAddr,
        scheme: &str,
        request_id: &str,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{target}", self.base);
        let mut headers = forwardable(&parts.headers);
        let client_host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        headers.insert(header::HOST, self.host.clone());
        append_forwarded(
            &mut headers,
            &parts.headers,
            client_addr,
            client_host,
            scheme,
        );
        let body = reqwest::Body::wrap_stream(
            http_body_util::BodyDataStream::new(body)
                .map_err(|e| std::io::Error::other(e.into().to_string())),
        );
        let sent = self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return failure(&self.base, &e, request_id),
        };
        let status = response.status();
        let mut out_headers = forwardable(response.headers());
        out_headers.append(
            HeaderName::from_static("via"),
            HeaderValue::from_static("1.1 edge"),
        );
        let stream = response
            .bytes_stream()
            .map_ok(Frame::data)
            .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())));
        let mut answer = Response::new(http_body_util::StreamBody::new(stream).boxed_unsync());
        *answer.status_mut() = status;
        *answer.headers_mut() = out_headers;
        answer
    }
}

/// Whether `name` is a hop-by-hop header (RFC 9110 §7.6.1).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// `headers` without the hop-by-hop ones, those `Connection` names, and `host`.
pub(crate) fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len() + 4);
    for (name, value) in headers {
        let name_str = name.as_str();
        if is_hop_by_hop(name) || name == header::HOST || named.iter().any(|n| n == name_str) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// `X-Forwarded-For` (appended to the client's), `X-Forwarded-Host`, `X-Forwarded-Proto` and
/// `Via`.
fn append_forwarded(
    out: &mut HeaderMap,
    incoming: &HeaderMap,
    client: std::net::SocketAddr,
    client_host: Option<String>,
    scheme: &str,
) {
    let for_value = match incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(earlier) => format!("{earlier}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&for_value) {
        out.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    if let Some(value) = client_host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        out.insert(HeaderName::from_static("x-forwarded-host"), value);
    }
    if let Ok(value) = HeaderValue::from_str(scheme) {
        out.insert(HeaderName::from_static("x-forwarded-proto"), value);
    }
    out.append(
        HeaderName::from_static("via"),
        HeaderValue::from_static("1.1 edge"),
    );
}

/// 502 (unreachable, refused, broken) or 504 (no answer in time), naming the origin.
fn failure(base: &str, e: &reqwest::Error, request_id: &str) -> Response<ResponseBody> {
    let (status, what) = if e.is_timeout() {
        (StatusCode::GATEWAY_TIMEOUT, "did not answer in time")
    } else if e.is_connect() {
        (StatusCode::BAD_GATEWAY, "cannot be reached")
    } else {
        (StatusCode::BAD_GATEWAY, "broke off the exchange")
    };
    tracing::warn!(origin = base, request_id, "origin {what}: {e}");
    let body = format!("the origin {base} {what}\nrequest id: {request_id}\n");
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
