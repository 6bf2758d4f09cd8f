//! Uploads, versions, rollbacks, canaries, routes and deletes.

use edge_tests::{ControlPlaneBuilder, guest};
use edge_wire::{Changed, FunctionInfo, Route, Uploaded};
use reqwest::Method;
use serde_json::json;

use super::{Api, sha256};

#[tokio::test]
async fn a_component_uploads_deploys_and_comes_back_byte_for_byte() {
    let cp = ControlPlaneBuilder::default().start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    let deployer = api.with(&api.token("deploy").await);
    let bytes = std::fs::read(guest("hello")).unwrap();

    let uploaded: Uploaded = deployer.upload(&bytes).await.ok();
    assert_eq!(uploaded.digest, sha256(&bytes));
    assert_eq!(uploaded.size, bytes.len() as u64);
    assert!(!uploaded.existed);
    let again: Uploaded = deployer.upload(&bytes).await.ok();
    assert!(again.existed);
    assert_eq!(again.digest, uploaded.digest);
    let stored = cp.data_dir().join("components").join(&uploaded.digest);
    assert_eq!(std::fs::read(stored).unwrap(), bytes);

    let changed: Changed = deployer
        .post(
            "/v1/functions/hello/versions",
            json!({
                "digest": uploaded.digest,
                "env": { "GREETING": "hi" },
                "limits": { "timeout_ms": 500 },
                "routes": [{ "host": "Example.com", "path": "/hello/", "function": "hello" }],
            }),
        )
        .await
        .ok();
    assert_eq!((changed.revision, changed.version), (1, Some(1)));

    let function: FunctionInfo = deployer.get("/v1/functions/hello").await.ok();
    assert_eq!((function.name.as_str(), function.active), ("hello", 1));
    assert_eq!(function.canary, None);
    assert_eq!(function.versions.len(), 1);
    let version = &function.versions[0];
    assert_eq!(version.digest, uploaded.digest);
    assert_eq!(version.env["GREETING"], "hi");
    assert_eq!(version.limits.timeout_ms, Some(500));
    assert!(version.created_unix_ms > 1_600_000_000_000);
    let all: Vec<FunctionInfo> = deployer.get("/v1/functions").await.ok();
    assert_eq!(all.len(), 1);
    let routes: Vec<Route> = deployer.get("/v1/routes").await.ok();
    assert_eq!(
        routes,
        [Route::parse("example.com/hello", "hello").unwrap()]
    );

    // Nodes fetch the bytes by digest.
    let node = api.with(&api.token("node").await);
    let fetched = node
        .get(&format!("/v1/components/{}", uploaded.digest))
        .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.headers["content-type"], "application/wasm");
    assert_eq!(&fetched.body[..], &bytes[..]);
    let missing = node
        .get(&format!("/v1/components/{}", "ab".repeat(32)))
        .await;
    assert!(missing.error(404).contains("no component"));
    let message = node
        .get("/v1/components/..%2Fcontrol-plane.db")
        .await
        .error(400);
    assert!(message.contains("not a component digest"), "{message}");

    let message = deployer.get("/v1/functions/nope").await.error(404);
    assert!(message.contains("`nope`"), "{message}");
}

