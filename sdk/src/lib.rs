//! Write edge functions in Rust.
//!
//! A function is a plain Rust function from an [`http::Request`] (or from nothing, when it
//! needs nothing of the request) to an [`http::Response`], exported as a standard
//! `wasi:http/incoming-handler` component, so what you build runs on this platform's nodes
//! and on any other wasi:http host (`wasmtime serve`, Spin, ...):
//!
//! ```
//! use edge::Response;
//!
//! fn hello() -> Response {
//!     Response::new("hello from the edge\n".into())
//! }
//!
//! edge::export!(hello);
//! ```
//!
//! Build it with `edge build` (or `cargo build --target wasm32-wasip2 --release`).
//!
//! ```text
//! node ─▶ wasi:http incoming-handler.handle ─▶ export! ─▶ Request (headers, lazy Body),
//!      or nothing read at all for a `fn() -> Response`
//!      ─▶ your function ─▶ Response, or Err: a 500, the error logged to stderr
//!      ─▶ headers sent ─▶ the Body written: bytes at once, a stream piece by piece
//! ```
//!
//! The parts:
//! - [`Body`]: bytes, text, JSON and streams, in requests and responses;
//! - [`Router`]: method and path patterns with parameters (`/users/:id`);
//! - [`fetch`]: outbound HTTP through `wasi:http/outgoing-handler`;
//! - [`config`]: the function's configuration values (and secrets); [`info!`] and friends: logs;
//! - [`kv`]: the function's key-value namespaces (`wasi:keyvalue`);
//! - [`RequestExt::client`]: the client's address, HTTP version and TLS, as the node saw them;
//! - [`testing`]: call handlers on the host in `cargo test`, no wasm needed.
//!
//! Handlers may return a [`Response`] or a `Result<Response, E>` for any error `E` that
//! converts into [`Error`] (most do, so `?` works throughout).
#![warn(missing_docs)]

mod body;
pub mod config;
mod fetch;
pub mod kv;
mod log;
mod router;
pub mod testing;
mod wasi;

pub use self::body::Body;
pub use self::fetch::fetch;
pub use self::router::{Client, Params, RequestExt, Router};
pub use http;

/// A request as a function gets it.
pub type Request = http::Request<Body>;
/// A response as a function gives it.
pub type Response = http::Response<Body>;
/// Any error a handler returns: it becomes a 500, and the message goes to the function's log.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a handler may return: a [`Response`], or a `Result` of one.
pub trait IntoResult {
    /// The response, or the error that becomes a 500.
    fn into_result(self) -> Result<Response>;
}

impl IntoResult for Response {
    fn into_result(self) -> Result<Response> {
        Ok(self)
    }
}

impl<E: Into<Error>> IntoResult for std::result::Result<Response, E> {
    fn into_result(self) -> Result<Response> {
        self.map_err(Into::into)
    }
}

/// A function [`export!`] can serve: `fn(Request) -> R`, or `fn() -> R` for one that needs
/// nothing of the request (it is then never read from the node, which makes such a function
/// as cheap to call as one written on the raw bindings). `R` is anything [`IntoResult`].
///
/// ```
/// fn hello() -> edge::Response {
///     edge::text("hello\n")
/// }
/// fn echo_path(request: edge::Request) -> edge::Response {
///     edge::text(request.uri().path().to_owned())
/// }
/// let get = || edge::http::Request::get("/a/b").body(edge::Body::empty()).unwrap();
/// assert_eq!(edge::testing::call(hello, get()).into_body().text().unwrap(), "hello\n");
/// assert_eq!(edge::testing::call(echo_path, get()).into_body().text().unwrap(), "/a/b");
/// ```
pub trait Handler<Args> {
    /// Runs the handler on the request `source` holds, the way a node's request does: an
    /// error becomes a plain 500 (the message is logged, never sent: it may hold details the
    /// client should not see); a request that cannot be read, a 400.
    #[doc(hidden)]
    fn call(self, source: impl Source) -> Response;
}

/// Where a handler's request comes from: the node's (`wasi:http`), or one a test built.
#[doc(hidden)]
pub trait Source {
    /// The whole request, headers read.
    ///
    /// # Errors
    /// A method, URI or header the `http` crate does not accept.
    fn into_request(self) -> std::result::Result<Request, String>;
}

impl Source for Request {
    fn into_request(self) -> std::result::Result<Request, String> {
        Ok(self)
    }
}

impl<F: FnOnce() -> R, R: IntoResult> Handler<()> for F {
    fn call(self, _: impl Source) -> Response {
        // The log line says no more than the error: the node files it under the request's
        // id, which its access log pairs with the method and path. Reading them here would
        // cost every request two more imports to instantiate.
        self()
            .into_result()
            .unwrap_or_else(|error| failed(None, &*error))
    }
}

