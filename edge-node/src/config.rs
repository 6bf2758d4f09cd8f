//! Typed configuration: node-wide settings, per-function limits and the routes file.
//!
//! The binary turns flags into a [`NodeConfig`]; the library never reads argv or the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use edge_serving::TlsFiles;

/// Default address of the public HTTP listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default address of the admin listener (`/metrics`, `/healthz`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default wall-clock time a function may run for one request, body streaming included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default linear-memory limit of one instance (the figure Cloudflare Workers use).
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Default largest request body a function accepts.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 << 20;
/// Default number of instances of one function that may run at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// Default size of the process-wide instance pool (all functions together).
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// Default ceiling on any one function's memory limit; it sizes the pooled memory slots.
pub const DEFAULT_MAX_FUNCTION_MEMORY_BYTES: u64 = 512 << 20;
/// Default time in-flight requests get to finish after SIGTERM or Ctrl-C.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The routes file could not be read.
    #[error("cannot read routes file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The routes file is not valid TOML of the expected shape.
    #[error("routes file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line.
        message: String,
    },
    /// The routes file parsed but says something impossible.
    #[error("routes file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Result of configuration loading.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Public listener address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Admin listener address; port 0 picks a free port.
    pub admin_listen: SocketAddr,
    /// PEM certificate chain and private key; both set means HTTPS.
    pub tls: Option<TlsFiles>,
    /// Where compiled artifacts are cached; `None` compiles on every start.
    pub data_dir: Option<PathBuf>,
    /// The functions and routes to serve.
    pub functions: Vec<FunctionSpec>,
    /// The routes, in the order given.
    pub routes: Vec<RouteSpec>,
    /// Limits of functions that come from the control plane and do not set their own.
    pub limits: Limits,
    /// Follow this control plane instead of (or after) `functions` and `routes`.
    pub control_plane: Option<crate::sync::SyncConfig>,
    /// Process-wide pool and engine settings.
    pub engine: EngineConfig,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// HTTP/3 over QUIC, beside the TLS listener.
    pub http3: Http3Config,
    /// The response cache of routes with `cache = true`.
    pub cache: CacheConfig,
    /// Functions' outbound HTTP: the pool, timeouts, whether fetches are cached.
    pub outbound: crate::runtime::OutboundConfig,
}

/// The node's response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Memory for stored responses (bodies and headers); past it the least useful go.
    pub size_bytes: u64,
    /// Largest response stored; larger ones pass through.
    pub max_object_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::with_size(crate::cache::DEFAULT_SIZE_BYTES)
    }
}

impl CacheConfig {
    /// A cache of `size_bytes`, storing responses up to an eighth of it (at most 64 MiB).
    pub fn with_size(size_bytes: u64) -> Self {
        Self {
            size_bytes,
            max_object_bytes: (size_bytes / 8).min(64 << 20),
        }
    }
}

/// Default lifetime of the `Alt-Svc` advertisement of HTTP/3, seconds (a day, as Cloudflare).
pub const DEFAULT_ALT_SVC_MAX_AGE: u64 = 86_400;
/// Default number of QUIC connections open at once; past it new ones are refused.
pub const DEFAULT_H3_MAX_CONNECTIONS: u32 = 10_000;
/// Default number of requests one HTTP/3 connection may have in flight at once.
pub const DEFAULT_H3_MAX_STREAMS: u32 = 256;
/// Default time a QUIC connection may be idle before it is closed.
pub const DEFAULT_H3_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/3 settings. The listener runs only with TLS (QUIC has no plaintext form), on the UDP
/// port of the same number as the TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http3Config {
    /// Serve HTTP/3 (when TLS is on).
    pub enabled: bool,
    /// Advertise it in `Alt-Svc` on HTTP/1.1 and HTTP/2 responses for this long; `None`
    /// serves HTTP/3 without advertising it.
    pub alt_svc_max_age: Option<Duration>,
    /// QUIC connections open at once.
    pub max_connections: u32,
    /// Requests in flight on one connection (bidirectional streams).
    pub max_streams: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Accept TLS 1.3 early data (0-RTT): safe methods are served from it with
    /// `Early-Data: 1` (RFC 8470), others wait for the handshake.
    pub zero_rtt: bool,
}

impl Default for Http3Config {
    fn default() -> Self {
        Self {
            enabled: true,
            alt_svc_max_age: Some(Duration::from_secs(DEFAULT_ALT_SVC_MAX_AGE)),
            max_connections: DEFAULT_H3_MAX_CONNECTIONS,
            max_streams: DEFAULT_H3_MAX_STREAMS,
            idle_timeout: DEFAULT_H3_IDLE_TIMEOUT,
            zero_rtt: false,
        }
    }
}

