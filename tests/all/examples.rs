//! Every example function, built with the SDK, checked end to end through a real node; the
//! examples' own unit tests on the host.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir, write_routes};
use serde_json::Value;

use super::client;

/// A local origin: answers every request with `origin body`, a `server` header and no
/// `cache-control`; keeps each request's head.
struct Origin {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.lock().unwrap().push(head);
                let body = "origin body";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nserver: origin/1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Origin { addr, heads }
    }
}

fn node_with_examples(dir: &Path, origin: &Origin, extra: &[&str]) -> NodeProcess {
    let component = |name: &str| guest(name).display().to_string();
    let routes = format!(
        r#"
[functions.hello]
component = "{hello}"
[functions.json-api]
component = "{json}"
[functions.streaming]
component = "{streaming}"
[functions.inspector]
component = "{inspector}"
[functions.proxy]
component = "{proxy}"
env = {{ ORIGIN = "http://{origin}" }}
outbound = ["http://{origin}"]
[functions.proxy-unlisted]
component = "{proxy}"
env = {{ ORIGIN = "http://{origin}" }}
[functions.counter]
component = "{counter}"
kv = ["counts"]
[functions.signer]
component = "{signer}"
env = {{ SIGNING_KEY = "test-key" }}
[functions.gateway]
component = "{gateway}"
env = {{ GATEWAY_TOKEN = "s3cret", UPSTREAM = "http://{origin}" }}
outbound = ["http://{origin}"]

[[routes]]
path = "/"
function = "hello"
[[routes]]
path = "/api"
function = "json-api"
[[routes]]
path = "/stream"
function = "streaming"
[[routes]]
path = "/inspect"
function = "inspector"
[[routes]]
path = "/proxy"
function = "proxy"
[[routes]]
path = "/unlisted"
function = "proxy-unlisted"
[[routes]]
path = "/count"
function = "counter"
[[routes]]
path = "/sign"
function = "signer"
[[routes]]
path = "/verify"
function = "signer"
[[routes]]
host = "gateway.test"
path = "/"
function = "gateway"
"#,
        hello = component("hello"),
        json = component("json-api"),
        streaming = component("streaming"),
        inspector = component("inspector"),
        proxy = component("origin-proxy"),
        counter = component("kv-counter"),
        signer = component("signer"),
        gateway = component("api-gateway"),
        origin = origin.addr,
    );
    let mut node = NodeBuilder::default().routes(&write_routes(dir, &routes));
    for arg in extra {
        node = node.arg(*arg);
    }
    node.start()
}

