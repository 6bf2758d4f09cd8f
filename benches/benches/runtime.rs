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

/// Registers `instantiate/{name}` and `request/{name}` for `function`: instantiation alone, and
/// one whole request (with `headers`) through `Runtime::call`, body read to the end.
fn bench_pair(
    c: &mut Criterion,
    tokio: &tokio::runtime::Runtime,
    (instantiate, request): (&str, &str),
    (runtime, function): &(Runtime, Arc<Function>),
    headers: &[(&str, &str)],
) {
    let request_id: Arc<str> = "bench".into();
    c.bench_function(instantiate, |b| {
        b.to_async(tokio)
            .iter(|| async { runtime.instantiate_once(function).await.unwrap() })
    });
    c.bench_function(request, |b| {
        b.to_async(tokio).iter(|| async {
            let mut request = http::Request::builder().uri("http://bench.example/");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request.body(Empty::<Bytes>::new()).unwrap();
            let served = runtime
                .call(function, request, Scheme::Http, &request_id)
                .await
                .unwrap();
            let body = served.response.into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes().len(), 20);
        })
    });
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let tokio = current_thread();
    for (name, allocator) in [
        ("pooling", Allocator::Pooling),
        ("on-demand", Allocator::OnDemand),
    ] {
        let names = (format!("instantiate/{name}"), format!("request/{name}"));
        bench_pair(c, &tokio, (&names.0, &names.1), &runtime(allocator), &[]);
    }
}

/// The SDK's cost: the hello example built with it against the same function on the raw
/// bindings (`examples/hello-raw`): instantiation, and one whole request.
fn sdk(c: &mut Criterion) {
    let tokio = current_thread();
    for guest in ["hello-raw", "hello"] {
        let names = (
            format!("sdk-instantiate/{guest}"),
            format!("sdk-request/{guest}"),
        );
        let headers = [("user-agent", "bench"), ("accept", "*/*")];
        let loaded = runtime_with(Allocator::Pooling, guest);
        bench_pair(c, &tokio, (&names.0, &names.1), &loaded, &headers);
    }
}

criterion_group!(runtime_benches, benches, sdk);
criterion_main!(runtime_benches);
