//! The edge cache, end to end through a node: each test names the section of RFC 9111 (HTTP
//! caching), RFC 5861 (stale-while-revalidate, stale-if-error), RFC 9213 (CDN-Cache-Control)
//! or RFC 9211 (Cache-Status) it checks. The origin is the probe guest's `/origin`, whose
//! response headers come from its query (`h=Name:Value`) and whose body differs on every call.

use std::time::Duration;

use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir, write_routes};

/// A node serving the probe with the cache on, and off for the host `plain.example`.
fn node(extra: &[&str]) -> (NodeProcess, tempfile::TempDir) {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            r#"
            [functions.probe]
            component = "{probe}"
            [[routes]]
            function = "probe"
            cache = true
            [[routes]]
            host = "plain.example"
            function = "probe"
            "#,
            probe = guest("probe").display(),
        ),
    );
    let mut builder = NodeBuilder::default().routes(&routes);
    for arg in extra {
        builder = builder.arg(*arg);
    }
    (builder.start(), dir)
}

/// An answer: status, headers, body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    fn hit(&self) -> bool {
        self.cache_status().starts_with("edge; hit")
    }
}

async fn send(node: &NodeProcess, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = crate::client().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{target}", node.url),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

async fn get(node: &NodeProcess, target: &str) -> Answer {
    send(node, "GET", target, &[]).await
}

/// `/origin` answering with these response headers (`Name:Value`, URL-encoded).
fn origin(headers: &[&str]) -> String {
    let mut target = String::from("/origin?");
    for header in headers {
        target.push_str("h=");
        for byte in header.bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b':' => {
                    target.push(byte as char);
                }
                _ => target.push_str(&format!("%{byte:02X}")),
            }
        }
        target.push('&');
    }
    target
}

