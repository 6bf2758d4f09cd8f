//! Guest failures and limits: each gets its own status, and the node keeps serving.

use std::time::{Duration, Instant};

use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir, write_routes};

use crate::{client, get, request_id};

/// The probe at `/`, with `limits` (TOML inline-table fields) on it.
fn probe_with(limits: &str, extra: &[&str]) -> (tempfile::TempDir, NodeProcess) {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            "[functions.probe]\ncomponent = \"{}\"\nlimits = {{ {limits} }}\n[[routes]]\nfunction = \"probe\"\n",
            guest("probe").display()
        ),
    );
    let mut builder = NodeBuilder::default().routes(&routes);
    for arg in extra {
        builder = builder.arg(*arg);
    }
    (dir, builder.start())
}

async fn still_healthy(node: &NodeProcess) {
    assert_eq!(
        get(&format!("{}/count", node.url)).await,
        (200, "1".to_owned()),
        "the node stopped serving healthy requests"
    );
}

#[tokio::test]
async fn a_trap_is_500_with_the_request_id_and_no_internals() {
    let (_dir, node) = probe_with("", &[]);
    for path in ["/trap", "/panic"] {
        let response = client()
            .get(format!("{}{path}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let id = request_id(&response);
        let body = response.text().await.unwrap();
        assert!(body.contains(&format!("request id: {id}")), "{body}");
        for internal in ["unreachable", "wasm", "backtrace", "panic"] {
            assert!(!body.contains(internal), "body leaks `{internal}`: {body}");
        }
        // The details are in the node's log, under the same id.
        assert!(
            node.wait_for_log(&[&id, "function failed"], Duration::from_secs(5))
                .is_some()
        );
        still_healthy(&node).await;
    }
}

#[tokio::test]
async fn an_endless_loop_is_killed_at_its_time_limit_with_504() {
    let (_dir, node) = probe_with("timeout_ms = 300", &[]);
    let started = Instant::now();
    let (status, body) = get(&format!("{}/loop", node.url)).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("time limit of 300 ms"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    still_healthy(&node).await;
}

#[tokio::test]
async fn an_endless_loop_does_not_starve_other_requests() {
    let (_dir, node) = probe_with("timeout_ms = 3000", &[]);
    // Two loops, one per core of a 2-core machine: guests yield each epoch tick, so a healthy
    // request still gets through while both spin.
    let looping: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_owned(format!("{}/loop", node.url))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_healthy(&node).await;
    for handle in looping {
        assert_eq!(handle.await.unwrap().0, 504);
    }
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}

#[tokio::test]
async fn a_memory_hog_is_stopped_at_its_memory_limit() {
    let (_dir, node) = probe_with("memory_mb = 16", &[]);
    let (status, body) = get(&format!("{}/hog", node.url)).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory limit of 16 MiB"), "{body}");
    still_healthy(&node).await;
}

#[tokio::test]
async fn a_saturated_function_answers_503_with_retry_after() {
    let (_dir, node) = probe_with("max_concurrency = 2", &[]);
    let url = format!("{}/sleep?ms=1500", node.url);
    let responses = futures::future::join_all((0..12).map(|_| async {
        let response = client().get(&url).send().await.unwrap();
        let retry = response.headers().get("retry-after").cloned();
        (response.status().as_u16(), retry)
    }))
    .await;
    let ok = responses.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<_> = responses.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(ok + busy.len(), 12, "{responses:?}");
    assert!((1..=2).contains(&ok), "{responses:?}");
    assert!(!busy.is_empty() && busy.iter().all(|(_, r)| r.is_some()));
    still_healthy(&node).await;
}

#[tokio::test]
async fn a_full_instance_pool_answers_503_not_a_crash() {
    let (_dir, node) = probe_with("max_concurrency = 100", &["--max-instances", "2"]);
    let url = format!("{}/sleep?ms=1500", node.url);
    let statuses = futures::future::join_all(
        (0..10).map(|_| async { client().get(&url).send().await.unwrap().status().as_u16() }),
    )
    .await;
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    still_healthy(&node).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_declared_or_streamed() {
    let (_dir, node) = probe_with("max_body_bytes = 1000", &[]);
    let url = format!("{}/echo", node.url);
    let declared = client()
        .post(&url)
        .body(vec![1u8; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let chunks = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 600]))),
    );
    let streamed = client()
        .post(format!("{}/len", node.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    let fits = client()
        .post(&url)
        .body(vec![1u8; 900])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    assert_eq!(fits.bytes().await.unwrap().len(), 900);
}
