//! The WebAssembly runtime: one engine and instance pool for the process, functions compiled
//! once and pre-instantiated, and a FRESH store and instance for every request.
//!
//! ```text
//! load:  file ─▶ sha256 ─▶ artifact cache? ─yes─▶ deserialize ─┐
//!                               └──no──▶ Cranelift ─▶ store ───┴▶ check export ─▶ link ─▶ ProxyPre
//! call:  slot? ─▶ Store::new ─▶ instantiate (pooled, CoW) ─▶ spawn handler ─▶ response via outparam
//! ```
//!
//! One thread ticks the engine's epoch; each store's deadline callback either kills a guest past
//! its time limit or makes it yield, so a busy guest never holds a worker thread for long.

mod artifacts;
mod host;
mod keyvalue;
mod outbound;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use self::artifacts::ArtifactCache;
pub use self::artifacts::Provenance;
pub use self::outbound::{Client as OutboundClient, OutboundConfig, Policy};
pub use edge_wire::outbound::{Destination, PatternError};

/// What a function may use beyond its own computation: its configuration values (its
/// environment) and the origins it may reach. Nothing by default.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Configuration values, visible to the guest as environment variables.
    pub env: Vec<(String, String)>,
    /// Destinations of outbound HTTP.
    pub outbound: Policy,
    /// KV namespaces it may open (`wasi:keyvalue`); the first is its default.
    pub kv: Vec<String>,
}
use self::host::{Host, RequestLabel};
use crate::ResponseBody;
use crate::config::{Allocator, EngineConfig, Limits};
use crate::error::RequestError;
use crate::metrics::{FunctionMetrics, Metrics};

/// How often the engine's epoch advances: the granularity of time limits and of yielding.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of each linear memory reset in place rather than returned to the kernel.
const KEEP_RESIDENT: usize = 4 << 20;
/// The same for tables, which are small (a few thousand function references at most).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
/// The export every function must have, without its version.
const HANDLER_EXPORT: &str = "wasi:http/incoming-handler";

/// Errors loading a function.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not WebAssembly.
    #[error(
        "{file} is not a WebAssembly component (no `\\0asm` header); build it with `cargo build --target wasm32-wasip2`"
    )]
    NotWasm {
        /// Where the bytes came from.
        file: String,
    },
    /// A core module, not a component.
    #[error(
        "{file} is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Where the bytes came from.
        file: String,
    },
    /// wasmtime could not compile or validate the component.
    #[error("{file} is not a valid component: {detail}")]
    Invalid {
        /// Where the bytes came from.
        file: String,
        /// wasmtime's message.
        detail: String,
    },
    /// The component does not export `wasi:http/incoming-handler`.
    #[error(
        "{file} does not export `wasi:http/incoming-handler@0.2.x`, so it cannot serve HTTP (it exports: {exports}); build it as a wasi:http proxy component"
    )]
    MissingExport {
        /// Where the bytes came from.
        file: String,
        /// What it exports instead.
        exports: String,
    },
    /// The component imports something this node does not provide.
    #[error(
        "{file} imports an interface this node does not provide: {detail}; functions may import only WASI 0.2 interfaces (wasi:http, wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets)"
    )]
    UnknownImport {
        /// Where the bytes came from.
        file: String,
        /// wasmtime's message, which names the interface.
        detail: String,
    },
    /// The function asks for more memory than the node's pool slots hold.
    #[error(
        "function `{function}` asks for {asked_mb} MiB of memory, but this node allows at most {max_mb} MiB per function; lower its memory limit or start the node with a larger --max-function-memory-mb"
    )]
    MemoryTooLarge {
        /// The function.
        function: String,
        /// Its limit.
        asked_mb: u64,
        /// The node's ceiling.
        max_mb: u64,
    },
}

/// Errors creating the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine or the pool could not be created (usually: not enough address space).
    #[error("cannot create the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The data dir is not usable.
    #[error("cannot use data dir {path} for compiled artifacts: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The engine, linker and artifact cache shared by every function of the process.
