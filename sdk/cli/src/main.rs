//! `edge`: deploy functions to a control plane and manage what the fleet serves.

mod api;
mod commands;
mod dev;
mod project;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use edge_wire::{Limits, Scope};

/// Deploy WebAssembly functions to your edge fleet.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The control plane's URL.
    #[arg(
        long,
        global = true,
        env = "EDGE_API",
        default_value = "http://127.0.0.1:7070"
    )]
    api: String,
    /// An API token (the control plane writes its admin token to `admin-token` in its data dir).
    #[arg(long, global = true, env = "EDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a function project in a new folder NAME that builds and answers as generated.
    New {
        /// The folder, whose name is the function's (lowercase letters, digits, dashes).
        name: PathBuf,
        /// The language.
        #[arg(long, value_enum, default_value_t = project::Lang::Rust)]
        lang: project::Lang,
    },
    /// Build the project in DIR (default: here) into a component, and check it.
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Serve the project in DIR on localhost (a control plane and a node in this process),
    /// rebuilt and redeployed on every saved change.
    Dev {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the node listens; port 0 picks a free port.
        #[arg(long, env = "EDGE_DEV_LISTEN", default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Serve HTTPS and HTTP/3 with a self-signed certificate for localhost (made once in
        /// target/edge-dev/tls; prints how to trust it).
        #[arg(long)]
        https: bool,
    },
    /// Upload a component as the next version of a function and wait until every live node
    /// serves it.
    Deploy {
        /// The component (.wasm) exporting wasi:http/incoming-handler.
        file: PathBuf,
        /// The function's name (lowercase letters, digits, dashes).
        #[arg(long)]
        name: String,
        /// Route HOST/PATH (or /PATH for any host) to the function; repeatable.
        #[arg(long = "route", value_name = "HOST/PATH")]
        routes: Vec<String>,
        /// A configuration value KEY=VALUE; repeatable. Wins over --env-file.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Configuration values from a file of KEY=VALUE lines (a .env file: `#` comments,
        /// blank lines, optional quotes and `export `).
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
        /// An origin the function may send requests to, scheme://host[:port] (a leading *.
        /// in the host for any subdomain); repeatable. Without one it reaches nothing.
        /// Loopback, private and link-local addresses need a pattern naming the address.
        #[arg(long = "allow-outbound", value_name = "SCHEME://HOST[:PORT]")]
        outbound: Vec<String>,
        /// A KV namespace the function may open (wasi:keyvalue); repeatable, the first is
        /// what it opens as "default".
        #[arg(long = "kv", value_name = "NAMESPACE")]
        kv: Vec<String>,
        /// Time limit per request, milliseconds (default: the node's).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Memory limit of one instance, MiB (default: the node's).
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Nodes answer GET and HEAD on the --route(s) from their cache, as RFC 9111 and the
        /// function's Cache-Control allow.
        #[arg(long, requires = "routes")]
        cache: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Remove responses from every node's cache, and wait until every live node has.
    #[command(group = clap::ArgGroup::new("what").required(true).args(["key", "url", "function", "all"]))]
    Purge {
        /// Everything tagged with this surrogate key (Surrogate-Key or Cache-Tag).
        #[arg(long)]
        key: Option<String>,
        /// One URL, https://HOST/PATH?QUERY, every variant.
        #[arg(long)]
        url: Option<String>,
        /// Everything a function's routes stored.
        #[arg(long)]
        function: Option<String>,
        /// Everything.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// List a function's versions.
    Versions {
        /// The function.
        name: String,
    },
    /// Make an earlier version active again (by default the one before the active one).
    Rollback {
        /// The function.
        name: String,
        /// The version to go back to.
        #[arg(long)]
        to: Option<u32>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Send a share of a function's requests to another version; --percent 0 ends it.
    Canary {
        /// The function.
        name: String,
        /// The version on trial.
        version: u32,
        /// Share of the requests, 0 to 99.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=99))]
        percent: u8,
        #[command(flatten)]
        wait: Wait,
    },
    /// List the routes.
    Routes,
    /// List the nodes, the revision each serves and when it was last heard from.
    Nodes,
    /// Create or list API tokens.
    #[command(subcommand)]
    Tokens(Tokens),
    /// Read and write KV namespaces (what functions bound with --kv see).
    #[command(subcommand)]
    Kv(Kv),
    /// Set, list or delete a function's secrets (seen by the function as configuration
    /// values; never shown again once written).
    #[command(subcommand)]
    Secrets(Secrets),
}

#[derive(Subcommand)]
enum Kv {
    /// Store VALUE (or stdin, when VALUE is left out) under KEY.
    Put {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The value; read from stdin when absent.
        value: Option<String>,
    },
    /// Print the value under KEY.
    Get {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// List the keys of a namespace, in order.
    List {
        /// The namespace.
        namespace: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete KEY.
    Delete {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
}

#[derive(Subcommand)]
enum Secrets {
    /// Set secret NAME of FUNCTION to the value read from stdin (one trailing newline
    /// dropped), and wait until every live node has it.
    Put {
        /// The function (it need not be deployed yet).
        function: String,
        /// The secret's name, as the function reads it: A-Z, a-z, 0-9 and _.
        name: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// List a function's secrets: names and when they were set, never values.
    List {
        /// The function.
        function: String,
    },
    /// Delete secret NAME of FUNCTION, and wait until every live node has dropped it.
    Delete {
        /// The function.
        function: String,
        /// The secret's name.
        name: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(clap::Args)]
struct Wait {
    /// Do not wait for the nodes to serve the change.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting for the nodes after this many seconds.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

impl Wait {
    fn limit(&self) -> Option<Duration> {
        (!self.no_wait).then(|| Duration::from_secs(self.wait_secs))
    }
}

#[derive(Subcommand)]
enum Tokens {
    /// Create a token; it is printed once.
    Create {
        /// admin, deploy, read or node.
        #[arg(long)]
        scope: Scope,
        /// A name to recognise it by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (without their secrets).
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime builds");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::New { name, lang } => return project::new(name, *lang),
        Command::Build { dir } => {
            let built = project::build(dir)?;
            println!(
                "built {} ({})",
                built.path.display(),
                commands::size(built.size)
            );
            return Ok(());
        }
        Command::Dev { dir, listen, https } => return dev::dev(dir, *listen, *https).await,
        _ => {}
    }
    let api = api::Api::new(&cli.api, cli.token)?;
    match cli.command {
        Command::New { .. } | Command::Build { .. } | Command::Dev { .. } => {
            unreachable!("handled above")
        }
        Command::Deploy {
            file,
            name,
            routes,
            env,
            env_file,
            outbound,
            kv,
            timeout_ms,
            memory_mb,
            cache,
            wait,
        } => {
            let limits = Limits {
                timeout_ms,
                memory_mb,
                ..Limits::default()
            };
            let args = commands::Deploy {
                file: &file,
                name: &name,
                routes: &routes,
                cache,
                env: &env,
                env_file: env_file.as_deref(),
                outbound: &outbound,
                kv: &kv,
                limits,
                wait: wait.limit(),
            };
            commands::deploy(&api, args).await.map(drop)
        }
        Command::Versions { name } => commands::versions(&api, &name).await,
        Command::Rollback { name, to, wait } => {
            commands::rollback(&api, &name, to, wait.limit()).await
        }
        Command::Canary {
            name,
            version,
            percent,
            wait,
        } => commands::canary(&api, &name, version, percent, wait.limit()).await,
        Command::Purge {
            key,
            url,
            function,
            all,
            wait,
        } => {
            let purge = match (key, url, function, all) {
                (Some(key), ..) => edge_wire::Purge::SurrogateKey(key),
                (_, Some(url), ..) => edge_wire::Purge::Url(url),
                (_, _, Some(function), _) => edge_wire::Purge::Function(function),
                _ => edge_wire::Purge::All,
            };
            commands::purge(&api, purge, wait.limit()).await
        }
        Command::Routes => commands::routes(&api).await,
        Command::Nodes => commands::nodes(&api).await,
        Command::Tokens(Tokens::Create { scope, name }) => {
            commands::create_token(&api, scope, name).await
        }
        Command::Tokens(Tokens::List) => commands::list_tokens(&api).await,
        Command::Secrets(Secrets::Put {
            function,
            name,
            wait,
        }) => commands::put_secret(&api, &function, &name, wait.limit()).await,
        Command::Kv(Kv::Put {
            namespace,
            key,
            value,
        }) => commands::kv_put(&api, &namespace, &key, value).await,
        Command::Kv(Kv::Get { namespace, key }) => commands::kv_get(&api, &namespace, &key).await,
        Command::Kv(Kv::List { namespace, prefix }) => {
            commands::kv_list(&api, &namespace, &prefix).await
        }
        Command::Kv(Kv::Delete { namespace, key }) => {
            commands::kv_delete(&api, &namespace, &key).await
        }
        Command::Secrets(Secrets::List { function }) => {
            commands::list_secrets(&api, &function).await
        }
        Command::Secrets(Secrets::Delete {
            function,
            name,
            wait,
        }) => commands::delete_secret(&api, &function, &name, wait.limit()).await,
    }
}
