//! Serving a function over every protocol the node speaks, and the sandbox it runs in.

use std::time::Duration;

use edge_tests::{NodeBuilder, guest, temp_dir};
use sha2::Digest as _;

use crate::{client, get};

#[tokio::test]
async fn hello_over_http1() {
    let node = NodeBuilder::default().component(&guest("hello")).start();
    let response = client().get(&node.url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "hello from the edge\n");
}

#[tokio::test]
async fn hello_over_h2c_prior_knowledge() {
    let node = NodeBuilder::default().component(&guest("hello")).start();
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = h2c.get(&node.url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "hello from the edge\n");
}

#[tokio::test]
async fn hello_over_tls_with_alpn_h2_and_http1() {
    let dir = temp_dir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let node = NodeBuilder::default()
        .component(&guest("hello"))
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem").display().to_string())
        .arg("--tls-key")
        .arg(dir.path().join("key.pem").display().to_string())
        .start();
    assert!(node.url.starts_with("https://"), "{}", node.url);
    let url = format!("https://localhost:{}/", node.addr().port());
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone())
            .resolve("localhost", node.addr())
            .timeout(Duration::from_secs(30));
        if http1_only {
            builder = builder.http1_only();
        }
        let response = builder.build().unwrap().get(&url).send().await.unwrap();
        assert_eq!(
            response.version(),
            version,
            "ALPN picked the wrong protocol"
        );
        assert_eq!(response.text().await.unwrap(), "hello from the edge\n");
    }
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let node = NodeBuilder::default().component(&guest("probe")).start();
    let url = format!("{}/count", node.url);
    for _ in 0..10 {
        assert_eq!(get(&url).await, (200, "1".to_owned()));
    }
    // And concurrently: no instance is shared between requests in flight either.
    let answers = futures::future::join_all((0..32).map(|_| async { get(&url).await.1 })).await;
    assert!(answers.iter().all(|a| a == "1"), "{answers:?}");
}

#[tokio::test]
async fn a_large_body_streams_through_an_echo_function() {
    let node = NodeBuilder::default().component(&guest("probe")).start();
    // 32 MiB, larger than anything the guest could buffer under a small memory limit... sent
    // as a stream of chunks without a content-length.
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks = 32;
    let expected = {
        let mut hasher = sha2::Sha256::new();
        for _ in 0..chunks {
            hasher.update(&chunk);
        }
        hex::encode(hasher.finalize())
    };
    let stream = futures::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunk.clone()))),
    );
    let response = client()
        .post(format!("{}/echo", node.url))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 32 << 20);
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), expected);
}

#[tokio::test]
async fn the_sandbox_is_empty_by_default() {
    let node = NodeBuilder::default()
        .component(&guest("probe"))
        .env("SECRET_OF_THE_NODE", "do-not-leak")
        .start();
    let (status, body) = get(&format!("{}/sandbox", node.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "env=0 preopens=0 fs=false");
}

#[tokio::test]
async fn the_guest_sees_method_path_authority_and_headers() {
    let node = NodeBuilder::default().component(&guest("probe")).start();
    let response = client()
        .get(format!("{}/info?x=1", node.url))
        .header("x-custom", "yes")
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("method=Method::Get"), "{body}");
    assert!(body.contains("path=/info?x=1"), "{body}");
    assert!(
        body.contains(&format!("authority={}", node.addr())),
        "{body}"
    );
    assert!(body.contains("x-custom: yes"), "{body}");
}
