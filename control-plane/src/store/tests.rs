use std::collections::BTreeMap;

use edge_wire::{Limits, NewVersion, NodeStatus, Route, Scope};

use super::*;

const T0: u64 = 1_700_000_000_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    (dir, store)
}

fn digest(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn deploy(store: &Store, name: &str, n: u8, routes: &[&str]) -> edge_wire::Changed {
    let new = NewVersion {
        digest: digest(n),
        env: BTreeMap::from([("N".into(), n.to_string())]),
        limits: Limits {
            timeout_ms: Some(u64::from(n) * 100),
            ..Limits::default()
        },
        routes: routes
            .iter()
            .map(|spec| Route::parse(spec, name).unwrap())
            .collect(),
        ..NewVersion::default()
    };
    store.new_version(name, &new, T0).unwrap()
}

fn invalid(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn not_found(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::NotFound(message)) => message,
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn every_change_bumps_the_revision_once_and_publishes_its_snapshot() {
    let (_dir, store) = open();
    assert_eq!(store.revision(), 0);
    let mut updates = store.subscribe();
    let changed = deploy(&store, "hello", 1, &["/"]);
    assert_eq!((changed.revision, changed.version), (1, Some(1)));
    assert!(updates.has_changed().unwrap());
    let published = updates.borrow_and_update().clone();
    assert_eq!(published.revision(), 1);
    let active = &published.snapshot.functions["hello"].active;
    assert_eq!((active.version, active.digest.as_str()), (1, &*digest(1)));
    assert_eq!(active.env["N"], "1");
    assert_eq!(active.limits.timeout_ms, Some(100));
    assert_eq!(
        published.snapshot.routes,
        [Route::parse("/", "hello").unwrap()]
    );
    let json: edge_wire::Snapshot = serde_json::from_slice(&published.json).unwrap();
    assert_eq!(json, published.snapshot);

    assert_eq!(deploy(&store, "hello", 2, &[]).revision, 2);
    assert_eq!(store.set_canary("hello", 1, 10).unwrap().revision, 3);
    assert_eq!(store.rollback("hello", None).unwrap().revision, 4);
    let route = Route::parse("example.com/api", "hello").unwrap();
    assert_eq!(store.put_route(&route).unwrap().revision, 5);
    assert_eq!(store.delete_route(&route).unwrap().revision, 6);
    assert_eq!(store.delete_function("hello").unwrap().revision, 7);
    assert_eq!(store.published().snapshot.revision, 7);
    assert!(store.published().snapshot.functions.is_empty());

    // Refused changes, tokens and node reports leave the revision alone.
    assert!(store.rollback("hello", None).is_err());
    store.add_token(Scope::Read, "r", "edge_r", T0).unwrap();
    let node = store.register_node("n1", "10.0.0.1", T0).unwrap();
    let status = NodeStatus {
        revision: 7,
        healthy: true,
        error: None,
    };
    store.node_status(node, &status, T0).unwrap();
    assert_eq!(store.revision(), 7);
}

#[test]
fn versions_count_up_and_a_deploy_ends_the_canary() {
    let (_dir, store) = open();
    deploy(&store, "api", 1, &[]);
    deploy(&store, "api", 2, &[]);
    store.set_canary("api", 1, 25).unwrap();
    assert_eq!(store.function("api").unwrap().canary, Some((1, 25)));
    let changed = deploy(&store, "api", 3, &[]);
    assert_eq!(changed.version, Some(3));
    let info = store.function("api").unwrap();
    assert_eq!((info.active, info.canary), (3, None));
    let numbers: Vec<u32> = info.versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(info.versions[1].digest, digest(2));
    assert_eq!(info.versions[1].created_unix_ms, T0);
    // Versions are per function.
    assert_eq!(deploy(&store, "other", 9, &[]).version, Some(1));
    let names: Vec<String> = store
        .functions()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["api", "other"]);
}

#[test]
fn rollback_rules() {
    let (_dir, store) = open();
    deploy(&store, "f", 1, &[]);
    let message = invalid(store.rollback("f", None));
    assert!(message.contains("no earlier version"), "{message}");
    deploy(&store, "f", 2, &[]);
    deploy(&store, "f", 3, &[]);
    store.set_canary("f", 1, 5).unwrap();

    // Unset: the highest version below the active one; the canary ends.
    let changed = store.rollback("f", None).unwrap();
    assert_eq!(changed.version, Some(2));
    let info = store.function("f").unwrap();
    assert_eq!((info.active, info.canary), (2, None));
    assert_eq!(store.rollback("f", None).unwrap().version, Some(1));
    assert!(invalid(store.rollback("f", None)).contains("no earlier version"));

    // Any other existing version, later ones included.
    assert_eq!(store.rollback("f", Some(3)).unwrap().version, Some(3));
    assert!(invalid(store.rollback("f", Some(3))).contains("already the active version"));
    let message = not_found(store.rollback("f", Some(7)));
    assert!(
        message.contains("no version 7") && message.contains("1, 2, 3"),
        "{message}"
    );
    assert!(not_found(store.rollback("nope", None)).contains("`nope`"));
    assert_eq!(store.published().snapshot.functions["f"].active.version, 3);
}

#[test]
fn canary_rules() {
    let (_dir, store) = open();
    deploy(&store, "f", 1, &[]);
    deploy(&store, "f", 2, &[]);
    assert!(invalid(store.set_canary("f", 1, 100)).contains("1 to 99"));
    assert!(invalid(store.set_canary("f", 2, 10)).contains("active version"));
    assert!(not_found(store.set_canary("f", 5, 10)).contains("no version 5"));
    assert!(not_found(store.set_canary("g", 1, 10)).contains("`g`"));
    assert_eq!(store.revision(), 2);

    let changed = store.set_canary("f", 1, 10).unwrap();
    assert_eq!(changed.version, Some(1));
    let deployment = &store.published().snapshot.functions["f"];
    let canary = deployment.canary.as_ref().unwrap();
    assert_eq!((canary.version.version, canary.percent), (1, 10));
    assert_eq!(store.published().snapshot.digests().len(), 2);

    let changed = store.set_canary("f", 0, 0).unwrap();
    assert_eq!(changed.version, None);
    assert_eq!(store.function("f").unwrap().canary, None);
    assert!(store.published().snapshot.functions["f"].canary.is_none());
}

#[test]
fn routes_are_normalised_unique_and_moved_between_functions() {
    let (_dir, store) = open();
    deploy(&store, "a", 1, &["Example.com/api/", "/"]);
    let routes = store.routes().unwrap();
    assert_eq!(
        routes,
        [
            Route::parse("/", "a").unwrap(),
            Route::parse("example.com/api", "a").unwrap()
        ]
    );
    // Host NULL (any host) is unique too: the same path moves, it is not added twice.
    deploy(&store, "b", 1, &["/"]);
    let routes = store.routes().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].function, "b");

    let route = Route {
        host: Some("example.com".into()),
        path: "/api".into(),
        function: "b".into(),
        cache: false,
    };
    store.put_route(&route).unwrap();
    assert!(store.routes().unwrap().iter().all(|r| r.function == "b"));

    let missing = Route::parse("/x", "ghost").unwrap();
    assert!(not_found(store.put_route(&missing)).contains("`ghost`"));
    assert!(not_found(store.delete_route(&missing)).contains("no route for */x"));
    let bad = Route {
        host: None,
        path: "api".into(),
        function: "b".into(),
        cache: false,
    };
    assert!(invalid(store.put_route(&bad)).contains("must start with /"));

    // A deploy's routes must name the function deployed, or none.
    let new = NewVersion {
        digest: digest(1),
        routes: vec![Route::parse("/z", "a").unwrap()],
        ..NewVersion::default()
    };
    assert!(invalid(store.new_version("b", &new, T0)).contains("names function `a`"));

    // Deleting a function deletes its routes and versions; a new one starts at 1.
    deploy(&store, "a", 2, &["/a"]);
    store.delete_function("b").unwrap();
    assert_eq!(store.routes().unwrap(), [Route::parse("/a", "a").unwrap()]);
    assert!(not_found(store.function("b")).contains("`b`"));
    assert_eq!(deploy(&store, "b", 3, &[]).version, Some(1));
}

