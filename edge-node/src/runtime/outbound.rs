//! Outbound HTTP from functions: which origins each function may reach (its [`Policy`]) and
//! how its requests go out ([`Client`], one for the node).
//!
//! - Denied unless a pattern of the function names the destination
//!   ([`edge_wire::outbound::Destination`]).
//! - Loopback, private, link-local and other non-public addresses are refused unless the
//!   pattern names the address itself (`http://10.0.0.5:8080`) or `localhost`: a host name
//!   that resolves to one is refused, so neither a wildcard nor a DNS answer can point a
//!   function at the node's own network (SSRF). The check is made on the addresses the
//!   connection actually uses, so a second DNS answer cannot slip past it.
//! - One pooled client for every function: keep-alive HTTP/1.1, HTTP/2 by ALPN, so a busy
//!   function does not open a connection per request (and run out of ports in TIME_WAIT).
//! - Timeouts: connecting, the first byte of the answer and between two pieces of its body;
//!   the guest's `request-options` may set the last two, and the function's own time limit
//!   bounds everything.
//! - GET and HEAD go through the node's cache under the function's own keys, following
//!   RFC 9111 like the cached routes; `edge purge --function` and `--url` reach them too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge_wire::outbound::{Destination, PatternError};
use futures::TryStreamExt as _;
use http::uri::Scheme;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::cache::{self, Cache, Key};
use crate::error::RequestError;

/// How long connecting to an origin (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an origin may take to start its answer, unless the guest asks for less or more.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an origin may pause within its body, unless the guest asks otherwise.
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per origin by default.
const DEFAULT_POOL_IDLE_PER_HOST: usize = 64;

/// The destinations one function may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Arc<[Destination]>,
}

impl Policy {
    /// A policy allowing exactly `allowed`.
    pub fn new(allowed: Vec<Destination>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    /// A policy from patterns, as a deployed version lists them.
    ///
    /// # Errors
    /// A pattern is not `scheme://host[:port]`.
    pub fn parse(patterns: &[String]) -> Result<Self, PatternError> {
        let allowed = patterns
            .iter()
            .map(|p| Destination::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(allowed))
    }

    /// Whether `uri` (absolute) may be reached.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return false,
        };
        let Some(host) = uri.host() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.allowed.iter().any(|d| d.allows(https, host, port))
    }
}

/// How the node's outbound client behaves.
#[derive(Debug, Clone, Copy)]
pub struct OutboundConfig {
    /// Idle keep-alive connections kept per origin; 0 opens a connection per request.
    pub pool_idle_per_host: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Whether GET and HEAD go through the node's cache.
    pub cached: bool,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            pool_idle_per_host: DEFAULT_POOL_IDLE_PER_HOST,
            connect_timeout: CONNECT_TIMEOUT,
            cached: true,
        }
    }
}

