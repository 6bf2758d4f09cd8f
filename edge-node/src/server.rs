//! Listeners and the request path in front of the runtime.
//!
//! ```text
//! TCP accept ─▶ (TLS, ALPN h2/http1.1) ─▶ hyper auto (HTTP/1.1 or HTTP/2, h2c by prior knowledge) ─┐
//! UDP (QUIC, TLS 1.3, ALPN h3) ─▶ h3 ([`h3`]) ─────────────────────────────────────────────────┤
//!        ┌─────────────────────────────────────────────────────────────────────────────────────┘
//!        ─▶ request id ─▶ router ─▶ runtime.call ─▶ response + x-request-id (+ Alt-Svc on TCP)
//!        ─▶ AccessLogBody: when the body ends, one access-log line and the request metrics
//! ```
//!
//! Shutdown: the accept loops stop, open connections get GOAWAY or `Connection: close` and
//! finish their in-flight requests, up to the shutdown timeout.

mod admin;
pub(crate) mod h3;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use edge_serving::Peer;
use http::{HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::ResponseBody;
use crate::cache::{Cache, Key};
use crate::deployment::Deployment;
use crate::error::RequestError;
use crate::metrics::{Metrics, NO_FUNCTION};
use crate::router::Router;
use crate::runtime::{Function, Runtime};

pub(crate) use admin::serve as serve_admin;

/// The routing table: swapped whole, never edited in place.
pub type RouteTable = Router<Target>;

/// What a route leads to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Who answers.
    pub upstream: Upstream,
    /// Whether GET and HEAD answers go through the cache.
    pub cache: bool,
}

/// A function, or an origin the node proxies to.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The function's active version (and canary).
    Function(Arc<Deployment>),
    /// An origin server.
    Origin(Arc<crate::origin::Origin>),
}

const X_REQUEST_ID: &str = "x-request-id";

/// What every connection shares.
pub(crate) struct State {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) routes: ArcSwap<RouteTable>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tls: bool,
    /// `Alt-Svc` for HTTP/1.1 and HTTP/2 responses when HTTP/3 is served and advertised.
    pub(crate) alt_svc: Option<HeaderValue>,
    pub(crate) cache: Arc<Cache>,
    no_function: Arc<str>,
}

