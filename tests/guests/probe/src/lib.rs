//! A function with one behaviour per path, for the end-to-end tests: echo, counters, traps,
//! endless loops, memory hogs, guest logging, sleeps and a look at its own sandbox. It uses Rust
//! std freely, so it also imports the `wasi:cli` and `wasi:filesystem` interfaces that real
//! toolchains pull in beyond the `wasi:http/proxy` world.
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

// The configuration interface nodes provide (`wasi:config/store`, the version wasmtime 48 links).
wit_bindgen::generate!({
    inline: "
        package wasi:config@0.2.0-rc.1;
        interface store {
            variant error { upstream(string), io(string) }
            get: func(key: string) -> result<option<string>, error>;
            get-all: func() -> result<list<tuple<string, string>>, error>;
        }
        world imports { import store; }
    ",
});

// KV (`wasi:keyvalue` 0.2.0-draft: store and atomics), as nodes provide it.
mod kv {
    wit_bindgen::generate!({
        inline: "
            package wasi:keyvalue@0.2.0-draft;
            interface store {
                variant error { no-such-store, access-denied, other(string) }
                record key-response { keys: list<string>, cursor: option<u64> }
                open: func(identifier: string) -> result<bucket, error>;
                resource bucket {
                    get: func(key: string) -> result<option<list<u8>>, error>;
                    set: func(key: string, value: list<u8>) -> result<_, error>;
                    delete: func(key: string) -> result<_, error>;
                    exists: func(key: string) -> result<bool, error>;
                    list-keys: func(cursor: option<u64>) -> result<key-response, error>;
                }
            }
            interface atomics {
                use store.{bucket, error};
                increment: func(bucket: borrow<bucket>, key: string, delta: u64) -> result<u64, error>;
            }
            world imports { import store; import atomics; }
        ",
    });
    pub use self::wasi::keyvalue::{atomics, store};
}

/// Survives between calls only if the host reuses an instance, which it must never do.
static CALLS: AtomicU32 = AtomicU32::new(0);

struct Probe;

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        match path {
            "/echo" => echo(request, response_out),
            "/len" => {
                // Reads the whole body before answering, so a failed read fails the request.
                let incoming = request.consume().unwrap();
                let mut input = incoming.stream().unwrap();
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut input, &mut body)
                    .expect("reading the request body");
                respond(response_out, 200, format!("{}", body.len()));
            }
            "/count" => {
                let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                respond(response_out, 200, format!("{n}"));
            }
            "/trap" => core::arch::wasm32::unreachable(),
            "/panic" => panic!("the probe was asked to panic"),
            "/loop" => loop {
                std::hint::black_box(CALLS.load(Ordering::Relaxed));
            },
            "/hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/log" => {
                println!("to stdout from the guest");
                eprintln!("to stderr from the guest");
                respond(response_out, 200, "logged".into());
            }
            "/sleep" => {
                let ms: u64 = query
                    .strip_prefix("ms=")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(response_out, 200, format!("slept {ms}ms"));
            }
            "/sandbox" => {
                let env = std::env::vars().count();
                let preopens = wasip2::filesystem::preopens::get_directories().len();
                let fs = std::fs::read("/etc/hostname").is_ok();
                respond(
                    response_out,
                    200,
                    format!("env={env} preopens={preopens} fs={fs}"),
                );
            }
            "/origin" => origin(&request, query, response_out),
            p if p.ends_with("/fetch") => fetch(query, response_out),
            p if p.ends_with("/kv") => kv_call(query, response_out),
            "/config" => {
                // Every value, as wasi:config/store and as the environment see them.
                let mut text = String::new();
                let mut all = wasi::config::store::get_all().unwrap();
                all.sort();
                for (key, value) in all {
                    let again = wasi::config::store::get(&key).unwrap();
                    assert_eq!(again.as_deref(), Some(value.as_str()));
                    let env = std::env::var(&key).unwrap_or_default();
                    text.push_str(&format!("{key}={value} env={env}\n"));
                }
                let missing = wasi::config::store::get("NOT_SET").unwrap();
                text.push_str(&format!("NOT_SET={missing:?}\n"));
                respond(response_out, 200, text);
            }
            "/info" => {
                let mut text = format!(
                    "method={:?}\npath={}\nauthority={}\n",
                    request.method(),
                    path_with_query,
                    request.authority().unwrap_or_default(),
                );
                for (name, value) in request.headers().entries() {
                    text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
                }
                respond(response_out, 200, text);
            }
            _ => respond(response_out, 200, format!("probe at {path}")),
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, text: String) {
    let resp = OutgoingResponse::new(Fields::new());
    resp.set_status_code(status).unwrap();
    let body = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let mut stream = body.write().unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    stream.flush().unwrap();
    drop(stream);
    OutgoingBody::finish(body, None).unwrap();
}

