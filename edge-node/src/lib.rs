//! The edge node: serves WebAssembly functions (standard `wasi:http` components) over
//! HTTP/1.1 and HTTP/2, with or without TLS.
//!
//! ```text
//! client ─▶ server (TCP accept, rustls, hyper: h1 / h2 / h2c)
//!        ─▶ router (host + longest path prefix ─▶ function)
//!        ─▶ runtime (fresh store + pooled instance per request, limits, epoch deadline)
//!        ─▶ guest's wasi:http/incoming-handler ─▶ response streamed back
//!        ─▶ access log line + metrics when the body ends
//! ```
//!
//! [`Node::bind`] loads and compiles every function (or loads its precompiled artifact) before
//! it binds a socket, so a bad component stops the node at start, never at the first request.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod router;
pub mod runtime;
pub mod server;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::runtime::{Function, Runtime};
use crate::server::State;

/// Body of every response the node sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The engine or data dir could not be set up.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// A function could not be loaded.
    #[error(transparent)]
    Load(#[from] runtime::LoadError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] server::tls::Error),
    /// A route names a function that is not configured.
    #[error("route {route} names function `{function}`, which is not configured")]
    UnknownFunction {
        /// The route, as `host/path`.
        route: String,
        /// The missing function.
        function: String,
    },
    /// There is nothing to serve.
    #[error("no routes to serve; pass --component FILE or --routes FILE")]
    NoRoutes,
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}; pass {flag} 127.0.0.1:0 to pick a free port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// A node with its functions loaded and its sockets bound, ready to serve.
pub struct Node {
    state: Arc<State>,
    public: TcpListener,
    admin: TcpListener,
    tls: Option<TlsAcceptor>,
    config: NodeConfig,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("public", &self.public.local_addr().ok())
            .field("admin", &self.admin.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Creates the runtime, loads every function, builds the routing table and binds the
    /// public and admin listeners.
    ///
    /// # Errors
    /// Any [`StartError`]: a function that fails to load names its file and the problem.
    pub async fn bind(config: NodeConfig) -> Result<Self, StartError> {
        if config.routes.is_empty() {
            return Err(StartError::NoRoutes);
        }
        let metrics = Arc::new(Metrics::default());
        let runtime = Arc::new(Runtime::new(
            config.engine,
            config.data_dir.as_deref(),
            metrics.clone(),
        )?);
        let mut functions: HashMap<&str, Arc<Function>> = HashMap::new();
        for spec in &config.functions {
            let function = runtime.load_file(&spec.name, &spec.component, spec.limits)?;
            functions.insert(&spec.name, function);
        }
        let mut entries = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let function = functions.get(route.function.as_str()).ok_or_else(|| {
                StartError::UnknownFunction {
                    route: config::describe(route.host.as_deref(), &route.path),
                    function: route.function.clone(),
                }
            })?;
            entries.push((route.host.clone(), route.path.clone(), function.clone()));
        }
        let tls = config.tls.as_ref().map(server::tls::acceptor).transpose()?;
        let public = server::bind(config.listen, "--listen").await?;
        let admin = server::bind(config.admin_listen, "--admin-listen").await?;
        let state = Arc::new(State::new(
            runtime,
            Router::new(entries),
            metrics,
            tls.is_some(),
        ));
        Ok(Self {
            state,
            public,
            admin,
            tls,
            config,
        })
    }

    /// The bound public address.
    pub fn local_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The public URL, `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish for up to the configured shutdown timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let admin = tokio::spawn(server::serve_admin(
            self.admin,
            self.state.metrics.clone(),
            stopped.clone(),
        ));
        let public = tokio::spawn(server::serve_public(
            self.public,
            self.tls,
            self.state,
            stopped,
            self.config.shutdown_timeout,
        ));
        shutdown.await;
        let _ = stop.send(true);
        let _ = public.await;
        let _ = admin.await;
    }
}
