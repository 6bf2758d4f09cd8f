//! The edge node: serves WebAssembly functions (standard `wasi:http` components) over
//! HTTP/1.1 and HTTP/2, with or without TLS, and over HTTP/3 (QUIC) when TLS is on.
//!
//! ```text
//! client ─▶ server (TCP accept, rustls, hyper: h1 / h2 / h2c; UDP: quinn + h3)
//!        ─▶ router (host + longest path prefix ─▶ function)
//!        ─▶ runtime (fresh store + pooled instance per request, limits, epoch deadline)
//!        ─▶ guest's wasi:http/incoming-handler ─▶ response streamed back
//!        ─▶ access log line + metrics when the body ends
//! ```
//!
//! [`Node::bind`] loads and compiles every function (or loads its precompiled artifact) before
//! it binds a socket, so a bad component stops the node at start, never at the first request.
//! With a control plane, the functions and routes come from its snapshots instead ([`sync`]):
//! first the one saved on disk, then every new one as it is published.
#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod deployment;
pub mod error;
pub mod kv;
pub mod logging;
pub mod metrics;
pub mod origin;
pub mod router;
pub mod runtime;
pub mod server;
pub mod sync;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::NodeConfig;
use crate::deployment::Deployment;
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
    Tls(#[from] edge_serving::tls::Error),
    /// The HTTP/3 listener could not be set up.
    #[error(transparent)]
    Http3(#[from] server::h3::Error),
    /// A route names a function that is not configured.
    #[error("route {route} names function `{function}`, which is not configured")]
    UnknownFunction {
        /// The route, as `host/path`.
        route: String,
        /// The missing function.
        function: String,
    },
    /// An origin route's URL is unusable.
    #[error("{0}")]
    Origin(String),
    /// There is nothing to serve.
    #[error("no routes to serve; pass --component FILE, --routes FILE or --control-plane URL")]
    NoRoutes,
    /// Following a control plane needs somewhere to keep its snapshots.
    #[error("--control-plane needs a data dir to keep the last snapshot in; pass --data-dir DIR")]
    NoDataDir,
    /// The data dir's snapshot folder cannot be used.
    #[error("cannot use the data dir: {0}")]
    Disk(#[from] sync::disk::Error),
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
    sync: Option<sync::Sync>,
    public: TcpListener,
    quic: Option<quinn::Endpoint>,
    admin: TcpListener,
    tls: Option<TlsAcceptor>,
    kv: Arc<kv::Kv>,
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
        if config.routes.is_empty() && config.control_plane.is_none() {
            return Err(StartError::NoRoutes);
        }
        let metrics = Arc::new(Metrics::default());
        let cache = Arc::new(cache::Cache::new(
            config.cache.size_bytes,
            config.cache.max_object_bytes,
        ));
        let outbound = runtime::OutboundClient::new(config.outbound, Some(cache.clone()));
        let kv_file = config.data_dir.as_ref().map(|dir| dir.join(kv::FILE));
        let kv = match &config.control_plane {
            Some(cp) => kv::Kv::remote(&cp.url, &cp.token, kv_file),
            None => kv::Kv::local(kv_file),
        };
        let runtime = Arc::new(
            Runtime::new(config.engine, config.data_dir.as_deref(), metrics.clone())?
                .with_outbound(outbound)
                .with_kv(kv.clone()),
        );
        let mut functions: HashMap<&str, Arc<Function>> = HashMap::new();
        for spec in &config.functions {
            let function = runtime.load_file(
                &spec.name,
                &spec.component,
                spec.limits,
                spec.grants.clone(),
            )?;
            functions.insert(&spec.name, function);
        }
        let mut entries = Vec::with_capacity(config.routes.len());
        let origins = origin::client();
        for route in &config.routes {
            let upstream = match &route.origin {
                Some(url) => server::Upstream::Origin(Arc::new(
                    origin::Origin::new(url, origins.clone())
                        .map_err(|e| StartError::Origin(e.to_string()))?,
                )),
                None => {
                    let function = functions.get(route.function.as_str()).ok_or_else(|| {
                        StartError::UnknownFunction {
                            route: config::describe(route.host.as_deref(), &route.path),
                            function: route.function.clone(),
                        }
                    })?;
                    server::Upstream::Function(Arc::new(Deployment::single(function.clone())))
                }
            };
            let target = server::Target {
                upstream,
                cache: route.cache,
            };
            entries.push((route.host.clone(), route.path.clone(), target));
        }
        let mut table = Router::new(entries);
        let mut following = None;
        if config.control_plane.is_some() {
            let data_dir = config.data_dir.as_deref().ok_or(StartError::NoDataDir)?;
            let mut applier = sync::Applier::new(
                runtime.clone(),
                sync::disk::Disk::open(data_dir)?,
                config.limits,
            );
            let (saved_table, revision) = saved_snapshot(&mut applier).await;
            if let Some(saved) = saved_table {
                table = saved;
            }
            following = Some((applier, revision));
        }
        let identity = config
            .tls
            .as_ref()
            .map(edge_serving::tls::Identity::load)
            .transpose()?;
        let tls = identity
            .as_ref()
            .map(edge_serving::tls::Identity::tcp_acceptor)
            .transpose()?;
        let http3 = identity.as_ref().filter(|_| config.http3.enabled);
        let (public, quic) = bind_public(config.listen, http3, &config.http3).await?;
        let admin = server::bind(config.admin_listen, "--admin-listen").await?;
        let alt_svc = quic
            .as_ref()
            .and_then(|quic| quic.local_addr().ok())
            .zip(config.http3.alt_svc_max_age)
            .map(|(addr, max_age)| server::h3::alt_svc(addr.port(), max_age));
        let state = Arc::new(State::new(
            runtime,
            table,
            metrics,
            tls.is_some(),
            alt_svc,
            cache,
        ));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let address = format!(
            "{scheme}://{}",
            public.local_addr().map_err(|source| StartError::Bind {
                addr: config.listen,
                flag: "--listen",
                source
            })?
        );
        let sync = following.zip(config.control_plane.clone()).map(
            |((applier, revision), mut sync_config)| {
                if sync_config.node_name.is_empty() {
                    sync_config.node_name = default_node_name(&address);
                }
                sync::Sync::new(sync_config, applier, state.clone(), revision, address)
            },
        );
        Ok(Self {
            state,
            sync,
            public,
            quic,
            admin,
            tls,
            kv,
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

    /// The UDP address HTTP/3 is served on (the TCP listener's port), when it is.
    pub fn http3_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().and_then(|quic| quic.local_addr().ok())
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
        let sync = self
            .sync
            .map(|sync| tokio::spawn(sync.run(stopped.clone())));
        let kv_follower = tokio::spawn(self.kv.clone().follow(stopped.clone()));
        let admin = tokio::spawn(server::serve_admin(
            self.admin,
            self.state.metrics.clone(),
            self.state.cache.clone(),
            stopped.clone(),
        ));
        let http3 = self.quic.map(|quic| {
            tokio::spawn(server::h3::serve(
                quic,
                self.state.clone(),
                self.config.http3,
                stopped.clone(),
                self.config.shutdown_timeout,
            ))
        });
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
        if let Some(http3) = http3 {
            let _ = http3.await;
        }
        let _ = admin.await;
        let _ = kv_follower.await;
        let kv = self.kv;
        let _ = tokio::task::spawn_blocking(move || kv.save_now()).await;
        if let Some(sync) = sync {
            let _ = sync.await;
        }
    }
}

/// The public TCP listener and, with `http3`, the QUIC endpoint on the UDP port of the same
/// number. When the port was left to the system (0) and that UDP port is taken, another pair
/// is tried.
async fn bind_public(
    listen: SocketAddr,
    http3: Option<&edge_serving::tls::Identity>,
    config: &config::Http3Config,
) -> Result<(TcpListener, Option<quinn::Endpoint>), StartError> {
    let mut attempts = 0;
    loop {
        let public = server::bind(listen, "--listen").await?;
        let Some(identity) = http3 else {
            return Ok((public, None));
        };
        let addr = public.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            flag: "--listen",
            source,
        })?;
        match server::h3::endpoint(addr, identity, config) {
            Ok(quic) => return Ok((public, Some(quic))),
            Err(server::h3::Error::Bind { .. }) if listen.port() == 0 && attempts < 10 => {
                attempts += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The host name and the public port: unique per node, also for several nodes on one host.
fn default_node_name(address: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edge-node".to_owned());
    let port = address.rsplit(':').next().unwrap_or("0");
    format!("{host}:{port}")
}

/// The table of the snapshot saved in the data dir, and its revision; an unusable saved
/// snapshot is logged and skipped (the control plane will send a fresh one).
async fn saved_snapshot(applier: &mut sync::Applier) -> (Option<server::RouteTable>, u64) {
    let snapshot = match applier.disk().snapshot() {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return (None, 0),
        Err(e) => {
            tracing::warn!("{e}");
            return (None, 0);
        }
    };
    match applier.build(&snapshot).await {
        Ok(table) => {
            tracing::info!(
                revision = snapshot.revision,
                functions = snapshot.functions.len(),
                "serving the snapshot saved on disk until the control plane answers"
            );
            (Some(table), snapshot.revision)
        }
        Err(e) => {
            tracing::warn!(
                revision = snapshot.revision,
                "cannot serve the snapshot saved on disk ({e}); waiting for the control plane"
            );
            (None, 0)
        }
    }
}