/// Settings of the one engine and instance pool shared by every function.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Instances that may exist at once across all functions (the pool size).
    pub max_instances: u32,
    /// Largest memory limit a function may ask for; sizes the pool's memory slots.
    pub max_function_memory_bytes: u64,
    /// Pooling allocator (the default) or on-demand allocation. Pooling reserves address
    /// space for every slot up front (about 8 GiB per instance slot, untouched until used)
    /// and makes instantiation several times faster; on-demand suits hosts that cap virtual
    /// memory (`ulimit -v`).
    pub allocator: Allocator,
}

/// How instance memories, tables and stacks are allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots reused across requests, copy-on-write memory images.
    #[default]
    Pooling,
    /// `mmap` per instance.
    OnDemand,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_function_memory_bytes: DEFAULT_MAX_FUNCTION_MEMORY_BYTES,
            allocator: Allocator::Pooling,
        }
    }
}

/// Limits applied to every request of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from instantiation until the handler returns and its body is written.
    pub timeout: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: u64,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: u64,
    /// Instances of this function that may run at once; past it requests get 503.
    pub max_concurrency: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// A function: a component file and its limits.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Name used in routes, logs and metrics.
    pub name: String,
    /// Path of the component file.
    pub component: PathBuf,
    /// Its limits.
    pub limits: Limits,
    /// Its configuration values and outbound destinations.
    pub grants: crate::runtime::Grants,
}

/// A route: requests whose host and path match go to `function`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Host to match (case-insensitive, without port); `None` matches any host.
    pub host: Option<String>,
    /// Path prefix, matched on segment boundaries (`/api` matches `/api/x`, not `/apix`).
    pub path: String,
    /// Name of the function that serves it (empty for an origin route).
    pub function: String,
    /// An origin (`http(s)://host[:port]`) the node proxies to instead of a function.
    pub origin: Option<String>,
    /// Whether its GET and HEAD responses go through the node's cache.
    pub cache: bool,
}

/// Limits as written in a routes file: every field optional, falling back to the defaults.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Milliseconds; see [`Limits::timeout`].
    pub timeout_ms: Option<u64>,
    /// Mebibytes; see [`Limits::memory_bytes`].
    pub memory_mb: Option<u64>,
    /// Bytes; see [`Limits::max_body_bytes`].
    pub max_body_bytes: Option<u64>,
    /// See [`Limits::max_concurrency`].
    pub max_concurrency: Option<u32>,
}

impl LimitOverrides {
    /// These overrides applied on top of `base`.
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            timeout: self.timeout_ms.map_or(base.timeout, Duration::from_millis),
            memory_bytes: self.memory_mb.map_or(base.memory_bytes, |mb| mb << 20),
            max_body_bytes: self.max_body_bytes.unwrap_or(base.max_body_bytes),
            max_concurrency: self.max_concurrency.unwrap_or(base.max_concurrency),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    functions: BTreeMap<String, FunctionEntry>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionEntry {
    component: PathBuf,
    #[serde(default)]
    limits: LimitOverrides,
    /// Configuration values: the function's environment.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Origins it may send HTTP requests to, `scheme://host[:port]`.
    #[serde(default)]
    outbound: Vec<String>,
    /// KV namespaces it may open.
    #[serde(default)]
    kv: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    host: Option<String>,
    #[serde(default = "root_path")]
    path: String,
    function: Option<String>,
    origin: Option<String>,
    #[serde(default)]
    cache: bool,
}

fn root_path() -> String {
    "/".to_owned()
}

/// Reads a routes file. Component paths are relative to the file's folder; `defaults` are the
/// limits of functions that do not set their own.
///
/// ```toml
/// [functions.api]
/// component = "api.wasm"
/// limits = { timeout_ms = 2000, memory_mb = 64 }
///
/// [[routes]]
/// host = "api.example.com"   # optional: without it the route matches any host
/// path = "/v1"               # optional: "/" by default
/// function = "api"
/// cache = true               # optional: GET and HEAD answers go through the cache
///
/// [[routes]]
/// host = "static.example.com"
/// origin = "https://origin.example.com"   # instead of a function: a caching reverse proxy
/// cache = true
/// ```
///
/// # Errors
/// The file is unreadable, not TOML of this shape (unknown keys included), or names a function
/// it does not define, or defines a route twice.
pub fn load_routes(path: &Path, defaults: Limits) -> Result<(Vec<FunctionSpec>, Vec<RouteSpec>)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: RoutesFile = toml::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| Error::Invalid {
        path: path.to_owned(),
        message,
    };
    if file.routes.is_empty() {
        return Err(invalid(
            "no routes: add at least one [[routes]] entry with a `function`".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut functions = Vec::with_capacity(file.functions.len());
    for (name, entry) in file.functions {
        let outbound = entry
            .outbound
            .iter()
            .map(|p| crate::runtime::Destination::parse(p))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("function `{name}`: {e}")))?;
        for namespace in &entry.kv {
            edge_wire::kv::check_namespace(namespace)
                .map_err(|e| invalid(format!("function `{name}`: {e}")))?;
        }
        functions.push(FunctionSpec {
            component: base.join(entry.component),
            limits: entry.limits.apply(defaults),
            grants: crate::runtime::Grants {
                env: entry.env.into_iter().collect(),
                outbound: crate::runtime::Policy::new(outbound),
                kv: entry.kv,
            },
            name,
        });
    }
    let mut routes: Vec<RouteSpec> = Vec::with_capacity(file.routes.len());
    for entry in file.routes {
        let route_name = describe(entry.host.as_deref(), &entry.path);
        let function = match (entry.function, &entry.origin) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "route {route_name} has both a `function` and an `origin`; keep one"
                )));
            }
            (None, None) => {
                return Err(invalid(format!(
                    "route {route_name} needs a `function` or an `origin`"
                )));
            }
            (None, Some(origin)) => {
                crate::origin::Origin::new(origin, reqwest::Client::new())
                    .map_err(|e| invalid(format!("route {route_name}: {e}")))?;
                String::new()
            }
            (Some(function), None) => function,
        };
        if entry.origin.is_none() && !functions.iter().any(|f| f.name == function) {
            return Err(invalid(format!(
                "route {route_name} names function `{function}`, which is not defined; add a [functions.{function}] table",
            )));
        }
        if !entry.path.starts_with('/') {
            return Err(invalid(format!(
                "route path `{}` must start with `/`",
                entry.path
            )));
        }
        let route = RouteSpec {
            host: entry.host.map(|h| h.to_ascii_lowercase()),
            path: entry.path,
            function,
            origin: entry.origin,
            cache: entry.cache,
        };
        if routes
            .iter()
            .any(|r| r.host == route.host && r.path == route.path)
        {
            return Err(invalid(format!(
                "route {} is defined twice; keep one",
                describe(route.host.as_deref(), &route.path)
            )));
        }
        routes.push(route);
    }
    Ok((functions, routes))
}