/// The node's client for functions' outbound requests.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    cache: Option<Arc<Cache>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A pooled client; GET and HEAD go through `cache` when there is one and `config` says
    /// so.
    pub fn new(config: OutboundConfig, cache: Option<Arc<Cache>>) -> Self {
        let cache = cache.filter(|_| config.cached);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .dns_resolver(Arc::new(PublicOnly))
            .no_proxy()
            .build()
            .expect("an HTTP client with rustls");
        Self { http, cache }
    }

    /// Sends a request `function` made (already allowed by its policy); its answer, or the
    /// wasi:http error the guest sees.
    pub(crate) async fn send(
        &self,
        function: Arc<str>,
        request_id: &str,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, HttpError> {
        let timeouts = Timeouts {
            first_byte: options
                .and_then(|o| o.first_byte_timeout)
                .unwrap_or(FIRST_BYTE_TIMEOUT),
            between_bytes: options
                .and_then(|o| o.between_bytes_timeout)
                .unwrap_or(BETWEEN_BYTES_TIMEOUT),
        };
        let cacheable = matches!(*request.method(), Method::GET | Method::HEAD);
        let Some(cache) = self.cache.as_ref().filter(|_| cacheable) else {
            return send(&self.http, &function, request, timeouts).await;
        };
        let (parts, _body) = request.into_parts();
        let key = Key::fetched(&function, &parts.uri);
        // The cache answers errors as responses; the guest should see the wasi:http error
        // its own fetch met, so it is kept aside.
        let failed: Arc<Mutex<Option<HttpError>>> = Arc::default();
        let fetch: cache::Fetch = {
            let http = self.http.clone();
            let function = function.clone();
            let failed = failed.clone();
            Arc::new(move |request: Request<http_body_util::Empty<Bytes>>| {
                let http = http.clone();
                let function = function.clone();
                let failed = failed.clone();
                Box::pin(async move {
                    let url = request.uri().to_string();
                    let request =
                        request.map(|empty| empty.map_err(|never| match never {}).boxed_unsync());
                    match send(&http, &function, request, timeouts).await {
                        Ok(response) => Ok(response),
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            Err(RequestError::Unreachable(url))
                        }
                    }
                })
            })
        };
        let response = cache.serve(key, parts, request_id, function, fetch).await;
        let failure = failed.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failure {
            Some(e) if !cache::served_stale_on_error(&response) => Err(e),
            _ => Ok(response),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    first_byte: Duration,
    between_bytes: Duration,
}

/// One request through the pooled client.
async fn send(
    http: &reqwest::Client,
    function: &str,
    request: Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<Response<WasiBody>, HttpError> {
    let (parts, body) = request.into_parts();
    let url = parts.uri.to_string();
    if let Some(address) = disguised_address(&parts.uri) {
        tracing::warn!(
            function,
            url,
            "outbound request refused: {} is the address {address}, which functions may not reach unless a pattern names it; to reach it, allow the address itself, as http://{}:PORT",
            parts.uri.host().unwrap_or_default(),
            bracketed(address),
        );
        return Err(HttpError::DestinationIpProhibited);
    }
    let headers = crate::origin::forwardable(&parts.headers);
    let mut builder = http.request(parts.method.clone(), &url).headers(headers);
    let bodiless = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
        && !parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    if !bodiless {
        builder = builder.body(reqwest::Body::wrap_stream(
            http_body_util::BodyDataStream::new(body)
                .map_err(|e| std::io::Error::other(e.to_string())),
        ));
    }
    let response = match tokio::time::timeout(timeouts.first_byte, builder.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(failure(function, &url, &e)),
        Err(_) => {
            tracing::warn!(
                function,
                url,
                "outbound request failed: no answer within {} ms",
                timeouts.first_byte.as_millis()
            );
            return Err(HttpError::ConnectionReadTimeout);
        }
    };
    let mut answer = Response::new(());
    *answer.status_mut() = response.status();
    *answer.version_mut() = response.version();
    *answer.headers_mut() = crate::origin::forwardable(response.headers());
    let body = http::Response::<reqwest::Body>::from(response).into_body();
    Ok(answer.map(|()| TimedBody::new(body, timeouts.between_bytes).boxed_unsync()))
}

/// A non-public address written as a name (`2130706433`, `0x7f.1`): URL parsers turn such
/// hosts into addresses (WHATWG), so the connection would go to an address no pattern named
/// and that no resolver sees.
fn disguised_address(uri: &http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let parsed = reqwest::Url::parse(&uri.to_string()).ok()?;
    let address: IpAddr = parsed.host_str()?.parse().ok()?;
    (!is_public(address)).then_some(address)
}

fn bracketed(address: IpAddr) -> String {
    match address {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The wasi:http error for a failed request, logged with what to do about it.
fn failure(function: &str, url: &str, e: &reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<NotPublic>() {
            tracing::warn!(
                function,
                url,
                "outbound request refused: {refused}; to reach it, allow the address itself, as http://{}:PORT",
                refused
                    .addresses
                    .first()
                    .map_or_else(String::new, |a| bracketed(*a))
            );
            return HttpError::DestinationIpProhibited;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    tracing::warn!(function, url, "outbound request failed: connection refused");
                    return HttpError::ConnectionRefused;
                }
                std::io::ErrorKind::NotFound => {
                    tracing::warn!(function, url, "outbound request failed: {io}");
                    return HttpError::DnsError {
                        rcode: Some("NXDOMAIN".into()),
                        info_code: None,
                    };
                }
                _ => {}
            }
        }
        source = error.source();
    }
    tracing::warn!(function, url, "outbound request failed: {e:#}");
    if e.is_timeout() {
        HttpError::ConnectionTimeout
    } else if e.is_connect() {
        HttpError::DestinationUnavailable
    } else {
        HttpError::ConnectionTerminated
    }
}

/// Resolves names to their public addresses only; `localhost` to its loopback ones.
struct PublicOnly;

/// A name that resolves to no address the function may use.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses functions may not reach unless named ({})", list(.addresses))]
struct NotPublic {
    host: String,
    addresses: Vec<IpAddr>,
}

fn list(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: {e}"))
                })?
                .collect();
            let localhost = host.eq_ignore_ascii_case("localhost");
            let usable: Vec<SocketAddr> = found
                .iter()
                .filter(|a| {
                    if localhost {
                        a.ip().is_loopback()
                    } else {
                        is_public(a.ip())
                    }
                })
                .copied()
                .collect();
            if usable.is_empty() {
                let addresses = found.iter().map(SocketAddr::ip).collect();
                return Err(Box::new(NotPublic { host, addresses }) as Box<_>);
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (CGNAT), unspecified, multicast, broadcast, reserved or documentation, including IPv4
/// addresses inside IPv6 (mapped, NAT64).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || s[..6] == [0; 6] // IPv4-compatible (deprecated)
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking
        || a >= 240) // reserved
}