async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn hello_and_the_json_api() {
    let dir = temp_dir();
    let node = node_with_examples(dir.path(), &Origin::start(), &[]);
    let base = &node.url;
    let client = client();

    let hello = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(hello.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(hello.text().await.unwrap(), "hello from the edge\n");

    let greet = client
        .get(format!("{base}/api/greet/ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(greet).await,
        (200, serde_json::json!({ "greeting": "hello, ada" }))
    );
    let sum = client
        .post(format!("{base}/api/sum"))
        .body(r#"{"numbers": [1, 2, 3.5]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(sum).await,
        (200, serde_json::json!({ "count": 3, "sum": 6.5 }))
    );
    // Validation errors: 400 with a JSON body that says what is wrong.
    let bad = client
        .post(format!("{base}/api/sum"))
        .body(r#"{"numbers": "three"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = json(bad).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("invalid type"),
        "{body}"
    );
    let (status, body) = json(
        client
            .get(format!("{base}/api/items/x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("from 1 to 1000"),
        "{body}"
    );
    let item = client
        .get(format!("{base}/api/items/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(item).await,
        (200, serde_json::json!({ "id": 7, "name": "item 7" }))
    );
    // The router's 404 and 405.
    let missing = client.get(format!("{base}/api/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let wrong = client
        .delete(format!("{base}/api/sum"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");
}

#[tokio::test]
async fn streaming_arrives_chunk_by_chunk() {
    let dir = temp_dir();
    let node = node_with_examples(dir.path(), &Origin::start(), &[]);
    let mut response = client()
        .get(format!("{}/stream?chunks=3&delay_ms=400", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none());
    let started = Instant::now();
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks.push((
            started.elapsed(),
            String::from_utf8(chunk.to_vec()).unwrap(),
        ));
    }
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(text, "chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n");
    // Each line came on its own, while the function was still making the next.
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    assert_eq!(chunks[0].1, "chunk 1 of 3\n");
    assert!(
        chunks[2].0 > chunks[0].0 + Duration::from_millis(600),
        "{chunks:?}"
    );
}

#[tokio::test]
async fn the_inspector_sees_the_client_as_the_node_did() {
    let dir = temp_dir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let cert_path = dir.path().join("cert.pem").display().to_string();
    let key_path = dir.path().join("key.pem").display().to_string();
    let plain = node_with_examples(dir.path(), &Origin::start(), &[]);
    let tls_dir = temp_dir();
    let tls = node_with_examples(
        tls_dir.path(),
        &Origin::start(),
        &["--tls-cert", &cert_path, "--tls-key", &key_path],
    );

    // Plain HTTP/1.1; a client cannot pass itself off as another address.
    let (status, seen) = json(
        client()
            .post(format!("{}/inspect/here?x=1", plain.url))
            .header("edge-client-addr", "192.0.2.1:1")
            .header("x-custom", "yes")
            .body("12345")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen["method"], "POST");
    assert!(
        seen["uri"].as_str().unwrap().ends_with("/inspect/here?x=1"),
        "{seen}"
    );
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["x-custom"], "yes");
    assert_eq!(seen["body_bytes"], 5);
    assert!(
        seen["client"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{seen}"
    );
    assert_eq!(seen["client"]["http_version"], "HTTP/1.1");
    assert_eq!(seen["client"]["tls"], Value::Null);

    // HTTP/2 over TLS.
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve("localhost", tls.addr())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/inspect", tls.addr().port());
    let (status, seen) = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["client"]["http_version"], "HTTP/2.0");
    assert_eq!(seen["client"]["tls"], "TLSv1_3");
}

#[tokio::test]
async fn the_origin_proxy_reaches_only_a_listed_origin() {
    let dir = temp_dir();
    let origin = Origin::start();
    let node = node_with_examples(dir.path(), &origin, &[]);
    let response = client()
        .get(format!("{}/proxy/data?x=1", node.url))
        .header("host", "edge.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(response.text().await.unwrap(), "origin body");
    assert_eq!(headers["cache-control"], "public, max-age=60");
    assert_eq!(headers["via"], "1.1 edge");
    assert!(headers.get("server").is_none(), "{headers:?}");
    let heads = origin.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /proxy/data?x=1 HTTP/1.1\r\n"),
        "{heads:?}"
    );
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.contains("forwarded: host=\"edge.test\";proto=https"),
        "{heads:?}"
    );
    assert!(!head.contains("edge-client-addr"), "{heads:?}");

    // The same function without the origin in its outbound list: refused, and the node says why.
    let refused = client()
        .get(format!("{}/unlisted/data", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    assert_eq!(origin.heads.lock().unwrap().len(), 1);
    assert!(
        node.wait_for_log(&["outbound request denied"], Duration::from_secs(10))
            .is_some(),
        "{}",
        node.logs()
    );
    assert!(node.logs().contains("HttpRequestDenied"), "{}", node.logs());
}

#[tokio::test]
async fn the_kv_counter_counts_across_requests() {
    let dir = temp_dir();
    let node = node_with_examples(dir.path(), &Origin::start(), &[]);
    let client = client();
    let get = |path: &str| client.get(format!("{}{path}", node.url)).send();
    for expected in 1..=3 {
        let (status, body) = json(get("/count/home").await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            serde_json::json!({ "name": "home", "count": expected })
        );
    }
    json(get("/count/about").await.unwrap()).await;
    let (_, all) = json(get("/count").await.unwrap()).await;
    assert_eq!(all, serde_json::json!({ "about": 1, "home": 3 }));
}

#[tokio::test]
async fn the_signer_signs_with_its_secret_and_the_gateway_checks_tokens() {
    let origin = Origin::start();
    let dir = temp_dir();
    let node = node_with_examples(dir.path(), &origin, &[]);
    let client = client();
    let (status, signed) = json(
        client
            .post(format!("{}/sign", node.url))
            .body(r#"{"sub": "ada"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let token = signed["token"].as_str().unwrap().to_owned();
    let verify = |token: String| {
        client
            .post(format!("{}/verify", node.url))
            .body(token)
            .send()
    };
    let (status, claims) = json(verify(token.clone()).await.unwrap()).await;
    assert_eq!((status, claims["sub"].as_str()), (200, Some("ada")));
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 2.., "xx");
    assert_eq!(verify(tampered).await.unwrap().status(), 401);

    // The gateway: no token or a wrong one is a 401 that never reaches the origin.
    let gateway = |auth: Option<&str>| {
        let mut request = client
            .get(format!("{}/v1/items?x=1", node.url))
            .header("host", "gateway.test");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    for auth in [None, Some("Bearer wrong")] {
        let response = gateway(auth).await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("www-authenticate"));
    }
    assert!(origin.heads.lock().unwrap().is_empty());
    let response = gateway(Some("Bearer s3cret")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "origin body");
    let heads = origin.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /v1/items?x=1 http/1.1"), "{head}");
    assert!(
        head.contains("x-gateway: edge") && !head.contains("authorization"),
        "{head}"
    );
}

#[test]
fn the_examples_unit_tests_pass_on_the_host() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("sums_and_refuses_bad_bodies ... ok"), "{all}");
    for test in [
        "forwards_and_sets_cache_headers ... ok",
        "counts_each_name ... ok",
        "signs_and_verifies_with_the_secret ... ok",
        "only_the_token_passes ... ok",
    ] {
        assert!(all.contains(test), "{test}: {all}");
    }
}

/// `examples/routes.toml`, what the README's first command serves, loads and answers.
#[tokio::test]
async fn the_examples_routes_file_serves_every_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    edge_tests::guests();
    let node = NodeBuilder::default()
        .routes(&root.join("examples/routes.toml"))
        .start();
    let client = client();
    for (path, expect) in [
        ("/", "hello from the edge"),
        ("/raw", "hello from the edge"),
        ("/api/greet/ada", "hello, ada"),
        ("/stream?chunks=2&delay_ms=1", "chunk 2 of 2"),
        ("/inspect", "\"method\":\"GET\""),
        ("/count/readme", "\"count\":1"),
    ] {
        let response = client
            .get(format!("{}{path}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains(expect), "{path}: {body}");
    }
}

/// Every example builds with `edge build`, which checks the result is a serveable component.
#[test]
fn every_example_builds_with_edge_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for example in [
        "hello",
        "hello-raw",
        "json-api",
        "origin-proxy",
        "streaming",
        "inspector",
        "kv-counter",
        "signer",
        "api-gateway",
    ] {
        let out = std::process::Command::new(edge_tests::edge_cli_bin())
            .arg("build")
            .arg(root.join("examples").join(example))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{example}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = format!("{}.wasm", example.replace('-', "_"));
        assert!(
            stdout.starts_with("built ") && stdout.contains(&file),
            "{example}: {stdout}"
        );
    }
}
