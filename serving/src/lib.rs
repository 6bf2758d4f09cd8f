//! HTTP serving shared by the edge node and the control plane.
//!
//! ```text
//! accept ─▶ TCP_NODELAY ─▶ (TLS handshake, ALPN h2 / http/1.1) ─▶ hyper's auto builder
//!        ─▶ the caller's service, one per connection ─▶ tracked for graceful shutdown
//! stop   ─▶ the accept loop ends ─▶ open connections get GOAWAY or `Connection: close`
//!        ─▶ in-flight requests finish, up to the grace period
//! ```
#![warn(missing_docs)]

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use tls::TlsFiles;

/// Errors a service may answer with, as hyper wants them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's auto builder (HTTP/1.1, and HTTP/2 by ALPN or prior knowledge) with the timers and
/// the 30 s header-read timeout both servers use; callers add their own settings.
pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The TLS protocol negotiated (`TLSv1_3`), `None` for plain TCP.
    pub tls: Option<&'static str>,
}

/// Accepts connections on `listener` until `shutdown` turns true, serving each with the service
/// `make_service` makes for its [`Peer`] (after the TLS handshake); then lets open connections
/// finish for up to `grace`.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    make_service: M,
) where
    M: Fn(Peer) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = Arc::new(builder);
    let make_service = Arc::new(make_service);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        // Responses are written whole or in large frames; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let make_service = make_service.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let service = make_service(Peer { remote, tls: None });
                    connection(&builder, watcher, stream, remote, service).await;
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let tls = stream
                            .get_ref()
                            .1
                            .protocol_version()
                            .and_then(|v| v.as_str());
                        let service = make_service(Peer { remote, tls });
                        connection(&builder, watcher, stream, remote, service).await;
                    }
                    Err(e) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                },
            }
        });
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: letting in-flight requests finish"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {} s; closing them",
            grace.as_secs()
        );
    }
}

async fn connection<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    stream: I,
    remote: SocketAddr,
    service: S,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%remote, "connection ended with an error: {e}");
    }
}

/// Completes once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
