//! A caching-friendly reverse proxy to one origin: forwards the request to the origin named by
//! the `ORIGIN` configuration value (`https://origin.example`), drops hop-by-hop headers both
//! ways, tells the origin who asked (`forwarded`), and sets `cache-control` on responses the
//! origin left without one (`CACHE_CONTROL`, default `public, max-age=60` for 200s).
use edge::http::{HeaderValue, header};
use edge::{Request, Response};

/// Headers that belong to one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn proxy(request: Request) -> edge::Result<Response> {
    let origin = edge::config::require("ORIGIN")?;
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", origin.trim_end_matches('/'));
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for name in HOP_BY_HOP {
        parts.headers.remove(*name);
    }
    // What the node told this function about its client is for it, not for the origin.
    let internal: Vec<_> = parts
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("edge-"))
        .cloned()
        .collect();
    for name in internal {
        parts.headers.remove(name);
    }
    // The origin's own host name, not the edge's.
    parts.headers.remove(header::HOST);
    if let Ok(value) = HeaderValue::from_str(&format!("host=\"{host}\";proto=https")) {
        parts.headers.insert(header::FORWARDED, value);
    }
    let mut upstream = Request::from_parts(parts, body);
    *upstream.uri_mut() = url.parse()?;
    let mut response = edge::fetch(upstream)?;
    let headers = response.headers_mut();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers.remove(header::SERVER);
    headers.insert(header::VIA, HeaderValue::from_static("1.1 edge"));
    if response.status() == 200 && !response.headers().contains_key(header::CACHE_CONTROL) {
        let policy =
            edge::config::get("CACHE_CONTROL").unwrap_or_else(|| "public, max-age=60".into());
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(&policy)?);
    }
    Ok(response)
}

edge::export!(proxy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_and_sets_cache_headers() {
        edge::testing::set_config("ORIGIN", "http://origin.test/");
        edge::testing::on_fetch(|request| {
            assert_eq!(request.uri(), "http://origin.test/a?b=1");
            assert!(request.headers().get("connection").is_none());
            assert_eq!(
                request.headers()["forwarded"],
                "host=\"edge.test\";proto=https"
            );
            Ok(edge::http::Response::builder()
                .header("server", "origin/1.0")
                .body("data".into())?)
        });
        let request = edge::http::Request::get("/a?b=1")
            .header("host", "edge.test")
            .header("connection", "close")
            .body(().into())
            .unwrap();
        let response = edge::testing::call(proxy, request);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "public, max-age=60");
        assert_eq!(response.headers()["via"], "1.1 edge");
        assert!(response.headers().get("server").is_none());
        assert_eq!(response.into_body().text().unwrap(), "data");
    }
}
