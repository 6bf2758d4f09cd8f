//! HTTP/3: QUIC by quinn, HTTP/3 framing by h3, into the same request path as TCP
//! ([`super::handle`]: routing, functions, limits, logs, metrics).
//!
//! ```text
//! UDP ─▶ connection limit ─▶ QUIC + TLS 1.3 (ALPN h3; 0-RTT only when enabled)
//!     ─▶ h3 connection ─▶ a task per request stream ─▶ handle ─▶ headers, body frames, trailers
//! stop ─▶ no new connections ─▶ GOAWAY on each ─▶ its requests finish (up to the grace period)
//!      ─▶ CONNECTION_CLOSE with H3_NO_ERROR
//! ```
//!
//! Malformed requests are h3's to refuse with the codes RFC 9114 names (a request without its
//! pseudo-headers is a stream error H3_MESSAGE_ERROR, a bad frame sequence a connection error
//! H3_FRAME_UNEXPECTED); a stream error ends that request only.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use edge_serving::Peer;
use edge_serving::tls::{Identity, Versions};
use h3::error::Code;
use h3::server::RequestStream;
use http::{HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{AccessLogBody, Client, State};
use crate::config::Http3Config;

/// Largest header section a request may have (HTTP/3's SETTINGS_MAX_FIELD_SECTION_SIZE);
/// larger ones get 431. The same figure hyper uses for HTTP/2.
const MAX_FIELD_SECTION_BYTES: u64 = 64 << 10;

/// The `Alt-Svc` value advertising HTTP/3 on `port` for `max_age`.
pub(crate) fn alt_svc(port: u16, max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma={}", max_age.as_secs()))
        .expect("digits and ASCII punctuation")
}

/// Why the HTTP/3 listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate cannot be used for QUIC.
    #[error(transparent)]
    Tls(#[from] edge_serving::tls::Error),
    /// rustls has no cipher suite QUIC can start with.
    #[error("the TLS configuration cannot be used for QUIC: {0}")]
    Quic(String),
    /// The UDP socket could not be bound.
    #[error(
        "cannot listen for HTTP/3 on UDP {addr}: {source}; free that UDP port, pick another --listen port, or pass --no-http3"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A QUIC endpoint on UDP `addr` with the node's certificate and `config`'s limits.
pub(crate) fn endpoint(
    addr: SocketAddr,
    identity: &Identity,
    config: &Http3Config,
) -> Result<quinn::Endpoint, Error> {
    let mut tls = identity.server_config(Versions::Tls13)?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // QUIC allows 0 or u32::MAX; rustls's single-use session store (`take`) means a resumption
    // ticket, and so its early data, is accepted once per node.
    tls.max_early_data_size = if config.zero_rtt { u32::MAX } else { 0 };
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    let quic = QuicServerConfig::try_from(tls).map_err(|e| Error::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(config.max_streams));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(config.idle_timeout)
            .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::MAX)),
    ));
    server.transport_config(Arc::new(transport));
    let socket = std::net::UdpSocket::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| Error::Bind { addr, source })
}

