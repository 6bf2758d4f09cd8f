//! Functions' outbound HTTP: allowed only to the origins their patterns name, never to
//! loopback or private addresses a pattern does not name (SSRF), through one pooled client
//! (connections counted at a local origin), with timeouts, and through the cache under each
//! function's own keys.

use std::time::Duration;

use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir, write_routes};

use crate::origin::Origin;

/// A node serving the probe as several functions, each with its own outbound patterns, each
/// routed at `/NAME/...` (the probe sees the whole path, so each answers `/NAME/fetch`).
fn node(dir: &std::path::Path, functions: &[(&str, &[String])], args: &[&str]) -> NodeProcess {
    let probe = guest("probe");
    let mut routes = String::new();
    for (name, patterns) in functions {
        let list = patterns
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        routes.push_str(&format!(
            "[functions.{name}]\ncomponent = {:?}\noutbound = [{list}]\n",
            probe.display().to_string()
        ));
    }
    for (name, _) in functions {
        routes.push_str(&format!(
            "[[routes]]\npath = \"/{name}\"\nfunction = \"{name}\"\n"
        ));
    }
    let mut builder = NodeBuilder::default().routes(&write_routes(dir, &routes));
    for arg in args {
        builder = builder.arg(*arg);
    }
    builder.start()
}

/// Has `function` fetch `url` (`n` times); (status, what the probe answered).
async fn fetch(node: &NodeProcess, function: &str, url: &str, extra: &str) -> (u16, String) {
    let encoded: String = url
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    crate::get(&format!(
        "{}/{function}/fetch?url={encoded}{extra}",
        node.url
    ))
    .await
}

#[tokio::test]
async fn only_named_origins_are_reached_and_private_addresses_need_naming() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = temp_dir();
    let named_ip = vec![format!("http://127.0.0.1:{port}")];
    let named_localhost = vec![format!("http://localhost:{port}")];
    // 2130706433 is written as a host name, not an address, but URL parsers and resolvers
    // turn it into 127.0.0.1: a name pointing at the node's own network.
    let name_to_loopback = vec![format!("http://2130706433:{port}")];
    let elsewhere = vec!["https://api.example.com".to_owned()];
    let node = node(
        dir.path(),
        &[
            ("named-ip", &named_ip),
            ("named-localhost", &named_localhost),
            ("name-to-loopback", &name_to_loopback),
            ("elsewhere", &elsewhere),
        ],
        &[],
    );
    let url = format!("{}/a", origin.url());

    // RFC-style allow list: the pattern names the address, so the function reaches it.
    let (status, body) = fetch(&node, "named-ip", &url, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("status: 200"), "{body}");
    assert!(body.contains("origin 1 GET /a"), "{body}");
    let (status, body) = fetch(
        &node,
        "named-localhost",
        &format!("http://localhost:{port}/b"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("origin 2 GET /b"), "{body}");

    // No pattern names 127.0.0.1 for this function: denied before any connection.
    let (status, body) = fetch(&node, "elsewhere", &url, "").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let log = node
        .wait_for_log(
            &["outbound request denied", "elsewhere"],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| node.logs());
    assert!(
        log.contains(&format!("--allow-outbound http://127.0.0.1:{port}")),
        "{log}"
    );

    // A disallowed host, with a pattern for another one.
    let (status, body) = fetch(&node, "named-ip", &format!("http://localhost:{port}/c"), "").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");

    // Allowed by name, but the name is loopback: refused.
    let (status, body) = fetch(
        &node,
        "name-to-loopback",
        &format!("http://2130706433:{port}/d"),
        "",
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("DestinationIpProhibited"), "{body}");
    let log = node
        .wait_for_log(&["outbound request refused"], Duration::from_secs(10))
        .unwrap_or_else(|| node.logs());
    assert!(
        log.contains("2130706433 is the address 127.0.0.1")
            && log.contains("allow the address itself, as http://127.0.0.1:PORT"),
        "{log}"
    );
    assert_eq!(origin.requests(), 2, "only the two allowed fetches arrived");
}