/// How many times the probe function was instantiated: its requests that reached it.
async fn origin_calls(node: &NodeProcess) -> u64 {
    let text = reqwest::get(format!("{}/metrics", node.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(r#"edge_instantiate_duration_seconds_count{function="probe"} "#)
        })
        .map_or(0, |n| n.parse().unwrap())
}

fn http_date(at: std::time::SystemTime) -> String {
    // RFC 9110 §5.6.7 IMF-fixdate, computed without a date library.
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[tokio::test]
async fn a_fresh_response_is_reused_with_age_and_cache_status() {
    // RFC 9111 §4.2 (freshness), §5.1 (Age); RFC 9211 §2 (Cache-Status: fwd, stored, hit, ttl).
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: max-age=60"]);
    let first = get(&node, &target).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "edge; fwd=uri-miss; stored; ttl=60");
    let second = get(&node, &target).await;
    assert!(second.hit(), "{}", second.cache_status());
    assert_eq!(second.body, first.body);
    assert!(second.header("age").is_some());
    assert_eq!(second.header("cache-control"), Some("max-age=60"));
    // Each answer has its own request id, not the stored one's.
    assert_ne!(second.header("x-request-id"), first.header("x-request-id"));
    assert_eq!(origin_calls(&node).await, 1);
    // A route without `cache = true` never stores.
    let plain = [("host", "plain.example")];
    let a = send(&node, "GET", &target, &plain).await;
    let b = send(&node, "GET", &target, &plain).await;
    assert_ne!(a.body, b.body);
    assert!(a.header("cache-status").is_none());
}

#[tokio::test]
async fn s_maxage_expires_and_heuristics_give_freshness() {
    let (node, _dir) = node(&[]);
    let an_hour = std::time::SystemTime::now() + Duration::from_secs(3600);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(100_000);
    for headers in [
        // RFC 9111 §5.2.2.10: s-maxage overrides max-age in a shared cache.
        vec!["cache-control: max-age=0, s-maxage=60".to_owned()],
        // RFC 9111 §5.3: Expires.
        vec![format!("expires: {}", http_date(an_hour))],
        // RFC 9111 §4.2.2: heuristic freshness from Last-Modified (a 200 is heuristically
        // cacheable).
        vec![format!("last-modified: {}", http_date(long_ago))],
    ] {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let target = origin(&headers);
        let first = get(&node, &target).await;
        let second = get(&node, &target).await;
        assert!(second.hit(), "{headers:?}: {}", second.cache_status());
        assert_eq!(second.body, first.body, "{headers:?}");
    }
    // RFC 9111 §4.2.1: max-age=0 without s-maxage is stale at once; without validators it is
    // not worth storing.
    let target = origin(&["cache-control: max-age=0"]);
    let (a, b) = (get(&node, &target).await, get(&node, &target).await);
    assert_ne!(a.body, b.body);
}

#[tokio::test]
async fn cdn_cache_control_takes_precedence_for_this_cache() {
    // RFC 9213 §2.1: a cache that uses CDN-Cache-Control ignores Cache-Control.
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: no-store", "cdn-cache-control: max-age=60"]);
    let first = get(&node, &target).await;
    let second = get(&node, &target).await;
    assert!(second.hit(), "{}", second.cache_status());
    assert_eq!(second.body, first.body);
    // The client still sees the function's Cache-Control.
    assert_eq!(second.header("cache-control"), Some("no-store"));

    let target = origin(&["cache-control: max-age=60", "cdn-cache-control: no-store"]);
    let (a, b) = (get(&node, &target).await, get(&node, &target).await);
    assert_ne!(a.body, b.body);
    assert!(
        b.cache_status().contains("detail=not-storable"),
        "{}",
        b.cache_status()
    );
}

#[tokio::test]
async fn private_no_store_and_cookies_are_never_served_to_another_client() {
    let (node, _dir) = node(&[]);
    for headers in [
        // RFC 9111 §5.2.2.7: private, in a shared cache.
        &["cache-control: private, max-age=60"][..],
        // RFC 9111 §5.2.2.5: no-store.
        &["cache-control: no-store, max-age=60"][..],
        // A Set-Cookie response is not shared unless it says public.
        &["cache-control: max-age=60", "set-cookie: session=alice"][..],
    ] {
        let target = origin(headers);
        let first = get(&node, &target).await;
        let second = get(&node, &target).await;
        assert_ne!(second.body, first.body, "{headers:?} was shared");
        assert!(!second.hit(), "{headers:?}");
        assert!(
            second.cache_status().contains("detail="),
            "{}",
            second.cache_status()
        );
    }
    // Explicitly public: stored, but the cookie stays with the client it was meant for.
    let target = origin(&[
        "cache-control: public, max-age=60",
        "set-cookie: session=alice",
    ]);
    let first = get(&node, &target).await;
    assert_eq!(first.header("set-cookie"), Some("session=alice"));
    let second = get(&node, &target).await;
    assert!(second.hit(), "{}", second.cache_status());
    assert_eq!(second.header("set-cookie"), None);
    // RFC 9111 §3.5: a response to a request with Authorization is not stored unless the
    // response allows it explicitly.
    let target = origin(&["cache-control: max-age=60"]).replace("/origin?", "/origin?auth&");
    let auth = [("authorization", "Bearer alice")];
    let first = send(&node, "GET", &target, &auth).await;
    let second = send(&node, "GET", &target, &auth).await;
    assert_ne!(second.body, first.body);
}

#[tokio::test]
async fn no_cache_revalidates_with_etag_and_a_304_updates_the_stored_headers() {
    // RFC 9111 §5.2.2.4 (no-cache: always revalidate), §4.3.1 (If-None-Match from the stored
    // ETag), §4.3.4 (a 304 freshens the stored response and updates its headers).
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: no-cache", "etag: \"v1\""]);
    let first = get(&node, &target).await;
    assert_eq!(first.status, 200);
    let second = get(&node, &target).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "the stored body after the 304");
    assert!(
        second
            .cache_status()
            .starts_with("edge; fwd=stale; fwd-status=304"),
        "{}",
        second.cache_status()
    );
    // The 304's own headers replaced the stored ones.
    assert_ne!(
        second.header("x-origin-call"),
        first.header("x-origin-call")
    );
    assert_eq!(origin_calls(&node).await, 2);
}

