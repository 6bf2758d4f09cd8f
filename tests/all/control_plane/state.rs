//! The snapshot long-poll, nodes, shutdown, and state across restarts.

use std::time::Duration;

use edge_tests::ControlPlaneBuilder;
use edge_wire::{FunctionInfo, NodeInfo, Route, Snapshot, TokenInfo};
use reqwest::Method;
use serde_json::json;

use super::Api;

#[tokio::test]
async fn a_waiting_snapshot_request_gets_the_deploy_as_soon_as_it_is_made() {
    let cp = ControlPlaneBuilder::default().start();
    let admin = Api::new(&cp, Some(&cp.admin_token()));
    let node = admin.with(&admin.token("node").await);
    // Nothing newer than the current revision (0: nothing deployed): 304 with no body once
    // the wait is over.
    let started = std::time::Instant::now();
    let unchanged = node.get("/v1/snapshot?after=0&wait=1").await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A poll open before a deploy answers with the deploy's snapshot.
    let poll = tokio::spawn(async move { node.get("/v1/snapshot?after=0&wait=10").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the poll answered before anything changed"
    );
    let (revision, _) = admin
        .deploy(
            "hello",
            "hello",
            json!([{ "path": "/", "function": "hello" }]),
        )
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the poll did not answer within 5 s of the deploy (its wait was 10 s)")
        .unwrap();
    let snapshot: Snapshot = answer.ok();
    assert_eq!(snapshot.revision, revision);
    assert_eq!(snapshot.functions["hello"].active.version, 1);
    assert_eq!(snapshot.routes, [Route::parse("/", "hello").unwrap()]);

    // Already behind: answered at once, whatever the wait.
    let node = admin.with(&admin.token("node").await);
    let behind = tokio::time::timeout(
        Duration::from_secs(5),
        node.get("/v1/snapshot?after=0&wait=60"),
    )
    .await
    .expect("a node behind the current revision waited");
    assert_eq!(behind.ok::<Snapshot>(), snapshot);
}

#[tokio::test]
async fn nodes_register_report_and_are_live_while_polling() {
    let cp = ControlPlaneBuilder::default().start();
    let admin = Api::new(&cp, Some(&cp.admin_token()));
    let node = admin.with(&admin.token("node").await);
    let first: edge_wire::Registered = node
        .post(
            "/v1/nodes/register",
            json!({ "name": "edge-1", "address": "10.0.0.1:443" }),
        )
        .await
        .ok();
    let again: edge_wire::Registered = node
        .post(
            "/v1/nodes/register",
            json!({ "name": "edge-1", "address": "10.0.0.2:443" }),
        )
        .await
        .ok();
    assert_eq!(first.id, again.id);
    let other: edge_wire::Registered = node
        .post("/v1/nodes/register", json!({ "name": "edge-2" }))
        .await
        .ok();
    assert_ne!(other.id, first.id);

    let report = node
        .post(
            &format!("/v1/nodes/{}/status", first.id),
            json!({ "revision": 0, "healthy": false, "error": "cannot compile" }),
        )
        .await;
    assert_eq!(report.status, 204);
    let message = node
        .post(
            "/v1/nodes/999/status",
            json!({ "revision": 0, "healthy": true }),
        )
        .await
        .error(404);
    assert!(message.contains("register again"), "{message}");
    // A snapshot request naming a node marks it heard from.
    let before: Vec<NodeInfo> = admin.get("/v1/nodes").await.ok();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let polled = node
        .get(&format!("/v1/snapshot?after=0&wait=1&node={}", other.id))
        .await;
    assert_eq!(polled.status, 304);

    let nodes: Vec<NodeInfo> = admin.get("/v1/nodes").await.ok();
    assert_eq!(nodes.len(), 2);
    let one = &nodes[0];
    assert_eq!((one.id, one.name.as_str()), (first.id, "edge-1"));
    assert_eq!(one.address, "10.0.0.2:443");
    assert_eq!(
        (one.healthy, one.error.as_deref()),
        (false, Some("cannot compile"))
    );
    assert!(one.live && nodes[1].live);
    assert!(nodes[1].last_seen_unix_ms > before[1].last_seen_unix_ms);
    // The node bookkeeping did not change the revision nodes watch.
    assert_eq!(admin.revision().await, 0);
}

#[tokio::test]
async fn sigterm_ends_open_polls_and_exits_zero() {
    let mut cp = ControlPlaneBuilder::default().start();
    let admin = Api::new(&cp, Some(&cp.admin_token()));
    let node = admin.with(&admin.token("node").await);
    let poll = tokio::spawn(async move { node.get("/v1/snapshot?after=0&wait=60").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, cp) = tokio::task::spawn_blocking(move || {
        let status = cp.terminate(Duration::from_secs(20));
        (status, cp)
    })
    .await
    .unwrap();
    let status = status.expect("edge-control-plane did not exit after SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", cp.logs());
    let answer = poll.await.unwrap();
    assert!(answer.error(503).contains("shutting down"));
    assert!(std::net::TcpStream::connect(cp.addr()).is_err());
}

#[tokio::test]
async fn everything_survives_a_restart_on_the_same_data_dir() {
    let cp = ControlPlaneBuilder::default().start();
    let admin_token = cp.admin_token();
    let admin = Api::new(&cp, Some(&admin_token));
    let deploy_token = admin.token("deploy").await;
    admin
        .deploy(
            "hello",
            "site",
            json!([{ "host": "example.com", "path": "/", "function": "site" }]),
        )
        .await;
    admin.deploy("hello-wasi-0-2-0", "site", json!([])).await;
    admin
        .deploy(
            "hello",
            "api",
            json!([{ "path": "/api", "function": "api" }]),
        )
        .await;
    admin
        .post(
            "/v1/functions/site/canary",
            json!({ "version": 1, "percent": 20 }),
        )
        .await
        .ok::<edge_wire::Changed>();
    let functions: Vec<FunctionInfo> = admin.get("/v1/functions").await.ok();
    let routes: Vec<Route> = admin.get("/v1/routes").await.ok();
    let tokens: Vec<TokenInfo> = admin.get("/v1/tokens").await.ok();
    let node_token = admin.token("node").await;
    let node = admin.with(&node_token);
    let snapshot: Snapshot = node.get("/v1/snapshot").await.ok();
    let revision = admin.revision().await;
    assert_eq!(revision, 4);
    let digest = snapshot.functions["api"].active.digest.clone();
    let component = node.get(&format!("/v1/components/{digest}")).await.body;

    let cp = cp.restart();
    let admin = Api::new(&cp, Some(&admin_token));
    assert_eq!(admin.url, node.url, "a restart keeps the address");
    assert_eq!(admin.revision().await, revision);
    let after: Vec<FunctionInfo> = admin.get("/v1/functions").await.ok();
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&functions).unwrap()
    );
    assert_eq!(admin.get("/v1/routes").await.ok::<Vec<Route>>(), routes);
    let after: Vec<TokenInfo> = admin.get("/v1/tokens").await.ok();
    assert_eq!(after.len(), tokens.len() + 1);
    let node = Api::new(&cp, Some(&node_token));
    assert_eq!(node.get("/v1/snapshot").await.ok::<Snapshot>(), snapshot);
    let fetched = node.get(&format!("/v1/components/{digest}")).await;
    assert_eq!(fetched.body, component);
    let deployer = admin.with(&deploy_token);
    let (revision, version) = deployer.deploy("hello", "site", json!([])).await;
    assert_eq!((revision, version), (5, 3));
    assert_eq!(
        deployer
            .send(Method::DELETE, "/v1/functions/api", None)
            .await
            .status,
        200
    );
}