#[tokio::test]
async fn an_upload_is_compiled_once_and_snapshots_name_the_code() {
    let cp = ControlPlaneBuilder::default().start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    let deployer = api.with(&api.token("deploy").await);
    let node = api.with(&api.token("node").await);
    api.deploy(
        "hello",
        "hello",
        json!([{ "path": "/", "function": "hello" }]),
    )
    .await;

    let snapshot: edge_wire::Snapshot = node.get("/v1/snapshot").await.ok();
    let engine = snapshot.engine.expect("the snapshot names the engine");
    assert_eq!(engine.len(), 16, "{engine}");
    let version = &snapshot.functions["hello"].active;
    let code_sha = version
        .compiled
        .clone()
        .expect("the version names its code");
    let code = node.get(&format!("/v1/compiled/{code_sha}")).await;
    assert_eq!(code.status, 200);
    assert_eq!(code.headers["content-type"], "application/octet-stream");
    assert_eq!(sha256(&code.body), code_sha);
    assert!(code.body.len() > 1000, "{} bytes of code", code.body.len());
    // Machine code is for nodes only.
    let message = deployer
        .get(&format!("/v1/compiled/{code_sha}"))
        .await
        .error(403);
    assert!(message.contains("`node`"), "{message}");
    let missing = node.get(&format!("/v1/compiled/{}", "ab".repeat(32))).await;
    assert!(missing.error(404).contains("no compiled code"));

    // Uploading the same component again compiles nothing new.
    let files = || {
        std::fs::read_dir(cp.data_dir().join("compiled"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 1);
    let bytes = std::fs::read(guest("hello")).unwrap();
    let again: Uploaded = deployer.upload(&bytes).await.ok();
    assert!(again.existed);
    assert_eq!(files(), 1);
    assert_eq!(cp.logs().matches("compiled for the nodes").count(), 1);
}

#[tokio::test]
async fn without_precompile_snapshots_offer_no_code() {
    let cp = ControlPlaneBuilder::default()
        .arg("--no-precompile")
        .start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    let node = api.with(&api.token("node").await);
    api.deploy(
        "hello",
        "hello",
        json!([{ "path": "/", "function": "hello" }]),
    )
    .await;
    let snapshot: edge_wire::Snapshot = node.get("/v1/snapshot").await.ok();
    assert_eq!(snapshot.engine, None);
    assert_eq!(snapshot.functions["hello"].active.compiled, None);
    let message = node
        .get(&format!("/v1/compiled/{}", "ab".repeat(32)))
        .await
        .error(404);
    assert!(message.contains("--no-precompile"), "{message}");
}

#[tokio::test]
async fn uploads_that_are_not_http_components_get_400_saying_what_is_wrong() {
    let cp = ControlPlaneBuilder::default().start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("empty", Vec::new(), "the component is empty"),
        ("text", b"hello, world".to_vec(), "not a WebAssembly file"),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module, not a component",
        ),
        (
            "no export",
            std::fs::read(guest("no-export")).unwrap(),
            "does not export wasi:http/incoming-handler",
        ),
        (
            "unknown import",
            std::fs::read(guest("unknown-import")).unwrap(),
            "which edge nodes do not provide",
        ),
    ];
    for (what, bytes, expected) in cases {
        let message = api.upload(&bytes).await.error(400);
        assert!(message.contains(expected), "{what}: {message}");
    }
    // Nothing refused was stored.
    let stored = std::fs::read_dir(cp.data_dir().join("components"))
        .unwrap()
        .count();
    assert_eq!(stored, 0);

    // A version must name an uploaded component.
    let message = api
        .post(
            "/v1/functions/f/versions",
            json!({ "digest": sha256(b"never uploaded") }),
        )
        .await
        .error(400);
    assert!(message.contains("upload it first"), "{message}");
    let message = api
        .post("/v1/functions/f/versions", json!({ "digest": "abc" }))
        .await
        .error(400);
    assert!(message.contains("sha256"), "{message}");
}

#[tokio::test]
async fn uploads_over_the_size_limit_get_413() {
    let bytes = std::fs::read(guest("hello")).unwrap();
    let cp = ControlPlaneBuilder::default()
        .arg("--max-component-bytes")
        .arg((bytes.len() - 1).to_string())
        .start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    let message = api.upload(&bytes).await.error(413);
    assert!(message.contains("--max-component-bytes"), "{message}");
    // Far over the limit: the client, still sending when the answer is ready, must get the
    // 413 rather than a connection reset.
    let message = api.upload(&vec![0; 8 << 20]).await.error(413);
    assert!(message.contains("limit"), "{message}");
    // At the limit the size passes (and the truncated bytes then fail the component check).
    assert_eq!(api.upload(&bytes[..bytes.len() - 1]).await.status, 400);
}

#[tokio::test]
async fn function_names_follow_the_rule() {
    let cp = ControlPlaneBuilder::default().start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    let bytes = std::fs::read(guest("hello")).unwrap();
    let uploaded: Uploaded = api.upload(&bytes).await.ok();
    for bad in ["Hello", "-x", "a_b", &"a".repeat(64)] {
        let message = api
            .post(
                &format!("/v1/functions/{bad}/versions"),
                json!({ "digest": uploaded.digest }),
            )
            .await
            .error(400);
        assert!(message.contains("a-z, 0-9 and -"), "{bad}: {message}");
    }
    assert_eq!(api.revision().await, 0);
}

