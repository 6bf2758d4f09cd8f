//! HTTP/3 (RFC 9114) end to end, on a node started with `--self-signed`: a Rust client on quinn
//! and h3, and aioquic's `http3_client.py` (installed by `.ci/run` from PyPI).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir, write_routes};
use sha2::Digest as _;
use tempfile::TempDir;

/// A node serving `builder`'s functions over HTTPS and HTTP/3 with a self-signed certificate,
/// and the CA that signed it.
struct H3Node {
    node: NodeProcess,
    ca: String,
    _data: TempDir,
}

impl H3Node {
    fn start(builder: NodeBuilder) -> Self {
        let data = temp_dir();
        let node = builder
            .arg("--self-signed")
            .arg("--data-dir")
            .arg(data.path().display().to_string())
            .start();
        let ca = std::fs::read_to_string(data.path().join("tls/ca.pem")).unwrap();
        Self {
            node,
            ca,
            _data: data,
        }
    }

    /// The UDP address HTTP/3 is served on, as the node printed it.
    fn h3_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(addr) = self
                .node
                .stdout()
                .iter()
                .find_map(|line| line.strip_prefix("HTTP/3 on UDP "))
            {
                return addr.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "{:?}", self.node.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn client(&self) -> H3Client {
        H3Client::connect(self.h3_addr(), &client_config(&self.ca, false)).await
    }
}

/// A TLS 1.3 client configuration for QUIC that trusts `ca_pem` only.
pub(crate) fn client_config(ca_pem: &str, early_data: bool) -> quinn::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.enable_early_data = early_data;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(quic))
}

/// One HTTP/3 connection.
pub(crate) struct H3Client {
    quic: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    _endpoint: quinn::Endpoint,
}

/// A response: status, headers and the body as it arrived, chunk by chunk.
pub(crate) struct Answer {
    status: u16,
    headers: http::HeaderMap,
    chunks: Vec<Bytes>,
}

impl Answer {
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body()).unwrap()
    }
}

fn client_endpoint(config: &quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config.clone());
    endpoint
}

impl H3Client {
    pub(crate) async fn connect(addr: SocketAddr, config: &quinn::ClientConfig) -> Self {
        let endpoint = client_endpoint(config);
        let quic = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        Self::over(quic, endpoint).await
    }

    async fn over(quic: quinn::Connection, endpoint: quinn::Endpoint) -> Self {
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .unwrap();
        tokio::spawn(async move { poll_fn(|cx| driver.poll_close(cx)).await });
        Self {
            quic,
            send,
            _endpoint: endpoint,
        }
    }

    /// `method` `uri` with `body` sent as a stream of chunks.
    async fn request(
        &self,
        method: &str,
        uri: &str,
        body: Vec<Bytes>,
    ) -> Result<Answer, h3::error::StreamError> {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap();
        let mut send = self.send.clone();
        let (mut send, mut recv) = send.send_request(request).await?.split();
        // Upload and download at once, as a streaming function needs.
        let upload = async {
            for chunk in body {
                send.send_data(chunk).await?;
            }
            send.finish().await
        };
        let download = async {
            let response = recv.recv_response().await?;
            let mut chunks = Vec::new();
            while let Some(mut chunk) = recv.recv_data().await? {
                chunks.push(chunk.copy_to_bytes(chunk.remaining()));
            }
            Ok(Answer {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                chunks,
            })
        };
        let (uploaded, answer) = tokio::join!(upload, download);
        uploaded?;
        answer
    }

    pub(crate) async fn get(&self, uri: &str) -> Answer {
        self.request("GET", uri, Vec::new()).await.unwrap()
    }
}