/// Streams the request body back as it arrives, in bounded chunks, so a body larger than the
/// guest's memory still passes through.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let incoming = request.consume().unwrap();
    let mut input = incoming.stream().unwrap();
    let resp = OutgoingResponse::new(Fields::new());
    let body = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    let mut output = body.write().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match std::io::Read::read(&mut input, &mut buf) {
            Ok(0) => break,
            Ok(n) => output.write_all(&buf[..n]).unwrap(),
            Err(e) => panic!("reading the request body failed: {e}"),
        }
    }
    output.flush().unwrap();
    drop(output);
    drop(input);
    IncomingBody::finish(incoming);
    OutgoingBody::finish(body, None).unwrap();
}

/// An origin for the cache tests, shaped by its query: `h=Name:Value` adds a response header
/// (any number), `status=N` sets the status, `sleep=MS` answers after a pause. The body is
/// `origin <random number>` (padded with dots to `size=N` bytes), different on every call and
/// also sent as `x-origin-call`, so a test can tell a stored answer from a new one. A request whose `If-None-Match` matches the `ETag` it would send gets a 304; a
/// request with `x-fail` gets a 503.
fn origin(request: &IncomingRequest, query: &str, out: ResponseOutparam) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut status = 200;
    let mut sleep_ms = 0;
    let mut size: usize = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match name {
            "h" => {
                if let Some((header, value)) = value.split_once(':') {
                    headers.push((header.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            "status" => status = value.parse().unwrap_or(200),
            "sleep" => sleep_ms = value.parse().unwrap_or(0),
            "size" => size = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    if sleep_ms > 0 {
        wasip2::clocks::monotonic_clock::subscribe_duration(sleep_ms * 1_000_000).block();
    }
    let request_headers = request.headers().entries();
    let sent = |name: &str| {
        request_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    if sent("x-fail").is_some() {
        return respond(out, 503, "origin failed on purpose".into());
    }
    let etag = headers
        .iter()
        .find(|(n, _)| n == "etag")
        .map(|(_, v)| v.clone());
    let not_modified = etag.is_some() && sent("if-none-match") == etag;
    let call = wasip2::random::random::get_random_u64();
    let fields = Fields::new();
    fields
        .append("x-origin-call", call.to_string().as_bytes())
        .unwrap();
    for (name, value) in &headers {
        fields
            .append(name, value.as_bytes())
            .unwrap_or_else(|e| panic!("header {name}: {e:?}"));
    }
    let resp = OutgoingResponse::new(fields);
    resp.set_status_code(if not_modified { 304 } else { status })
        .unwrap();
    let body = resp.body().unwrap();
    ResponseOutparam::set(out, Ok(resp));
    if !not_modified {
        let stream = body.write().unwrap();
        let mut text = format!("origin {call}");
        // Padding up to `size` bytes, written in pieces the host accepts.
        text.extend(std::iter::repeat_n('.', size.saturating_sub(text.len())));
        for piece in text.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(piece).unwrap();
        }
        stream.flush().unwrap();
    }
    OutgoingBody::finish(body, None).unwrap();
}

/// Outbound HTTP: `url=U` (percent-encoded, absolute) fetched with GET `n=N` times in a row
/// (default 1; each body read to its end), `method=M` for another method with the body
/// `body=B`, `first_byte_ms=T` as the request option. Answers 200 with the last response's
/// status, `cache-status` and body, or 502 with `error: CODE` (wasi:http's error code) for the
/// first fetch that failed.
fn fetch(query: &str, out: ResponseOutparam) {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Method, OutgoingRequest, RequestOptions, Scheme};
    let mut url = String::new();
    let mut n = 1;
    let mut method = Method::Get;
    let mut body = String::new();
    let mut first_byte_ms = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match name {
            "url" => url = value,
            "n" => n = value.parse().unwrap(),
            "method" => method = Method::Other(value),
            "body" => body = value,
            "first_byte_ms" => first_byte_ms = Some(value.parse::<u64>().unwrap()),
            _ => {}
        }
    }
    let (scheme, rest) = url.split_once("://").expect("url=scheme://host/path");
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let mut last = String::new();
    for i in 0..n {
        let request = OutgoingRequest::new(Fields::new());
        request.set_method(&method).unwrap();
        request
            .set_scheme(Some(&match scheme {
                "https" => Scheme::Https,
                "http" => Scheme::Http,
                other => Scheme::Other(other.into()),
            }))
            .unwrap();
        request.set_authority(Some(authority)).unwrap();
        request.set_path_with_query(Some(path)).unwrap();
        let outgoing = request.body().unwrap();
        let options = first_byte_ms.map(|ms| {
            let options = RequestOptions::new();
            options
                .set_first_byte_timeout(Some(ms * 1_000_000))
                .unwrap();
            options
        });
        let future = match outgoing_handler::handle(request, options) {
            Ok(future) => future,
            Err(code) => return respond(out, 502, format!("error: {code:?} (fetch {i})\n")),
        };
        // A refused request's body has nowhere to go: writing it fails, and the answer below
        // says why.
        if let Ok(mut stream) = outgoing.write() {
            if stream.write_all(body.as_bytes()).is_ok() {
                let _ = stream.flush();
            }
        }
        let _ = OutgoingBody::finish(outgoing, None);
        future.subscribe().block();
        let response = match future.get().unwrap().unwrap() {
            Ok(response) => response,
            Err(code) => return respond(out, 502, format!("error: {code:?} (fetch {i})\n")),
        };
        let cache_status = response
            .headers()
            .get("cache-status")
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let incoming = response.consume().unwrap();
        let mut text = Vec::new();
        {
            let mut stream = incoming.stream().unwrap();
            std::io::Read::read_to_end(&mut stream, &mut text).unwrap();
        }
        IncomingBody::finish(incoming);
        last = format!(
            "status: {}\ncache-status: {cache_status}\n\n{}",
            response.status(),
            String::from_utf8_lossy(&text)
        );
    }
    respond(out, 200, last);
}

/// KV: `op=get|set|incr|delete|list` on `ns` (empty: the function's default namespace) and
/// `key`, with `value` or `delta`. Answers 200 with the result, or 500 with `error: ...`.
fn kv_call(query: &str, out: ResponseOutparam) {
    let mut op = String::new();
    let mut ns = String::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut delta = 1;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match name {
            "op" => op = v,
            "ns" => ns = v,
            "key" => key = v,
            "value" => value = v,
            "delta" => delta = v.parse().unwrap(),
            _ => {}
        }
    }
    let bucket = match kv::store::open(&ns) {
        Ok(bucket) => bucket,
        Err(e) => return respond(out, 500, format!("error: {e:?}\n")),
    };
    let result = match op.as_str() {
        "get" => bucket.get(&key).map(|v| match v {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => "(none)".into(),
        }),
        "set" => bucket.set(&key, value.as_bytes()).map(|()| "ok".into()),
        "delete" => bucket.delete(&key).map(|()| "ok".into()),
        "incr" => kv::atomics::increment(&bucket, &key, delta).map(|n| n.to_string()),
        "list" => {
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                match bucket.list_keys(cursor) {
                    Ok(page) => {
                        all.extend(page.keys);
                        match page.cursor {
                            Some(next) => cursor = Some(next),
                            None => break Ok(all.join(",")),
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
        }
        other => return respond(out, 400, format!("unknown op {other:?}\n")),
    };
    match result {
        Ok(text) => respond(out, 200, text),
        Err(e) => respond(out, 500, format!("error: {e:?}\n")),
    }
}

/// `%XX` escapes and `+` as space.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

wasip2::http::proxy::export!(Probe);
