//! `edge-node`: parse flags, install logging, hand a typed config to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use edge_node::config::{
    self, Allocator, CacheConfig, EngineConfig, FunctionSpec, Http3Config, LimitOverrides, Limits,
    NodeConfig, RouteSpec, TlsFiles,
};
use edge_node::runtime::OutboundConfig;
use edge_node::sync::SyncConfig;

/// mimalloc rather than the system allocator: every request allocates and frees a few hundred
/// small objects (store, instances, resources, HTTP parts), and glibc's malloc and free were
/// 10% of the node's CPU under load (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Edge node: serves WebAssembly wasi:http functions.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve functions: from local files, or as a control plane deploys them.
    Serve(Box<ServeArgs>),
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("functions").required(true).args(["component", "routes", "control_plane"]))]
struct ServeArgs {
    /// A component to serve at `/` on every host.
    #[arg(long, env = "EDGE_COMPONENT", conflicts_with_all = ["routes", "control_plane"])]
    component: Option<PathBuf>,
    /// A routes file (TOML) mapping hosts and path prefixes to functions.
    #[arg(long, env = "EDGE_ROUTES", conflicts_with = "control_plane")]
    routes: Option<PathBuf>,
    /// Follow this control plane (its base URL): serve what it deploys, keep serving the last
    /// snapshot (saved in --data-dir) while it is unreachable.
    #[arg(long, env = "EDGE_CONTROL_PLANE", requires = "token")]
    control_plane: Option<String>,
    /// A token of scope `node` for --control-plane.
    #[arg(long, env = "EDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The name this node registers under (default: host name and port).
    #[arg(long, env = "EDGE_NODE_NAME")]
    node_name: Option<String>,
    /// Compile every component here instead of loading the machine code the control plane
    /// compiled for nodes like this one (trusting the control plane with native code).
    #[arg(long, env = "EDGE_COMPILE_LOCALLY", requires = "control_plane")]
    compile_locally: bool,
    /// With --component: its GET and HEAD answers go through the cache (a routes file says
    /// `cache = true` per route).
    #[arg(long, env = "EDGE_CACHE", requires = "component")]
    cache: bool,
    /// Memory for the response cache, MiB; responses up to an eighth of it (at most 64 MiB)
    /// are stored.
    #[arg(long, env = "EDGE_CACHE_SIZE_MB", default_value_t = edge_node::cache::DEFAULT_SIZE_BYTES >> 20)]
    cache_size_mb: u64,
    /// Idle keep-alive connections the functions' outbound client keeps per origin; 0 opens
    /// a new connection for every request.
    #[arg(long, env = "EDGE_OUTBOUND_POOL_IDLE_PER_HOST", default_value_t = OutboundConfig::default().pool_idle_per_host)]
    outbound_pool_idle_per_host: usize,
    /// How long functions' outbound requests may take to connect, seconds.
    #[arg(long, env = "EDGE_OUTBOUND_CONNECT_TIMEOUT_SECS", default_value_t = OutboundConfig::default().connect_timeout.as_secs())]
    outbound_connect_timeout_secs: u64,
    /// Send functions' outbound GET and HEAD requests to the origin every time, never
    /// through the cache (by default they are cached as Cache-Control allows).
    #[arg(long, env = "EDGE_NO_OUTBOUND_CACHE")]
    no_outbound_cache: bool,
    /// Address of the public listener; port 0 picks a free port.
    #[arg(long, env = "EDGE_LISTEN", default_value = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address of the admin listener (/metrics, /healthz); port 0 picks a free port.
    #[arg(long, env = "EDGE_ADMIN_LISTEN", default_value = config::DEFAULT_ADMIN_LISTEN)]
    admin_listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN). Needs --tls-key.
    #[arg(long, env = "EDGE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "EDGE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS and HTTP/3 with a certificate for localhost, 127.0.0.1 and ::1 signed by a
    /// local CA, both made on first use and kept in the data dir's `tls/` folder; prints how
    /// to trust it. For local use: production nodes get --tls-cert and --tls-key.
    #[arg(long, env = "EDGE_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    self_signed: bool,
    /// Do not serve HTTP/3 (QUIC on the UDP port of --listen's number), which is on by default
    /// with TLS.
    #[arg(long, env = "EDGE_NO_HTTP3")]
    no_http3: bool,
    /// Serve HTTP/3 but do not advertise it with `Alt-Svc` on HTTP/1.1 and HTTP/2 responses.
    #[arg(long, env = "EDGE_NO_ALT_SVC")]
    no_alt_svc: bool,
    /// How long clients may remember the `Alt-Svc` advertisement, seconds.
    #[arg(long, env = "EDGE_ALT_SVC_MAX_AGE_SECS", default_value_t = config::DEFAULT_ALT_SVC_MAX_AGE)]
    alt_svc_max_age_secs: u64,
    /// QUIC connections open at once; past it new ones are refused.
    #[arg(long, env = "EDGE_H3_MAX_CONNECTIONS", default_value_t = config::DEFAULT_H3_MAX_CONNECTIONS)]
    h3_max_connections: u32,
    /// Requests one HTTP/3 connection may have in flight at once.
    #[arg(long, env = "EDGE_H3_MAX_STREAMS", default_value_t = config::DEFAULT_H3_MAX_STREAMS)]
    h3_max_streams: u32,
    /// Seconds a QUIC connection may be idle before it is closed.
    #[arg(long, env = "EDGE_H3_IDLE_TIMEOUT_SECS", default_value_t = config::DEFAULT_H3_IDLE_TIMEOUT.as_secs())]
    h3_idle_timeout_secs: u64,
    /// Accept HTTP/3 requests in TLS early data (0-RTT): one round trip less for returning
    /// clients, but early data can be replayed, so only GET, HEAD, OPTIONS and TRACE are served
    /// from it (with `Early-Data: 1`, RFC 8470); other methods wait for the handshake.
    #[arg(long = "h3-0rtt", env = "EDGE_H3_0RTT")]
    h3_zero_rtt: bool,
    /// Folder for compiled artifacts (and, with --control-plane, the last snapshot and its
    /// components; default there `./edge-node-data`). Without it every start compiles.
    #[arg(long, env = "EDGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Default time limit of a request, milliseconds (a routes file may set its own per function).
    #[arg(long, env = "EDGE_TIMEOUT_MS")]
    timeout_ms: Option<u64>,
    /// Default memory limit of an instance, MiB.
    #[arg(long, env = "EDGE_MEMORY_MB")]
    memory_mb: Option<u64>,
    /// Default largest request body, bytes.
    #[arg(long, env = "EDGE_MAX_BODY_BYTES")]
    max_body_bytes: Option<u64>,
    /// Default number of instances of one function that may run at once.
    #[arg(long, env = "EDGE_MAX_CONCURRENCY")]
    max_concurrency: Option<u32>,
    /// Instances that may exist at once across all functions (the pool size).
    #[arg(long, env = "EDGE_MAX_INSTANCES", default_value_t = config::DEFAULT_MAX_INSTANCES)]
    max_instances: u32,
    /// The largest memory limit any function may have, MiB; sizes the pool's memory slots.
    #[arg(long, env = "EDGE_MAX_FUNCTION_MEMORY_MB", default_value_t = config::DEFAULT_MAX_FUNCTION_MEMORY_BYTES >> 20)]
    max_function_memory_mb: u64,
    /// Instance allocator: pooling (fast; reserves address space up front) or on-demand (for
    /// hosts that cap virtual memory).
    #[arg(long, env = "EDGE_ALLOCATOR", value_enum, default_value_t = AllocatorFlag::Pooling)]
    allocator: AllocatorFlag,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "EDGE_SHUTDOWN_TIMEOUT_SECS", default_value_t = config::DEFAULT_SHUTDOWN_TIMEOUT.as_secs())]
    shutdown_timeout_secs: u64,
    /// Log format: json for machines, pretty for people; auto picks pretty on a terminal.
    #[arg(long, env = "EDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `info,edge_node::access=off` to silence the access log.
    #[arg(long, env = "EDGE_LOG", default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum AllocatorFlag {
    Pooling,
    OnDemand,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    let log_guard = install_tracing(args.log_format, &args.log);
    let result = serve(*args);
    // Flush the batched log lines first, so an error is the last thing printed.
    drop(log_guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (config, self_signed) = node_config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let node = edge_node::Node::bind(config).await?;
        println!("listening on {}", node.url());
        println!("admin listening on http://{}", node.admin_addr());
        if let Some(addr) = node.http3_addr() {
            println!("HTTP/3 on UDP {addr}");
        }
        if let Some(made) = self_signed {
            print_trust(&made, node.local_addr().port());
        }
        node.serve(edge_serving::shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// How to trust the self-signed certificate, for people and for tools.
fn print_trust(made: &edge_serving::tls::SelfSigned, port: u16) {
    let ca = made.ca.display();
    println!(
        "self-signed certificate for {} ({} {}); its CA is {ca}",
        edge_serving::tls::SELF_SIGNED_NAMES.join(", "),
        if made.created { "made in" } else { "kept in" },
        made.files.cert.parent().unwrap_or(&made.ca).display(),
    );
    println!("  trust it for one command:  curl --cacert {ca} https://localhost:{port}/");
    println!(
        "  trust it on this machine:  sudo cp {ca} /usr/local/share/ca-certificates/edge-node-local-ca.crt && sudo update-ca-certificates"
    );
}

fn node_config(
    args: ServeArgs,
) -> anyhow::Result<(NodeConfig, Option<edge_serving::tls::SelfSigned>)> {
    let defaults = LimitOverrides {
        timeout_ms: args.timeout_ms,
        memory_mb: args.memory_mb,
        max_body_bytes: args.max_body_bytes,
        max_concurrency: args.max_concurrency,
    }
    .apply(Limits::default());
    let (functions, routes) = match (&args.component, &args.routes) {
        (Some(component), _) => {
            let name = component
                .file_stem()
                .map_or("function".into(), |s| s.to_string_lossy().into_owned());
            let functions = vec![FunctionSpec {
                name: name.clone(),
                component: component.clone(),
                limits: defaults,
                grants: Default::default(),
            }];
            let routes = vec![RouteSpec {
                host: None,
                path: "/".into(),
                function: name,
                origin: None,
                cache: args.cache,
            }];
            (functions, routes)
        }
        (None, Some(routes)) => config::load_routes(routes, defaults)?,
        (None, None) if args.control_plane.is_some() => (Vec::new(), Vec::new()),
        (None, None) => {
            anyhow::bail!("pass --component FILE, --routes FILE or --control-plane URL")
        }
    };
    let control_plane = args.control_plane.map(|url| SyncConfig {
        url: url.trim_end_matches('/').to_owned(),
        token: args.token.unwrap_or_default(),
        node_name: args.node_name.unwrap_or_default(),
        precompiled: !args.compile_locally,
    });
    let data_dir = match (&control_plane, args.data_dir) {
        (Some(_), None) => Some(PathBuf::from("edge-node-data")),
        (_, data_dir) => data_dir,
    };
    let self_signed = if args.self_signed {
        let dir = data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("edge-node-data"))
            .join("tls");
        Some(edge_serving::tls::self_signed(&dir)?)
    } else {
        None
    };
    let tls = match &self_signed {
        Some(made) => Some(made.files.clone()),
        None => args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
    };
    let config = NodeConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls,
        data_dir,
        functions,
        routes,
        limits: defaults,
        control_plane,
        engine: EngineConfig {
            max_instances: args.max_instances,
            max_function_memory_bytes: args.max_function_memory_mb << 20,
            allocator: match args.allocator {
                AllocatorFlag::Pooling => Allocator::Pooling,
                AllocatorFlag::OnDemand => Allocator::OnDemand,
            },
        },
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
        http3: Http3Config {
            enabled: !args.no_http3,
            alt_svc_max_age: (!args.no_alt_svc)
                .then(|| Duration::from_secs(args.alt_svc_max_age_secs)),
            max_connections: args.h3_max_connections,
            max_streams: args.h3_max_streams,
            idle_timeout: Duration::from_secs(args.h3_idle_timeout_secs),
            zero_rtt: args.h3_zero_rtt,
        },
        cache: CacheConfig::with_size(args.cache_size_mb << 20),
        outbound: OutboundConfig {
            pool_idle_per_host: args.outbound_pool_idle_per_host,
            connect_timeout: Duration::from_secs(args.outbound_connect_timeout_secs.max(1)),
            cached: !args.no_outbound_cache,
        },
    };
    Ok((config, self_signed))
}

/// Logs go to stderr in batches (see `edge_node::logging`), so a request never waits on a
/// write to the log.
fn install_tracing(format: LogFormat, filter: &str) -> edge_node::logging::LogGuard {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: ignoring --log {filter:?} ({e}); using `info`");
        tracing_subscriber::EnvFilter::new("info")
    });
    let pretty = match format {
        LogFormat::Auto => std::io::stderr().is_terminal(),
        LogFormat::Json => false,
        LogFormat::Pretty => true,
    };
    let (writer, guard) = edge_node::logging::BatchedStderr::new();
    edge_node::logging::route_access_log(writer.clone(), !pretty);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if pretty {
        builder.compact().init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    }
    guard
}
