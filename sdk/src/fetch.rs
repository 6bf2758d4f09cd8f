//! Outbound HTTP: `fetch` sends a request to an origin through `wasi:http/outgoing-handler`.

use crate::{Request, Response, Result};

/// Sends `request` (an absolute `http://` or `https://` URI) and returns the origin's
/// response, whose body streams as it is read. The node decides which origins a function
/// may reach; a refused one is an error naming the destination.
///
/// # Errors
/// The URI is not absolute, the node refused the destination, or the connection or the
/// exchange failed (the message has wasi:http's error code).
///
/// ```
/// # edge::testing::on_fetch(|_| Ok(edge::text("{}")));
/// let request = edge::http::Request::get("https://origin.example/api").body(().into()).unwrap();
/// let response = edge::fetch(request).unwrap();
/// assert!(response.status().is_success());
/// ```
pub fn fetch(request: Request) -> Result<Response> {
    if request.uri().scheme().is_none() || request.uri().authority().is_none() {
        return Err(format!(
            "edge::fetch needs an absolute URI like https://origin.example/path, not {}",
            request.uri()
        )
        .into());
    }
    #[cfg(target_arch = "wasm32")]
    {
        crate::wasi::fetch(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::fetch(request)
    }
}
