//! Between `http` types and `wasi:http`: the export's entry point, and `fetch` on wasm.

use std::any::Any;
use std::io::{self, Read};

use http::header::CONTENT_LENGTH;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream};

use crate::log::{Level, emit};
use crate::router::headers;
use crate::{Body, Handler, Request, Response, Source};

/// The component's `incoming-handler.handle`: runs `handler` (which reads the request from
/// `incoming` if it takes one), sends the response headers, then writes the body.
pub fn serve<Args>(
    incoming: IncomingRequest,
    response_out: ResponseOutparam,
    handler: impl Handler<Args>,
) {
    respond(response_out, handler.call(incoming));
}

impl Source for IncomingRequest {
    fn into_request(self) -> Result<Request, String> {
        request(self)
    }
}

fn request(incoming: IncomingRequest) -> Result<Request, String> {
    let method = from_wasi_method(incoming.method())?;
    let path = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let mut uri = http::Uri::builder();
    let authority = incoming.authority();
    if let Some(authority) = &authority {
        let scheme = match incoming.scheme() {
            Some(Scheme::Https) => "https".to_owned(),
            Some(Scheme::Other(other)) => other,
            Some(Scheme::Http) | None => "http".to_owned(),
        };
        uri = uri.scheme(scheme.as_str()).authority(authority.as_str());
    }
    let uri = uri
        .path_and_query(path)
        .build()
        .map_err(|e| format!("bad URI: {e}"))?;
    let fields = incoming.headers();
    let entries = fields.entries();
    drop(fields);
    let mut map = http::HeaderMap::with_capacity(entries.len() + 1);
    let mut version = http::Version::HTTP_11;
    for (name, value) in entries {
        // The value's bytes move into the header as they are: no copy.
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_maybe_shared(bytes::Bytes::from(value)),
        ) else {
            return Err(format!("bad header {name:?}"));
        };
        if name == headers::HTTP_VERSION {
            version = match value.as_bytes() {
                b"HTTP/1.0" => http::Version::HTTP_10,
                b"HTTP/2.0" => http::Version::HTTP_2,
                b"HTTP/3.0" => http::Version::HTTP_3,
                _ => http::Version::HTTP_11,
            };
        }
        map.append(name, value);
    }
    // wasi:http carries the host as the authority, not as a header; handlers expect both.
    if let Some(authority) = authority
        && !map.contains_key(http::header::HOST)
        && let Ok(value) = http::HeaderValue::from_str(&authority)
    {
        map.insert(http::header::HOST, value);
    }
    let mut request = http::Request::new(Body::from_reader(Lazy::Request(Some(incoming))));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(request)
}

fn respond(response_out: ResponseOutparam, response: Response) {
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    // 204 and 304 carry no body, so no length either.
    let length = if status == 204 || status == 304 {
        None
    } else {
        length(&parts.headers, &body)
    };
    let fields = to_fields(&parts.headers, length);
    let outgoing = OutgoingResponse::new(fields);
    if status != 200 {
        // 200 is a new response's status already.
        let _ = outgoing.set_status_code(status);
    }
    let Ok(outgoing_body) = outgoing.body() else {
        unreachable!("a new response has its body")
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    let Ok(mut stream) = outgoing_body.write() else {
        unreachable!("a new body has its stream")
    };
    let written = match body.bytes_in_memory() {
        Some(bytes) if bytes.len() <= WRITE_AND_FLUSH_MAX => write_small(&stream, bytes),
        _ => body.write_to(&mut stream),
    };
    drop(stream);
    match written {
        Ok(()) => {
            if let Err(e) = OutgoingBody::finish(outgoing_body, None) {
                emit(
                    Level::Error,
                    format_args!("cannot finish the response: {e:?}"),
                );
            }
        }
        // Not finished: the node ends the response as broken, not as complete.
        Err(e) => emit(Level::Error, format_args!("response body cut off: {e}")),
    }
}

/// The most bytes one `blocking-write-and-flush` takes.
const WRITE_AND_FLUSH_MAX: usize = 4096;

/// Writes a small body held in memory with one host call, where `io::Write` makes three
/// (check, write, flush); larger ones go through `io::Write`, which the host lets write more
/// at once.
fn write_small(stream: &OutputStream, bytes: &[u8]) -> io::Result<()> {
    stream
        .blocking_write_and_flush(bytes)
        .map_err(|e| io::Error::other(format!("{e:?}")))
}

/// The `content-length` to declare: a body's whose length is known (bytes in memory), unless
/// the handler set one.
fn length(headers: &http::HeaderMap, body: &Body) -> Option<u64> {
    body.len_hint()
        .filter(|&len| len > 0 && !headers.contains_key(CONTENT_LENGTH))
}

/// Headers, and `length` as `content-length`, as wasi fields; a header wasi:http forbids
/// (`connection`, `transfer-encoding`, ...) is left out and logged: the node manages those
/// itself.
fn to_fields(map: &http::HeaderMap, length: Option<u64>) -> Fields {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(map.len() + 1);
    entries.extend(
        map.iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())),
    );
    if let Some(length) = length {
        entries.push((
            CONTENT_LENGTH.as_str().to_owned(),
            length.to_string().into_bytes(),
        ));
    }
    // One host call for the usual case.
    if let Ok(fields) = Fields::from_list(&entries) {
        return fields;
    }
    // Find the headers the host refuses, one by one. Only `from-list` again: every other
    // import a component has costs each of its instantiations, that is every request.
    let mut accepted = Vec::with_capacity(entries.len());
    for entry in entries {
        match Fields::from_list(std::slice::from_ref(&entry)) {
            Ok(_) => accepted.push(entry),
            Err(e) => emit(
                Level::Warn,
                format_args!("header {} left out ({e:?}): the node sets it", entry.0),
            ),
        }
    }
    Fields::from_list(&accepted).unwrap_or_else(|e| {
        emit(
            Level::Warn,
            format_args!("response headers left out ({e:?})"),
        );
        Fields::from_list(&[]).unwrap_or_else(|_| unreachable!("no headers are always valid"))
    })
}