#[tokio::test]
async fn must_revalidate_forbids_stale_answers_even_when_the_origin_fails() {
    // RFC 9111 §5.2.2.2 (must-revalidate), and §5.2.2.8 (proxy-revalidate, the same for a
    // shared cache): never served stale, not even for stale-if-error.
    let (node, _dir) = node(&[]);
    for directive in ["must-revalidate", "proxy-revalidate"] {
        let target = origin(&[&format!(
            "cache-control: max-age=1, {directive}, stale-if-error=60"
        )]);
        assert_eq!(get(&node, &target).await.status, 200);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let failed = send(&node, "GET", &target, &[("x-fail", "1")]).await;
        assert_eq!(failed.status, 503, "{directive}: {}", failed.cache_status());
    }
}

#[tokio::test]
async fn vary_on_two_headers_keeps_one_response_per_combination() {
    // RFC 9111 §4.1: a stored response is used only for requests whose Vary-nominated
    // headers match those of the request that stored it.
    let (node, _dir) = node(&[]);
    let target = origin(&[
        "cache-control: max-age=60",
        "vary: accept-language, x-device",
    ]);
    let ask = |language: &'static str, device: &'static str| {
        let node = &node;
        let target = &target;
        async move {
            send(
                node,
                "GET",
                target,
                &[("accept-language", language), ("x-device", device)],
            )
            .await
        }
    };
    let en_phone = ask("en", "phone").await;
    let fr_phone = ask("fr", "phone").await;
    assert_ne!(fr_phone.body, en_phone.body);
    assert!(
        fr_phone.cache_status().contains("fwd=vary-miss"),
        "{}",
        fr_phone.cache_status()
    );
    let en_desk = ask("en", "desk").await;
    assert_ne!(en_desk.body, en_phone.body);
    for (answer, expected) in [
        (ask("en", "phone").await, &en_phone.body),
        (ask("fr", "phone").await, &fr_phone.body),
        (ask("en", "desk").await, &en_desk.body),
    ] {
        assert!(answer.hit(), "{}", answer.cache_status());
        assert_eq!(&answer.body, expected);
    }
    assert_eq!(origin_calls(&node).await, 3);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    // RFC 9110 §9.3.2 / RFC 9111 §4: HEAD is answered with the stored GET's headers.
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: max-age=60"]);
    let stored = get(&node, &target).await;
    let head = send(&node, "HEAD", &target, &[]).await;
    assert!(head.hit(), "{}", head.cache_status());
    assert_eq!(head.body, "");
    assert_eq!(head.header("x-origin-call"), stored.header("x-origin-call"));
    // A HEAD on a cold URL fills it with a GET, which the next GET finds.
    let cold = origin(&["cache-control: max-age=60", "x-cold: 1"]);
    let head = send(&node, "HEAD", &cold, &[]).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let mut found = false;
    for _ in 0..50 {
        let answer = get(&node, &cold).await;
        if answer.hit() {
            assert_eq!(answer.header("x-origin-call"), head.header("x-origin-call"));
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(found, "the HEAD's GET was not stored");
}

#[tokio::test]
async fn a_successful_post_invalidates_the_stored_response() {
    // RFC 9111 §4.4: an unsafe method's non-error response invalidates the target URI.
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: max-age=60"]);
    let stored = get(&node, &target).await;
    assert!(get(&node, &target).await.hit());
    let posted = send(&node, "POST", &target, &[]).await;
    assert_eq!(posted.status, 200);
    let after = get(&node, &target).await;
    assert!(!after.hit(), "{}", after.cache_status());
    assert_ne!(after.body, stored.body);
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    // RFC 5861 §3.
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: max-age=1, stale-while-revalidate=60"]);
    let first = get(&node, &target).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = get(&node, &target).await;
    assert_eq!(stale.body, first.body);
    assert!(
        stale
            .cache_status()
            .contains("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    // The refresh lands in the background: a fresh hit with a new body.
    let mut refreshed = None;
    for _ in 0..100 {
        let answer = get(&node, &target).await;
        if answer.body != first.body {
            refreshed = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refreshed = refreshed.expect("never refreshed");
    assert!(refreshed.hit(), "{}", refreshed.cache_status());
}

#[tokio::test]
async fn stale_if_error_answers_with_the_stale_response_when_the_origin_fails() {
    // RFC 5861 §4.
    let (node, _dir) = node(&[]);
    let target = origin(&["cache-control: max-age=1, stale-if-error=60"]);
    let first = get(&node, &target).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rescued = send(&node, "GET", &target, &[("x-fail", "1")]).await;
    assert_eq!(rescued.status, 200);
    assert_eq!(rescued.body, first.body);
    assert!(
        rescued.cache_status().contains("fwd-status=503")
            && rescued.cache_status().contains("detail=stale-if-error"),
        "{}",
        rescued.cache_status()
    );
    // Without stale-if-error, the failure is the answer.
    let target = origin(&["cache-control: max-age=1"]);
    get(&node, &target).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        send(&node, "GET", &target, &[("x-fail", "1")]).await.status,
        503
    );
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_origin_request() {
    let (node, _dir) = node(&[]);
    let target = format!("{}sleep=500", origin(&["cache-control: max-age=60"]));
    let answers = futures::future::join_all((0..100).map(|_| get(&node, &target))).await;
    let first = &answers[0].body;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.body, first);
    }
    assert_eq!(origin_calls(&node).await, 1);
    let collapsed = answers
        .iter()
        .filter(|a| a.cache_status().contains("collapsed"))
        .count();
    assert!(collapsed > 0, "none waited for the leader");
}

#[tokio::test]
async fn filling_the_cache_past_its_size_evicts_instead_of_growing() {
    // A 1 MiB cache (objects up to 128 KiB): 64 responses of 64 KiB are 4 MiB.
    let (node, _dir) = node(&["--cache-size-mb", "1"]);
    for i in 0..64 {
        let target = format!(
            "{}size=65536&n={i}",
            origin(&["cache-control: max-age=600"])
        );
        let answer = get(&node, &target).await;
        assert_eq!(answer.body.len(), 65536);
    }
    let metrics = reqwest::get(format!("{}/metrics", node.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_cache_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        bytes > 0 && bytes <= 1 << 20,
        "the cache holds {bytes} bytes"
    );
    // Larger than the object limit: passed through, never stored.
    let big = format!("{}size=200000", origin(&["cache-control: max-age=600"]));
    let (a, b) = (get(&node, &big).await, get(&node, &big).await);
    assert_eq!(a.body.len(), 200_000);
    assert_ne!(a.body, b.body);
}

#[tokio::test]
async fn surrogate_keys_are_stripped_and_purge_by_key_url_and_function() {
    let (node, _dir) = node(&[]);
    let tagged = origin(&["cache-control: max-age=60", "surrogate-key: red blue"]);
    let tagged_too = origin(&["cache-control: max-age=60", "cache-tag: blue,green"]);
    let untagged = origin(&["cache-control: max-age=60"]);
    for target in [&tagged, &tagged_too, &untagged] {
        let answer = get(&node, target).await;
        assert!(answer.header("surrogate-key").is_none());
        assert!(answer.header("cache-tag").is_none());
        assert!(get(&node, target).await.hit());
    }
    let purge = |body: &'static str| {
        let url = format!("{}/cache/purge", node.admin);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(purge(r#"{"surrogate_key":"blue"}"#).await.0, 200);
    assert!(!get(&node, &tagged).await.hit());
    assert!(!get(&node, &tagged_too).await.hit());
    assert!(get(&node, &untagged).await.hit());

    let url = format!(r#"{{"url":"http://{}{}"}}"#, node.addr(), untagged);
    let response = reqwest::Client::new()
        .post(format!("{}/cache/purge", node.admin))
        .body(url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!get(&node, &untagged).await.hit());

    assert!(get(&node, &untagged).await.hit());
    assert_eq!(purge(r#"{"function":"probe"}"#).await.0, 200);
    assert!(!get(&node, &untagged).await.hit());

    let (status, text) = purge(r#"{"everything":true}"#).await;
    assert_eq!(status, 400);
    assert!(text.contains(r#"{"all": true}"#), "{text}");
}
