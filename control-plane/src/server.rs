//! The listener: TCP accept, optional TLS, hyper's auto builder (HTTP/1.1, or HTTP/2 by ALPN
//! or prior knowledge), one `api::handle` call per request.
//!
//! Shutdown: the accept loop stops, long-polls are answered 503, open connections get GOAWAY
//! or `Connection: close` and finish their in-flight requests, up to the grace period.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, State};

/// Accepts connections on `listener` until `shutdown` turns true, then lets open connections
/// finish for up to `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    edge_serving::serve(
        listener,
        tls,
        edge_serving::builder(),
        shutdown,
        grace,
        move |_peer| {
            let state = state.clone();
            hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(api::handle(state, request).await) }
            })
        },
    )
    .await;
}
