//! A small router: method and path pattern to handler, with `:name` parameters and a final
//! `*rest` wildcard; and what a request knows about its client.

use std::net::SocketAddr;

use http::{Method, StatusCode};

use crate::{Body, IntoResult, Request, Response, Result};

type Handler = Box<dyn Fn(Request) -> Result<Response>>;

/// Routes requests by method and path.
///
/// Patterns are `/`-separated segments: a literal, `:name` (any one segment, available as
/// [`RequestExt::param`]), or, last, `*name` (the rest of the path, possibly empty). Routes
/// are tried in the order added; a path that matches no route is a 404, a path that matches
/// only for other methods a 405 with `Allow`.
///
/// ```
/// use edge::{Request, RequestExt as _, Response, Router};
///
/// fn user(request: Request) -> Response {
///     edge::text(format!("user {}", request.param("id").unwrap()))
/// }
///
/// let router = Router::new()
///     .get("/users/:id", user)
///     .post("/users", |_| edge::text("created"));
///
/// let response = edge::testing::call(|r| router.handle(r), edge::http::Request::get("/users/7").body(().into()).unwrap());
/// assert_eq!(response.into_body().text().unwrap(), "user 7");
///
/// let response = router.handle(edge::http::Request::delete("/users/7").body(().into()).unwrap()).unwrap();
/// assert_eq!(response.status(), 405);
/// assert_eq!(response.headers()["allow"], "GET");
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<(Method, Vec<Segment>, Handler)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// The parameters a [`Router`] pattern captured, in the request's extensions.
// A few pairs: a list beats a hash map, and keeps std's random seeding out of the component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of `:name` (or `*name`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Router {
    /// No routes: everything is a 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `method` requests matching `pattern` to `handler`.
    ///
    /// # Panics
    /// `pattern` does not start with `/`, or has a `*` segment before the last.
    pub fn route<R: IntoResult>(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        let segments = parse(pattern);
        self.routes.push((
            method,
            segments,
            Box::new(move |request| handler(request).into_result()),
        ));
        self
    }

    /// A `GET` route (also answering `HEAD`).
    pub fn get<R: IntoResult>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Method::GET, pattern, handler)
    }

    /// A `POST` route.
    pub fn post<R: IntoResult>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Method::POST, pattern, handler)
    }

    /// A `PUT` route.
    pub fn put<R: IntoResult>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Method::PUT, pattern, handler)
    }

    /// A `PATCH` route.
    pub fn patch<R: IntoResult>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Method::PATCH, pattern, handler)
    }

    /// A `DELETE` route.
    pub fn delete<R: IntoResult>(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route(Method::DELETE, pattern, handler)
    }

    /// Runs the first route matching `request`, with its parameters in the extensions.
    ///
    /// # Errors
    /// The handler's.
    pub fn handle(&self, mut request: Request) -> Result<Response> {
        let path = request.uri().path().to_owned();
        let mut allowed = Vec::new();
        for (method, pattern, handler) in &self.routes {
            let Some(params) = matches(pattern, &path) else {
                continue;
            };
            let head_as_get = request.method() == Method::HEAD && method == Method::GET;
            if method != request.method() && !head_as_get {
                if !allowed.contains(method) {
                    allowed.push(method.clone());
                }
                continue;
            }
            request.extensions_mut().insert(params);
            return handler(request);
        }
        let mut response = if allowed.is_empty() {
            crate::text(format!("no route for {path}\n"))
        } else {
            crate::text(format!("{} is not allowed here\n", request.method()))
        };
        if allowed.is_empty() {
            *response.status_mut() = StatusCode::NOT_FOUND;
        } else {
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            response.headers_mut().insert(
                http::header::ALLOW,
                allow.parse().expect("method names are header-safe"),
            );
        }
        Ok(response)
    }
}

fn parse(pattern: &str) -> Vec<Segment> {
    let rest = pattern
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("route pattern {pattern:?} must start with /"));
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if let Some(name) = part.strip_prefix(':') {
                Segment::Param(name.to_owned())
            } else if let Some(name) = part.strip_prefix('*') {
                assert!(
                    i + 1 == parts.len(),
                    "in route pattern {pattern:?}, *{name} must be the last segment"
                );
                Segment::Rest(name.to_owned())
            } else {
                Segment::Literal((*part).to_owned())
            }
        })
        .collect()
}

