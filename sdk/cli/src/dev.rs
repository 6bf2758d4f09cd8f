//! `edge dev`: the whole platform on localhost for one project, redeployed on every save.
//!
//! ```text
//! control plane (127.0.0.1:0, data in DIR/target/edge-dev/cp)
//!   ◀─ node (--listen, default 127.0.0.1:8787; data in DIR/target/edge-dev/node) long-polls it
//! build ─▶ deploy (route /) ─▶ "serving NAME vN at http://..."
//! a saved change ─▶ build ─▶ ok: deploy the next version │ failed: the compiler's errors,
//!                                                        │ the last good version keeps serving
//! ```
//!
//! Both run in this process, exactly as they run in a fleet: what works here works deployed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_node::config::{EngineConfig, Limits, NodeConfig};
use edge_node::sync::SyncConfig;
use notify::Watcher as _;
use tokio::sync::mpsc;

use crate::api::Api;
use crate::{commands, project};

/// Folders whose changes are not edits to the source.
const IGNORED: &[&str] = &["target", "node_modules", ".git", "dist"];

/// Runs until Ctrl-C or SIGTERM.
pub(crate) async fn dev(dir: &Path, listen: SocketAddr, https: bool) -> anyhow::Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} does not exist", dir.display()))?;
    project::detect(&dir)?;
    let name = function_name(&dir);
    let state = dir.join("target").join("edge-dev");

    let control_plane = edge_control_plane::ControlPlane::bind(edge_control_plane::Config {
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        data_dir: state.join("cp"),
        tls: None,
        max_component_bytes: edge_control_plane::DEFAULT_MAX_COMPONENT_BYTES,
        precompile: true,
        shutdown_timeout: Duration::from_secs(1),
        secrets_key_file: None,
    })
    .await
    .context("cannot start the local control plane")?;
    let cp_url = control_plane.url();
    let token = match control_plane.admin_token() {
        Some(token) => token.to_owned(),
        None => std::fs::read_to_string(state.join("cp").join(edge_control_plane::ADMIN_TOKEN_FILE))
            .context("the local control plane's admin token is missing; delete target/edge-dev and run again")?
            .trim()
            .to_owned(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait_stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let cp_task = tokio::spawn(control_plane.serve(wait_stop(stopped.clone())));

    let self_signed = https
        .then(|| edge_serving::tls::self_signed(&state.join("tls")))
        .transpose()?;
    let node = edge_node::Node::bind(NodeConfig {
        listen,
        admin_listen: "127.0.0.1:0".parse().expect("a valid address"),
        tls: self_signed.as_ref().map(|made| made.files.clone()),
        data_dir: Some(state.join("node")),
        functions: Vec::new(),
        routes: Vec::new(),
        limits: Limits::default(),
        control_plane: Some(SyncConfig {
            url: cp_url.clone(),
            token: token.clone(),
            node_name: "dev".into(),
            precompiled: true,
        }),
        engine: EngineConfig {
            max_instances: 64,
            ..EngineConfig::default()
        },
        shutdown_timeout: Duration::from_secs(1),
        http3: Default::default(),
        cache: Default::default(),
        outbound: Default::default(),
    })
    .await
    .with_context(|| format!("cannot start the local node on {listen}"))?;
    let url = node.url();
    if let Some(made) = &self_signed {
        let port = node.local_addr().port();
        if let Some(addr) = node.http3_addr() {
            println!("HTTP/3 on UDP {addr}");
        }
        println!(
            "self-signed certificate for localhost; trust its CA: curl --cacert {} https://localhost:{port}/",
            made.ca.display()
        );
    }
    let node_task = tokio::spawn(node.serve(wait_stop(stopped)));

    let api = Api::new(&cp_url, Some(token))?;
    let (changes, mut changed) = mpsc::unbounded_channel();
    let root = dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.kind.is_modify() | event.kind.is_create() | event.kind.is_remove()
            && event.paths.iter().any(|p| is_source(&root, p))
        {
            let _ = changes.send(());
        }
    })
    .context("cannot watch the project for changes")?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;

    println!("edge dev: {name} in {}", dir.display());
    let shutdown = edge_serving::shutdown_signal();
    tokio::pin!(shutdown);
    let mut serving = false;
    loop {
        let deployed = tokio::select! {
            deployed = build_and_deploy(&api, &dir, &name) => deployed,
            () = &mut shutdown => break,
        };
        if let Some(version) = deployed {
            serving = true;
            println!(
                "serving {name} v{version} at {url}/  (Ctrl-C stops; saving a file redeploys)"
            );
        } else if serving {
            println!("the last good version keeps serving at {url}/");
        } else {
            println!("nothing is served until the project builds; fix it and save");
        }
        tokio::select! {
            change = changed.recv() => {
                if change.is_none() {
                    break;
                }
                // An editor's save is often several writes: take them as one change.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while changed.try_recv().is_ok() {}
            }
            () = &mut shutdown => break,
        }
    }
    let _ = stop.send(true);
    let _ = tokio::join!(cp_task, node_task);
    Ok(())
}

/// Builds and deploys; the version deployed, or `None` after saying what failed.
async fn build_and_deploy(api: &Api, dir: &Path, name: &str) -> Option<u32> {
    let started = Instant::now();
    println!("building...");
    let build_dir = dir.to_owned();
    let built = match tokio::task::spawn_blocking(move || project::build(&build_dir)).await {
        Ok(Ok(built)) => built,
        Ok(Err(e)) => {
            eprintln!("build failed: {e:#}");
            return None;
        }
        Err(e) => {
            eprintln!("build failed: {e}");
            return None;
        }
    };
    println!(
        "built {} ({}) in {:.1} s",
        built.path.display(),
        commands::size(built.size),
        started.elapsed().as_secs_f64()
    );
    let routes = ["/".to_owned()];
    let deployed = commands::deploy(
        api,
        commands::Deploy {
            file: &built.path,
            name,
            routes: &routes,
            cache: false,
            env: &[],
            env_file: None,
            outbound: &[],
            kv: &[],
            limits: edge_wire::Limits::default(),
            wait: Some(Duration::from_secs(60)),
        },
    )
    .await;
    match deployed {
        Ok(version) => Some(version),
        Err(e) => {
            eprintln!("deploy failed: {e:#}");
            None
        }
    }
}

/// The project folder's name when it is a valid function name, else `dev`.
fn function_name(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.to_ascii_lowercase().replace(['_', ' ', '.'], "-"))
        .filter(|n| edge_wire::is_function_name(n))
        .unwrap_or_else(|| "dev".into())
}

/// Whether a change at `path` is an edit to the project in `root` (not a build output).
fn is_source(root: &Path, path: &Path) -> bool {
    let path = path.strip_prefix(root).unwrap_or(path);
    !path.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        IGNORED.contains(&c.as_ref())
    }) && !path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with('.') && (n.ends_with(".swp") || n.ends_with('~')) || n.ends_with('~')
    })
}