pub struct Runtime {
    engine: Engine,
    engine_key: String,
    linker: Linker<Host>,
    artifacts: Option<ArtifactCache>,
    metrics: Arc<Metrics>,
    config: EngineConfig,
    outbound: OutboundClient,
    kv: Arc<crate::kv::Kv>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A loaded function: compiled, linked and ready to instantiate.
pub struct Function {
    name: Arc<str>,
    digest: String,
    pre: ProxyPre<Host>,
    limits: Limits,
    grants: Grants,
    /// The configuration values again, as `wasi:config/store` serves them.
    config: Arc<wasmtime_wasi_config::WasiConfigVariables>,
    /// The KV namespaces it may open.
    kv: Arc<[Arc<str>]>,
    slots: Arc<Semaphore>,
    metrics: FunctionMetrics,
    provenance: Provenance,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// The function's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// sha256 of the component, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether it was compiled now or loaded from the artifact cache.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }

    /// Its metric handles.
    pub fn metrics(&self) -> &FunctionMetrics {
        &self.metrics
    }
}

/// A function's answer, as soon as its headers are ready; the body may still be streaming.
pub struct Served {
    /// The response.
    pub response: http::Response<ResponseBody>,
    /// Time taken to create the instance.
    pub instantiate: Duration,
}

/// One of a function's concurrency slots, held until its instance is gone.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: FunctionMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_use.dec();
    }
}

impl Runtime {
    /// The engine with its instance pool, the WASI linker, the epoch ticker and, with a
    /// `data_dir`, the compiled-artifact cache in `data_dir/artifacts`.
    ///
    /// # Errors
    /// The pool cannot reserve its address space, or the data dir is unusable.
    pub fn new(
        config: EngineConfig,
        data_dir: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let engine = Engine::new(&engine_config(&config)).map_err(Error::Engine)?;
        let engine_key = edge_engine::key(&engine);
        let mut linker = Linker::new(&engine);
        // The whole WASI 0.2 surface, so components from any toolchain link; what a guest may
        // actually do is decided per store in `host`.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(Error::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(Error::Engine)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, Host::config).map_err(Error::Engine)?;
        keyvalue::add_to_linker(&mut linker).map_err(Error::Engine)?;
        let artifacts = data_dir
            .map(|dir| {
                let dir = dir.join("artifacts");
                ArtifactCache::open(&dir, &engine_key).map_err(|source| Error::DataDir {
                    path: dir.display().to_string(),
                    source,
                })
            })
            .transpose()?;
        spawn_epoch_ticker(&engine);
        Ok(Self {
            engine_key,
            engine,
            linker,
            artifacts,
            metrics,
            config,
            outbound: OutboundClient::new(OutboundConfig::default(), None),
            kv: crate::kv::Kv::local(None),
        })
    }

    /// Serves functions' `wasi:keyvalue` from `kv` (by default a replica of its own, kept in
    /// memory only).
    #[must_use]
    pub fn with_kv(mut self, kv: Arc<crate::kv::Kv>) -> Self {
        self.kv = kv;
        self
    }

    /// Sends functions' outbound requests through `client` (by default a pooled client
    /// without a cache).
    #[must_use]
    pub fn with_outbound(mut self, client: OutboundClient) -> Self {
        self.outbound = client;
        self
    }

    /// The engine (for benchmarks and tools that compile on their own).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What compiled code must have been built for to run here ([`edge_engine::key`]).
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// Whether the artifact cache holds compiled code for the component `digest`. False
    /// without a cache.
    pub fn has_artifact(&self, digest: &str) -> bool {
        self.artifacts.as_ref().is_some_and(|a| a.contains(digest))
    }

    /// Puts `compiled`, code built elsewhere for this engine (the control plane's), into the
    /// artifact cache for the component `digest`, so that loading it compiles nothing. Code
    /// wasmtime refuses at load is compiled again from the component, as a corrupt file is.
    ///
    /// # Errors
    /// There is no cache (no data dir), or it cannot be written.
    pub fn store_artifact(&self, digest: &str, compiled: &[u8]) -> std::io::Result<()> {
        match &self.artifacts {
            Some(artifacts) => artifacts.store(digest, compiled),
            None => Err(std::io::Error::other(
                "the node has no data dir for compiled code",
            )),
        }
    }

