//! KV through `wasi:keyvalue` on a node without a control plane (the node is the source of
//! truth): namespaces bound per function, limits, atomics, and the replica kept on disk. The
//! fleet's KV (writes through the control plane, reads on every node) is in `fleet.rs`.

use std::time::Duration;

use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir, write_routes};

/// GET `/{function}/kv?QUERY`; (status, body).
pub(crate) async fn kv(node: &NodeProcess, function: &str, query: &str) -> (u16, String) {
    crate::get(&format!("{}/{function}/kv?{query}", node.url)).await
}

fn start(dir: &std::path::Path) -> NodeProcess {
    let probe = guest("probe").display().to_string();
    let routes = format!(
        r#"
[functions.counter]
component = "{probe}"
kv = ["counts"]
[functions.other]
component = "{probe}"
kv = ["other", "counts"]
[functions.unbound]
component = "{probe}"
[[routes]]
path = "/counter"
function = "counter"
[[routes]]
path = "/other"
function = "other"
[[routes]]
path = "/unbound"
function = "unbound"
"#
    );
    NodeBuilder::default()
        .routes(&write_routes(dir, &routes))
        .arg("--data-dir")
        .arg(dir.join("data").display().to_string())
        .start()
}

#[tokio::test]
async fn functions_use_only_their_namespaces_and_the_data_survives_a_restart() {
    let dir = temp_dir();
    let mut node = start(dir.path());
    assert_eq!(
        kv(&node, "counter", "op=set&key=a&value=1").await,
        (200, "ok".into())
    );
    // Read-your-writes: the next request sees it.
    assert_eq!(
        kv(&node, "counter", "op=get&key=a").await,
        (200, "1".into())
    );
    for expected in 1..=3 {
        let (status, body) = kv(&node, "counter", "op=incr&key=hits").await;
        assert_eq!((status, body), (200, expected.to_string()));
    }
    assert_eq!(
        kv(&node, "counter", "op=incr&key=hits&delta=10").await.1,
        "13"
    );
    assert_eq!(kv(&node, "counter", "op=list").await.1, "a,hits");
    let (status, body) = kv(&node, "counter", "op=incr&key=a&delta=1").await;
    assert_eq!((status, body.as_str()), (200, "2"));
    kv(&node, "counter", "op=set&key=word&value=x").await;
    let (status, body) = kv(&node, "counter", "op=incr&key=word").await;
    assert_eq!(status, 500);
    assert!(body.contains("does not hold a number"), "{body}");
    assert_eq!(kv(&node, "counter", "op=delete&key=word").await.1, "ok");
    assert_eq!(kv(&node, "counter", "op=get&key=word").await.1, "(none)");

    // `other`'s default namespace is its own; it may name `counts`, which it is bound to.
    assert_eq!(kv(&node, "other", "op=get&key=a").await.1, "(none)");
    assert_eq!(kv(&node, "other", "op=get&ns=counts&key=a").await.1, "2");
    // `counter` may not open `other`; `unbound` has no namespace at all.
    let (status, body) = kv(&node, "counter", "op=get&ns=other&key=a").await;
    assert_eq!(status, 500);
    assert!(body.contains("AccessDenied"), "{body}");
    let (status, body) = kv(&node, "unbound", "op=get&key=a").await;
    assert_eq!(status, 500);
    assert!(body.contains("NoSuchStore"), "{body}");
    let log = node
        .wait_for_log(&["not bound to", "--kv other"], Duration::from_secs(10))
        .unwrap_or_else(|| node.logs());
    assert!(log.contains("counter"), "{log}");

    // Limits, with the rule in the message.
    let long = "k".repeat(600);
    let (status, body) = kv(&node, "counter", &format!("op=set&key={long}&value=v")).await;
    assert_eq!(status, 500);
    assert!(body.contains("at most 512 bytes"), "{body}");

    // A restart serves the same data from the data dir.
    node.terminate(Duration::from_secs(20));
    let node = start(dir.path());
    assert_eq!(kv(&node, "counter", "op=get&key=a").await.1, "2");
    assert_eq!(kv(&node, "counter", "op=incr&key=hits").await.1, "14");
    assert_eq!(kv(&node, "counter", "op=get&key=word").await.1, "(none)");
}