/// `host/path`, or `*/path` for a host-less route.
pub fn describe(host: Option<&str>, path: &str) -> String {
    format!("{}{}", host.unwrap_or("*"), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn parses_functions_routes_and_limit_overrides() {
        let (dir, path) = write(
            r#"
            [functions.api]
            component = "api.wasm"
            limits = { timeout_ms = 250, memory_mb = 16 }
            [functions.web]
            component = "/abs/web.wasm"
            [[routes]]
            host = "API.example.com"
            path = "/v1"
            function = "api"
            [[routes]]
            function = "web"
            "#,
        );
        let (functions, routes) = load_routes(&path, Limits::default()).unwrap();
        let api = functions.iter().find(|f| f.name == "api").unwrap();
        assert_eq!(api.component, dir.path().join("api.wasm"));
        assert_eq!(api.limits.timeout, Duration::from_millis(250));
        assert_eq!(api.limits.memory_bytes, 16 << 20);
        assert_eq!(api.limits.max_concurrency, DEFAULT_MAX_CONCURRENCY);
        let web = functions.iter().find(|f| f.name == "web").unwrap();
        assert_eq!(web.component, PathBuf::from("/abs/web.wasm"));
        assert_eq!(routes[0].host.as_deref(), Some("api.example.com"));
        assert_eq!(routes[1].path, "/");
        assert_eq!(routes[1].host, None);
    }

    #[test]
    fn a_typo_fails_loudly() {
        let (_dir, path) = write(
            "[functions.a]\ncomponent = \"a.wasm\"\ntimeout = 5\n[[routes]]\nfunction = \"a\"\n",
        );
        let err = load_routes(&path, Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `timeout`"), "{err}");
    }

    #[test]
    fn an_undefined_function_is_named() {
        let (_dir, path) = write("[[routes]]\npath = \"/x\"\nfunction = \"nope\"\n");
        let err = load_routes(&path, Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`nope`, which is not defined"), "{err}");
    }

    #[test]
    fn duplicate_and_relative_routes_are_refused() {
        let (_dir, path) = write(
            "[functions.a]\ncomponent = \"a.wasm\"\n[[routes]]\nfunction = \"a\"\n[[routes]]\npath = \"/\"\nfunction = \"a\"\n",
        );
        let err = load_routes(&path, Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("*/ is defined twice"), "{err}");
        let (_dir, path) = write(
            "[functions.a]\ncomponent = \"a.wasm\"\n[[routes]]\npath = \"api\"\nfunction = \"a\"\n",
        );
        let err = load_routes(&path, Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("must start with `/`"), "{err}");
    }
}
