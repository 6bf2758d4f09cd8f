//! An API gateway: requests need `Authorization: Bearer TOKEN` matching the `GATEWAY_TOKEN`
//! secret (`edge secrets put gateway GATEWAY_TOKEN`; in a routes file, `env`), and are then
//! passed to the origin `UPSTREAM` (which the function must be allowed to reach:
//! `--allow-outbound`), without the token and with `x-gateway: edge`. Others get a 401 with a
//! JSON body and `www-authenticate`.
use edge::http::{HeaderValue, StatusCode, header};
use edge::{Request, Response};

/// Compares without stopping at the first difference, so timing tells nothing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn gateway(request: Request) -> edge::Result<Response> {
    let expected = edge::config::require("GATEWAY_TOKEN")?;
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|token| same(token.as_bytes(), expected.as_bytes())) {
        let mut response = edge::json(&serde_json::json!({
            "error": "send Authorization: Bearer TOKEN with a valid token"
        }))?;
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"edge\""),
        );
        return Ok(response);
    }
    let upstream = edge::config::require("UPSTREAM")?;
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstream.trim_end_matches('/'));
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::HOST);
    parts
        .headers
        .insert("x-gateway", HeaderValue::from_static("edge"));
    let mut forwarded = Request::from_parts(parts, body);
    *forwarded.uri_mut() = url.parse()?;
    edge::fetch(forwarded)
}

edge::export!(gateway);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: Option<&str>) -> Response {
        edge::testing::set_config("GATEWAY_TOKEN", "t0k");
        edge::testing::set_config("UPSTREAM", "http://backend.test");
        edge::testing::on_fetch(|request| {
            assert_eq!(request.uri(), "http://backend.test/v1/items?x=1");
            assert!(request.headers().get("authorization").is_none());
            assert_eq!(request.headers()["x-gateway"], "edge");
            Ok(edge::text("items"))
        });
        let mut request = edge::http::Request::get("/v1/items?x=1");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        edge::testing::call(gateway, request.body(().into()).unwrap())
    }

    #[test]
    fn only_the_token_passes() {
        assert_eq!(
            call(Some("Bearer t0k")).into_body().text().unwrap(),
            "items"
        );
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Basic t0k"),
            Some("Bearer t0k2"),
        ] {
            let response = call(bad);
            assert_eq!(response.status(), 401, "{bad:?}");
            assert!(response.headers().contains_key("www-authenticate"));
        }
    }
}
