//! The newcomer's page, `docs/getting-started.md`, run as written: every command of its `sh`
//! blocks, in order, in one bash script from the checkout's root. The only changes are the
//! ones a test must make: the fixed ports become free ones, `~` is a temporary home, and the
//! tools are the binaries this test run built instead of a release build of its own (a fresh
//! release build with fat LTO takes longer on a CI machine than the whole test run; building
//! into `target/debug` instead would replace binaries other tests are running).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edge_tests::{Spawned, control_plane_bin, edge_cli_bin, edge_node_bin, temp_dir};

/// The lines of every ```sh block of `markdown`.
fn sh_blocks(markdown: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        match line.trim() {
            "```sh" => inside = true,
            "```" if inside => inside = false,
            _ if inside => lines.push(line),
            _ => {}
        }
    }
    lines
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn getting_started() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let page = std::fs::read_to_string(root.join("docs/getting-started.md")).unwrap();
    let commands = sh_blocks(&page);
    assert!(commands.len() > 10, "{commands:?}");
    let (dev, api, node) = (free_port(), free_port(), free_port());
    let home = temp_dir();
    let tools = home.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for bin in [edge_cli_bin(), edge_node_bin(), control_plane_bin()] {
        std::os::unix::fs::symlink(&bin, tools.join(bin.file_name().unwrap())).unwrap();
    }
    let mut script = String::from("set -euo pipefail\n");
    let mut built_here = false;
    for line in &commands {
        if line.starts_with("cargo build --release -p edge-cli") {
            built_here = true;
            continue;
        }
        let line = line
            .replace("$PWD/target/release", &tools.display().to_string())
            .replace("127.0.0.1:8787", &format!("127.0.0.1:{dev}"))
            .replace("127.0.0.1:7070", &format!("127.0.0.1:{api}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{node}"));
        script.push_str(&line);
        script.push('\n');
    }
    assert!(
        built_here,
        "the page no longer starts with the release build this test skips"
    );
    assert!(
        page.contains("export PATH=\"$PWD/target/release:$PATH\""),
        "the page no longer puts target/release on PATH"
    );
    script.push_str("echo page done\n");
    let real_home = std::env::var("HOME").unwrap();
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("HOME", home.path())
        .env(
            "CARGO_HOME",
            std::env::var("CARGO_HOME").unwrap_or(format!("{real_home}/.cargo")),
        )
        .env(
            "RUSTUP_HOME",
            std::env::var("RUSTUP_HOME").unwrap_or(format!("{real_home}/.rustup")),
        )
        .env_remove("CARGO_TARGET_DIR")
        .env("EDGE_DEV_LISTEN", format!("127.0.0.1:{dev}"))
        .env("EDGE_CP_LISTEN", format!("127.0.0.1:{api}"))
        .env("EDGE_LISTEN", format!("127.0.0.1:{node}"))
        .env("EDGE_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("EDGE_API")
        .env_remove("EDGE_TOKEN");
    // Its own process group: whatever the page starts in the background (edge dev, the
    // control plane, the node) is stopped with it, even when the page fails half-way.
    std::os::unix::process::CommandExt::process_group(&mut bash, 0);
    let mut run = Spawned::start(bash);
    let finished = run.wait_for("page done", 1, Duration::from_secs(900));
    // Stop what the page left running (its process group, by the script's PID) before judging.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", run.pid())])
        .status();
    let output = run.output();
    assert!(finished, "the page did not run to its end:\n{output}");
    let _ = run.terminate(Duration::from_secs(10));
    assert!(output.contains("hello, newcomer"), "{output}");
    assert!(output.contains("live on 1 of 1 nodes"), "{output}");
    assert!(output.contains("hello, fleet"), "{output}");
}
