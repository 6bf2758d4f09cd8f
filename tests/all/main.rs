//! End-to-end tests: real `edge-node` processes on 127.0.0.1, real HTTP clients.

mod artifacts;
mod cache;
mod control_plane;
mod dev;
mod docs;
mod examples;
mod fleet;
mod http3;
mod kv;
mod limits;
mod loading;
mod observability;
mod origin;
mod outbound;
mod routing;
mod sdk;
mod serve;
mod shutdown;

use std::time::Duration;

/// A plain HTTP/1.1 client with a timeout, so a hung node fails the test instead of hanging it.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .http1_only()
        .build()
        .unwrap()
}

/// The `x-request-id` the node gave `response`.
fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("an ASCII request id")
        .to_owned()
}

/// GETs `url`, returning status and body text.
async fn get(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// GETs `url` with a fresh blocking client (for tests that drive processes from a plain
/// thread); (status, body), or (0, the error) when nothing answers.
fn get_blocking(url: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    match client.get(url).send() {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}
