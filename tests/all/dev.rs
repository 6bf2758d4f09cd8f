//! The developer's loop with the real `edge` binary, for Rust and JavaScript: `edge new`,
//! `edge build`, and `edge dev` serving a project, picking up an edit, and keeping the last
//! good version through a broken one; a TypeScript function built and served; `edge dev
//! --https` answering over HTTP/3.

use std::process::Command;
use std::time::Duration;

use super::get_blocking as get;
use edge_tests::{Spawned, edge_cli_bin, temp_dir};

use crate::http3::{H3Client, client_config};

fn edge(dir: &std::path::Path) -> Command {
    let mut command = Command::new(edge_cli_bin());
    command
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("EDGE_API")
        .env_remove("EDGE_TOKEN");
    command
}

fn run(mut command: Command) -> String {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

/// The URL in the last `serving ... at URL/` line.
fn served_url(dev: &Spawned) -> String {
    let output = dev.output();
    let line = output
        .lines()
        .rfind(|l| l.starts_with("serving "))
        .unwrap_or_else(|| panic!("no serving line:\n{output}"));
    let url = line
        .split(" at ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    url.to_owned()
}

/// `edge new NAME --lang LANG`, `edge build`, then `edge dev`: the project answers; an edit to
/// `source` is served; a broken save (`broken`, with `compiler_says` in the build output) leaves
/// the edited version serving.
fn the_loop(lang: &str, source: &str, broken: &str, compiler_says: &str) {
    let dir = temp_dir();
    let out = run({
        let mut c = edge(dir.path());
        c.args(["new", "greeter", "--lang", lang]);
        c
    });
    assert!(out.contains("created greeter"), "{out}");
    let project = dir.path().join("greeter");
    assert!(project.join(source).is_file(), "{source} missing");
    let again = edge(dir.path()).args(["new", "greeter"]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let out = run({
        let mut c = edge(&project);
        c.arg("build");
        c
    });
    let built = out
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap_or_else(|| panic!("no `built` line:\n{out}"));
    let path = built.rsplit_once(" (").unwrap().0;
    assert!(std::path::Path::new(path).is_file(), "{out}");
    assert!(path.ends_with("greeter.wasm"), "{out}");

    let mut dev = Spawned::start({
        let mut c = edge(&project);
        c.args(["dev", "--listen", "127.0.0.1:0"]);
        c
    });
    assert!(
        dev.wait_for("serving greeter v1", 1, Duration::from_secs(300)),
        "{}",
        dev.output()
    );
    let url = served_url(&dev);
    assert_eq!(get(&url), (200, "hello from the edge\n".into()));
    assert_eq!(
        get(&format!("{url}hello/ada")),
        (200, "hello, ada\n".into())
    );

    // An edit is served as soon as it is built and deployed.
    let source = project.join(source);
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        text.replace("hello from the edge", "edited at the edge"),
    )
    .unwrap();
    assert!(
        dev.wait_for("serving greeter v2", 1, Duration::from_secs(300)),
        "{}",
        dev.output()
    );
    assert_eq!(get(&url), (200, "edited at the edge\n".into()));

    // A broken save: the compiler's error is shown, v2 keeps serving.
    std::fs::write(&source, broken).unwrap();
    assert!(
        dev.wait_for("build failed", 1, Duration::from_secs(300)),
        "{}",
        dev.output()
    );
    assert!(
        dev.wait_for(
            "the last good version keeps serving",
            1,
            Duration::from_secs(30)
        ),
        "{}",
        dev.output()
    );
    assert!(dev.output().contains(compiler_says), "{}", dev.output());
    assert_eq!(get(&url), (200, "edited at the edge\n".into()));

    let status = dev
        .terminate(Duration::from_secs(20))
        .expect("edge dev did not stop");
    assert!(status.success(), "{status}\n{}", dev.output());
}

#[test]
fn the_loop_in_rust() {
    // rustc's own message, pointing at the line.
    the_loop("rust", "src/lib.rs", "fn broken( {\n", "src/lib.rs:1:");
}

#[test]
fn the_loop_in_javascript() {
    the_loop(
        "js",
        "src/index.js",
        "addEventListener('fetch', (event) => {\n",
        "SyntaxError",
    );
}

#[test]
fn a_typescript_function_builds_and_answers() {
    let dir = temp_dir();
    run({
        let mut c = edge(dir.path());
        c.args(["new", "typed", "--lang", "ts"]);
        c
    });
    let project = dir.path().join("typed");
    let out = run({
        let mut c = edge(&project);
        c.arg("build");
        c
    });
    let component = project.join("target/edge/typed.wasm");
    assert!(
        out.contains(&format!("built {}", component.display())),
        "{out}"
    );
    let node = edge_tests::NodeBuilder::default()
        .component(&component)
        .start();
    assert_eq!(
        get(&format!("{}/hello/ts", node.url)),
        (200, "hello, ts\n".into())
    );
}

#[test]
fn edge_dev_https_serves_http3_with_a_local_certificate() {
    let dir = temp_dir();
    run({
        let mut c = edge(dir.path());
        c.args(["new", "secure"]);
        c
    });
    let project = dir.path().join("secure");
    let mut dev = Spawned::start({
        let mut c = edge(&project);
        c.args(["dev", "--https", "--listen", "127.0.0.1:0"]);
        c
    });
    assert!(
        dev.wait_for("serving secure v1", 1, Duration::from_secs(300)),
        "{}",
        dev.output()
    );
    let output = dev.output();
    assert!(served_url(&dev).starts_with("https://"), "{output}");
    let h3: std::net::SocketAddr = output
        .lines()
        .find_map(|l| l.strip_prefix("HTTP/3 on UDP "))
        .unwrap_or_else(|| panic!("no HTTP/3 line:\n{output}"))
        .parse()
        .unwrap();
    let ca = project.join("target/edge-dev/tls/ca.pem");
    assert!(
        output.contains(&format!("curl --cacert {}", ca.display())),
        "{output}"
    );
    let ca = std::fs::read_to_string(ca).unwrap();
    let answer = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = H3Client::connect(h3, &client_config(&ca, false)).await;
        client.get("https://localhost/hello/quic").await
    });
    assert_eq!(answer.text(), "hello, quic\n");
    let status = dev
        .terminate(Duration::from_secs(20))
        .expect("edge dev did not stop");
    assert!(status.success(), "{status}\n{}", dev.output());
}