/// Accepts QUIC connections until `shutdown` turns true, then lets open connections finish
/// their requests for up to `grace`.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    state: Arc<State>,
    config: Http3Config,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections as usize));
    let mut connections = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = edge_serving::stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                remote = %incoming.remote_address(),
                limit = config.max_connections,
                "refusing a QUIC connection: the node has --h3-max-connections open"
            );
            incoming.refuse();
            continue;
        };
        let (state, shutdown) = (state.clone(), shutdown.clone());
        connections.spawn(async move {
            connection(incoming, state, config, shutdown).await;
            drop(slot);
        });
    }
    // New connections are refused from here on; open ones send GOAWAY and finish.
    endpoint.set_server_config(None);
    if !connections.is_empty() {
        tracing::info!(
            connections = connections.len(),
            "shutting down HTTP/3: letting in-flight requests finish"
        );
    }
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "HTTP/3 connections still open after {} s; closing them",
            grace.as_secs()
        );
        connections.abort_all();
    }
    endpoint.close(code(Code::H3_NO_ERROR), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

fn code(code: Code) -> quinn::VarInt {
    quinn::VarInt::from_u64(code.value()).expect("HTTP/3 codes fit a varint")
}

/// Whether the TLS handshake of a connection has completed; until then, what arrives is early
/// data (0-RTT), which an attacker can replay.
#[derive(Clone)]
struct Handshake(watch::Receiver<bool>);

impl Handshake {
    fn done() -> Self {
        Self(watch::channel(true).1)
    }

    fn pending(accepted: quinn::ZeroRttAccepted) -> Self {
        let (done, handshake) = watch::channel(false);
        tokio::spawn(async move {
            accepted.await;
            let _ = done.send(true);
        });
        Self(handshake)
    }

    fn complete(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&mut self) {
        let _ = self.0.wait_for(|done| *done).await;
    }
}

/// One QUIC connection: its requests, each on its own task, until the client goes away or the
/// node stops.
async fn connection(
    incoming: quinn::Incoming,
    state: Arc<State>,
    config: Http3Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(%remote, "QUIC connection failed: {e}");
            return;
        }
    };
    let (quic, handshake) = if config.zero_rtt {
        match connecting.into_0rtt() {
            Ok((quic, accepted)) => (quic, Handshake::pending(accepted)),
            Err(connecting) => match connecting.await {
                Ok(quic) => (quic, Handshake::done()),
                Err(e) => {
                    tracing::debug!(%remote, "QUIC handshake failed: {e}");
                    return;
                }
            },
        }
    } else {
        match connecting.await {
            Ok(quic) => (quic, Handshake::done()),
            Err(e) => {
                tracing::debug!(%remote, "QUIC handshake failed: {e}");
                return;
            }
        }
    };
    let client = Arc::new(Client::new(Peer {
        remote,
        tls: Some("TLSv1_3"),
    }));
    let built = h3::server::builder()
        .max_field_section_size(MAX_FIELD_SECTION_BYTES)
        .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut h3 = match built {
        Ok(h3) => h3,
        Err(e) => {
            tracing::debug!(%remote, "HTTP/3 connection failed: {e}");
            return;
        }
    };
    let mut requests = JoinSet::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let (state, client, handshake) = (state.clone(), client.clone(), handshake.clone());
                    requests.spawn(async move {
                        match resolver.resolve_request().await {
                            Ok((request, stream)) => {
                                serve_request(state, request, stream, &client, handshake).await;
                            }
                            // h3 has answered it already: reset with H3_MESSAGE_ERROR, or 431.
                            Err(e) => tracing::debug!(remote = %client.remote, "HTTP/3 request refused: {e}"),
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        tracing::debug!(%remote, "HTTP/3 connection ended: {e}");
                    }
                    // The connection is gone: its requests cannot be answered any more.
                    requests.abort_all();
                    break;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {
                if stopping && requests.is_empty() {
                    break;
                }
            }
            () = edge_serving::stopped(&mut shutdown), if !stopping => {
                stopping = true;
                // GOAWAY naming the stream after the last one accepted (h3 counts in
                // requests past it): the client sends nothing new here and retries it
                // elsewhere; what was accepted is answered.
                if h3.shutdown(1).await.is_err() || requests.is_empty() {
                    break;
                }
            }
        }
    }
    while requests.join_next().await.is_some() {}
    // Closing drops what the client has not acknowledged yet, the end of the last response
    // among it: give the acknowledgements a few round trips, unless the client closes first.
    let linger = (quic.rtt() * 4 + Duration::from_millis(50)).min(Duration::from_secs(1));
    let _ = tokio::time::timeout(linger, quic.closed()).await;
    quic.close(code(Code::H3_NO_ERROR), b"");
}

type SendStream = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvStream = RequestStream<h3_quinn::RecvStream, Bytes>;

/// One request: through the node's request path, the response back on its stream.
async fn serve_request(
    state: Arc<State>,
    request: http::Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    client: &Client,
    mut handshake: Handshake,
) {
    let (mut send, recv) = stream.split();
    let mut request = request.map(|()| RequestBody::new(recv));
    if !handshake.complete() {
        if request.method().is_safe() {
            // RFC 8470 §5.1: tell the function the request may be a replay.
            request
                .headers_mut()
                .insert("early-data", HeaderValue::from_static("1"));
        } else {
            // RFC 8470 §3: an unsafe request is not processed before the handshake proves it
            // is no replay (a replayed connection never completes).
            handshake.wait().await;
        }
    }
    let response = super::handle(state, request, client).await;
    if let Err(e) = respond(&mut send, response).await {
        tracing::debug!(remote = %client.remote, "HTTP/3 response not delivered: {e}");
    }
}

/// Headers a response must not carry over HTTP/3 (RFC 9114 §4.2: connection-specific fields
/// make a message malformed).
const CONNECTION_SPECIFIC: [http::HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
];

async fn respond(
    send: &mut SendStream,
    response: Response<AccessLogBody>,
) -> Result<(), h3::error::StreamError> {
    let (mut parts, mut body) = response.into_parts();
    for name in &CONNECTION_SPECIFIC {
        parts.headers.remove(name);
    }
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // The function's body failed half-way: reset the stream, so the client sees
                // an incomplete response instead of a short one that looks whole.
                tracing::debug!("response body failed: {e}");
                send.stop_stream(Code::H3_INTERNAL_ERROR);
                return Ok(());
            }
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    send.finish().await
}

/// A request body read from its HTTP/3 stream as the function asks for it: DATA frames, then
/// the trailers, if any.
struct RequestBody {
    recv: RecvStream,
    phase: Phase,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Data,
    Trailers,
    Done,
}

impl RequestBody {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            phase: Phase::Data,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.phase == Phase::Data {
            match ready!(this.recv.poll_recv_data(cx)) {
                Ok(Some(mut chunk)) => {
                    let data = chunk.copy_to_bytes(chunk.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) => this.phase = Phase::Trailers,
                Err(e) => {
                    this.phase = Phase::Done;
                    return Poll::Ready(Some(Err(stream_error(&e))));
                }
            }
        }
        if this.phase == Phase::Trailers {
            let polled = ready!(this.recv.poll_recv_trailers(cx));
            this.phase = Phase::Done;
            return Poll::Ready(match polled {
                Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                Ok(None) => None,
                Err(e) => Some(Err(stream_error(&e))),
            });
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.phase == Phase::Done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn stream_error(e: &h3::error::StreamError) -> wasmtime_wasi_http::Error {
    tracing::debug!("HTTP/3 request body: {e}");
    wasmtime_wasi_http::Error::ConnectionTerminated
}