fn matches(pattern: &[Segment], path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Literal(literal) => {
                if parts.next()? != literal {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.push((name.clone(), parts.next()?.to_owned()));
            }
            Segment::Rest(name) => {
                debug_assert_eq!(i + 1, pattern.len());
                params.push((name.clone(), parts.collect::<Vec<_>>().join("/")));
                return Some(Params(params));
            }
        }
    }
    parts.next().is_none().then_some(Params(params))
}

/// What the node saw of the client: its address, the HTTP version and the TLS protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The address the connection came from.
    pub addr: Option<SocketAddr>,
    /// `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`.
    pub http_version: Option<String>,
    /// The TLS protocol (`TLSv1_3`), absent for plain HTTP.
    pub tls: Option<String>,
}

/// Request headers the node sets, replacing any the client sent.
pub(crate) mod headers {
    /// `IP:PORT` of the client.
    pub(crate) const CLIENT_ADDR: &str = "edge-client-addr";
    /// `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`.
    pub(crate) const HTTP_VERSION: &str = "edge-http-version";
    /// The TLS protocol version; absent for plain HTTP.
    pub(crate) const TLS: &str = "edge-tls";
}

/// What a handler can ask of a request beyond [`http::Request`]'s own methods.
pub trait RequestExt {
    /// The path parameter `name` captured by a [`Router`] pattern.
    fn param(&self, name: &str) -> Option<&str>;

    /// The client as the node saw it (from the `edge-client-addr`, `edge-http-version` and
    /// `edge-tls` headers, which the node sets and never lets a client set).
    ///
    /// ```
    /// use edge::RequestExt as _;
    /// let request = edge::http::Request::get("/")
    ///     .header("edge-client-addr", "192.0.2.7:4711")
    ///     .header("edge-http-version", "HTTP/2.0")
    ///     .header("edge-tls", "TLSv1_3")
    ///     .body(().into())
    ///     .unwrap();
    /// let client = request.client();
    /// assert_eq!(client.addr.unwrap().port(), 4711);
    /// assert_eq!(client.tls.as_deref(), Some("TLSv1_3"));
    /// ```
    fn client(&self) -> Client;

    /// The query string's parameters, percent-decoded (`+` as space), in order.
    ///
    /// ```
    /// use edge::RequestExt as _;
    /// let request = edge::http::Request::get("/search?q=edge+wasm&page=2").body(().into()).unwrap();
    /// assert_eq!(request.query_pairs(), [("q".into(), "edge wasm".into()), ("page".into(), "2".into())]);
    /// ```
    fn query_pairs(&self) -> Vec<(String, String)>;
}

impl RequestExt for http::Request<Body> {
    fn param(&self, name: &str) -> Option<&str> {
        self.extensions().get::<Params>()?.get(name)
    }

    fn client(&self) -> Client {
        let header = |name| {
            self.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Client {
            addr: header(headers::CLIENT_ADDR).and_then(|a| a.parse().ok()),
            http_version: header(headers::HTTP_VERSION),
            tls: header(headers::TLS),
        }
    }

    fn query_pairs(&self) -> Vec<(String, String)> {
        self.uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect()
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', ..) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 2;
            }
            (byte, ..) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        let mut found = matches(&parse(pattern), path)?.0;
        found.sort();
        Some(found)
    }

    #[test]
    fn patterns_match_segments() {
        assert_eq!(params("/", "/"), Some(vec![]));
        assert_eq!(params("/a/b", "/a/b/"), Some(vec![]));
        assert_eq!(params("/a/b", "/a"), None);
        assert_eq!(params("/a", "/a/b"), None);
        assert_eq!(
            params("/users/:id/posts/:post", "/users/7/posts/x"),
            Some(vec![("id".into(), "7".into()), ("post".into(), "x".into())])
        );
        assert_eq!(
            params("/files/*path", "/files/a/b.txt"),
            Some(vec![("path".into(), "a/b.txt".into())])
        );
        assert_eq!(
            params("/files/*path", "/files"),
            Some(vec![("path".into(), String::new())])
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