#[test]
fn function_names_and_digests_are_checked() {
    let (_dir, store) = open();
    for bad in ["", "-a", "A", "a_b", "a.b", &"a".repeat(64)] {
        let new = NewVersion {
            digest: digest(1),
            ..NewVersion::default()
        };
        let message = invalid(store.new_version(bad, &new, T0));
        assert!(message.contains("a-z, 0-9 and -"), "{message}");
    }
    let new = NewVersion {
        digest: "ABC".into(),
        ..NewVersion::default()
    };
    assert!(invalid(store.new_version("ok", &new, T0)).contains("sha256"));
    assert_eq!(deploy(&store, &"a".repeat(63), 1, &[]).version, Some(1));
    assert_eq!(deploy(&store, "0-x", 1, &[]).version, Some(1));
}

#[test]
fn tokens_are_stored_as_sha256_only() {
    let (dir, store) = open();
    let token = store
        .add_token(Scope::Admin, "admin", "edge_secret", T0)
        .unwrap();
    assert_eq!(token.token.as_deref(), Some("edge_secret"));
    let read = store
        .add_token(Scope::Read, "ci", "edge_other", T0)
        .unwrap();
    assert_eq!(
        store.authenticate("edge_secret"),
        Some(TokenIdentity {
            id: token.id,
            scope: Scope::Admin
        })
    );
    assert_eq!(store.authenticate("edge_secre"), None);
    let listed = store.tokens().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t.token.is_none()));
    assert_eq!(
        (listed[1].name.as_str(), listed[1].scope),
        ("ci", Scope::Read)
    );

    // The database holds the hash, never the secret.
    let hash: Vec<u8> = store
        .lock()
        .query_row(
            "SELECT hash FROM tokens WHERE id = ?1",
            [token.id as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hash, crate::auth::hash("edge_secret"));
    drop(store);
    let raw = std::fs::read(dir.path().join("cp.db")).unwrap();
    assert!(!raw.windows(11).any(|w| w == b"edge_secret"));

    // The token table is loaded again on open; deleted tokens stop working.
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    assert_eq!(
        store.authenticate("edge_other").map(|t| t.scope),
        Some(Scope::Read)
    );
    store.delete_token(read.id).unwrap();
    assert_eq!(store.authenticate("edge_other"), None);
    assert!(not_found(store.delete_token(read.id)).contains("no token"));
    assert!(invalid(store.delete_token(token.id)).contains("last admin token"));
    assert_eq!(store.token_count(), 1);
}

