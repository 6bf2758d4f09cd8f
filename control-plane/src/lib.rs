//! The control plane: the source of truth for what the edge nodes serve.
//!
//! ```text
//! edge CLI ─▶ server (TCP, rustls, hyper h1/h2) ─▶ api (route, authenticate, check)
//!   PUT /v1/components ─▶ check_component ─▶ compile once for the nodes ─▶ compiled/<sha256>
//!                      ─▶ components/<sha256> (temp file, fsync, rename)
//!   deploy, rollback, canary, routes ─▶ store: one SQLite transaction, revision += 1
//!        ─▶ new Snapshot built and serialised once ─▶ watch channel
//! edge node ─▶ GET /v1/snapshot?after=REV (long-poll on the watch) ◀─ the new Snapshot
//!           ─▶ GET /v1/components/{sha256}, /v1/compiled/{sha256}
//!           ─▶ POST /v1/nodes/{id}/status ─▶ store
//! ```
//!
//! [`ControlPlane::bind`] opens the data dir (database and components), creates the first
//! admin token when there is none, and binds the listener; [`ControlPlane::serve`] answers
//! the API (see [`api`] for its reference) until its shutdown future completes.
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod compiler;
pub mod components;
pub mod secrets;
pub mod server;
pub mod store;

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edge_wire::Scope;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::State;
use crate::compiler::Compiler;
use crate::components::Components;
use crate::store::Store;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default data dir.
pub const DEFAULT_DATA_DIR: &str = "./edge-data";
/// Default largest component upload: 64 MiB.
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// Default time open connections get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The database file in the data dir.
pub const DATABASE_FILE: &str = "control-plane.db";
/// The file in the data dir holding the first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The secrets key's file in the data dir, unless `--secrets-key-file` names another.
pub const SECRETS_KEY_FILE: &str = "secrets.key";
/// The folder in the data dir holding the components.
pub const COMPONENTS_DIR: &str = "components";
/// The folder in the data dir holding the code compiled for the nodes.
pub const COMPILED_DIR: &str = "compiled";

pub use edge_serving::TlsFiles;

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Folder of the database, the components and the admin token file; created if missing.
    pub data_dir: PathBuf,
    /// Serve HTTPS with these files; plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// Largest component upload, in bytes.
    pub max_component_bytes: u64,
    /// Compile each upload once for the nodes (see [`compiler`]).
    pub precompile: bool,
    /// Time open connections get to finish at shutdown.
    pub shutdown_timeout: Duration,
    /// The key sealing functions' secrets; `None` is `secrets.key` in the data dir. Created
    /// (mode 0600) when missing.
    pub secrets_key_file: Option<PathBuf>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir cannot be created or written.
    #[error("cannot use the data dir {path}: {source}; pass --data-dir a folder you can write to")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database cannot be opened.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] edge_serving::tls::Error),
    /// The listener cannot bind.
    #[error("cannot listen on {addr}: {source}; pass --listen 127.0.0.1:0 to pick a free port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The first admin token cannot be made.
    #[error(transparent)]
    Random(#[from] auth::RandomError),
    /// The secrets key cannot be read or made.
    #[error(transparent)]
    SecretsKey(#[from] secrets::KeyError),
}

/// A control plane with its state open and its socket bound, ready to serve.
pub struct ControlPlane {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    admin_token: Option<String>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("listen", &self.listener.local_addr().ok())
            .field("store", &self.state.store)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Opens the data dir (database, components), sets up TLS, binds the listener, and, when
    /// the database has no token at all, creates an admin token and writes it to
    /// `<data-dir>/admin-token` (mode 0600).
    ///
    /// # Errors
    /// Any [`StartError`], each naming the file or address and the fix.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let data_dir = config.data_dir.clone();
        let precompile = config.precompile;
        let key_file = config
            .secrets_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join(SECRETS_KEY_FILE));
        let (store, components, compiler) =
            tokio::task::spawn_blocking(move || open_data_dir(&data_dir, &key_file, precompile))
                .await
                .expect("opening the data dir does not panic")?;
        let tls = config
            .tls
            .as_ref()
            .map(edge_serving::tls::acceptor)
            .transpose()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        // Only once the socket is bound, so a start that fails never uses up the first token.
        let admin_token = if store.token_count() == 0 {
            Some(first_admin_token(&store, &config.data_dir)?)
        } else {
            None
        };
        let (stop, shutdown) = watch::channel(false);
        let state = Arc::new(State {
            store,
            components,
            compiler,
            max_component_bytes: config.max_component_bytes,
            shutdown,
        });
        tracing::info!(
            data_dir = %config.data_dir.display(),
            revision = state.store.revision(),
            "state loaded"
        );
        Ok(Self {
            listener,
            tls,
            state,
            stop,
            admin_token,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// The admin token created by this start, when the database had none.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// Serves until `shutdown` completes, then answers open long-polls with 503, stops
    /// accepting, and lets in-flight requests finish for up to the shutdown timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let server = tokio::spawn(server::serve(
            self.listener,
            self.tls,
            self.state,
            self.stop.subscribe(),
            self.shutdown_timeout,
        ));
        shutdown.await;
        let _ = self.stop.send(true);
        let _ = server.await;
    }
}

type DataDir = (Arc<Store>, Arc<Components>, Option<Arc<Compiler>>);

fn open_data_dir(
    data_dir: &Path,
    key_file: &Path,
    precompile: bool,
) -> Result<DataDir, StartError> {
    let dir_error = |source| StartError::DataDir {
        path: data_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(dir_error)?;
    let compiler = precompile
        .then(|| Compiler::open(&data_dir.join(COMPILED_DIR)))
        .transpose()
        .map_err(dir_error)?;
    let secrets_key = secrets::SecretsKey::load_or_create(key_file)?;
    let store = Store::open_with_key(
        &data_dir.join(DATABASE_FILE),
        compiler.as_ref().map(Compiler::key),
        Some(Arc::new(secrets_key)),
    )?;
    let components = Components::open(&data_dir.join(COMPONENTS_DIR)).map_err(dir_error)?;
    Ok((
        Arc::new(store),
        Arc::new(components),
        compiler.map(Arc::new),
    ))
}

/// Creates an admin token, writing it to the token file before storing it: if the write
/// fails, the database still has no token and the next start tries again.
fn first_admin_token(store: &Store, data_dir: &Path) -> Result<String, StartError> {
    let token = auth::generate()?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_secret(&path, &token).map_err(|source| StartError::DataDir {
        path: path.clone(),
        source,
    })?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    store.add_token(Scope::Admin, "admin", &token, now_ms)?;
    tracing::info!(file = %path.display(), "created the first admin token");
    Ok(token)
}

/// Writes `secret` to a new file only its owner can read.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    // A stale file (from a database since deleted) is replaced, not reused with its mode.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}