#[tokio::test]
async fn two_thousand_fetches_reuse_pooled_connections() {
    let origin = Origin::start().await;
    let dir = temp_dir();
    let allowed = vec![origin.url()];
    let node = node(dir.path(), &[("f", &allowed)], &[]);
    // Not cacheable (no freshness, no validators), so every fetch reaches the origin.
    let url = format!("{}/pooled", origin.url());
    for _ in 0..20 {
        let (status, body) = fetch(&node, "f", &url, "&n=100").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(origin.requests(), 2000);
    let pooled = origin.connections();
    assert!(pooled <= 4, "2000 fetches used {pooled} connections");

    // The same with pooling off: a connection per request, as wasi-http's default sender.
    let unpooled_origin = Origin::start().await;
    let dir = temp_dir();
    let allowed = vec![unpooled_origin.url()];
    let unpooled = self::node(
        dir.path(),
        &[("f", &allowed)],
        &["--outbound-pool-idle-per-host", "0"],
    );
    let url = format!("{}/unpooled", unpooled_origin.url());
    let (status, body) = fetch(&unpooled, "f", &url, "&n=100").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(unpooled_origin.requests(), 100);
    assert_eq!(unpooled_origin.connections(), 100);
}

#[tokio::test]
async fn fetches_are_cached_per_function_and_purged_with_it() {
    let origin = Origin::start().await;
    let dir = temp_dir();
    let allowed = vec![origin.url()];
    let node = node(dir.path(), &[("a", &allowed), ("b", &allowed)], &[]);
    // `cached` in the target makes the origin answer `cache-control: max-age=60`.
    let url = format!("{}/item?cached", origin.url());

    let (_, first) = fetch(&node, "a", &url, "").await;
    assert!(
        first.contains("cache-status: edge; fwd=uri-miss; stored"),
        "{first}"
    );
    let (_, second) = fetch(&node, "a", &url, "").await;
    assert!(second.contains("cache-status: edge; hit"), "{second}");
    assert!(second.contains("origin 1 GET /item?cached"), "{second}");
    assert_eq!(origin.requests(), 1);

    // Another function does not see what `a` fetched.
    let (_, other) = fetch(&node, "b", &url, "").await;
    assert!(other.contains("fwd=uri-miss"), "{other}");
    assert_eq!(origin.requests(), 2);

    // Purging the URL reaches both functions' copies; purging a function only its own.
    let purge = |body: String| {
        let admin = node.admin.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{admin}/cache/purge"))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    purge(format!(r#"{{"url":"{url}"}}"#)).await;
    assert!(fetch(&node, "a", &url, "").await.1.contains("fwd=uri-miss"));
    assert!(fetch(&node, "b", &url, "").await.1.contains("fwd=uri-miss"));
    assert_eq!(origin.requests(), 4);
    purge(r#"{"function":"a"}"#.to_owned()).await;
    assert!(fetch(&node, "a", &url, "").await.1.contains("fwd=uri-miss"));
    assert!(fetch(&node, "b", &url, "").await.1.contains("edge; hit"));
    assert_eq!(origin.requests(), 5);

    // POST is never answered from the cache, and invalidates what was stored (RFC 9111 §4.4).
    let (status, posted) = fetch(&node, "b", &url, "&method=POST&body=x").await;
    assert_eq!(status, 200, "{posted}");
    assert!(posted.contains("POST /item?cached"), "{posted}");
    assert_eq!(origin.requests(), 6);

    // With --no-outbound-cache every fetch reaches the origin.
    let dir = temp_dir();
    let uncached = self::node(dir.path(), &[("a", &allowed)], &["--no-outbound-cache"]);
    for _ in 0..2 {
        let (_, body) = fetch(&uncached, "a", &url, "").await;
        assert!(!body.contains("cache-status: edge"), "{body}");
    }
    assert_eq!(origin.requests(), 8);
}

#[tokio::test]
async fn a_slow_origin_times_out_as_the_guest_asked() {
    let origin = Origin::start().await;
    let dir = temp_dir();
    let allowed = vec![origin.url()];
    let node = node(dir.path(), &[("f", &allowed)], &[]);
    // `/slow` answers after 300 ms.
    let url = format!("{}/slow", origin.url());
    let (status, body) = fetch(&node, "f", &url, "&first_byte_ms=50").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("ConnectionReadTimeout"), "{body}");
    let (status, body) = fetch(&node, "f", &url, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /slow"), "{body}");

    // Nothing listens: refused, and said so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = temp_dir();
    let allowed = vec![format!("http://127.0.0.1:{port}")];
    let node = self::node(dir.path(), &[("f", &allowed)], &[]);
    let (status, body) = fetch(&node, "f", &format!("http://127.0.0.1:{port}/"), "").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("ConnectionRefused"), "{body}");
}