/// A body arriving from the node: its stream, then the body resource, then the request or
/// response it belongs to (dropped in that order, children first).
struct Incoming {
    stream: InputStream,
    _body: IncomingBody,
    _parent: Box<dyn Any>,
}

impl Incoming {
    fn new(body: IncomingBody, parent: Box<dyn Any>) -> Result<Self, String> {
        let stream = body
            .stream()
            .map_err(|()| "the body stream was already taken".to_owned())?;
        Ok(Self {
            stream,
            _body: body,
            _parent: parent,
        })
    }
}

/// A request body not yet taken from the host.
enum Lazy {
    Request(Option<IncomingRequest>),
    Body(Incoming),
}

impl Read for Lazy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Lazy::Request(request) = self {
            let request = request
                .take()
                .ok_or_else(|| io::Error::other("request body gone"))?;
            let body = request
                .consume()
                .map_err(|()| io::Error::other("the request body was already taken"))?;
            *self = Lazy::Body(Incoming::new(body, Box::new(request)).map_err(io::Error::other)?);
        }
        match self {
            Lazy::Body(body) => body.read(buf),
            Lazy::Request(_) => unreachable!("taken above"),
        }
    }
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.stream, buf)
    }
}

fn from_wasi_method(method: Method) -> Result<http::Method, String> {
    Ok(match method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => {
            http::Method::from_bytes(other.as_bytes()).map_err(|e| format!("bad method: {e}"))?
        }
    })
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn to_wasi_method(method: &http::Method) -> Method {
    match *method {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::CONNECT => Method::Connect,
        http::Method::OPTIONS => Method::Options,
        http::Method::TRACE => Method::Trace,
        http::Method::PATCH => Method::Patch,
        ref other => Method::Other(other.as_str().to_owned()),
    }
}

/// [`crate::fetch`] on wasm: one `outgoing-handler.handle`, the request body written while
/// the origin answers, the response body left streaming.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn fetch(request: Request) -> crate::Result<Response> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::OutgoingRequest;

    let uri = request.uri().clone();
    let failed = |what: String| -> crate::Error { format!("fetch {uri}: {what}").into() };
    let (parts, body) = request.into_parts();
    let fields = to_fields(&parts.headers, length(&parts.headers, &body));
    let outgoing = OutgoingRequest::new(fields);
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        Some(other) => Scheme::Other(other.to_owned()),
        None => unreachable!("fetch checked the URI is absolute"),
    };
    let set = outgoing.set_method(&to_wasi_method(&parts.method)).is_ok()
        && outgoing.set_scheme(Some(&scheme)).is_ok()
        && outgoing
            .set_authority(uri.authority().map(|a| a.as_str()))
            .is_ok()
        && outgoing
            .set_path_with_query(uri.path_and_query().map(|p| p.as_str()))
            .is_ok();
    if !set {
        return Err(failed(
            "the method, scheme, host or path is not valid".into(),
        ));
    }
    let Ok(outgoing_body) = outgoing.body() else {
        unreachable!("a new request has its body")
    };
    let future = outgoing_handler::handle(outgoing, None).map_err(|e| failed(describe(&e)))?;
    {
        let Ok(mut stream) = outgoing_body.write() else {
            unreachable!("a new body has its stream")
        };
        if let Err(e) = body.write_to(&mut stream) {
            drop(stream);
            // The body stops when the request failed (a refused origin, say): that is the
            // error worth reporting.
            return Err(match wait(&future) {
                Err(code) => failed(describe(&code)),
                Ok(_) => failed(format!("sending the body: {e}")),
            });
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| failed(describe(&e)))?;
    let response = wait(&future).map_err(|e| failed(describe(&e)))?;
    let mut builder = http::Response::builder().status(response.status());
    let fields = response.headers();
    for (name, value) in fields.entries() {
        builder = builder.header(name, value);
    }
    drop(fields);
    let body = response
        .consume()
        .map_err(|()| failed("the response body was already taken".into()))?;
    let body = Incoming::new(body, Box::new((response, future))).map_err(failed)?;
    Ok(builder.body(Body::from_reader(body))?)
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn wait(
    future: &wasip2::http::types::FutureIncomingResponse,
) -> Result<wasip2::http::types::IncomingResponse, ErrorCode> {
    loop {
        match future.get() {
            Some(Ok(result)) => return result,
            Some(Err(())) => unreachable!("the response is taken once"),
            None => future.subscribe().block(),
        }
    }
}

/// wasi:http's error code, in words where the code alone would puzzle.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "the node does not let this function reach that origin (HttpRequestDenied); allow it in the function's outbound list".into()
        }
        other => format!("{other:?}"),
    }
}
