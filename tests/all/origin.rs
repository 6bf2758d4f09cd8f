//! Origin routes: the node as a caching reverse proxy (pure CDN mode) for a local origin
//! started by the test, which counts the requests and connections it gets.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge_tests::{NodeBuilder, NodeProcess, temp_dir, write_routes};
use http_body_util::{BodyExt as _, Full};

/// An HTTP/1.1 origin on 127.0.0.1 (hyper, keep-alive): `/echo` answers the request body;
/// anything else `origin N METHOD TARGET` and the request headers that concern proxies.
/// `?cached` adds `cache-control: max-age=60`; `/slow` answers after 300 ms.
pub(crate) struct Origin {
    pub(crate) addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Origin {
    pub(crate) async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (counted, connected) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        answer(request, n)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            requests,
            connections,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
    n: usize,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let target = request.uri().to_string();
    let mut response = http::Response::builder().header("x-origin", "yes");
    if target.contains("cached") {
        response = response.header("cache-control", "max-age=60");
    }
    if target.starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut text = format!("origin {n} {} {target}\n", request.method());
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "via",
        "connection",
        "te",
        "x-secret",
        "x-kept",
    ] {
        if let Some(value) = request.headers().get(name) {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
        }
    }
    if target.starts_with("/echo") {
        text = String::from_utf8(
            request
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
    }
    Ok(response.body(Full::new(Bytes::from(text))).unwrap())
}

fn node(origin: &str, cache: bool) -> (NodeProcess, tempfile::TempDir) {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            r#"
            [[routes]]
            origin = "{origin}"
            cache = {cache}
            "#
        ),
    );
    (NodeBuilder::default().routes(&routes).start(), dir)
}

#[tokio::test]
async fn an_origin_route_proxies_with_forwarded_headers_over_pooled_connections() {
    let origin = Origin::start().await;
    let (node, _dir) = node(&origin.url(), false);
    let response = crate::client()
        .get(format!("{}/a/b?x=1", node.url))
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "dropped: Connection names it")
        .header("x-kept", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-origin"], "yes");
    assert_eq!(response.headers()["via"], "1.1 edge");
    let text = response.text().await.unwrap();
    assert!(text.starts_with("origin 1 GET /a/b?x=1\n"), "{text}");
    // RFC 9110 §7.2 / §7.6: the origin's own host; who asked, for whom; hop-by-hop dropped.
    assert!(text.contains(&format!("host: {}\n", origin.addr)), "{text}");
    assert!(text.contains("x-forwarded-for: 127.0.0.1\n"), "{text}");
    assert!(
        text.contains(&format!("x-forwarded-host: {}\n", node.addr())),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto: http\n"), "{text}");
    assert!(text.contains("via: 1.1 edge\n"), "{text}");
    assert!(text.contains("x-kept: kept\n"), "{text}");
    assert!(!text.contains("x-secret"), "{text}");

    // A request body streams through.
    let echoed = crate::client()
        .post(format!("{}/echo", node.url))
        .body("sent through the edge")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(echoed, "sent through the edge");

    // One pooled keep-alive connection for many requests, not one each.
    for _ in 0..50 {
        let response = crate::client()
            .get(format!("{}/again", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(origin.requests(), 52);
    let connections = origin.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{connections} connections for 52 requests"
    );
}

#[tokio::test]
async fn a_cached_origin_route_collapses_a_hundred_misses_into_one_origin_request() {
    let origin = Origin::start().await;
    let (node, _dir) = node(&origin.url(), true);
    let url = format!("{}/slow?cached", node.url);
    let answers = futures::future::join_all((0..100).map(|_| async {
        let response = crate::client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }))
    .await;
    let mut distinct = answers.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 1, "different answers: {distinct:?}");
    // Counted at the origin itself.
    assert_eq!(origin.requests(), 1);
    let again = crate::client().get(&url).send().await.unwrap();
    assert!(
        again.headers()["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("edge; hit")
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_unreachable_origin_is_a_502_that_names_it() {
    // A port nobody listens on (bound, then released).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (node, _dir) = node(&format!("http://{closed}"), false);
    let response = crate::client().get(&node.url).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(&format!("the origin http://{closed} cannot be reached")),
        "{text}"
    );
    assert!(text.contains("request id: "), "{text}");
}

#[test]
fn a_route_with_both_a_function_and_an_origin_is_refused() {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        r#"
        [[routes]]
        function = "f"
        origin = "http://127.0.0.1:1"
        "#,
    );
    let (status, stderr) = NodeBuilder::default().routes(&routes).start_failure();
    assert!(!status.success());
    assert!(
        stderr.contains("has both a `function` and an `origin`; keep one"),
        "{stderr}"
    );
    let routes = write_routes(
        dir.path(),
        r#"
        [[routes]]
        origin = "ftp://files.example"
        "#,
    );
    let (_, stderr) = NodeBuilder::default().routes(&routes).start_failure();
    assert!(stderr.contains("is not http:// or https://"), "{stderr}");
}
