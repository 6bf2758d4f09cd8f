//! The runtime without a socket: instantiation alone, and one whole request through
//! `Runtime::call`, with the pooling allocator and with on-demand allocation.
//!
//! `cargo bench -p edge-benches --bench runtime`; medians (p50) are in
//! `target/criterion/*/*/new/estimates.json`, and `benches/medians.sh` prints them.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge_node::config::{Allocator, EngineConfig, Limits};
use edge_node::metrics::Metrics;
use edge_node::runtime::{Function, Runtime};
use http_body_util::{BodyExt as _, Empty};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

fn runtime(allocator: Allocator) -> (Runtime, Arc<Function>) {
    runtime_with(allocator, "hello")
}

fn runtime_with(allocator: Allocator, guest: &str) -> (Runtime, Arc<Function>) {
    let config = EngineConfig {
        max_instances: 100,
        allocator,
        ..EngineConfig::default()
    };
    let runtime = Runtime::new(config, None, Arc::new(Metrics::default())).unwrap();
    let function = runtime
        .load_file(
            "hello",
            &edge_tests::guest(guest),
            Limits::default(),
            Default::default(),
        )
        .unwrap();
    (runtime, function)
}

fn benches(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request_id: Arc<str> = "bench".into();
    for (name, allocator) in [
        ("pooling", Allocator::Pooling),
        ("on-demand", Allocator::OnDemand),
    ] {
        let (runtime, function) = runtime(allocator);
        c.bench_function(&format!("instantiate/{name}"), |b| {
            b.to_async(&tokio)
                .iter(|| async { runtime.instantiate_once(&function).await.unwrap() })
        });
        c.bench_function(&format!("request/{name}"), |b| {
            b.to_async(&tokio).iter(|| async {
                let request = http::Request::builder()
                    .uri("http://bench.example/")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let served = runtime
                    .call(&function, request, Scheme::Http, &request_id)
                    .await
                    .unwrap();
                let body = served.response.into_body().collect().await.unwrap();
                assert_eq!(body.to_bytes().len(), 20);
            })
        });
    }
}

/// The SDK's cost: the hello example built with it against the same function on the raw
/// bindings (`examples/hello-raw`): instantiation, and one whole request.
fn sdk(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request_id: Arc<str> = "bench".into();
    for guest in ["hello-raw", "hello"] {
        let (runtime, function) = runtime_with(Allocator::Pooling, guest);
        c.bench_function(&format!("sdk-instantiate/{guest}"), |b| {
            b.to_async(&tokio)
                .iter(|| async { runtime.instantiate_once(&function).await.unwrap() })
        });
        c.bench_function(&format!("sdk-request/{guest}"), |b| {
            b.to_async(&tokio).iter(|| async {
                let request = http::Request::builder()
                    .uri("http://bench.example/")
                    .header("user-agent", "bench")
                    .header("accept", "*/*")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let served = runtime
                    .call(&function, request, Scheme::Http, &request_id)
                    .await
                    .unwrap();
                let body = served.response.into_body().collect().await.unwrap();
                assert_eq!(body.to_bytes().len(), 20);
            })
        });
    }
}

criterion_group!(runtime_benches, benches, sdk);
criterion_main!(runtime_benches);