#[test]
fn nodes_register_by_name_and_report() {
    let (_dir, store) = open();
    let a = store.register_node("a", "10.0.0.1:443", T0).unwrap();
    let b = store.register_node("b", "", T0).unwrap();
    assert_ne!(a, b);
    assert_eq!(store.register_node("a", "10.0.0.9:443", T0 + 5).unwrap(), a);
    let status = NodeStatus {
        revision: 4,
        healthy: false,
        error: Some("bad component".into()),
    };
    store.node_status(a, &status, T0 + 10).unwrap();
    store.touch_node(b, T0 + 1).unwrap();
    assert!(not_found(store.touch_node(99, T0)).contains("register again"));
    assert!(not_found(store.node_status(99, &status, T0)).contains("register again"));
    assert!(invalid(store.register_node("", "", T0)).contains("needs a name"));

    let window = LIVE_WINDOW.as_millis() as u64;
    let nodes = store.nodes(T0 + window).unwrap();
    assert_eq!(nodes.len(), 2);
    let (na, nb) = (&nodes[0], &nodes[1]);
    assert_eq!(
        (na.id, na.address.as_str(), na.revision),
        (a, "10.0.0.9:443", 4)
    );
    assert_eq!(
        (na.healthy, na.error.as_deref()),
        (false, Some("bad component"))
    );
    assert_eq!(na.last_seen_unix_ms, T0 + 10);
    assert!(na.live);
    // b was last heard from exactly one window ago: no longer live.
    assert_eq!(nb.last_seen_unix_ms, T0 + 1);
    assert!(store.nodes(T0 + 1 + window - 1).unwrap()[1].live);
    assert!(!store.nodes(T0 + 1 + window).unwrap()[1].live);
}

