//! Components the node must refuse at start, each with an error that names the file and the
//! problem.

use edge_tests::{NodeBuilder, guest, temp_dir, write_routes};

fn refused(path: &std::path::Path) -> String {
    let (status, stderr) = NodeBuilder::default().component(path).start_failure();
    assert!(!status.success(), "edge-node accepted {}", path.display());
    assert!(
        stderr.contains(&path.display().to_string()),
        "the error does not name the file:\n{stderr}"
    );
    stderr
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"this is not webassembly at all").unwrap();
    let err = refused(&path);
    assert!(err.contains("is not a WebAssembly component"), "{err}");
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let dir = temp_dir();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = refused(&path);
    assert!(
        err.contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn a_truncated_component_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(guest("hello")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = refused(&path);
    assert!(err.contains("is not a valid component"), "{err}");
}

#[test]
fn a_component_without_the_http_export_is_refused() {
    let err = refused(&guest("no-export"));
    assert!(
        err.contains("does not export `wasi:http/incoming-handler@0.2.x`"),
        "{err}"
    );
    // It says what the component exports instead.
    assert!(err.contains("wasi:cli/run@0.2"), "{err}");
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused() {
    let err = refused(&guest("unknown-import"));
    assert!(err.contains("acme:nope/thing"), "{err}");
    assert!(err.contains("only WASI 0.2 interfaces"), "{err}");
}

#[test]
fn a_routes_file_typo_is_named() {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            "[functions.a]\ncomponent = \"{}\"\n[[routes]]\nfunction = \"a\"\nhots = \"x\"\n",
            guest("hello").display()
        ),
    );
    let (status, err) = NodeBuilder::default().routes(&routes).start_failure();
    assert!(!status.success());
    assert!(err.contains("unknown field `hots`"), "{err}");
}

#[test]
fn a_taken_port_says_how_to_pick_a_free_one() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, err) = NodeBuilder::default()
        .component(&guest("hello"))
        .arg("--listen")
        .arg(&addr)
        .start_failure();
    assert!(!status.success());
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("--listen 127.0.0.1:0"), "{err}");
}
