//! Logs and metrics: an access-log line per request, guest output under the request id, and
//! Prometheus counters for what was served.

use std::time::Duration;

use edge_tests::{NodeBuilder, guest};

use crate::{client, get, request_id};

#[tokio::test]
async fn guest_output_and_the_access_log_carry_the_request_id() {
    let node = NodeBuilder::default().component(&guest("probe")).start();
    let response = client()
        .get(format!("{}/log", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    assert_eq!(id.len(), 32, "{id}");
    let timeout = Duration::from_secs(5);
    let stdout = node
        .wait_for_log(&["to stdout from the guest", &id], timeout)
        .expect("the guest's stdout line");
    assert!(stdout.contains(r#""stream":"stdout""#), "{stdout}");
    assert!(
        node.wait_for_log(
            &["to stderr from the guest", &id, r#""stream":"stderr""#],
            timeout
        )
        .is_some()
    );
    let access = node
        .wait_for_log(&["edge_node::access", &id], timeout)
        .expect("the access log line");
    for field in [
        r#""method":"GET""#,
        r#""path":"/log""#,
        r#""status":200"#,
        r#""function":"probe""#,
        r#""bytes":6"#,
        r#""complete":true"#,
        r#""version":"HTTP/1.1""#,
        "duration_us",
        "instantiate_us",
        r#""host":"127.0.0.1"#,
    ] {
        assert!(access.contains(field), "{field} missing from {access}");
    }
}

/// hyper stops reading a body once its declared length is out, before the body reports its
/// end: such answers, and HEAD answers, are still logged as complete.
#[tokio::test]
async fn answers_with_a_declared_length_and_head_answers_are_logged_complete() {
    let node = NodeBuilder::default().component(&guest("hello")).start();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let response = client()
            .request(method.clone(), &node.url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("content-length"));
        let id = request_id(&response);
        let access = node
            .wait_for_log(&["edge_node::access", &id], Duration::from_secs(5))
            .expect("the access log line");
        assert!(access.contains(r#""complete":true"#), "{method}: {access}");
    }
}

#[tokio::test]
async fn a_sane_client_request_id_is_kept_and_a_wild_one_replaced() {
    let node = NodeBuilder::default().component(&guest("hello")).start();
    let kept = client()
        .get(&node.url)
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc.123");
    let replaced = client()
        .get(&node.url)
        .header("x-request-id", "spaces and {braces}")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "spaces and {braces}");
}

#[tokio::test]
async fn metrics_count_what_was_served() {
    let node = NodeBuilder::default().component(&guest("probe")).start();
    for _ in 0..3 {
        assert_eq!(get(&format!("{}/count", node.url)).await.0, 200);
    }
    assert_eq!(get(&format!("{}/trap", node.url)).await.0, 500);
    assert_eq!(
        get(&format!("{}/healthz", node.admin)).await,
        (200, "ok\n".into())
    );
    // The access log and its counters are written when a body ends; give them a moment.
    let mut text = String::new();
    for _ in 0..50 {
        text = get(&format!("{}/metrics", node.admin)).await.1;
        if text
            .contains(r#"edge_requests_total{function="probe",status="500",version="HTTP/1.1"} 1"#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in [
        r#"edge_requests_total{function="probe",status="200",version="HTTP/1.1"} 3"#,
        r#"edge_requests_total{function="probe",status="500",version="HTTP/1.1"} 1"#,
        r#"edge_traps_total{function="probe"} 1"#,
        r#"edge_instantiate_duration_seconds_count{function="probe"} 4"#,
        r#"edge_request_duration_seconds_count{function="probe"} 4"#,
        r#"edge_limit_kills_total{function="probe",limit="time"} 0"#,
        r#"edge_instances_in_use{function="probe"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}