#[test]
fn state_survives_reopening() {
    let (dir, store) = open();
    deploy(&store, "f", 1, &["example.com/"]);
    deploy(&store, "f", 2, &[]);
    store.set_canary("f", 1, 30).unwrap();
    let before = store.published();
    drop(store);
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    assert_eq!(store.revision(), 3);
    assert_eq!(store.published().snapshot, before.snapshot);
    assert_eq!(store.published().json, before.json);
    assert_eq!(deploy(&store, "f", 3, &[]).revision, 4);
}

#[test]
fn a_second_process_cannot_open_a_database_in_use() {
    let (dir, store) = open();
    let path = dir.path().join("cp.db");
    match Store::open(&path, None) {
        Err(error @ Error::Locked { .. }) => {
            assert!(error.to_string().contains("another edge-control-plane"))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(store);
    Store::open(&path, None).unwrap();
}

#[test]
fn a_damaged_or_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.db");
    std::fs::write(
        &path,
        b"this is not a database, just some text that is long enough",
    )
    .unwrap();
    let error = Store::open(&path, None).unwrap_err();
    assert!(matches!(error, Error::Open { .. }), "{error:?}");
    assert!(
        error.to_string().contains("restore it from a backup"),
        "{error}"
    );

    let path = dir.path().join("new.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    let error = Store::open(&path, None).unwrap_err();
    assert!(matches!(error, Error::TooNew { .. }), "{error:?}");
}

#[test]
fn purges_travel_in_snapshots_at_their_revision_and_bad_ones_are_named() {
    let (dir, store) = open();
    deploy(&store, "shop", 1, &["/"]);
    let first = store
        .purge(&edge_wire::Purge::SurrogateKey("catalog".into()), T0)
        .unwrap();
    let second = store.purge(&edge_wire::Purge::All, T0).unwrap();
    assert_eq!(second.revision, first.revision + 1);
    let snapshot = store.published().snapshot.clone();
    assert_eq!(snapshot.revision, second.revision);
    assert_eq!(snapshot.purges_from, 0);
    assert_eq!(
        snapshot.purges,
        [
            edge_wire::PurgeRecord {
                revision: first.revision,
                purge: edge_wire::Purge::SurrogateKey("catalog".into()),
            },
            edge_wire::PurgeRecord {
                revision: second.revision,
                purge: edge_wire::Purge::All,
            },
        ]
    );
    assert!(
        invalid(store.purge(&edge_wire::Purge::SurrogateKey(" ".into()), T0))
            .contains("a purge needs")
    );
    assert!(
        invalid(store.purge(&edge_wire::Purge::Url("no host".into()), T0)).contains("cannot purge")
    );
    // A restart reads them back.
    let revision = store.revision();
    drop(store);
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    assert_eq!(store.revision(), revision);
    assert_eq!(store.published().snapshot.purges.len(), 2);
}

#[test]
fn only_the_latest_thousand_purges_are_kept_and_snapshots_say_so() {
    let (_dir, store) = open();
    for n in 0..1005 {
        store
            .purge(&edge_wire::Purge::SurrogateKey(format!("k{n}")), T0)
            .unwrap();
    }
    let snapshot = store.published().snapshot.clone();
    assert_eq!(snapshot.purges.len(), 1000);
    assert_eq!(snapshot.purges[0].revision, snapshot.purges_from + 1);
    assert_eq!(snapshot.purges[999].revision, snapshot.revision);
    let rows: i64 = store
        .read(|tx| Ok(tx.query_row("SELECT count(*) FROM purges", [], |row| row.get(0))?))
        .unwrap();
    assert_eq!(rows, 1000);
}

#[test]
fn outbound_patterns_are_checked_kept_per_version_and_sent_to_nodes() {
    let (dir, store) = open();
    let bad = NewVersion {
        digest: digest(1),
        outbound: vec!["https://api.example.com".into(), "api.example.com".into()],
        ..NewVersion::default()
    };
    let message = invalid(store.new_version("gw", &bad, T0));
    assert!(
        message.contains("\"api.example.com\"") && message.contains("scheme://host[:port]"),
        "{message}"
    );
    assert_eq!(store.revision(), 0, "a refused version changes nothing");

    let allowed = vec![
        "https://api.example.com".into(),
        "http://127.0.0.1:8080".into(),
    ];
    let new = NewVersion {
        digest: digest(1),
        outbound: allowed.clone(),
        ..NewVersion::default()
    };
    store.new_version("gw", &new, T0).unwrap();
    deploy(&store, "gw", 2, &[]);
    let snapshot = store.subscribe().borrow().snapshot.clone();
    assert!(snapshot.functions["gw"].active.outbound.is_empty());
    drop(store);
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    let versions = store.function("gw").unwrap().versions;
    assert_eq!(versions[0].outbound, allowed);
    assert!(versions[1].outbound.is_empty());
    store.rollback("gw", Some(1)).unwrap();
    let snapshot = store.subscribe().borrow().snapshot.clone();
    assert_eq!(snapshot.functions["gw"].active.outbound, allowed);
}

fn open_keyed(dir: &std::path::Path, key: u8) -> Result<Store> {
    let key = crate::secrets::SecretsKey::from_bytes([key; 32]);
    Store::open_with_key(&dir.join("cp.db"), None, Some(Arc::new(key)))
}

#[test]
fn secrets_are_sealed_at_rest_listed_without_values_and_sent_in_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_keyed(dir.path(), 1).unwrap();
    // Before the first deploy: kept, and in the function's entry once it is deployed.
    let changed = store
        .put_secret("gw", "API_TOKEN", b"tok-5f1d2a9c", T0)
        .unwrap();
    assert_eq!(changed.revision, 1);
    deploy(&store, "gw", 1, &["/"]);
    deploy(&store, "other", 2, &["/other"]);
    let snapshot = store.published().snapshot.clone();
    assert_eq!(
        snapshot.functions["gw"].secrets["API_TOKEN"],
        edge_wire::Secret("tok-5f1d2a9c".into())
    );
    assert!(snapshot.functions["other"].secrets.is_empty());
    let listed = store.secrets("gw").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].updated_unix_ms),
        ("API_TOKEN", T0)
    );
    assert!(!serde_json::to_string(&listed).unwrap().contains("tok-"));

    // Rotated: the new value, a new revision.
    let rotated = store
        .put_secret("gw", "API_TOKEN", b"tok-rotated", T0 + 1)
        .unwrap();
    assert!(rotated.revision > changed.revision);
    drop(store);
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(4).any(|w| w == b"tok-"),
            "a value in plain text on disk"
        );
    }

    // Another key: refused by name, nothing changed; the right key opens them again.
    let error = open_keyed(dir.path(), 2).unwrap_err().to_string();
    assert!(
        error.contains("sealed with the secrets key") && error.contains("--secrets-key-file"),
        "{error}"
    );
    let store = open_keyed(dir.path(), 1).unwrap();
    assert_eq!(
        store.published().snapshot.functions["gw"].secrets["API_TOKEN"].0,
        "tok-rotated"
    );

    // Bad names and values, unknown secrets; deleting the function deletes its secrets.
    assert!(invalid(store.put_secret("gw", "2FA", b"x", T0)).contains("not allowed"));
    assert!(invalid(store.put_secret("gw", "BIN", &[0xff, 0xfe], T0)).contains("UTF-8"));
    let big = vec![b'x'; edge_wire::MAX_SECRET_BYTES + 1];
    assert!(invalid(store.put_secret("gw", "BIG", &big, T0)).contains("at most"));
    assert!(not_found(store.delete_secret("gw", "NOPE")).contains("edge secrets list gw"));
    store.delete_function("gw").unwrap();
    assert!(store.secrets("gw").unwrap().is_empty());
    // Without a key, secrets cannot be written.
    let (_dir, keyless) = open();
    assert!(matches!(
        keyless.put_secret("gw", "K", b"v", T0),
        Err(Error::NoSecretsKey)
    ));
}

