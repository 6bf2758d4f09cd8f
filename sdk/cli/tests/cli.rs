//! The `edge` command line: flags and the errors a wrong invocation gets before any control
//! plane is involved. (Deploying to a real fleet is tested end to end in the workspace's
//! `tests/` crate, which also relies on this test target making cargo build the `edge` binary.)

use std::process::Command;

fn edge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge"));
    command.env_remove("EDGE_API").env_remove("EDGE_TOKEN");
    command
}

fn fails_with(command: &mut Command, needle: &str) {
    let out = command.output().unwrap();
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
}

#[test]
fn help_lists_every_command() {
    let out = edge().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "deploy", "versions", "rollback", "canary", "routes", "nodes", "tokens",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn a_missing_token_says_where_to_get_one() {
    fails_with(
        edge().args(["routes"]),
        "pass --token TOKEN or set EDGE_TOKEN",
    );
}

#[test]
fn an_unreachable_control_plane_says_how_to_point_at_one() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fails_with(
        edge().args([
            "--api",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            "t",
            "nodes",
        ]),
        "pass --api URL",
    );
}

#[test]
fn deploy_checks_the_file_before_uploading() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not.wasm");
    std::fs::write(&file, b"hello").unwrap();
    // No control plane runs at this address; the check fails first.
    let mut command = edge();
    command.args(["--api", "http://127.0.0.1:9", "--token", "t", "deploy"]);
    command.arg(&file).args(["--name", "f"]);
    fails_with(&mut command, "not a WebAssembly file");
    fails_with(
        edge().args([
            "--token",
            "t",
            "deploy",
            "/nonexistent/f.wasm",
            "--name",
            "f",
        ]),
        "cannot read /nonexistent/f.wasm",
    );
}

#[test]
fn bad_flags_name_the_fix() {
    fails_with(
        edge().args(["--token", "t", "canary", "f", "2", "--percent", "100"]),
        "100 is not in 0..=99",
    );
    fails_with(
        edge().args(["--token", "t", "tokens", "create", "--scope", "root"]),
        "use one of admin, deploy, read, node",
    );
}
