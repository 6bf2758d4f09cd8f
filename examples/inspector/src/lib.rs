//! Echoes the request as JSON: method, URI, headers, the client's address, HTTP version and
//! TLS as the node saw them, and the body's size.
use edge::{Request, RequestExt as _, Response};

fn inspect(request: Request) -> edge::Result<Response> {
    let client = request.client();
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into(),
            )
        })
        .collect();
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let version = format!("{:?}", request.version());
    let body = request.into_body().bytes()?;
    edge::json(&serde_json::json!({
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "client": {
            "addr": client.addr.map(|a| a.to_string()),
            "http_version": client.http_version,
            "tls": client.tls,
        },
        "body_bytes": body.len(),
    }))
}

edge::export!(inspect);