/// The https client for the TCP listener, trusting `ca`.
fn tcp_client(ca: &str, node: &NodeProcess) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", node.addr())
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn alt_svc_on_http1_leads_to_hello_over_http3() {
    let h3 = H3Node::start(NodeBuilder::default().component(&guest("hello")));
    let port = h3.node.addr().port();
    // Discovery as a browser does it: an HTTP/1.1 response names the h3 endpoint.
    let response = tcp_client(&h3.ca, &h3.node)
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let alt_svc = response.headers()["alt-svc"].to_str().unwrap().to_owned();
    assert_eq!(alt_svc, format!("h3=\":{port}\"; ma=86400"));
    let advertised: u16 = alt_svc
        .strip_prefix("h3=\":")
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .parse()
        .unwrap();

    let addr = SocketAddr::from(([127, 0, 0, 1], advertised));
    let client = H3Client::connect(addr, &client_config(&h3.ca, false)).await;
    let answer = client.get(&format!("https://localhost:{port}/")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello from the edge\n");
    assert!(answer.headers.contains_key("x-request-id"));
    // Not advertised over HTTP/3 itself.
    assert!(!answer.headers.contains_key("alt-svc"));

    // The same request path: the access log and the metrics say HTTP/3.
    let line = h3.node.wait_for_log(
        &["\"version\":\"HTTP/3\"", "\"status\":200"],
        Duration::from_secs(10),
    );
    assert!(line.is_some(), "{}", h3.node.logs());
    let metrics = reqwest::get(format!("{}/metrics", h3.node.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for version in ["HTTP/1.1", "HTTP/3"] {
        let needle = format!(
            r#"edge_requests_total{{function="hello",status="200",version="{version}"}} 1"#
        );
        assert!(
            metrics.contains(&needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    // And how to trust the certificate was printed.
    assert!(
        h3.node
            .stdout()
            .iter()
            .any(|line| line.contains("curl --cacert") && line.contains("ca.pem")),
        "{:?}",
        h3.node.stdout()
    );
}

#[tokio::test]
async fn a_large_upload_streams_through_an_echo_function_and_back() {
    let h3 = H3Node::start(NodeBuilder::default().component(&guest("probe")));
    let client = h3.client().await;
    // 16 MiB in 1 MiB DATA frames, no content-length: more than the echo guest holds at once.
    let chunk: Bytes = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks = 16;
    let mut hasher = sha2::Sha256::new();
    for _ in 0..chunks {
        hasher.update(&chunk);
    }
    let expected = hex::encode(hasher.finalize());
    let answer = client
        .request("POST", "https://localhost/echo", vec![chunk; chunks])
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body().len(), chunks << 20);
    assert_eq!(hex::encode(sha2::Sha256::digest(answer.body())), expected);
    assert!(answer.chunks.len() > 1, "the echo arrived in one piece");
}

#[tokio::test]
async fn routes_by_host_over_http3() {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            r#"
            [functions.hello]
            component = "{hello}"
            [functions.probe]
            component = "{probe}"
            [[routes]]
            function = "hello"
            [[routes]]
            host = "shop.example"
            function = "probe"
            "#,
            hello = guest("hello").display(),
            probe = guest("probe").display(),
        ),
    );
    let h3 = H3Node::start(NodeBuilder::default().routes(&routes));
    let client = h3.client().await;
    let answer = client.get("https://shop.example/info").await;
    assert_eq!(answer.status, 200);
    let text = answer.text();
    assert!(text.contains("authority=shop.example"), "{text}");
    assert!(text.contains("edge-http-version: HTTP/3.0"), "{text}");
    assert!(text.contains("edge-tls: TLSv1_3"), "{text}");
    assert!(!text.contains("early-data"), "{text}");
    let answer = client.get("https://other.example/").await;
    assert_eq!(answer.text(), "hello from the edge\n");
}

#[tokio::test]
async fn a_cached_response_is_served_over_http3() {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            r#"
            [functions.probe]
            component = "{probe}"
            [[routes]]
            function = "probe"
            cache = true
            "#,
            probe = guest("probe").display(),
        ),
    );
    let h3 = H3Node::start(NodeBuilder::default().routes(&routes));
    let client = h3.client().await;
    let uri = "https://localhost/origin?h=cache-control:max-age%3D60";
    let first = client.get(uri).await;
    assert_eq!(first.status, 200);
    let second = client.get(uri).await;
    let status = second.headers["cache-status"].to_str().unwrap();
    assert!(status.starts_with("edge; hit"), "{status}");
    assert_eq!(second.text(), first.text());
    // Stored from HTTP/3, found over HTTP/1.1 with TLS too: one cache for every version.
    let port = h3.node.addr().port();
    let over_tcp = tcp_client(&h3.ca, &h3.node)
        .get(format!(
            "https://localhost:{port}/origin?h=cache-control:max-age%3D60"
        ))
        .send()
        .await
        .unwrap();
    assert!(
        over_tcp.headers()["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("edge; hit")
    );
    assert_eq!(over_tcp.text().await.unwrap(), first.text());
}

#[tokio::test]
async fn a_trap_is_500_and_the_connection_lives_on() {
    let h3 = H3Node::start(NodeBuilder::default().component(&guest("probe")));
    let client = h3.client().await;
    let answer = client.get("https://localhost/trap").await;
    assert_eq!(answer.status, 500);
    assert!(!answer.text().contains("unreachable"), "{}", answer.text());
    let answer = client.get("https://localhost/count").await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "1"));
}

