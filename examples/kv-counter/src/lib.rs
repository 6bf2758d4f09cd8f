//! A visit counter on KV (`edge deploy --kv counts`, or `kv = ["counts"]` in a routes file):
//! each `GET /count/:name` adds one to `name`'s counter, atomically across every node, and
//! answers the new count; `GET /count` lists every counter. The node the request lands on
//! reads its own copy, so counting is as fast as the write to the control plane.
//!
//! - `GET /count/:name` → `{"name": "home", "count": 3}`
//! - `GET /count` → `{"home": 3, "about": 1}`
use edge::{Request, RequestExt as _, Response, Router};

fn bump(request: Request) -> edge::Result<Response> {
    let name = request.param("name").unwrap_or_default();
    let store = edge::kv::Store::open("")?;
    let count = store.increment(&format!("count:{name}"), 1)?;
    edge::json(&serde_json::json!({ "name": name, "count": count }))
}

fn all(_request: Request) -> edge::Result<Response> {
    let store = edge::kv::Store::open("")?;
    let mut counts = serde_json::Map::new();
    for key in store.keys()? {
        if let Some(name) = key.strip_prefix("count:") {
            let count: u64 = store
                .get_text(&key)?
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            counts.insert(name.to_owned(), count.into());
        }
    }
    edge::json(&counts)
}

fn handle(request: Request) -> edge::Result<Response> {
    Router::new()
        .get("/count", all)
        .get("/count/:name", bump)
        .handle(request)
}

edge::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> serde_json::Value {
        let request = edge::http::Request::get(path).body(().into()).unwrap();
        edge::testing::call(handle, request)
            .into_body()
            .json_as()
            .unwrap()
    }

    #[test]
    fn counts_each_name() {
        edge::testing::clear_kv();
        assert_eq!(get("/count/home")["count"], 1);
        assert_eq!(get("/count/home")["count"], 2);
        assert_eq!(get("/count/about")["count"], 1);
        assert_eq!(get("/count"), serde_json::json!({ "about": 1, "home": 2 }));
    }
}
