//! The first admin token, 401 and 403, token management, HTTP errors, TLS.

use std::time::Duration;

use edge_tests::ControlPlaneBuilder;
use reqwest::Method;
use serde_json::json;

use super::Api;

#[tokio::test]
async fn the_first_start_prints_an_admin_token_once_and_keeps_it_in_a_0600_file() {
    let cp = ControlPlaneBuilder::default().start();
    let printed = cp
        .printed_admin_token()
        .expect("no admin token printed")
        .to_owned();
    let hex = printed
        .strip_prefix("edge_")
        .expect("tokens start with edge_");
    assert!(
        hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{printed}"
    );
    // The token line comes before the listening line, and only once.
    let stdout = cp.stdout();
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    assert_eq!(stdout[0], format!("admin token: {printed}"));
    assert!(
        stdout[1].starts_with("listening on http://127.0.0.1:"),
        "{stdout:?}"
    );
    // Nor does the secret reach the log.
    assert!(!cp.logs().contains(&printed), "{}", cp.logs());

    let file = cp.data_dir().join("admin-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), printed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let api = Api::new(&cp, Some(&printed));
    let tokens: Vec<edge_wire::TokenInfo> = api.get("/v1/tokens").await.ok();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].scope, edge_wire::Scope::Admin);

    // A later start on the same data dir says nothing about tokens; the old one still works.
    let cp = cp.restart();
    assert_eq!(cp.printed_admin_token(), None);
    let stdout = cp.stdout();
    assert_eq!(stdout.len(), 1, "{stdout:?}");
    assert!(stdout[0].starts_with("listening on "), "{stdout:?}");
    let api = Api::new(&cp, Some(&printed));
    assert_eq!(api.get("/v1/tokens").await.status, 200);
}