    /// Loads the component file at `path` as function `name`.
    ///
    /// # Errors
    /// See [`LoadError`]: unreadable, not a component, no `wasi:http/incoming-handler` export,
    /// an import no WASI 0.2 host provides, or limits beyond the node's.
    pub fn load_file(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
        grants: Grants,
    ) -> Result<Arc<Function>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load(name, &bytes, limits, grants, &path.display().to_string())
    }

    /// Loads a component from memory; `source` names it in errors and logs.
    ///
    /// # Errors
    /// As [`Runtime::load_file`].
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        limits: Limits,
        grants: Grants,
        source: &str,
    ) -> Result<Arc<Function>, LoadError> {
        if limits.memory_bytes > self.config.max_function_memory_bytes {
            return Err(LoadError::MemoryTooLarge {
                function: name.to_owned(),
                asked_mb: limits.memory_bytes >> 20,
                max_mb: self.config.max_function_memory_bytes >> 20,
            });
        }
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(LoadError::CoreModule {
                    file: source.to_owned(),
                });
            }
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => {
                return Err(LoadError::NotWasm {
                    file: source.to_owned(),
                });
            }
        }
        let started = Instant::now();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let (component, provenance) =
            artifacts::load_or_compile(&self.engine, self.artifacts.as_ref(), bytes, &digest)
                .map_err(|e| LoadError::Invalid {
                    file: source.to_owned(),
                    detail: format!("{e:#}"),
                })?;
        check_handler_export(&self.engine, &component, source)?;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::UnknownImport {
                    file: source.to_owned(),
                    detail: format!("{e:#}"),
                })?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| LoadError::MissingExport {
            file: source.to_owned(),
            exports: format!("{e:#}"),
        })?;
        tracing::info!(
            function = name,
            source,
            digest = &digest[..16],
            how = match provenance {
                Provenance::Cached => "loaded precompiled artifact",
                Provenance::Compiled => "compiled with Cranelift",
            },
            elapsed_ms = started.elapsed().as_millis() as u64,
            "function ready"
        );
        Ok(Arc::new(Function {
            name: name.into(),
            digest,
            pre,
            slots: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            limits,
            config: Arc::new(grants.env.iter().cloned().collect()),
            kv: grants.kv.iter().map(|n| Arc::from(n.as_str())).collect(),
            grants,
            metrics: self.metrics.function(name),
            provenance,
        }))
    }

    /// Serves one request with a fresh instance of `function`. Returns as soon as the guest
    /// has set its response; the guest keeps running in its own task while it streams the
    /// body, within the same time limit.
    ///
    /// # Errors
    /// A [`RequestError`] for every way the function can fail to answer: over a limit, busy,
    /// trapped, killed, or no response.
    pub async fn call<B>(
        &self,
        function: &Arc<Function>,
        request: http::Request<B>,
        scheme: Scheme,
        request_id: &Arc<str>,
    ) -> Result<Served, RequestError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limits = function.limits;
        if content_length(&request).is_some_and(|len| len > limits.max_body_bytes) {
            return Err(RequestError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
        let permit =
            function
                .slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| RequestError::Busy {
                    function: function.name.to_string(),
                    limit: limits.max_concurrency,
                })?;
        function.metrics.in_use.inc();
        let slot = Slot {
            _permit: permit,
            metrics: function.metrics.clone(),
        };

        let body_too_large = Arc::new(AtomicBool::new(false));
        let label = RequestLabel {
            function: function.name.clone(),
            request_id: request_id.clone(),
        };
        let deadline = Instant::now() + limits.timeout;
        let mut store = self.new_store(function, &label, deadline, body_too_large.clone());

        let request =
            request.map(|body| LimitedBody::new(body, limits.max_body_bytes, body_too_large));
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http
                .new_incoming_request(scheme, request)
                .map_err(|e| RequestError::BadRequest(e.to_string()))?;
            let outparam = http
                .new_response_outparam(sender)
                .map_err(|_| RequestError::Internal)?;
            (incoming, outparam)
        };

        let started = Instant::now();
        let proxy = match function.pre.instantiate_async(&mut store).await {
            Ok(proxy) => proxy,
            Err(e) => return Err(instantiation_failure(function, &store, e)),
        };
        let instantiate = started.elapsed();
        function
            .metrics
            .instantiate
            .observe(instantiate.as_secs_f64());

        let task_function = function.clone();
        let task_label = label;
        let mut guest = Box::pin(async move {
            let _slot = slot;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam);
            let outcome = match tokio::time::timeout(remaining, call).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(guest_failure(&task_function, store.data(), e)),
                Err(_elapsed) => Err(RequestError::TimeLimit(task_function.limits.timeout)),
            };
            if let Err(err) = &outcome {
                record_failure(&task_function, &task_label, err);
            }
            outcome
        });

        // Drive the guest right here rather than in a task of its own: most handlers answer
        // and finish in one go, and then no task is spawned and nothing is woken. A guest that
        // answers and keeps streaming its body moves to its own task at that point.
        let (answer, outcome) = tokio::select! {
            biased;
            outcome = &mut guest => (receiver.await, Some(outcome)),
            answer = &mut receiver => {
                if answer.is_ok() {
                    tokio::spawn(guest);
                    (answer, None)
                } else {
                    // The outparam was dropped unset: wait for the guest to say why.
                    (answer, Some(guest.await))
                }
            }
        };
        match answer {
            Ok(Ok(response)) => Ok(Served {
                response,
                instantiate,
            }),
            Ok(Err(code)) => {
                tracing::warn!(
                    target: "edge_node::guest",
                    request_id = %request_id,
                    function = %function.name,
                    "function answered with error code {code:?}"
                );
                Err(RequestError::GuestError)
            }
            // The outparam was dropped unset: the handler failed or returned without answering.
            Err(_) => match outcome {
                Some(Err(err)) => Err(err),
                Some(Ok(())) | None => Err(RequestError::NoResponse),
            },
        }
    }

    /// A store for one request of `function`: its limits, its deadline, its sandbox.
    fn new_store(
        &self,
        function: &Function,
        label: &RequestLabel,
        deadline: Instant,
        body_too_large: Arc<AtomicBool>,
    ) -> Store<Host> {
        let capabilities = host::Capabilities {
            grants: &function.grants,
            config: function.config.clone(),
            client: &self.outbound,
            kv: self.kv.clone(),
            kv_namespaces: function.kv.clone(),
        };
        let host = Host::new(
            label,
            capabilities,
            function.limits.memory_bytes,
            deadline,
            body_too_large,
        );
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limits);
        store.epoch_deadline_callback(Host::on_epoch);
        store.set_epoch_deadline(1);
        store
    }

    /// Creates the store and the fresh instance a request of `function` would get, then drops
    /// both. For benchmarks of the instantiation path alone.
    ///
    /// # Errors
    /// As instantiation in [`Runtime::call`]: a full pool, or a guest whose start-up fails.
    pub async fn instantiate_once(&self, function: &Function) -> Result<(), RequestError> {
        let label = RequestLabel {
            function: function.name.clone(),
            request_id: "bench".into(),
        };
        let deadline = Instant::now() + function.limits.timeout;
        let mut store = self.new_store(function, &label, deadline, Arc::default());
        match function.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(e) => Err(instantiation_failure(function, &store, e)),
        }
    }
}

