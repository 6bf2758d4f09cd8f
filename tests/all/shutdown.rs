//! SIGTERM: stop accepting, let in-flight requests finish, exit 0.

use std::time::Duration;

use edge_tests::{NodeBuilder, guest};

use crate::client;

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let mut node = NodeBuilder::default().component(&guest("probe")).start();
    let url = format!("{}/sleep?ms=1500", node.url);
    let in_flight = tokio::spawn(async move {
        let response = client().get(&url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    // Wait until the guest is running, then ask the node to stop.
    assert!(
        node.wait_for_log(&["edge_node"], Duration::from_secs(5))
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = node.terminate(Duration::from_secs(20));
        (status, node)
    });
    let (code, body) = in_flight.await.unwrap();
    assert_eq!((code, body.as_str()), (200, "slept 1500ms"));
    let (status, node) = status.await.unwrap();
    let status = status.expect("edge-node did not exit after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(node.logs().contains("shutting down"), "{}", node.logs());
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(node.addr()).is_err());
}
