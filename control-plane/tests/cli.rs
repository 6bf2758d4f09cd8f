//! The command line: flags, help and the errors a wrong invocation gets. (Serving is tested end
//! to end in the workspace's `tests/` crate, which also relies on this test target making cargo
//! build the `edge-control-plane` binary.)

use std::process::{Command, Output};

fn control_plane() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-control-plane"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EDGE_CP_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_the_serve_flags_and_their_env_vars() {
    let out = control_plane().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--tls-cert",
        "--tls-key",
        "--max-component-bytes",
        "--log-format",
        "--log",
        "EDGE_CP_LISTEN",
        "EDGE_CP_DATA_DIR",
        "127.0.0.1:7070",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn a_bad_address_is_named() {
    let out = control_plane()
        .args(["serve", "--listen", "localhost:http"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--listen") && err.contains("localhost:http"),
        "{err}"
    );
}

#[test]
fn tls_needs_both_files() {
    let out = control_plane()
        .args(["serve", "--tls-cert", "c.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

#[test]
fn an_unknown_flag_is_refused() {
    let out = control_plane()
        .args(["serve", "--data-directory", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--data-directory") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn a_data_dir_that_is_a_file_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = control_plane()
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot use the data dir") && err.contains("not-a-dir"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when the start fails"
    );
}

#[test]
fn a_port_in_use_is_named_with_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = control_plane()
        .args(["serve", "--listen", &addr, "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("127.0.0.1:0"),
        "{err}"
    );
    // The failed start used up no admin token: none was created.
    assert!(!dir.path().join("admin-token").exists());
}