impl State {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        routes: RouteTable,
        metrics: Arc<Metrics>,
        tls: bool,
        alt_svc: Option<HeaderValue>,
        cache: Arc<Cache>,
    ) -> Self {
        Self {
            runtime,
            routes: ArcSwap::from_pointee(routes),
            metrics,
            tls,
            alt_svc,
            cache,
            no_function: NO_FUNCTION.into(),
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true, then lets open connections
/// finish for up to `grace`.
pub(crate) async fn serve_public(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut builder = edge_serving::builder();
    builder.http2().max_concurrent_streams(256);
    edge_serving::serve(listener, tls, builder, shutdown, grace, move |peer| {
        let state = state.clone();
        // Once per connection: its requests share the client's address and TLS.
        let client = Arc::new(Client::new(peer));
        hyper::service::service_fn(move |req| {
            let state = state.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(handle(state, req, &client).await) }
        })
    })
    .await;
}

/// The whole request path of the node, for every HTTP version: `B` is hyper's body on TCP,
/// the HTTP/3 stream's on QUIC.
async fn handle<B>(
    state: Arc<State>,
    mut request: Request<B>,
    client: &Client,
) -> Response<AccessLogBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let host = request
        .uri()
        .host()
        .or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
        .to_owned();
    // Boxed: the log travels with the response body, which hyper moves several times.
    let mut log = Box::new(AccessLog {
        request_id: request_id.clone(),
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        version: request.version(),
        host,
        remote: client.text.clone(),
        function: None,
        origin: None,
        status: 0,
        instantiate: None,
        started,
        bytes: 0,
        complete: false,
        expected: None,
        state: state.clone(),
    });
    let target = state.routes.load().lookup(&log.host, &log.path).cloned();
    let result = match target {
        None if log.host.is_empty() => Err(RequestError::BadRequest(
            "no host: send a Host header or an absolute URI".into(),
        )),
        None => Err(RequestError::NoRoute {
            host: log.host.clone(),
            path: log.path.clone(),
        }),
        Some(target) => {
            let function = match &target.upstream {
                Upstream::Function(deployment) => Some(deployment.pick().clone()),
                Upstream::Origin(origin) => {
                    log.origin = Some(origin.name().clone());
                    None
                }
            };
            log.function.clone_from(&function);
            let scheme = if state.tls {
                Scheme::Https
            } else {
                Scheme::Http
            };
            let method = request.method().clone();
            let cache_key = target.cache.then(|| {
                let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
                Key::new(&log.host, target)
            });
            let head_only = method == Method::HEAD;
            // The hit path: nothing for the function is prepared.
            let hit = match &cache_key {
                Some(key) if method == Method::GET || head_only => {
                    state.cache.fresh(key, request.headers(), head_only)
                }
                _ => None,
            };
            // Only a function reads the client's headers: none on a hit.
            if function.is_some() && hit.is_none() {
                client.set_headers(request.headers_mut(), log.version);
            }
            match (hit, cache_key) {
                (Some(hit), _) => Ok(hit),
                (None, Some(key)) if method == Method::GET || head_only => {
                    let (parts, _) = request.into_parts();
                    let (fetch, name) = match (&function, &target.upstream) {
                        (Some(function), _) => (
                            fetch_function(&state, function, scheme, &request_id),
                            function.name().clone(),
                        ),
                        (None, Upstream::Origin(origin)) => (
                            fetch_origin(origin, client.remote, state.tls, &request_id),
                            origin.name().clone(),
                        ),
                        (None, Upstream::Function(_)) => unreachable!("a function was picked"),
                    };
                    // Boxed, like the other slow paths: the hit path's future stays small, so
                    // hyper moves less memory for every request.
                    Ok(Box::pin(state.cache.serve(key, parts, &request_id, name, fetch)).await)
                }
                (None, key) => {
                    let mut served = match (&function, &target.upstream) {
                        (Some(function), _) => {
                            let served = Box::pin(state.runtime.call(
                                function,
                                request,
                                scheme,
                                &request_id,
                            ))
                            .await;
                            if let Some(duration) = served.as_ref().ok().map(|s| s.instantiate) {
                                log.instantiate = Some(duration);
                            }
                            served.map(|s| s.response)
                        }
                        (None, Upstream::Origin(origin)) => {
                            let scheme = if state.tls { "https" } else { "http" };
                            Ok(Box::pin(origin.forward(
                                request,
                                client.remote,
                                scheme,
                                &request_id,
                            ))
                            .await)
                        }
                        (None, Upstream::Function(_)) => unreachable!("a function was picked"),
                    };
                    if let (Some(key), Ok(response)) = (key, &mut served) {
                        // RFC 9111 §4.4: a successful unsafe method invalidates what the
                        // cache holds for the URL.
                        if !method.is_safe() && response.status().as_u16() < 400 {
                            state.cache.invalidate_after(&key, response.headers());
                        }
                        crate::cache::strip_surrogate_keys(response.headers_mut());
                    }
                    served
                }
            }
        }
    };
    let mut response = result.unwrap_or_else(|err| err.into_response(&request_id));
    match HeaderValue::from_str(&request_id) {
        Ok(value) => response.headers_mut().insert(X_REQUEST_ID, value),
        // A cache hit carries an empty one to fill in.
        Err(_) => response.headers_mut().remove(X_REQUEST_ID),
    };
    if let Some(alt_svc) = &state.alt_svc
        && log.version != http::Version::HTTP_3
    {
        response
            .headers_mut()
            .insert(http::header::ALT_SVC, alt_svc.clone());
    }
    log.status = response.status().as_u16();
    // hyper stops reading a body once its declared length is sent, before the body says it
    // has ended; HEAD, 204 and 304 answers send none of theirs.
    log.expected = if log.method == Method::HEAD || matches!(log.status, 204 | 304) {
        Some(0)
    } else {
        response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    response.map(|body| AccessLogBody { body, log })
}

/// The route's origin as the cache calls it.
fn fetch_origin(
    origin: &Arc<crate::origin::Origin>,
    remote: SocketAddr,
    tls: bool,
    request_id: &Arc<str>,
) -> crate::cache::Fetch {
    let (origin, request_id) = (origin.clone(), request_id.clone());
    Arc::new(move |request| {
        let (origin, request_id) = (origin.clone(), request_id.clone());
        Box::pin(async move {
            let scheme = if tls { "https" } else { "http" };
            Ok(origin.forward(request, remote, scheme, &request_id).await)
        })
    })
}

/// The route's function as the cache calls it: for misses, revalidations and background
/// refreshes.
fn fetch_function(
    state: &Arc<State>,
    function: &Arc<Function>,
    scheme: Scheme,
    request_id: &Arc<str>,
) -> crate::cache::Fetch {
    let (state, function, request_id) = (state.clone(), function.clone(), request_id.clone());
    Arc::new(move |request| {
        let (state, function, request_id, scheme) = (
            state.clone(),
            function.clone(),
            request_id.clone(),
            scheme.clone(),
        );
        Box::pin(async move {
            state
                .runtime
                .call(&function, request, scheme, &request_id)
                .await
                .map(|served| served.response)
        })
    })
}

/// Request headers that tell a function about its client, set by the node only: what a client
/// sends under these names is dropped, so a function can trust them.
pub const CLIENT_ADDR: &str = "edge-client-addr";
/// The request's HTTP version (`HTTP/1.1`, `HTTP/2.0`).
pub const HTTP_VERSION: &str = "edge-http-version";
/// The TLS protocol (`TLSv1_3`); absent for plain HTTP.
pub const TLS: &str = "edge-tls";

/// What a connection's requests tell their function about the client, as header values
/// made once per connection.
pub(crate) struct Client {
    remote: SocketAddr,
    /// `remote` as text, for the access log.
    text: Arc<str>,
    addr: Option<HeaderValue>,
    tls: Option<HeaderValue>,
}

impl Client {
    pub(crate) fn new(peer: Peer) -> Self {
        let text: Arc<str> = peer.remote.to_string().into();
        Self {
            remote: peer.remote,
            addr: HeaderValue::from_str(&text).ok(),
            text,
            tls: peer.tls.map(HeaderValue::from_static),
        }
    }

    /// Replaces whatever the client sent under the node's names with what the node saw.
    fn set_headers(&self, headers: &mut http::HeaderMap, version: http::Version) {
        for name in [CLIENT_ADDR, HTTP_VERSION, TLS] {
            headers.remove(name);
        }
        if let Some(addr) = &self.addr {
            headers.insert(CLIENT_ADDR, addr.clone());
        }
        let version = match version {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        headers.insert(HTTP_VERSION, HeaderValue::from_static(version));
        if let Some(tls) = &self.tls {
            headers.insert(TLS, tls.clone());
        }
    }
}

/// The client's `x-request-id` when it is a sane token, else a new one: 32 hex digits, a
/// random per-process prefix and a counter, so ids are unique across nodes and restarts.
fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    if let Some(given) = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && (1..=128).contains(&given.len())
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return given.into();
    }
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher as _, Hasher as _};
        // RandomState is seeded from the OS's random source.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    hex::encode_to_slice(prefix.to_be_bytes(), &mut id[..16]).expect("16 hex digits");
    hex::encode_to_slice(n.to_be_bytes(), &mut id[16..]).expect("16 hex digits");
    std::str::from_utf8(&id).expect("hex is ASCII").into()
}