fn engine_config(config: &EngineConfig) -> Config {
    let instances = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        // A component holds several core instances (its module plus adapter shims), and may
        // have a second memory or a few tables; size the pools so components, not these,
        // are what runs out.
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(usize::try_from(config.max_function_memory_bytes).unwrap_or(usize::MAX))
        // Reset memories by finding the pages a request dirtied (the PAGEMAP_SCAN ioctl,
        // Linux 6.7+) and memset-ing just those, keeping them resident: no madvise, no TLB
        // shootdown, and no page faults when the slot's next request touches them again.
        // Edge functions dirty a few pages per request, around the top of the shadow stack
        // (1 MiB into a Rust guest's memory) and the start of its heap. Elsewhere this falls
        // back to madvise.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT);
    // What the code looks like is shared with the control plane, which precompiles for nodes.
    let mut cfg = edge_engine::config();
    // `EDGE_PERF_MAP=1`: name the functions' machine code in /tmp/perf-PID.map, so `perf
    // report` shows guest functions instead of addresses (docs/operations.md).
    if std::env::var_os("EDGE_PERF_MAP").is_some_and(|v| v != "0") {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    cfg.allocation_strategy(match config.allocator {
        Allocator::Pooling => InstanceAllocationStrategy::Pooling(pool),
        Allocator::OnDemand => InstanceAllocationStrategy::OnDemand,
    });
    cfg
}

/// Advances the epoch every [`EPOCH_TICK`] for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

fn check_handler_export(
    engine: &Engine,
    component: &Component,
    source: &str,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let mut exports = Vec::new();
    for (name, item) in ty.exports(engine) {
        let is_handler = name
            .split_once('@')
            .is_some_and(|(iface, version)| iface == HANDLER_EXPORT && version.starts_with("0.2."));
        if is_handler && matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Ok(());
        }
        exports.push(format!("`{name}`"));
    }
    Err(LoadError::MissingExport {
        file: source.to_owned(),
        exports: if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        },
    })
}

