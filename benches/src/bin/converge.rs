//! Deploy convergence: a control plane and N edge nodes on 127.0.0.1; the time from a deploy
//! call returning to every node reporting that it serves the new revision, over many deploys.
//!
//! Run it through `benches/converge.sh` (builds the release binaries and points this at them).
//! Every deploy is a NEW component (the hello example plus a custom section naming the
//! round): the control plane compiles it at upload, and each node fetches the component and
//! that code. With `COMPILE_LOCALLY=1` the nodes run with `--compile-locally` and each
//! compiles it with Cranelift instead: the worst case. Also printed: the upload (check and
//! compile), and the whole of it, upload start to every node serving. A second series rolls
//! back one version at a time: each node fetches the component again (it keeps only those it
//! serves) but finds its compiled code in its artifact cache. A third series purges
//! (`PURGES`, 50, by surrogate key): the time until every node reports the purge's revision,
//! which a node does after applying it to its cache. A fourth series writes KV (`KV_WRITES`,
//! 50) through a function on the first node and times until a read through the same function
//! on every node returns the value (what Cloudflare documents as up to 60 s for Workers KV).

use std::time::{Duration, Instant};

use edge_tests::{ControlPlaneBuilder, NodeBuilder, guest};
use edge_wire::{
    Changed, NewToken, NewVersion, NodeInfo, Rollback, Route, Scope, TokenInfo, Uploaded,
};

fn main() {
    let nodes: usize = env_or("NODES", 10);
    let deploys: usize = env_or("DEPLOYS", 20);
    let compile_locally = env_or("COMPILE_LOCALLY", 0) == 1;
    let dir = edge_tests::temp_dir();
    let cp = ControlPlaneBuilder::default()
        .data_dir(&dir.path().join("cp"))
        .start();
    let api = Api {
        base: cp.url().to_owned(),
        token: cp.admin_token(),
        client: reqwest::blocking::Client::new(),
    };
    let node_token: TokenInfo = api.post(
        "/v1/tokens",
        &NewToken {
            scope: Scope::Node,
            name: "bench".into(),
        },
    );
    let node_token = node_token.token.expect("a new token carries its secret");
    let fleet: Vec<_> = (0..nodes)
        .map(|i| {
            let node = if compile_locally {
                NodeBuilder::default().arg("--compile-locally")
            } else {
                NodeBuilder::default()
            };
            node.arg("--control-plane")
                .arg(cp.url().to_owned())
                .arg("--token")
                .arg(node_token.clone())
                .arg("--data-dir")
                .arg(dir.path().join(format!("node{i}")).display().to_string())
                .arg("--max-instances")
                .arg("8")
                .arg("--log")
                .arg("warn")
                .start()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.nodes().iter().filter(|n| n.live).count() < nodes {
        assert!(Instant::now() < deadline, "nodes did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hello = std::fs::read(guest("hello")).expect("the hello example");
    println!(
        "{nodes} nodes, {deploys} deploys of a new component each ({})",
        if compile_locally {
            "every node fetches it and compiles it with Cranelift"
        } else {
            "compiled once at upload; every node fetches it and its code"
        }
    );
    let (mut fresh, mut uploads, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..deploys {
        let bytes = with_custom_section(&hello, &format!("edge-bench-{round}"));
        let started = Instant::now();
        let uploaded: Uploaded = api.put("/v1/components", bytes);
        uploads.push(started.elapsed());
        let changed: Changed = api.post(
            "/v1/functions/bench/versions",
            &NewVersion {
                digest: uploaded.digest,
                routes: vec![Route::parse("/", "bench").unwrap()],
                ..NewVersion::default()
            },
        );
        fresh.push(api.converge(changed.revision, nodes));
        whole.push(started.elapsed());
    }
    report("new component, deploy call to all serving", &mut fresh);
    report("upload (check, compile, store)", &mut uploads);
    report("upload start to all serving", &mut whole);

    println!(
        "{nodes} nodes, {} rollbacks, each to the version before (fetched again, compiled code from the node's artifact cache)",
        deploys - 1
    );
    let mut cached = Vec::new();
    for round in 1..deploys {
        let to = (deploys - round) as u32;
        let changed: Changed = api.post("/v1/functions/bench/rollback", &Rollback { to: Some(to) });
        cached.push(api.converge(changed.revision, nodes));
    }
    report("rollback", &mut cached);

    let purges = env_or("PURGES", 50);
    println!("{nodes} nodes, {purges} purges by surrogate key (edge purge --key)");
    let (mut applied, mut whole) = (Vec::new(), Vec::new());
    for round in 0..purges {
        let started = Instant::now();
        let changed: Changed = api.post(
            "/v1/purge",
            &edge_wire::Purge::SurrogateKey(format!("key-{round}")),
        );
        applied.push(api.converge(changed.revision, nodes));
        whole.push(started.elapsed());
    }
    report("purge call returned to applied on all", &mut applied);
    report("purge call start to applied on all", &mut whole);

    let writes = env_or("KV_WRITES", 50);
    let probe = std::fs::read(guest("probe")).expect("the probe guest");
    let uploaded: Uploaded = api.put("/v1/components", probe);
    let changed: Changed = api.post(
        "/v1/functions/kvf/versions",
        &NewVersion {
            digest: uploaded.digest,
            routes: vec![Route::parse("/kvf", "kvf").unwrap()],
            kv: vec!["bench".into()],
            ..NewVersion::default()
        },
    );
    api.converge(changed.revision, nodes);
    println!(
        "{nodes} nodes, {writes} KV writes through a function on one node (wasi:keyvalue set)"
    );
    let http = reqwest::blocking::Client::new();
    let kv = |node: &edge_tests::NodeProcess, query: &str| -> String {
        http.get(format!("http://{}/kvf/kv?{query}", node.addr()))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    let mut visible = Vec::new();
    for round in 0..writes {
        let value = format!("v{round}");
        let written = kv(&fleet[0], &format!("op=set&key=k{round}&value={value}"));
        assert_eq!(written, "ok", "the write failed");
        let since = Instant::now();
        let mut waiting: Vec<&edge_tests::NodeProcess> = fleet.iter().collect();
        while !waiting.is_empty() {
            waiting.retain(|node| kv(node, &format!("op=get&key=k{round}")) != value);
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "a node never saw the write"
            );
        }
        visible.push(since.elapsed());
    }
    report("KV write answered to readable on all nodes", &mut visible);
    drop(fleet);
}

struct Api {
    base: String,
    token: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(&self, path: &str, body: &B) -> T {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .unwrap();
        decode(response)
    }

    fn put<T: serde::de::DeserializeOwned>(&self, path: &str, bytes: Vec<u8>) -> T {
        let response = self
            .client
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .unwrap();
        decode(response)
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        let response = self
            .client
            .get(format!("{}/v1/nodes", self.base))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        decode(response)
    }

    /// Time until every node reports `revision`, measured from now (the deploy call returned).
    fn converge(&self, revision: u64, nodes: usize) -> Duration {
        let started = Instant::now();
        loop {
            let serving = self
                .nodes()
                .iter()
                .filter(|n| n.revision >= revision)
                .count();
            if serving >= nodes {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "revision {revision} did not converge"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(response: reqwest::blocking::Response) -> T {
    let status = response.status();
    let body = response.bytes().unwrap();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

/// `component` with a custom section appended: same code, a new digest.
fn with_custom_section(component: &[u8], name: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what}: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms over {}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