#[tokio::test]
async fn rollback_and_canary_follow_their_rules() {
    let cp = ControlPlaneBuilder::default().start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    api.deploy("hello", "f", json!([])).await;
    let message = api
        .post("/v1/functions/f/rollback", json!({}))
        .await
        .error(400);
    assert!(message.contains("no earlier version"), "{message}");
    api.deploy("hello-wasi-0-2-0", "f", json!([])).await;
    let (revision, version) = api.deploy("hello", "f", json!([])).await;
    assert_eq!((revision, version), (3, 3));

    // Canary: another existing version, 1 to 99 percent; 0 ends it.
    let message = api
        .post(
            "/v1/functions/f/canary",
            json!({ "version": 3, "percent": 10 }),
        )
        .await
        .error(400);
    assert!(message.contains("active version"), "{message}");
    let message = api
        .post(
            "/v1/functions/f/canary",
            json!({ "version": 9, "percent": 10 }),
        )
        .await
        .error(404);
    assert!(message.contains("no version 9"), "{message}");
    let message = api
        .post(
            "/v1/functions/f/canary",
            json!({ "version": 2, "percent": 100 }),
        )
        .await
        .error(400);
    assert!(message.contains("1 to 99"), "{message}");
    let changed: Changed = api
        .post(
            "/v1/functions/f/canary",
            json!({ "version": 2, "percent": 10 }),
        )
        .await
        .ok();
    assert_eq!((changed.revision, changed.version), (4, Some(2)));
    let function: FunctionInfo = api.get("/v1/functions/f").await.ok();
    assert_eq!(function.canary, Some((2, 10)));

    // Rollback without `to`: the version below the active one; the canary ends.
    let changed: Changed = api
        .send(Method::POST, "/v1/functions/f/rollback", None)
        .await
        .ok();
    assert_eq!((changed.revision, changed.version), (5, Some(2)));
    let function: FunctionInfo = api.get("/v1/functions/f").await.ok();
    assert_eq!((function.active, function.canary), (2, None));
    // To a named version, later ones included; unknown: 404; the active one: 400.
    let changed: Changed = api
        .post("/v1/functions/f/rollback", json!({ "to": 3 }))
        .await
        .ok();
    assert_eq!(changed.version, Some(3));
    let message = api
        .post("/v1/functions/f/rollback", json!({ "to": 7 }))
        .await
        .error(404);
    assert!(message.contains("no version 7"), "{message}");
    let message = api
        .post("/v1/functions/f/rollback", json!({ "to": 3 }))
        .await
        .error(400);
    assert!(message.contains("already the active version"), "{message}");
    let message = api
        .post("/v1/functions/g/rollback", json!({}))
        .await
        .error(404);
    assert!(message.contains("`g`"), "{message}");

    api.post(
        "/v1/functions/f/canary",
        json!({ "version": 1, "percent": 50 }),
    )
    .await
    .ok::<Changed>();
    let changed: Changed = api
        .post(
            "/v1/functions/f/canary",
            json!({ "version": 1, "percent": 0 }),
        )
        .await
        .ok();
    assert_eq!(changed.version, None);
    let function: FunctionInfo = api.get("/v1/functions/f").await.ok();
    assert_eq!(function.canary, None);
    // Refused calls changed nothing: one revision per accepted change.
    assert_eq!(api.revision().await, 8);
}

#[tokio::test]
async fn routes_are_set_moved_and_deleted_with_their_function() {
    let cp = ControlPlaneBuilder::default().start();
    let api = Api::new(&cp, Some(&cp.admin_token()));
    api.deploy("hello", "a", json!([{ "path": "/", "function": "a" }]))
        .await;
    api.deploy(
        "hello",
        "b",
        json!([{ "host": "b.example", "path": "/", "function": "b" }]),
    )
    .await;
    // A deploy's route that another function holds moves to it.
    api.deploy("hello", "b", json!([{ "path": "/", "function": "b" }]))
        .await;
    let routes: Vec<Route> = api.get("/v1/routes").await.ok();
    assert_eq!(
        routes,
        [
            Route::parse("/", "b").unwrap(),
            Route::parse("b.example/", "b").unwrap()
        ]
    );
    assert!(cp.logs().contains("route moved"), "{}", cp.logs());

    let changed: Changed = api
        .json(
            Method::PUT,
            "/v1/routes",
            json!({ "path": "/a/", "function": "a" }),
        )
        .await
        .ok();
    assert_eq!(changed.revision, 4);
    let message = api
        .json(
            Method::PUT,
            "/v1/routes",
            json!({ "path": "/x", "function": "ghost" }),
        )
        .await
        .error(404);
    assert!(message.contains("`ghost`"), "{message}");
    let message = api
        .json(
            Method::PUT,
            "/v1/routes",
            json!({ "path": "x", "function": "a" }),
        )
        .await
        .error(400);
    assert!(message.contains("must start with /"), "{message}");

    // Host and path identify a route to delete.
    api.json(
        Method::DELETE,
        "/v1/routes",
        json!({ "host": "b.example", "path": "/" }),
    )
    .await
    .ok::<Changed>();
    let message = api
        .json(
            Method::DELETE,
            "/v1/routes",
            json!({ "host": "b.example", "path": "/" }),
        )
        .await
        .error(404);
    assert!(message.contains("no route"), "{message}");

    // Deleting a function takes its routes (and versions) with it.
    let changed: Changed = api.send(Method::DELETE, "/v1/functions/b", None).await.ok();
    assert_eq!(changed.revision, 6);
    let routes: Vec<Route> = api.get("/v1/routes").await.ok();
    assert_eq!(routes, [Route::parse("/a", "a").unwrap()]);
    assert_eq!(api.get("/v1/functions/b").await.status, 404);
    assert_eq!(
        api.send(Method::DELETE, "/v1/functions/b", None)
            .await
            .status,
        404
    );
}
