//! `edge-control-plane`: parse flags, install logging, hand a typed config to the library.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use edge_control_plane::{Config, ControlPlane, TlsFiles};

/// Control plane: holds functions, versions, routes and tokens; edge nodes long-poll it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "EDGE_CP_LISTEN", default_value = edge_control_plane::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Folder for the database, the components and the first admin token; created if missing.
    #[arg(long, env = "EDGE_CP_DATA_DIR", default_value = edge_control_plane::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN). Needs --tls-key.
    #[arg(long, env = "EDGE_CP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "EDGE_CP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest component upload, in bytes.
    #[arg(long, env = "EDGE_CP_MAX_COMPONENT_BYTES", default_value_t = edge_control_plane::DEFAULT_MAX_COMPONENT_BYTES)]
    max_component_bytes: u64,
    /// Do not compile uploads for the nodes: each node compiles every new component itself.
    /// For a control plane on another kind of CPU than the nodes (its code would not load
    /// there), or nodes run with --compile-locally.
    #[arg(long, env = "EDGE_CP_NO_PRECOMPILE")]
    no_precompile: bool,
    /// The key that seals functions' secrets in the database; created (mode 0600) if missing.
    /// Default: secrets.key in the data dir. Keep it apart from the database (another disk, a
    /// secrets mount) and back it up: without it the secrets cannot be read.
    #[arg(long, env = "EDGE_CP_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Log format: json for machines, pretty for people; auto picks pretty on a terminal.
    #[arg(long, env = "EDGE_CP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `info,edge_control_plane::api=debug` for one line per request.
    #[arg(long, env = "EDGE_CP_LOG", default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    install_tracing(args.log_format, &args.log);
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config {
        listen: args.listen,
        data_dir: args.data_dir,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        max_component_bytes: args.max_component_bytes,
        precompile: !args.no_precompile,
        shutdown_timeout: edge_control_plane::DEFAULT_SHUTDOWN_TIMEOUT,
        secrets_key_file: args.secrets_key_file,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let control_plane = ControlPlane::bind(config).await?;
        // Both lines are read by people and scripts: print them whole, flushed, token first.
        let mut stdout = std::io::stdout().lock();
        if let Some(token) = control_plane.admin_token() {
            writeln!(stdout, "admin token: {token}")?;
        }
        writeln!(stdout, "listening on {}", control_plane.url())?;
        stdout.flush()?;
        drop(stdout);
        control_plane.serve(edge_serving::shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn install_tracing(format: LogFormat, filter: &str) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if pretty {
        builder.compact().init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    }
}
