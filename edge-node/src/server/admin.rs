//! The admin listener: `/metrics` (Prometheus text), `/healthz` and `POST /cache/purge`. Plain
//! HTTP/1.1, meant for loopback or a private network, never the public listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache::{Cache, Purge};
use crate::metrics::Metrics;

/// Serves the admin endpoints until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    cache: Arc<Cache>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            },
            () = edge_serving::stopped(&mut shutdown) => return,
        };
        let (metrics, cache) = (metrics.clone(), cache.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (metrics, cache) = (metrics.clone(), cache.clone());
                async move { Ok::<_, Infallible>(route(req, &metrics, &cache).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, metrics: &Metrics, cache: &Cache) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => {
            metrics.set_cache(cache.weighted_size(), cache.entry_count());
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.encode(),
            )
        }
        "/cache/purge" if req.method() == http::Method::POST => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            match body.map(|b| parse_purge(&b)) {
                Ok(Ok(purge)) => {
                    cache.purge(&purge);
                    (StatusCode::OK, "text/plain", format!("purged {purge:?}\n"))
                }
                Ok(Err(why)) => (StatusCode::BAD_REQUEST, "text/plain", format!("{why}\n")),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("cannot read the body: {e}\n"),
                ),
            }
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        other => (
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no admin endpoint at {other}; try /metrics, /healthz or POST /cache/purge\n"),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// `{"url": "https://host/path?query"}`, `{"surrogate_key": "K"}`, `{"function": "F"}` or
/// `{"all": true}`.
fn parse_purge(body: &[u8]) -> Result<Purge, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        url: Option<String>,
        surrogate_key: Option<String>,
        function: Option<String>,
        #[serde(default)]
        all: bool,
    }
    const SHAPE: &str = r#"send one of {"url": "https://host/path"}, {"surrogate_key": "K"}, {"function": "F"}, {"all": true}"#;
    let body: Body =
        serde_json::from_slice(body).map_err(|e| format!("bad purge request ({e}); {SHAPE}"))?;
    match body {
        Body {
            url: Some(url),
            surrogate_key: None,
            function: None,
            all: false,
        } => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("bad url {url:?} ({e}); {SHAPE}"))?;
            let host = uri
                .host()
                .ok_or_else(|| format!("url {url:?} has no host; {SHAPE}"))?;
            let target = uri.path_and_query().map_or("/", |p| p.as_str());
            Ok(Purge::Url {
                host: host.to_owned(),
                target: target.to_owned(),
            })
        }
        Body {
            url: None,
            surrogate_key: Some(key),
            function: None,
            all: false,
        } => Ok(Purge::SurrogateKey(key)),
        Body {
            url: None,
            surrogate_key: None,
            function: Some(name),
            all: false,
        } => Ok(Purge::Function(name)),
        Body {
            url: None,
            surrogate_key: None,
            function: None,
            all: true,
        } => Ok(Purge::All),
        _ => Err(format!("one purge at a time; {SHAPE}")),
    }
}
