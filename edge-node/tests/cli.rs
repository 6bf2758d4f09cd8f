//! The command line: flags, help and the errors a wrong invocation gets. (Serving is tested end
//! to end in the workspace's `tests/` crate, which also relies on this test target making cargo
//! build the `edge-node` binary.)

use std::process::Command;

fn edge_node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-node"))
}

#[test]
fn help_lists_the_serve_flags() {
    let out = edge_node().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--component",
        "--routes",
        "--listen",
        "--admin-listen",
        "--tls-cert",
        "--tls-key",
        "--data-dir",
        "--log-format",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn serve_needs_something_to_serve() {
    let out = edge_node()
        .arg("serve")
        .env_remove("EDGE_COMPONENT")
        .env_remove("EDGE_ROUTES")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--component") && err.contains("--routes"),
        "{err}"
    );
}

#[test]
fn a_bad_address_is_named() {
    let out = edge_node()
        .args([
            "serve",
            "--component",
            "x.wasm",
            "--listen",
            "localhost:http",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--listen") && err.contains("localhost:http"),
        "{err}"
    );
}

#[test]
fn a_missing_component_file_is_named() {
    let out = edge_node()
        .args([
            "serve",
            "--component",
            "no/such/file.wasm",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("cannot read component no/such/file.wasm"),
        "{err}"
    );
}

#[test]
fn tls_needs_both_files() {
    let out = edge_node()
        .args(["serve", "--component", "x.wasm", "--tls-cert", "c.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--tls-key"), "{err}");
}