#[test]
fn kv_writes_are_logged_in_order_and_survive_reopening() {
    use edge_wire::kv::Pair;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    let mut seqs = store.subscribe_kv();
    assert_eq!(store.kv_put("counts", "a", b"1", T0).unwrap().seq, 1);
    assert_eq!(*seqs.borrow_and_update(), 1);
    let bumped = store.kv_increment("counts", "hits", 5, T0).unwrap();
    assert_eq!((bumped.seq, bumped.value), (2, Some(5)));
    assert_eq!(
        store.kv_increment("counts", "hits", 2, T0).unwrap().value,
        Some(7)
    );
    let message = invalid(
        store
            .kv_increment("counts", "a", 1, T0)
            .map(|_| ())
            .and_then(|()| {
                store.kv_put("counts", "text", b"x", T0)?;
                store.kv_increment("counts", "text", 1, T0)
            }),
    );
    assert!(message.contains("does not hold a number"), "{message}");
    let batch = store
        .kv_batch(
            "counts",
            &[Pair {
                key: "b".into(),
                value: vec![0, 1],
            }],
            &["a".into()],
            T0,
        )
        .unwrap();
    assert_eq!(store.kv_get("counts", "b").unwrap(), Some(vec![0, 1]));
    assert_eq!(store.kv_get("counts", "a").unwrap(), None);
    assert_eq!(store.revision(), 0, "KV writes are not deploys");

    // The log: each key once, at its latest value, in order; deletions as no value.
    let changes = store.kv_changes(0).unwrap();
    assert_eq!(changes.seq, batch.seq);
    let seen: Vec<(&str, Option<&[u8]>)> = changes
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.value.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("hits", Some(&b"7"[..])),
            ("text", Some(&b"x"[..])),
            ("b", Some(&[0, 1][..])),
            ("a", None)
        ]
    );
    assert!(changes.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.kv_changes(batch.seq).unwrap().changes, []);
    assert_eq!(
        store.kv_keys("counts", "", None).unwrap().keys,
        ["b", "hits", "text"]
    );
    assert_eq!(store.kv_keys("counts", "h", None).unwrap().keys, ["hits"]);

    // Limits, named.
    assert!(invalid(store.kv_put("Bad", "k", b"v", T0)).contains("namespace"));
    assert!(invalid(store.kv_put("ns", &"k".repeat(513), b"v", T0)).contains("512"));
    let big = vec![0u8; edge_wire::kv::MAX_VALUE_BYTES + 1];
    assert!(invalid(store.kv_put("ns", "k", &big, T0)).contains("at most"));

    drop(store);
    let store = Store::open(&dir.path().join("cp.db"), None).unwrap();
    assert_eq!(store.kv_seq(), batch.seq);
    assert_eq!(store.kv_get("counts", "hits").unwrap(), Some(b"7".to_vec()));
    assert_eq!(
        store.kv_put("counts", "c", b"", T0).unwrap().seq,
        batch.seq + 1
    );
}
