//! Routing by host and by path prefix, from a routes file.

use edge_tests::{NodeBuilder, guest, temp_dir, write_routes};

use crate::client;

async fn get_host(url: &str, host: &str, path: &str) -> (u16, String) {
    let response = client()
        .get(format!("{url}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn routes_by_host_and_longest_path_prefix() {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            r#"
            [functions.hello]
            component = "{hello}"
            [functions.probe]
            component = "{probe}"
            [functions.old]
            component = "{old}"

            [[routes]]
            function = "hello"
            [[routes]]
            path = "/old"
            function = "old"
            [[routes]]
            host = "shop.example"
            function = "probe"
            [[routes]]
            host = "api.example"
            path = "/v1"
            function = "probe"
            "#,
            hello = guest("hello").display(),
            probe = guest("probe").display(),
            old = guest("hello-wasi-0-2-0").display(),
        ),
    );
    let node = NodeBuilder::default().routes(&routes).start();
    let url = &node.url;
    let hello = (200, "hello from the edge\n".to_owned());
    assert_eq!(get_host(url, "any.example", "/").await, hello);
    assert_eq!(get_host(url, "any.example", "/x/y").await, hello);
    // A component built against WASI 0.2.0 runs next to ones built against 0.2.12.
    assert_eq!(
        get_host(url, "any.example", "/old/page").await,
        (200, "hello from wasi 0.2.0\n".to_owned())
    );
    // Prefixes match whole segments.
    assert_eq!(get_host(url, "any.example", "/oldies").await, hello);
    // Host routes win over host-less ones, whatever the case and port.
    assert_eq!(
        get_host(url, "shop.example", "/old").await,
        (200, "probe at /old".to_owned())
    );
    assert_eq!(
        get_host(url, "SHOP.Example:8443", "/cart").await,
        (200, "probe at /cart".to_owned())
    );
    // A host's routes that do not match fall back to the host-less ones.
    assert_eq!(
        get_host(url, "api.example", "/v1/users").await,
        (200, "probe at /v1/users".to_owned())
    );
    assert_eq!(get_host(url, "api.example", "/v2").await, hello);
}

#[tokio::test]
async fn a_request_no_route_matches_gets_404_naming_it() {
    let dir = temp_dir();
    let routes = write_routes(
        dir.path(),
        &format!(
            "[functions.hello]\ncomponent = \"{}\"\n[[routes]]\nhost = \"only.example\"\nfunction = \"hello\"\n",
            guest("hello").display()
        ),
    );
    let node = NodeBuilder::default().routes(&routes).start();
    let (status, body) = get_host(&node.url, "other.example", "/x").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("no function is routed for other.example/x"),
        "{body}"
    );
    assert_eq!(get_host(&node.url, "only.example", "/x").await.0, 200);
}