#[tokio::test]
async fn calls_without_a_valid_token_get_401_saying_how_to_pass_one() {
    let cp = ControlPlaneBuilder::default().start();
    let anonymous = Api::new(&cp, None);
    let health = anonymous.get("/healthz").await;
    assert_eq!((health.status, &health.body[..]), (200, &b"ok"[..]));

    let missing = anonymous.get("/v1/functions").await;
    let message = missing.error(401);
    assert!(
        message.contains("--token") && message.contains("EDGE_TOKEN"),
        "{message}"
    );
    assert_eq!(missing.headers["www-authenticate"], "Bearer");

    let wrong = anonymous.with("edge_0123456789abcdef0123456789abcdef");
    let message = wrong.get("/v1/functions").await.error(401);
    assert!(
        message.contains("not valid") && message.contains("--token"),
        "{message}"
    );
    // Uploads are refused before any byte is stored.
    let message = wrong.upload(b"\0asm").await.error(401);
    assert!(message.contains("not valid"), "{message}");
    assert_eq!(wrong.get("/v1/snapshot?wait=0").await.status, 401);

    // Not a bearer token at all.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/functions", cp.url()))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn each_scope_may_do_its_own_calls_only() {
    let cp = ControlPlaneBuilder::default().start();
    let admin = Api::new(&cp, Some(&cp.admin_token()));
    let read = admin.with(&admin.token("read").await);
    let deploy = admin.with(&admin.token("deploy").await);
    let node = admin.with(&admin.token("node").await);

    // A read token may list but not deploy.
    assert_eq!(read.get("/v1/functions").await.status, 200);
    let message = read.upload(b"\0asm").await.error(403);
    assert!(
        message.contains("`deploy`") && message.contains("`read`"),
        "{message}"
    );
    let message = read
        .post("/v1/functions/f/rollback", json!({}))
        .await
        .error(403);
    assert!(message.contains("`deploy`"), "{message}");

    // A node token reads snapshots and components, registers and reports; nothing else.
    let message = node.get("/v1/functions").await.error(403);
    assert!(
        message.contains("`read`") && message.contains("`node`"),
        "{message}"
    );
    assert_eq!(node.get("/v1/routes").await.status, 403);
    // (Nothing deployed yet: nothing newer than revision 0, so 304.)
    assert_eq!(node.get("/v1/snapshot?after=0&wait=0").await.status, 304);
    let registered: edge_wire::Registered = node
        .post("/v1/nodes/register", json!({ "name": "n1" }))
        .await
        .ok();
    let status = node
        .post(
            &format!("/v1/nodes/{}/status", registered.id),
            json!({ "revision": 0, "healthy": true }),
        )
        .await;
    assert_eq!(status.status, 204);

    // Deploy and read tokens cannot act as nodes or manage tokens; a deploy token may fetch
    // components (the CLI checks its uploads).
    assert_eq!(deploy.get("/v1/snapshot?wait=0").await.status, 403);
    assert_eq!(
        read.post("/v1/nodes/register", json!({ "name": "x" }))
            .await
            .status,
        403
    );
    let message = deploy.get("/v1/tokens").await.error(403);
    assert!(message.contains("`admin`"), "{message}");
    assert_eq!(
        deploy
            .get(&format!("/v1/components/{}", "0".repeat(64)))
            .await
            .status,
        404
    );
    assert_eq!(
        read.get(&format!("/v1/components/{}", "0".repeat(64)))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_deleted_tokens_stop_working() {
    let cp = ControlPlaneBuilder::default().start();
    let admin = Api::new(&cp, Some(&cp.admin_token()));
    let created: edge_wire::TokenInfo = admin
        .post(
            "/v1/tokens",
            json!({ "scope": "read", "name": "dashboards" }),
        )
        .await
        .ok();
    let secret = created.token.clone().unwrap();
    assert!(secret.starts_with("edge_"));
    assert_ne!(secret, cp.admin_token());
    let listed: Vec<edge_wire::TokenInfo> = admin.get("/v1/tokens").await.ok();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t.token.is_none()));
    assert!(!String::from_utf8_lossy(&admin.get("/v1/tokens").await.body).contains(&secret));
    let mine = listed.iter().find(|t| t.id == created.id).unwrap();
    assert_eq!(
        (mine.name.as_str(), mine.scope),
        ("dashboards", edge_wire::Scope::Read)
    );

    let reader = admin.with(&secret);
    assert_eq!(reader.get("/v1/routes").await.status, 200);
    let deleted = admin
        .send(Method::DELETE, &format!("/v1/tokens/{}", created.id), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(reader.get("/v1/routes").await.status, 401);
    let again = admin
        .send(Method::DELETE, &format!("/v1/tokens/{}", created.id), None)
        .await;
    assert!(again.error(404).contains("no token"));

    // The last admin token stays.
    let admin_id = listed.iter().find(|t| t.id != created.id).unwrap().id;
    let message = admin
        .send(Method::DELETE, &format!("/v1/tokens/{admin_id}"), None)
        .await
        .error(400);
    assert!(message.contains("last admin token"), "{message}");
    let message = admin
        .post("/v1/tokens", json!({ "scope": "root" }))
        .await
        .error(400);
    assert!(message.contains("unknown variant `root`"), "{message}");
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_bad_json_get_their_statuses() {
    let cp = ControlPlaneBuilder::default().start();
    let admin = Api::new(&cp, Some(&cp.admin_token()));
    assert!(admin.get("/v2/functions").await.error(404).contains("/v1/"));
    assert_eq!(admin.get("/v1/functions/a/b").await.status, 404);

    let wrong = admin.send(Method::POST, "/v1/functions", None).await;
    assert!(wrong.error(405).contains("use GET"));
    assert_eq!(wrong.headers["allow"], "GET");
    let wrong = admin.send(Method::PATCH, "/v1/routes", None).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET, PUT, DELETE");

    let bad = admin
        .send(
            Method::POST,
            "/v1/functions/f/versions",
            Some(b"{\"digest\": \"x\",\n \"env\": 5}".to_vec()),
        )
        .await;
    let message = bad.error(400);
    assert!(
        message.contains("invalid type") && message.contains("line 2"),
        "{message}"
    );
    let message = admin
        .post(
            "/v1/functions/f/canary",
            json!({ "version": 1, "percent": 5, "x": 1 }),
        )
        .await
        .error(400);
    assert!(message.contains("unknown field `x`"), "{message}");
    let message = admin
        .post("/v1/functions/f/canary", json!({ "percent": 5 }))
        .await
        .error(400);
    assert!(message.contains("missing field `version`"), "{message}");
    let message = admin.get("/v1/snapshot?after=soon").await.error(400);
    assert!(message.contains("after"), "{message}");
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = edge_tests::temp_dir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let cp = ControlPlaneBuilder::default()
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem").display().to_string())
        .arg("--tls-key")
        .arg(dir.path().join("key.pem").display().to_string())
        .start();
    assert!(cp.url().starts_with("https://"), "{}", cp.url());
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", cp.addr())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "https://localhost:{}/v1/revision",
            cp.addr().port()
        ))
        .bearer_auth(cp.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), r#"{"revision":0}"#);
}

#[test]
fn a_damaged_database_stops_the_start_with_a_clear_error() {
    let dir = edge_tests::temp_dir();
    std::fs::write(
        dir.path().join("control-plane.db"),
        "not a database, only text long enough to have a header".repeat(20),
    )
    .unwrap();
    let (status, stdout, stderr) = ControlPlaneBuilder::default()
        .data_dir(dir.path())
        .start_failure();
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("cannot open the database") && stderr.contains("control-plane.db"),
        "{stderr}"
    );
}
