//! Function projects: `edge new` scaffolds one, `edge build` turns it into a checked component.
//!
//! ```text
//! edge new NAME [--lang rust|js|ts] ─▶ NAME/ (a project that builds and answers as generated)
//! edge build [DIR] ─▶ rust: cargo build --release --target wasm32-wasip2 (target added with
//!                     rustup when missing) ─▶ the .wasm cargo reports
//!                  ─▶ js/ts: npm install (once) ─▶ [esbuild ts] ─▶ componentize-js
//!                  ─▶ edge_wire::check_component ─▶ print path and size
//! ```

mod templates;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The language of a function project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, with the edge SDK.
    Rust,
    /// JavaScript, fetch-event style, built with componentize-js.
    Js,
    /// TypeScript, the same after esbuild.
    Ts,
}

/// Creates the project `dir` (which must not exist) for function `name`.
pub(crate) fn new(dir: &Path, lang: Lang) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("give the project a name, like `edge new hello`")?;
    if !edge_wire::is_function_name(name) {
        bail!(
            "{name:?} cannot be a function name: use lowercase letters, digits and dashes, starting with a letter or digit (like hello-world)"
        );
    }
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dir.display()
        );
    }
    let files = templates::files(name, lang, &sdk_dependency());
    for (path, contents) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created {} ({lang:?})", dir.display());
    println!(
        "  cd {} && edge dev     # serve it locally, rebuilt on every save",
        dir.display()
    );
    println!("  edge build            # build the component");
    Ok(())
}

/// How a new Rust project depends on the SDK: the SDK next to this CLI's sources when they
/// are there (a checkout of the platform), `EDGE_SDK_PATH` when set, else the registry.
fn sdk_dependency() -> String {
    let path = std::env::var_os("EDGE_SDK_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    match path.join("Cargo.toml").canonicalize() {
        Ok(manifest) => format!(
            "{{ path = {:?} }}",
            manifest
                .parent()
                .expect("a file has a folder")
                .display()
                .to_string()
        ),
        Err(_) => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

/// What a project is, from its files.
pub(crate) fn detect(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(if dir.join("src/index.ts").is_file() {
            Lang::Ts
        } else {
            Lang::Js
        })
    } else {
        bail!(
            "{} is not a function project (no Cargo.toml or package.json); create one with `edge new NAME`",
            dir.display()
        )
    }
}

/// A built component.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
}

/// Builds the project in `dir` and checks the result. The build's own output (compiler
/// errors) goes to this process's stderr as it happens.
pub(crate) fn build(dir: &Path) -> anyhow::Result<Built> {
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("{} does not exist", dir.display()))?;
    let path = match detect(dir)? {
        Lang::Rust => build_rust(dir)?,
        Lang::Js | Lang::Ts => build_js(dir)?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    edge_wire::check_component(&bytes).with_context(|| {
        format!(
            "{} was built but is not a function a node can serve",
            path.display()
        )
    })?;
    Ok(Built {
        path,
        size: bytes.len() as u64,
    })
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    ensure_wasm_target()?;
    let mut child = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo; install Rust from https://rustup.rs")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut wasm = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
            && let Some(files) = message["filenames"].as_array()
        {
            wasm = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(wasm);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("the build failed (cargo's errors are above)");
    }
    wasm.context(
        "cargo built no .wasm: the crate needs `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml",
    )
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Adds the wasm32-wasip2 target with rustup when it is missing, saying so.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
            {
                return Ok(());
            }
        }
        // No rustup: cargo will say whether the target is there.
        _ => return Ok(()),
    }
    eprintln!("installing the wasm32-wasip2 target with rustup (once)");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add wasm32-wasip2` failed; run it yourself and build again");
    }
    Ok(())
}

/// Builds a JavaScript or TypeScript project: npm install (once), esbuild for TypeScript,
/// then componentize-js into `target/edge/NAME.wasm`.
fn build_js(dir: &Path) -> anyhow::Result<PathBuf> {
    let run = |what: &str, command: &mut Command| -> anyhow::Result<()> {
        let status = command
            .current_dir(dir)
            .status()
            .with_context(|| format!("cannot run {what}: JavaScript functions need Node.js 20 or newer and npm (https://nodejs.org, or apt-get install nodejs npm)"))?;
        anyhow::ensure!(status.success(), "{what} failed (its errors are above)");
        Ok(())
    };
    let tools = dir.join("node_modules/@bytecodealliance/componentize-js");
    if !tools.is_dir() {
        eprintln!("installing componentize-js and esbuild with npm (once)");
        run(
            "npm install",
            Command::new("npm").args(["install", "--no-audit", "--no-fund"]),
        )?;
    }
    let out = dir.join("target").join("edge");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("function")
        .replace('-', "_");
    let entry = if dir.join("src/index.ts").is_file() {
        let bundled = out.join("index.js");
        run(
            "esbuild",
            // The package's own launcher: a native binary, or a script that finds one.
            Command::new(dir.join("node_modules/.bin/esbuild"))
                .arg("src/index.ts")
                .args([
                    "--bundle",
                    "--format=esm",
                    "--platform=neutral",
                    "--target=es2022",
                    "--external:wasi:*",
                    "--log-level=warning",
                ])
                .arg(format!("--outfile={}", bundled.display())),
        )?;
        bundled
    } else {
        dir.join("src/index.js")
    };
    anyhow::ensure!(
        entry.is_file(),
        "{} is missing: a JavaScript function starts at src/index.js (or src/index.ts)",
        entry.display()
    );
    // componentize-js says only that parsing failed; node says where.
    run(
        "node --check",
        Command::new("node").arg("--check").arg(&entry),
    )?;
    let wasm = out.join(format!("{name}.wasm"));
    run(
        "componentize-js",
        Command::new("node")
            .arg("node_modules/@bytecodealliance/componentize-js/src/cli.js")
            .args(["--wit", "wit", "--world-name", "handler", "-o"])
            .arg(&wasm)
            .arg(&entry),
    )?;
    Ok(wasm)
}