/// A response body that fails when the origin pauses longer than `between` (the guest's
/// `between-bytes-timeout`).
struct TimedBody<B> {
    inner: B,
    between: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> TimedBody<B> {
    fn new(inner: B, between: Duration) -> Self {
        Self {
            inner,
            between,
            timer: Box::pin(tokio::time::sleep(between)),
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + this.between;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::InternalError(Some(
                format!("the origin's body broke off: {e}"),
            ))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn policies_match_absolute_uris() {
        let policy = Policy::parse(&[
            "https://api.example.com".to_owned(),
            "http://[::1]:8080".to_owned(),
        ])
        .unwrap();
        let allows = |uri: &str| policy.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/v1?x=1"));
        assert!(allows("http://[::1]:8080/"));
        assert!(!allows("http://api.example.com/"));
        assert!(!allows("/relative"));
        assert!(!Policy::default().allows(&"https://api.example.com/".parse().unwrap()));
        assert!(Policy::parse(&["api.example.com".to_owned()]).is_err());
    }

    #[test]
    fn addresses_written_as_names_are_seen_through() {
        let disguised = |uri: &str| disguised_address(&uri.parse().unwrap());
        assert_eq!(disguised("http://2130706433/"), Some([127, 0, 0, 1].into()));
        assert_eq!(
            disguised("http://0x7f.1:8080/"),
            Some([127, 0, 0, 1].into())
        );
        assert_eq!(
            disguised("http://0251.0376.0251.0376/"),
            Some([169, 254, 169, 254].into())
        );
        assert_eq!(disguised("http://127.0.0.1/"), None, "named literally");
        assert_eq!(disguised("http://[::1]/"), None, "named literally");
        assert_eq!(disguised("http://16843009/"), None, "1.1.1.1 is public");
        assert_eq!(disguised("https://api.example.com/"), None);
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_but_localhost_is_not() {
        use reqwest::dns::Resolve as _;
        let localhost = PublicOnly
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap();
        assert!(localhost.into_iter().all(|a| a.ip().is_loopback()));
        // A numeric name: resolves without DNS, to loopback.
        let error = PublicOnly
            .resolve("2130706433".parse().unwrap())
            .await
            .err()
            .expect("refused");
        let message = error.to_string();
        assert!(message.contains("127.0.0.1"), "{message}");
    }
}
