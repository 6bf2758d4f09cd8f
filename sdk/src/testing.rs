//! Running handlers in `cargo test`, on the host, without building wasm.
//!
//! [`call`] runs a handler exactly as the component's export does (an error becomes a 500);
//! [`on_fetch`] stands in for the origins [`fetch`](crate::fetch) would reach; [`set_config`]
//! sets configuration values; [`kv`](crate::kv) namespaces are in-memory maps ([`clear_kv`]).
//! All of it is per thread, so tests run in parallel.
//!
//! ```
//! use edge::{Request, Response};
//!
//! fn proxy(request: Request) -> edge::Result<Response> {
//!     let upstream = edge::fetch(edge::http::Request::get("http://origin.test/data").body(().into())?)?;
//!     Ok(edge::text(format!("origin said {}", upstream.into_body().text()?)))
//! }
//!
//! edge::testing::on_fetch(|request| {
//!     assert_eq!(request.uri().host(), Some("origin.test"));
//!     Ok(edge::text("42"))
//! });
//! let response = edge::testing::call(proxy, edge::http::Request::get("/").body(().into()).unwrap());
//! assert_eq!(response.into_body().text().unwrap(), "origin said 42");
//! ```

use std::cell::RefCell;

use crate::{Handler, Request, Response, Result};

type FetchFn = Box<dyn Fn(Request) -> Result<Response>>;

/// KV namespaces, each an ordered map (no hashing: keeps std's random seeding out).
type KvData = Vec<(String, std::collections::BTreeMap<String, Vec<u8>>)>;

thread_local! {
    static FETCH: RefCell<Option<FetchFn>> = const { RefCell::new(None) };
    static KV: RefCell<KvData> = const { RefCell::new(Vec::new()) };
    // A list, not a hash map: keeps std's random seeding out of components.
    static CONFIG: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `handler` on `request` as a node would: its response, or a 500 for its error.
pub fn call<Args>(handler: impl Handler<Args>, request: Request) -> Response {
    handler.call(request)
}

/// Answers [`fetch`](crate::fetch) on this thread with `origin` (on the host, `fetch` has no
/// network: without this it fails saying so).
pub fn on_fetch(origin: impl Fn(Request) -> Result<Response> + 'static) {
    FETCH.with(|f| *f.borrow_mut() = Some(Box::new(origin)));
}

/// Sets the configuration value `key` for [`config::get`](crate::config::get) on this thread.
pub fn set_config(key: &str, value: &str) {
    CONFIG.with(|c| {
        let mut config = c.borrow_mut();
        config.retain(|(k, _)| k != key);
        config.push((key.to_owned(), value.to_owned()));
    });
}

/// Empties every [`kv`](crate::kv) namespace of this thread.
pub fn clear_kv() {
    KV.with(|kv| kv.borrow_mut().clear());
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn kv_get(namespace: &str, key: &str) -> Option<Vec<u8>> {
    KV.with(|kv| {
        kv.borrow()
            .iter()
            .find(|(n, _)| n == namespace)
            .and_then(|(_, map)| map.get(key).cloned())
    })
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn kv_set(namespace: &str, key: &str, value: Option<Vec<u8>>) {
    KV.with(|kv| {
        let mut kv = kv.borrow_mut();
        let at = match kv.iter().position(|(n, _)| n == namespace) {
            Some(at) => at,
            None => {
                kv.push((namespace.to_owned(), Default::default()));
                kv.len() - 1
            }
        };
        match value {
            Some(value) => kv[at].1.insert(key.to_owned(), value),
            None => kv[at].1.remove(key),
        };
    });
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn kv_keys(namespace: &str) -> Vec<String> {
    KV.with(|kv| {
        kv.borrow()
            .iter()
            .find(|(n, _)| n == namespace)
            .map(|(_, map)| map.keys().cloned().collect())
            .unwrap_or_default()
    })
}

pub(crate) fn config_override(key: &str) -> Option<String> {
    CONFIG.with(|c| {
        c.borrow()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn fetch(request: Request) -> Result<Response> {
    FETCH.with(|f| match &*f.borrow() {
        Some(origin) => origin(request),
        None => Err(format!(
            "edge::fetch({}) has no network on the host; in tests, answer it with edge::testing::on_fetch",
            request.uri()
        )
        .into()),
    })
}