fn content_length<B>(request: &http::Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn instantiation_failure(
    function: &Function,
    store: &Store<Host>,
    err: wasmtime::Error,
) -> RequestError {
    if err.is::<wasmtime::PoolConcurrencyLimitError>() {
        return RequestError::PoolExhausted;
    }
    if store.data().limits.memory_exceeded {
        function.metrics.memory_kills.inc();
        return RequestError::MemoryLimit(function.limits.memory_bytes);
    }
    tracing::error!(function = %function.name, "instantiation failed: {err:?}");
    RequestError::Internal
}

fn guest_failure(function: &Function, host: &Host, err: wasmtime::Error) -> RequestError {
    if host.timed_out {
        RequestError::TimeLimit(function.limits.timeout)
    } else if host.limits.memory_exceeded {
        RequestError::MemoryLimit(function.limits.memory_bytes)
    } else if host.body_too_large() {
        RequestError::BodyTooLarge {
            limit: function.limits.max_body_bytes,
        }
    } else {
        tracing::warn!(target: "edge_node::guest", function = %function.name, "trap: {err:?}");
        RequestError::Trap
    }
}

fn record_failure(function: &Function, label: &RequestLabel, err: &RequestError) {
    match err {
        RequestError::TimeLimit(_) => function.metrics.time_kills.inc(),
        RequestError::MemoryLimit(_) => function.metrics.memory_kills.inc(),
        RequestError::Trap => function.metrics.traps.inc(),
        _ => return,
    };
    tracing::warn!(
        target: "edge_node::guest",
        request_id = %label.request_id,
        function = %label.function,
        "{err}"
    );
}

/// How long the rest of a request body the function left unread may take to arrive before
/// the node gives up on the connection (see [`LimitedBody`]'s `Drop`).
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A request body that fails once more than `limit` bytes have passed, and says so.
///
/// Dropped unread (a function that ignores the body of a POST, say), it reads and discards
/// the rest, up to the same limit and for at most [`DRAIN_TIME`], as nginx does: otherwise
/// HTTP/1.1 would close the connection after the response without a `connection: close`,
/// and a client that sends its next request on it sees that request fail.
struct LimitedBody<B: Body + Send + Unpin + 'static> {
    inner: Option<B>,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B: Body + Send + Unpin + 'static> LimitedBody<B> {
    fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner: Some(inner),
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B: Body + Send + Unpin + 'static> Drop for LimitedBody<B> {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if inner.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut allowed = self.remaining;
        runtime.spawn(tokio::time::timeout(DRAIN_TIME, async move {
            use http_body_util::BodyExt as _;
            while let Some(Ok(frame)) = inner.frame().await {
                let len = frame
                    .data_ref()
                    .map_or(0, |data| bytes::Buf::remaining(data) as u64);
                // Past the limit: drop it, and the connection with it.
                let Some(left) = allowed.checked_sub(len) else {
                    return;
                };
                allowed = left;
            }
        }));
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let frame = match std::pin::Pin::new(inner).poll_frame(cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame,
            std::task::Poll::Ready(Some(Err(e))) => {
                return std::task::Poll::Ready(Some(Err(e.into())));
            }
            std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
            std::task::Poll::Pending => return std::task::Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > this.remaining {
                this.exceeded
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return std::task::Poll::Ready(Some(Err(
                    wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.limit)),
                )));
            }
            this.remaining -= len;
        }
        std::task::Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), Body::size_hint)
    }
}