#[tokio::test]
async fn many_concurrent_streams_share_one_connection() {
    let h3 = H3Node::start(
        NodeBuilder::default()
            .component(&guest("probe"))
            .arg("--h3-max-streams")
            .arg("50"),
    );
    let client = h3.client().await;
    // 200 requests at once on one connection, four times its stream limit: QUIC flow control
    // holds back the rest, none fails.
    let uris: Vec<String> = (0..200)
        .map(|i| format!("https://localhost/sleep?ms={}", i % 20))
        .collect();
    let answers = futures::future::join_all(
        uris.iter()
            .map(|uri| client.request("GET", uri, Vec::new())),
    )
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(answer.status, 200, "request {i}");
        assert_eq!(answer.text(), format!("slept {}ms", i % 20));
    }
}

/// HEADERS frame (type 0x1) with a QPACK field section (no dynamic table: prefix 0x00 0x00)
/// holding only `:path: /` (static table index 1, an indexed field line 0b11xxxxxx): no
/// `:method`, no `:scheme`.
const HEADERS_WITHOUT_METHOD: [u8; 5] = [0x01, 0x03, 0x00, 0x00, 0xc1];
/// A DATA frame (type 0x0) where HEADERS must come first.
const DATA_FIRST: [u8; 3] = [0x00, 0x01, b'x'];

#[tokio::test]
async fn malformed_requests_get_the_rfc_9114_error_codes() {
    let h3 = H3Node::start(NodeBuilder::default().component(&guest("hello")));
    let client = h3.client().await;
    assert_eq!(client.get("https://localhost/").await.status, 200);

    // RFC 9114 §4.1.2: a malformed request is a stream error H3_MESSAGE_ERROR (0x10e)...
    let (mut send, mut recv) = client.quic.open_bi().await.unwrap();
    send.write_all(&HEADERS_WITHOUT_METHOD).await.unwrap();
    send.finish().unwrap();
    match recv.read_to_end(1 << 16).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(code.into_inner(), 0x10e);
        }
        other => panic!("expected a reset with H3_MESSAGE_ERROR, got {other:?}"),
    }
    // ...which ends that request only: the connection's other streams go on.
    assert_eq!(client.get("https://localhost/").await.status, 200);

    // RFC 9114 §4.1: an invalid frame sequence is a connection error H3_FRAME_UNEXPECTED
    // (0x105): that connection closes, the node serves on.
    let bad = h3.client().await;
    let (mut send, _recv) = bad.quic.open_bi().await.unwrap();
    send.write_all(&DATA_FIRST).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), bad.quic.closed())
        .await
        .unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 0x105, "{close:?}");
        }
        other => panic!("expected H3_FRAME_UNEXPECTED, got {other:?}"),
    }
    assert_eq!(client.get("https://localhost/").await.status, 200);
    assert_eq!(
        h3.client().await.get("https://localhost/").await.status,
        200
    );
}

#[tokio::test]
async fn idle_connections_close_and_the_connection_limit_refuses() {
    let h3 = H3Node::start(
        NodeBuilder::default()
            .component(&guest("hello"))
            .arg("--h3-idle-timeout-secs")
            .arg("1")
            .arg("--h3-max-connections")
            .arg("1"),
    );
    let first = h3.client().await;
    assert_eq!(first.get("https://localhost/").await.status, 200);
    // The one slot is taken: a second connection is refused.
    let endpoint = client_endpoint(&client_config(&h3.ca, false));
    let refused = endpoint
        .connect(h3.h3_addr(), "localhost")
        .unwrap()
        .await
        .expect_err("a second connection past --h3-max-connections 1");
    assert!(
        matches!(refused, quinn::ConnectionError::ConnectionClosed(_)),
        "{refused:?}"
    );
    // Idle for longer than the timeout: the node closes it, and its slot is free again.
    let closed = tokio::time::timeout(Duration::from_secs(10), first.quic.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::TimedOut),
        "{closed:?}"
    );
    // The client's idle timer may fire a moment before the node's: the slot is free once
    // the node has noticed too.
    let endpoint = client_endpoint(&client_config(&h3.ca, false));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let quic = loop {
        match endpoint.connect(h3.h3_addr(), "localhost").unwrap().await {
            Ok(quic) => break quic,
            Err(quinn::ConnectionError::ConnectionClosed(_))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the slot never came free: {e}"),
        }
    };
    let second = H3Client::over(quic, endpoint).await;
    assert_eq!(second.get("https://localhost/").await.status, 200);
}

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_streams_finish() {
    let mut h3 = H3Node::start(NodeBuilder::default().component(&guest("probe")));
    let client = h3.client().await;
    assert_eq!(client.get("https://localhost/count").await.status, 200);
    let slow = client.request("GET", "https://localhost/sleep?ms=1500", Vec::new());
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &h3.node.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // GOAWAY arrives: the client may not start new requests on this connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .request("GET", "https://localhost/count", Vec::new())
            .await
    };
    let (slow, after) = tokio::join!(slow, stop);
    let slow =
        slow.unwrap_or_else(|e| panic!("the in-flight request failed: {e}\n{}", h3.node.logs()));
    assert_eq!((slow.status, slow.text().as_str()), (200, "slept 1500ms"));
    assert!(after.is_err(), "a request after GOAWAY was served");
    let status = h3.node.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}\n{}", h3.node.logs());
}

