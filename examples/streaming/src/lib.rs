//! A chunked response produced piece by piece: `GET /?chunks=N&delay_ms=M` sends N lines (default
//! 5), flushing each and pausing M ms (default 100) between them, so a client sees each line
//! before the next exists.
use std::time::Duration;

use edge::{Body, Request, RequestExt as _, Response};

fn stream(request: Request) -> edge::Result<Response> {
    let mut chunks = 5u32;
    let mut delay_ms = 100u64;
    for (key, value) in request.query_pairs() {
        match key.as_str() {
            "chunks" => chunks = value.parse().map_err(|_| "chunks: give a number")?,
            "delay_ms" => delay_ms = value.parse().map_err(|_| "delay_ms: give a number")?,
            _ => {}
        }
    }
    let chunks = chunks.min(1000);
    let body = Body::stream(move |out| {
        for i in 1..=chunks {
            writeln!(out, "chunk {i} of {chunks}")?;
            out.flush()?;
            if i < chunks {
                std::thread::sleep(Duration::from_millis(delay_ms.min(10_000)));
            }
        }
        Ok(())
    });
    Ok(edge::http::Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .header("cache-control", "no-store")
        .body(body)?)
}

edge::export!(stream);
