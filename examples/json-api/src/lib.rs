//! A JSON API: routes with path parameters, JSON in and out, and validation errors as 400 with
//! a JSON body saying what is wrong.
//!
//! - `GET /api/greet/:name` → `{"greeting": "hello, NAME"}`
//! - `POST /api/sum` with `{"numbers": [1, 2, 3]}` → `{"count": 3, "sum": 6}`
//! - `GET /api/items/:id` (id 1 to 1000) → `{"id": 7, "name": "item 7"}`
use edge::http::StatusCode;
use edge::{Request, RequestExt as _, Response, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SumRequest {
    numbers: Vec<f64>,
}

#[derive(Serialize)]
struct SumResponse {
    count: usize,
    sum: f64,
}

/// A 400 with `{"error": message}`.
fn invalid(message: impl Into<String>) -> edge::Result<Response> {
    let mut response = edge::json(&serde_json::json!({ "error": message.into() }))?;
    *response.status_mut() = StatusCode::BAD_REQUEST;
    Ok(response)
}

fn greet(request: Request) -> edge::Result<Response> {
    let name = request.param("name").unwrap_or_default();
    if name.len() > 64 {
        return invalid("name: at most 64 characters");
    }
    edge::json(&serde_json::json!({ "greeting": format!("hello, {name}") }))
}

fn sum(request: Request) -> edge::Result<Response> {
    let body: SumRequest = match request.into_body().json_as() {
        Ok(body) => body,
        Err(e) => return invalid(format!("body: {e}; send {{\"numbers\": [1, 2, 3]}}")),
    };
    if body.numbers.is_empty() {
        return invalid("numbers: give at least one");
    }
    edge::json(&SumResponse {
        count: body.numbers.len(),
        sum: body.numbers.iter().sum(),
    })
}

fn item(request: Request) -> edge::Result<Response> {
    let id = request.param("id").unwrap_or_default();
    match id.parse::<u32>() {
        Ok(id @ 1..=1000) => {
            edge::json(&serde_json::json!({ "id": id, "name": format!("item {id}") }))
        }
        _ => invalid(format!("id: {id:?} is not a number from 1 to 1000")),
    }
}

fn handle(request: Request) -> edge::Result<Response> {
    Router::new()
        .get("/api/greet/:name", greet)
        .post("/api/sum", sum)
        .get("/api/items/:id", item)
        .handle(request)
}

edge::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(request: Request) -> (u16, serde_json::Value) {
        let response = edge::testing::call(handle, request);
        let status = response.status().as_u16();
        (status, response.into_body().json_as().unwrap())
    }

    #[test]
    fn sums_and_refuses_bad_bodies() {
        let ok = edge::http::Request::post("/api/sum")
            .body(r#"{"numbers": [1, 2, 3.5]}"#.into())
            .unwrap();
        assert_eq!(
            call(ok),
            (200, serde_json::json!({ "count": 3, "sum": 6.5 }))
        );
        let (status, body) = call(
            edge::http::Request::post("/api/sum")
                .body("{".into())
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().starts_with("body: "),
            "{body}"
        );
    }

    #[test]
    fn items_need_a_number() {
        let (status, body) = call(
            edge::http::Request::get("/api/items/abc")
                .body(().into())
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("\"abc\""));
    }
}