#[tokio::test]
async fn zero_rtt_is_off_by_default_and_serves_only_safe_methods_when_on() {
    for enabled in [false, true] {
        let mut builder = NodeBuilder::default().component(&guest("probe"));
        if enabled {
            builder = builder.arg("--h3-0rtt");
        }
        let h3 = H3Node::start(builder);
        let config = client_config(&h3.ca, true);
        // A first connection gets a session ticket...
        let first = H3Client::connect(h3.h3_addr(), &config).await;
        assert_eq!(first.get("https://localhost/").await.status, 200);
        // (rustls stores tickets as they arrive after the handshake.)
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.quic.close(0u32.into(), b"");

        // ...with which the second may send requests in early data.
        let endpoint = client_endpoint(&config);
        let connecting = endpoint.connect(h3.h3_addr(), "localhost").unwrap();
        match connecting.into_0rtt() {
            Err(connecting) => {
                assert!(!enabled, "the node with --h3-0rtt offered no early data");
                let client = H3Client::over(connecting.await.unwrap(), endpoint).await;
                let text = client.get("https://localhost/info").await.text();
                assert!(!text.contains("early-data"), "{text}");
            }
            Ok((quic, accepted)) => {
                let client = H3Client::over(quic, endpoint).await;
                let get = client.get("https://localhost/info").await.text();
                let post = client
                    .request("POST", "https://localhost/info", vec![Bytes::from("x")])
                    .await
                    .unwrap()
                    .text();
                let accepted = accepted.await;
                assert!(enabled, "early data accepted by a node without --h3-0rtt");
                assert!(accepted, "the node refused the early data it offered");
                // A safe method from early data is marked as such (RFC 8470 §5.1); an unsafe
                // one waited for the handshake and is not early data any more.
                assert!(get.contains("early-data: 1"), "{get}");
                assert!(post.contains("method=Method::Post"), "{post}");
                assert!(!post.contains("early-data"), "{post}");
            }
        }
    }
}

/// aioquic's HTTP/3 client (its `examples/http3_client.py`) in a virtualenv with aioquic from
/// PyPI, installed by `tests/aioquic.sh` into `target/interop/aioquic` on first use.
fn aioquic() -> (PathBuf, PathBuf) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = root.join("target/interop/aioquic");
    INSTALL.call_once(|| {
        let output = std::process::Command::new("bash")
            .arg(root.join("tests/aioquic.sh"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "installing aioquic's HTTP/3 client failed (it needs python3 with venv, and PyPI):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
    (dir.join("venv/bin/python"), dir.join("http3_client.py"))
}

#[tokio::test]
async fn aioquic_http3_client_gets_hello_and_posts() {
    let (python, script) = aioquic();
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            r#"
            [functions.hello]
            component = "{hello}"
            [functions.probe]
            component = "{probe}"
            [[routes]]
            function = "hello"
            [[routes]]
            path = "/echo"
            function = "probe"
            "#,
            hello = guest("hello").display(),
            probe = guest("probe").display(),
        ),
    );
    let h3 = H3Node::start(NodeBuilder::default().routes(&routes));
    let port = h3.h3_addr().port();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &h3.ca).unwrap();
    let run = async |args: Vec<String>, out: &Path| {
        std::fs::create_dir_all(out).unwrap();
        let output = tokio::process::Command::new(&python)
            .arg(&script)
            .arg("--ca-certs")
            .arg(&ca)
            .arg("--include")
            .arg("--output-dir")
            .arg(out)
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "http3_client.py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // Three GETs at once on one connection, then a POST.
    let gets = dir.path().join("gets");
    let urls: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| format!("https://localhost:{port}/{name}"))
        .collect();
    run(urls, &gets).await;
    for name in ["a", "b", "c"] {
        let text = std::fs::read_to_string(gets.join(name)).unwrap();
        assert!(text.starts_with(":status: 200\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhello from the edge\n"), "{text}");
    }
    let posts = dir.path().join("posts");
    let args = vec![
        "--data".into(),
        "sent by aioquic".into(),
        format!("https://localhost:{port}/echo"),
    ];
    run(args, &posts).await;
    let text = std::fs::read_to_string(posts.join("echo")).unwrap();
    assert!(text.starts_with(":status: 200\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nsent by aioquic"), "{text}");
    let line = h3.node.wait_for_log(
        &["\"version\":\"HTTP/3\"", "\"method\":\"POST\""],
        Duration::from_secs(10),
    );
    assert!(line.is_some(), "{}", h3.node.logs());
}
