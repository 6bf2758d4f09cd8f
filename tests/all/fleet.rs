//! A control plane and three nodes as real processes on 127.0.0.1, driven with the `edge` CLI:
//! deploys reach every node, a deploy under load never fails a request, rollback and canary,
//! nodes that outlive the control plane, and components that arrive corrupt.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::get_blocking as get;
use edge_tests::{ControlPlaneBuilder, ControlPlaneProcess, NodeBuilder, NodeProcess, guest};

const V1: &str = "hello from the edge";
const V2: &str = "hello from wasi 0.2.0";

/// Runs `edge ARGS` against `cp` with `token`; panics with its output when it fails.
fn edge(cp: &ControlPlaneProcess, token: &str, args: &[&str]) -> String {
    let out = edge_raw(cp, token, args);
    assert!(
        out.status.success(),
        "edge {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn edge_raw(cp: &ControlPlaneProcess, token: &str, args: &[&str]) -> Output {
    Command::new(edge_tests::edge_cli_bin())
        .args(["--api", cp.url(), "--token", token])
        .args(args)
        .env_remove("EDGE_API")
        .env_remove("EDGE_TOKEN")
        .output()
        .expect("running edge")
}

struct Fleet {
    dir: tempfile::TempDir,
    cp: ControlPlaneProcess,
    node_token: String,
    nodes: Vec<NodeProcess>,
}

impl Fleet {
    fn start(nodes: usize) -> Fleet {
        let dir = edge_tests::temp_dir();
        let cp = ControlPlaneBuilder::default()
            .data_dir(&dir.path().join("cp"))
            .start();
        let node_token = edge(
            &cp,
            &cp.admin_token(),
            &["tokens", "create", "--scope", "node"],
        )
        .trim()
        .to_owned();
        let mut fleet = Fleet {
            dir,
            cp,
            node_token,
            nodes: Vec::new(),
        };
        for i in 0..nodes {
            let node = fleet.start_node(i);
            fleet.nodes.push(node);
        }
        fleet.wait_live(nodes);
        fleet
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    fn start_node(&self, i: usize) -> NodeProcess {
        self.start_node_with(i, &[])
    }

    fn start_node_with(&self, i: usize, args: &[&str]) -> NodeProcess {
        let mut node = NodeBuilder::default();
        for arg in args {
            node = node.arg(*arg);
        }
        node.arg("--control-plane")
            .arg(self.cp.url().to_owned())
            .arg("--token")
            .arg(&self.node_token)
            .arg("--node-name")
            .arg(format!("node{i}"))
            .arg("--data-dir")
            .arg(self.node_dir(i).display().to_string())
            .start()
    }

    fn admin(&self) -> String {
        self.cp.admin_token()
    }

    /// Waits until the control plane lists `n` live nodes.
    fn wait_live(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = edge(&self.cp, &self.admin(), &["nodes"]);
            if out.matches(" serving ").count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} nodes did not register:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn deploy(&self, component: &Path, name: &str, route: &str) -> String {
        edge(
            &self.cp,
            &self.admin(),
            &[
                "deploy",
                component.to_str().unwrap(),
                "--name",
                name,
                "--route",
                route,
            ],
        )
    }
}

fn answer(node: &NodeProcess) -> String {
    let (status, body) = get(&format!("http://{}/", node.addr()));
    assert_eq!(status, 200, "{body}");
    body.trim().to_owned()
}

#[test]
fn a_deploy_reaches_every_node_and_says_when() {
    let fleet = Fleet::start(3);
    let out = fleet.deploy(&guest("hello"), "hello", "/");
    assert!(out.contains("deployed hello v1"), "{out}");
    assert!(out.contains("live on 3 of 3 nodes after"), "{out}");
    for node in &fleet.nodes {
        assert_eq!(answer(node), V1);
    }
    let nodes = edge(&fleet.cp, &fleet.admin(), &["nodes"]);
    for i in 0..3 {
        assert!(nodes.contains(&format!("node{i}")), "{nodes}");
    }
}

#[test]
fn a_deploy_under_load_never_fails_a_request() {
    let fleet = Fleet::start(3);
    fleet.deploy(&guest("hello"), "site", "/");
    let urls: Vec<String> = fleet
        .nodes
        .iter()
        .map(|n| format!("http://{}/", n.addr()))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seen.push(get(&url));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    fleet.deploy(&guest("hello-wasi-0-2-0"), "site", "/");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut v2_seen = 0;
    for client in clients {
        let seen = client.join().unwrap();
        assert!(seen.len() > 5, "too few requests: {}", seen.len());
        for (status, body) in &seen {
            assert_eq!(*status, 200, "a request failed during the deploy: {body}");
            let body = body.trim();
            assert!(body == V1 || body == V2, "unexpected answer {body:?}");
        }
        // Once a node answers v2 it never answers v1 again: the swap is atomic.
        let first_v2 = seen.iter().position(|(_, b)| b.trim() == V2);
        if let Some(i) = first_v2 {
            assert!(seen[i..].iter().all(|(_, b)| b.trim() == V2));
            v2_seen += 1;
        }
    }
    assert_eq!(v2_seen, 3, "every node switched to v2");
}

#[test]
fn rollback_and_canary_reach_every_node() {
    let fleet = Fleet::start(3);
    fleet.deploy(&guest("hello"), "site", "/");
    fleet.deploy(&guest("hello-wasi-0-2-0"), "site", "/");
    for node in &fleet.nodes {
        assert_eq!(answer(node), V2);
    }
    let out = edge(&fleet.cp, &fleet.admin(), &["rollback", "site"]);
    assert!(out.contains("back on v1"), "{out}");
    assert!(out.contains("live on 3 of 3 nodes"), "{out}");
    for node in &fleet.nodes {
        assert_eq!(answer(node), V1);
    }
    let versions = edge(&fleet.cp, &fleet.admin(), &["versions", "site"]);
    assert!(
        versions.contains("v1") && versions.contains("active"),
        "{versions}"
    );

    edge(
        &fleet.cp,
        &fleet.admin(),
        &["canary", "site", "2", "--percent", "10"],
    );
    let node = &fleet.nodes[0];
    let url = format!("http://{}/", node.addr());
    let client = reqwest::blocking::Client::new();
    let v2 = (0..2000)
        .filter(|_| client.get(&url).send().unwrap().text().unwrap().trim() == V2)
        .count();
    assert!(
        (140..=260).contains(&v2),
        "a 10% canary got {v2} of 2000 requests (10% ± 3% is 140..=260)"
    );
}

#[test]
fn nodes_outlive_the_control_plane_and_catch_up() {
    let mut fleet = Fleet::start(2);
    fleet.deploy(&guest("hello"), "site", "/");
    let addr = fleet.cp.addr();
    fleet.cp.terminate(Duration::from_secs(10));
    // Nodes keep serving without it.
    for node in &fleet.nodes {
        assert_eq!(answer(node), V1);
    }
    // A node restarted while it is away serves its last snapshot from disk.
    let mut old = fleet.nodes.remove(0);
    old.terminate(Duration::from_secs(10));
    let restarted = fleet.start_node(0);
    assert_eq!(answer(&restarted), V1);
    fleet.nodes.insert(0, restarted);

    // Back again, at the same address on the same data dir: a deploy made now arrives on both.
    fleet.cp = ControlPlaneBuilder::default()
        .data_dir(&fleet.dir.path().join("cp"))
        .arg("--listen")
        .arg(addr.to_string())
        .start();
    fleet.wait_live(2);
    let out = fleet.deploy(&guest("hello-wasi-0-2-0"), "site", "/");
    assert!(out.contains("live on 2 of 2 nodes"), "{out}");
    for node in &fleet.nodes {
        assert_eq!(answer(node), V2);
    }
}

#[test]
fn a_corrupt_component_is_refused_and_fetched_again() {
    // Deploy before any node exists, then damage the control plane's stored copy: the first
    // node to start fetches bytes that do not match their digest.
    let mut fleet = Fleet::start(0);
    let component = guest("hello");
    let bytes = std::fs::read(&component).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    fleet.deploy(&component, "site", "/");
    let stored = fleet.cp.data_dir().join("components").join(&digest);
    assert!(stored.exists(), "no component at {}", stored.display());
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&stored, &damaged).unwrap();

    let node = fleet.start_node(0);
    assert!(
        node.wait_for_log(&["arrived corrupt"], Duration::from_secs(30))
            .is_some(),
        "the node did not notice the corrupt component:\n{}",
        node.logs()
    );
    // Nothing was applied from it.
    let (status, _) = get(&format!("http://{}/", node.addr()));
    assert_eq!(status, 404);
    assert!(
        !fleet
            .node_dir(0)
            .join("components")
            .join(format!("{digest}.wasm"))
            .exists()
    );

    // Repaired at the source: the node fetches it again and serves it.
    std::fs::write(&stored, &bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://{}/", node.addr())).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never recovered:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(answer(&node), V1);
    fleet.nodes.push(node);
}

/// What the node's log says about how its functions became ready. The node logs that line
/// before it swaps the routing table, but the test's reader of its output may not have it yet
/// when a request has already been answered: wait for it.
fn how_loaded(node: &NodeProcess) -> Vec<String> {
    node.wait_for_log(&["function ready"], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `function ready` line:\n{}", node.logs()));
    node.logs()
        .lines()
        .filter(|line| line.contains("function ready"))
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["how"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn components_with_and_without_the_sdk_deploy_the_same_way() {
    let fleet = Fleet::start(1);
    // `hello` is built with the SDK; `hello-raw` on the plain wasi bindings.
    for (name, path) in [("sdk", "/sdk"), ("raw", "/raw")] {
        let component = guest(if name == "sdk" { "hello" } else { "hello-raw" });
        let out = fleet.deploy(&component, name, path);
        assert!(out.contains("live on 1 of 1 nodes"), "{out}");
    }
    for path in ["/sdk", "/raw"] {
        let (status, body) = get(&format!("http://{}{path}", fleet.nodes[0].addr()));
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from the edge\n"),
            "{path}"
        );
    }
}

#[test]
fn nodes_run_the_code_the_control_plane_compiled() {
    let fleet = Fleet::start(2);
    fleet.deploy(&guest("hello"), "site", "/");
    for node in &fleet.nodes {
        assert_eq!(answer(node), V1);
        assert_eq!(how_loaded(node), ["loaded precompiled artifact"]);
    }
    assert_eq!(fleet.cp.logs().matches("compiled for the nodes").count(), 1);

    // A node told to trust only its own compiler compiles.
    let mut own = fleet.start_node_with(2, &["--compile-locally"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://{}/", own.addr())).0 != 200 {
        assert!(Instant::now() < deadline, "never served:\n{}", own.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(how_loaded(&own), ["compiled with Cranelift"]);
    own.terminate(Duration::from_secs(10));
}

#[test]
fn corrupt_compiled_code_is_discarded_and_the_node_compiles() {
    let mut fleet = Fleet::start(0);
    fleet.deploy(&guest("hello"), "site", "/");
    let dir = fleet.cp.data_dir().join("compiled");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut code = std::fs::read(&files[0]).unwrap();
    let middle = code.len() / 2;
    code[middle] ^= 0xff;
    std::fs::write(&files[0], &code).unwrap();

    let node = fleet.start_node(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://{}/", node.addr())).0 != 200 {
        assert!(Instant::now() < deadline, "never served:\n{}", node.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(answer(&node), V1);
    assert_eq!(how_loaded(&node), ["compiled with Cranelift"]);
    assert!(
        node.logs().contains("compiled code arrived corrupt"),
        "{}",
        node.logs()
    );
    fleet.nodes.push(node);
}

#[test]
fn bad_deploys_get_clear_errors() {
    let fleet = Fleet::start(0);
    let dir = edge_tests::temp_dir();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, b"just text").unwrap();
    for (file, needle) in [
        (text.clone(), "not a WebAssembly file"),
        (
            guest("no-export"),
            "does not export wasi:http/incoming-handler",
        ),
        (guest("unknown-import"), "imports acme:nope/thing"),
    ] {
        let out = edge_raw(
            &fleet.cp,
            &fleet.admin(),
            &["deploy", file.to_str().unwrap(), "--name", "f", "--no-wait"],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    // Tokens: a wrong one, and one without the scope.
    let out = edge_raw(&fleet.cp, "edge_wrong", &["routes"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));
    let read = edge(
        &fleet.cp,
        &fleet.admin(),
        &["tokens", "create", "--scope", "read"],
    );
    let out = edge_raw(
        &fleet.cp,
        read.trim(),
        &["deploy", guest("hello").to_str().unwrap(), "--name", "f"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not do this"), "{err}");
}

/// The `Cache-Status` and body of a GET of `target` on `node`.
fn cached_get(node: &NodeProcess, target: &str) -> (String, String) {
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{}{target}", node.addr()))
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, response.text().unwrap())
}

#[test]
fn a_purge_reaches_every_node_and_says_when() {
    let fleet = Fleet::start(3);
    let probe = edge_tests::guest("probe");
    let out = edge(
        &fleet.cp,
        &fleet.admin(),
        &[
            "deploy",
            probe.to_str().unwrap(),
            "--name",
            "shop",
            "--route",
            "/",
            "--cache",
        ],
    );
    assert!(out.contains("live on 3 of 3 nodes"), "{out}");
    assert!(
        edge(&fleet.cp, &fleet.admin(), &["routes"]).contains("(cached)"),
        "the route is not shown as cached"
    );
    let tagged = "/origin?h=cache-control:max-age%3D600&h=surrogate-key:catalog";
    let other = "/origin?h=cache-control:max-age%3D600&h=surrogate-key:cart";
    for node in &fleet.nodes {
        for target in [tagged, other] {
            let (first, body) = cached_get(node, target);
            assert!(first.contains("stored"), "{first}");
            let (second, again) = cached_get(node, target);
            assert!(second.starts_with("edge; hit"), "{second}");
            assert_eq!(again, body);
        }
    }

    let out = edge(&fleet.cp, &fleet.admin(), &["purge", "--key", "catalog"]);
    assert!(out.contains("purged on 3 of 3 nodes after"), "{out}");
    for node in &fleet.nodes {
        let (status, _) = cached_get(node, tagged);
        assert!(status.contains("fwd=uri-miss"), "still cached: {status}");
        let (status, _) = cached_get(node, other);
        assert!(status.starts_with("edge; hit"), "purged too much: {status}");
    }

    // A URL (the nodes all answer as 127.0.0.1), then everything.
    let url = format!("http://127.0.0.1{other}");
    let out = edge(&fleet.cp, &fleet.admin(), &["purge", "--url", &url]);
    assert!(out.contains("purged on 3 of 3 nodes"), "{out}");
    for node in &fleet.nodes {
        let (status, _) = cached_get(node, other);
        assert!(status.contains("fwd=uri-miss"), "still cached: {status}");
    }
    let out = edge(&fleet.cp, &fleet.admin(), &["purge", "--all"]);
    assert!(out.contains("purged on 3 of 3 nodes"), "{out}");

    // Bad input is named.
    let refused = edge_raw(&fleet.cp, &fleet.admin(), &["purge", "--url", "not a url"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("cannot purge"), "{err}");
}

#[test]
fn outbound_origins_and_config_files_are_granted_per_version() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let origin = runtime.block_on(crate::origin::Origin::start());
    let fleet = Fleet::start(1);
    let probe = guest("probe");
    let probe = probe.to_str().unwrap();
    let allowed = origin.url();
    let env_file = fleet.dir.path().join("gw.env");
    std::fs::write(
        &env_file,
        "# the gateway's settings\nexport GREETING=\"hello there\"\nLIMIT=5\n\n",
    )
    .unwrap();
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy", probe, "--name", "gw", "--route", "/fetch", "--route", "/config",
        ];
        args.extend_from_slice(extra);
        edge(&fleet.cp, &fleet.admin(), &args)
    };
    deploy(&[
        "--allow-outbound",
        &allowed,
        "--env-file",
        env_file.to_str().unwrap(),
        "--env",
        "LIMIT=7",
    ]);
    let node = &fleet.nodes[0];
    let fetch = || get(&format!("http://{}/fetch?url={allowed}/x", node.addr()));
    let (status, body) = fetch();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("origin 1 GET /x"), "{body}");

    // The version's configuration: the file's values, --env winning over it.
    let info: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/functions/gw", fleet.cp.url()))
        .bearer_auth(fleet.admin())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let v1 = &info["versions"][0];
    assert_eq!(v1["env"]["GREETING"], "hello there", "{info}");
    assert_eq!(v1["env"]["LIMIT"], "7", "{info}");
    assert_eq!(v1["outbound"][0], allowed.as_str(), "{info}");
    // The guest sees them through wasi:config/store and as its environment.
    let (status, config) = get(&format!("http://{}/config", node.addr()));
    assert_eq!(status, 200, "{config}");
    assert_eq!(
        config,
        "GREETING=hello there env=hello there\nLIMIT=7 env=7\nNOT_SET=None\n"
    );

    // A version without the grant reaches nothing; rolling back brings the grant back.
    deploy(&[]);
    let (status, body) = fetch();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let versions = edge(&fleet.cp, &fleet.admin(), &["versions", "gw"]);
    assert!(
        versions.contains(&format!("outbound: {allowed}")),
        "{versions}"
    );
    edge(&fleet.cp, &fleet.admin(), &["rollback", "gw", "--to", "1"]);
    let (status, body) = fetch();
    assert_eq!(status, 200, "{body}");
    assert_eq!(origin.requests(), 2);

    // Bad patterns and files are named before anything is uploaded.
    for (args, needle) in [
        (
            vec!["--allow-outbound", "127.0.0.1:8080"],
            "scheme://host[:port]",
        ),
        (vec!["--env-file", "/nonexistent/gw.env"], "cannot read"),
    ] {
        let mut all = vec!["deploy", probe, "--name", "gw"];
        all.extend_from_slice(&args);
        let out = edge_raw(&fleet.cp, &fleet.admin(), &all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
}

/// Runs `edge ARGS` with `input` on its stdin; panics with its output when it fails.
fn edge_with_stdin(cp: &ControlPlaneProcess, token: &str, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(edge_tests::edge_cli_bin())
        .args(["--api", cp.url(), "--token", token])
        .args(args)
        .env_remove("EDGE_API")
        .env_remove("EDGE_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running edge");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "edge {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// GET `path` on `node` with `Host: host`; (status, body).
fn get_host(node: &NodeProcess, host: &str, path: &str) -> (u16, String) {
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{}{path}", node.addr()))
        .header("host", host)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn secrets_reach_only_their_function_and_never_show() {
    const FIRST: &str = "tok-4d1f9c2b7e";
    const SECOND: &str = "tok-rotated-0a9b";
    let mut fleet = Fleet::start(2);
    let probe = guest("probe");
    let probe = probe.to_str().unwrap();
    for (name, route) in [("gw", "gw.test/config"), ("other", "other.test/config")] {
        edge(
            &fleet.cp,
            &fleet.admin(),
            &["deploy", probe, "--name", name, "--route", route],
        );
    }
    let out = edge_with_stdin(
        &fleet.cp,
        &fleet.admin(),
        &["secrets", "put", "gw", "API_TOKEN"],
        &format!("{FIRST}\n"),
    );
    assert!(out.contains("secret API_TOKEN of gw set"), "{out}");
    assert!(out.contains("set on 2 of 2 nodes"), "{out}");
    for node in &fleet.nodes {
        let (status, config) = get_host(node, "gw.test", "/config");
        assert_eq!(status, 200, "{config}");
        assert!(
            config.contains(&format!("API_TOKEN={FIRST} env={FIRST}")),
            "{config}"
        );
        let (_, other) = get_host(node, "other.test", "/config");
        assert!(
            !other.contains("API_TOKEN") && !other.contains(FIRST),
            "{other}"
        );
    }

    // Rotation reaches the nodes; the listing names the secret, never its value.
    edge_with_stdin(
        &fleet.cp,
        &fleet.admin(),
        &["secrets", "put", "gw", "API_TOKEN"],
        SECOND,
    );
    let (_, config) = get_host(&fleet.nodes[1], "gw.test", "/config");
    assert!(config.contains(&format!("API_TOKEN={SECOND} ")), "{config}");
    let listed = edge(&fleet.cp, &fleet.admin(), &["secrets", "list", "gw"]);
    assert!(listed.contains("API_TOKEN"), "{listed}");
    let api = |path: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", fleet.cp.url()))
            .bearer_auth(fleet.admin())
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    for answer in [
        listed,
        api("/v1/functions/gw"),
        api("/v1/functions/gw/secrets"),
        api("/v1/functions"),
    ] {
        assert!(!answer.contains("tok-"), "a value in an answer: {answer}");
    }
    // A read token may list, not write.
    let read = edge(
        &fleet.cp,
        &fleet.admin(),
        &["tokens", "create", "--scope", "read"],
    );
    let out = edge_raw(
        &fleet.cp,
        read.trim(),
        &["secrets", "delete", "gw", "API_TOKEN"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not do this"));

    // Never in a log, never in the control plane's files; the node's copy is its own.
    for node in &fleet.nodes {
        assert!(!node.logs().contains("tok-"), "{}", node.logs());
    }
    assert!(!fleet.cp.logs().contains("tok-"), "{}", fleet.cp.logs());
    let cp_dir = fleet.dir.path().join("cp");
    for file in std::fs::read_dir(&cp_dir).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(4).any(|w| w == b"tok-"),
                "a value in {}",
                path.display()
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for path in [
            cp_dir.join("secrets.key"),
            fleet.node_dir(0).join("snapshot.json"),
        ] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }

    // Deleted: gone from the function on every node.
    let out = edge(
        &fleet.cp,
        &fleet.admin(),
        &["secrets", "delete", "gw", "API_TOKEN"],
    );
    assert!(out.contains("deleted on 2 of 2 nodes"), "{out}");
    let (_, config) = get_host(&fleet.nodes[0], "gw.test", "/config");
    assert!(!config.contains("API_TOKEN"), "{config}");

    // A control plane whose key file went missing refuses to start rather than lose them.
    edge_with_stdin(
        &fleet.cp,
        &fleet.admin(),
        &["secrets", "put", "gw", "K"],
        "v",
    );
    fleet.cp.terminate(Duration::from_secs(20));
    let key = cp_dir.join("secrets.key");
    std::fs::rename(&key, cp_dir.join("secrets.key.away")).unwrap();
    let (status, _, stderr) = ControlPlaneBuilder::default()
        .data_dir(&cp_dir)
        .start_failure();
    assert!(!status.success());
    assert!(
        stderr.contains("sealed with the secrets key") && stderr.contains("--secrets-key-file"),
        "{stderr}"
    );
}

/// GET `/counter/kv?QUERY` on `node`; (status, body).
fn kv(node: &NodeProcess, query: &str) -> (u16, String) {
    get(&format!("http://{}/counter/kv?{query}", node.addr()))
}

#[test]
fn kv_written_on_one_node_is_read_on_the_others_and_outlives_the_control_plane() {
    let mut fleet = Fleet::start(2);
    let probe = guest("probe");
    edge(
        &fleet.cp,
        &fleet.admin(),
        &[
            "deploy",
            probe.to_str().unwrap(),
            "--name",
            "counter",
            "--route",
            "/counter",
            "--kv",
            "counts",
        ],
    );
    let (a, b) = (&fleet.nodes[0], &fleet.nodes[1]);

    // Written on A: A reads it at once, B within moments (the KV log's long-poll).
    let written = Instant::now();
    assert_eq!(kv(a, "op=set&key=greeting&value=hello"), (200, "ok".into()));
    assert_eq!(kv(a, "op=get&key=greeting"), (200, "hello".into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv(b, "op=get&key=greeting").1 != "hello" {
        assert!(Instant::now() < deadline, "node B never saw the write");
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("KV write on A visible on B after {:?}", written.elapsed());

    // Increments from both nodes add up: the control plane does them.
    for _ in 0..5 {
        assert_eq!(kv(a, "op=incr&key=n").0, 200);
        assert_eq!(kv(b, "op=incr&key=n").0, 200);
    }
    assert_eq!(kv(a, "op=incr&key=n&delta=0").1, "10");

    // The CLI sees what functions wrote, and functions see what the CLI wrote.
    let value = edge(
        &fleet.cp,
        &fleet.admin(),
        &["kv", "get", "counts", "greeting"],
    );
    assert_eq!(value, "hello");
    edge(
        &fleet.cp,
        &fleet.admin(),
        &["kv", "put", "counts", "from cli/1", "set by the CLI"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv(b, "op=get&key=from%20cli%2F1").1 != "set by the CLI" {
        assert!(
            Instant::now() < deadline,
            "node B never saw the CLI's write"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let keys = edge(&fleet.cp, &fleet.admin(), &["kv", "list", "counts"]);
    assert_eq!(keys, "from cli/1\ngreeting\nn\n");
    let out = edge_raw(&fleet.cp, &fleet.admin(), &["kv", "get", "counts", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no key \"nope\""));

    // With the control plane down, reads go on and writes say why they fail.
    let cp_dir = fleet.dir.path().join("cp");
    let addr = fleet.cp.addr();
    fleet.cp.terminate(Duration::from_secs(20));
    assert_eq!(kv(b, "op=get&key=greeting"), (200, "hello".into()));
    let (status, body) = kv(a, "op=set&key=x&value=y");
    assert_eq!(status, 500);
    assert!(body.contains("did not reach the control plane"), "{body}");

    // The control plane's copy is durable: started again, it has everything.
    fleet.cp = ControlPlaneBuilder::default()
        .data_dir(&cp_dir)
        .arg("--listen")
        .arg(addr.to_string())
        .start();
    let value = edge(&fleet.cp, &fleet.admin(), &["kv", "get", "counts", "n"]);
    assert_eq!(value, "10");
    assert_eq!(kv(a, "op=incr&key=n").1, "11");
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv(b, "op=get&key=n").1 != "11" {
        assert!(
            Instant::now() < deadline,
            "node B did not follow the log again"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