impl<F: FnOnce(Request) -> R, R: IntoResult> Handler<Request> for F {
    fn call(self, source: impl Source) -> Response {
        let request = match source.into_request() {
            Ok(request) => request,
            Err(why) => {
                log::emit(
                    log::Level::Warn,
                    format_args!("cannot read the request: {why}"),
                );
                let mut response = text(format!("bad request: {why}\n"));
                *response.status_mut() = http::StatusCode::BAD_REQUEST;
                return response;
            }
        };
        // Both are reference-counted: no copy unless there is an error to log.
        let method = request.method().clone();
        let uri = request.uri().clone();
        self(request)
            .into_result()
            .unwrap_or_else(|error| failed(Some(format_args!("{method} {}", uri.path())), &*error))
    }
}

/// The 500 a handler's `error` becomes; the error goes to the log, after `what` was asked.
fn failed(
    what: Option<std::fmt::Arguments<'_>>,
    error: &(dyn std::error::Error + Send + Sync),
) -> Response {
    match what {
        Some(what) => log::emit(log::Level::Error, format_args!("{what}: {error}")),
        None => log::emit(log::Level::Error, format_args!("{error}")),
    }
    let mut response = text("internal error\n");
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// A 200 response with `text` as `text/plain; charset=utf-8`.
pub fn text(text: impl Into<String>) -> Response {
    with_type(Body::from(text.into()), "text/plain; charset=utf-8")
}

/// A 200 response with `value` as `application/json`.
///
/// # Errors
/// `value` cannot be serialised (a map with non-string keys, a failing `Serialize` impl).
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Response> {
    Ok(with_type(Body::json(value)?, "application/json"))
}

fn with_type(body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    // Room for the type and two more (the http crate's default is six): less memory to
    // allocate, and every page of it one the node resets after the request.
    *response.headers_mut() = http::HeaderMap::with_capacity(3);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Exports `handler` (a `fn(Request) -> R`, or a `fn() -> R`, where `R:` [`IntoResult`]; see
/// [`Handler`]) as the component's `wasi:http/incoming-handler`. Use it once, at the crate's
/// top level.
///
/// ```
/// fn handle(request: edge::Request) -> edge::Result<edge::Response> {
///     Ok(edge::text(format!("you asked for {}\n", request.uri().path())))
/// }
/// edge::export!(handle);
/// ```
#[macro_export]
macro_rules! export {
    ($handler:path) => {
        #[doc(hidden)]
        pub struct __EdgeHandler;

        impl $crate::__private::Guest for __EdgeHandler {
            fn handle(
                request: $crate::__private::IncomingRequest,
                response_out: $crate::__private::ResponseOutparam,
            ) {
                $crate::__private::serve(request, response_out, $handler)
            }
        }

        $crate::__private::wasip2::http::proxy::export!(
            __EdgeHandler with_types_in $crate::__private::wasip2
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::log::{Level, emit as log};
    pub use crate::wasi::serve;
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request {
        http::Request::get(path).body(Body::empty()).unwrap()
    }

    #[test]
    fn a_handler_error_is_a_plain_500() {
        let failing = |_: Request| -> Result<Response> { Err("the database is down".into()) };
        let response = testing::call(failing, get("/x"));
        assert_eq!(response.status(), 500);
        // The details are logged, not sent.
        assert_eq!(response.into_body().text().unwrap(), "internal error\n");
    }

    /// A request the node could not give: reading it fails, and says whether it was tried.
    struct Unreadable(std::rc::Rc<std::cell::Cell<bool>>);

    impl Source for Unreadable {
        fn into_request(self) -> std::result::Result<Request, String> {
            self.0.set(true);
            Err("bad header \"x\\u{0}\"".into())
        }
    }

    #[test]
    fn a_handler_without_a_request_never_reads_one() {
        let read = std::rc::Rc::default();
        let response = Handler::call(|| text("hi"), Unreadable(std::rc::Rc::clone(&read)));
        assert!(!read.get(), "the request was read");
        assert_eq!(response.into_body().text().unwrap(), "hi");

        let failing = || -> Result<Response> { Err("no luck".into()) };
        let response = Handler::call(failing, Unreadable(std::rc::Rc::clone(&read)));
        assert!(!read.get(), "the request was read for the error's log line");
        assert_eq!(response.status(), 500);
        assert_eq!(response.into_body().text().unwrap(), "internal error\n");
    }

    #[test]
    fn a_request_that_cannot_be_read_is_a_400_that_says_why() {
        let read = std::rc::Rc::default();
        let response = Handler::call(
            |_: Request| -> Response { unreachable!("the handler ran") },
            Unreadable(std::rc::Rc::clone(&read)),
        );
        assert!(read.get());
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.into_body().text().unwrap(),
            "bad request: bad header \"x\\u{0}\"\n"
        );
    }

    #[test]
    fn handlers_may_return_a_response_or_a_result() {
        let plain = |_: Request| text("plain");
        assert_eq!(
            testing::call(plain, get("/")).into_body().text().unwrap(),
            "plain"
        );
        let io_error = |_: Request| -> Result<Response, std::io::Error> { Ok(text("io")) };
        assert_eq!(
            testing::call(io_error, get("/"))
                .into_body()
                .text()
                .unwrap(),
            "io"
        );
        let json = json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(json.headers()["content-type"], "application/json");
    }
}
