//! What the SDK sends the node, end to end: response lengths, statuses, headers the host
//! refuses, handler errors, and a handler that takes no request (the hello example).

use std::time::Duration;

use edge_tests::{NodeBuilder, guest};

use crate::{client, request_id};

#[tokio::test]
async fn the_sdk_declares_lengths_sets_statuses_and_drops_only_refused_headers() {
    let node = NodeBuilder::default()
        .component(&guest("sdk-probe"))
        .start();
    let base = &node.url;
    let client = client();

    let small = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(small.content_length(), Some(10));
    assert_eq!(small.text().await.unwrap(), "sdk probe\n");

    // Past what one host write takes: still whole, still with its length.
    let big = client.get(format!("{base}/big")).send().await.unwrap();
    assert_eq!(big.content_length(), Some(10_000));
    let body = big.bytes().await.unwrap();
    assert_eq!(body.len(), 10_000);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % 26) as u8)
    );

    let created = client.get(format!("{base}/created")).send().await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.text().await.unwrap(), "made\n");

    let none = client
        .get(format!("{base}/no-content"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 204);
    assert!(none.headers().get("content-length").is_none());

    let own = client
        .get(format!("{base}/own-length"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.content_length(), Some(5));
    assert_eq!(own.text().await.unwrap(), "12345");

    // `connection` is the node's to set: that one header is left out, and said so in the
    // function's log; the response and its other headers arrive.
    let refused = client
        .get(format!("{base}/forbidden-header"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 200);
    assert_eq!(refused.headers()["x-kept"], "yes");
    assert_eq!(
        refused.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(refused.content_length(), Some(5));
    assert!(
        refused
            .headers()
            .get("connection")
            .is_none_or(|v| v != "close")
    );
    let id = request_id(&refused);
    assert_eq!(refused.text().await.unwrap(), "kept\n");
    assert!(
        node.wait_for_log(
            &["header connection left out", &id, r#""stream":"stderr""#],
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        node.logs()
    );
}

#[tokio::test]
async fn a_handler_error_is_a_500_whose_details_go_to_the_log_only() {
    let node = NodeBuilder::default()
        .component(&guest("sdk-probe"))
        .start();
    let response = client()
        .get(format!("{}/fail?secret=1", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let id = request_id(&response);
    assert_eq!(response.text().await.unwrap(), "internal error\n");
    // The line names what was asked (the path, not its query) and the error.
    let line = node
        .wait_for_log(
            &["ERROR GET /fail: the database is down", &id],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no error line in {}", node.logs()));
    assert!(!line.contains("secret"), "{line}");
}

#[tokio::test]
async fn a_handler_that_takes_no_request_answers_every_method_and_body() {
    // examples/hello is `fn hello() -> Response`: the SDK reads nothing of the request, not
    // even its body. The node reads the rest of an unread body and throws it away, so the
    // keep-alive connection the client sends its next POST on is still open.
    let node = NodeBuilder::default().component(&guest("hello")).start();
    let client = client();
    for _ in 0..3 {
        let post = client
            .post(format!("{}/any/path?q=1", node.url))
            .body(vec![b'x'; 100_000])
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 200);
        assert_eq!(post.content_length(), Some(20));
        assert_eq!(post.text().await.unwrap(), "hello from the edge\n");
    }
    let head = client.head(&node.url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "20");
}