/// What the access log says about one request, filled in as it becomes known.
struct AccessLog {
    request_id: Arc<str>,
    method: http::Method,
    host: String,
    path: String,
    version: http::Version,
    remote: Arc<str>,
    function: Option<Arc<Function>>,
    /// `origin:HOST` for an origin route.
    origin: Option<Arc<str>>,
    status: u16,
    instantiate: Option<Duration>,
    started: Instant,
    bytes: u64,
    complete: bool,
    /// The body's length as the answer declared it: all of it sent is complete.
    expected: Option<u64>,
    state: Arc<State>,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let version = version_str(self.version);
        let function = match &self.function {
            Some(function) => {
                let metrics = function.metrics();
                metrics.duration.observe(elapsed.as_secs_f64());
                self.state
                    .metrics
                    .function_request(metrics, self.status, version);
                function.name()
            }
            None => {
                let name = self.origin.as_ref().unwrap_or(&self.state.no_function);
                self.state.metrics.request(name, self.status, version);
                name
            }
        };
        if !tracing::enabled!(target: "edge_node::access", tracing::Level::INFO) {
            return;
        }
        crate::logging::AccessRecord {
            request_id: &self.request_id,
            method: self.method.as_str(),
            host: &self.host,
            path: &self.path,
            version,
            status: self.status,
            function,
            duration_us: elapsed.as_micros() as u64,
            instantiate_us: self.instantiate.map(|d| d.as_micros() as u64),
            bytes: self.bytes,
            complete: self.complete || self.expected == Some(self.bytes),
            remote: &self.remote,
        }
        .emit();
    }
}

fn version_str(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// The response body, counting bytes; its access log line is written when it is dropped, that
/// is when the body is finished or the client went away.
pub(crate) struct AccessLogBody {
    body: ResponseBody,
    log: Box<AccessLog>,
}

impl Body for AccessLogBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.log.bytes += data.len() as u64;
                }
                // hyper stops polling once the body says it has ended.
                this.log.complete = this.body.is_end_stream();
            }
            Poll::Ready(None) => this.log.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Binds `addr`, with an error that says what to do when it is taken.
pub(crate) async fn bind(
    addr: SocketAddr,
    flag: &'static str,
) -> Result<TcpListener, crate::StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::StartError::Bind { addr, flag, source })
}
