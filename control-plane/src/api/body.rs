//! Request and response bodies: JSON in and out, component uploads in, component files out.

use std::io;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::error::ApiError;

/// Body of every answer.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Largest JSON request body.
const MAX_JSON_BYTES: usize = 1 << 20;

/// How much of an upload past the limit is read (and dropped) before the 413, so the client
/// is not cut off mid-send and sees the answer.
const MAX_DRAIN_BYTES: u64 = 64 << 20;

/// Chunk size when sending a component file.
const CHUNK: usize = 64 << 10;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An answer with `status` and no body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A 200 answer with `json` as body.
pub(crate) fn json_bytes(json: Bytes) -> Response<Body> {
    let mut response = Response::new(full(json));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A 200 answer with `value` as JSON.
pub(crate) fn json(value: &impl Serialize) -> Response<Body> {
    json_bytes(
        serde_json::to_vec(value)
            .expect("API bodies serialise")
            .into(),
    )
}

/// A 200 plain-text answer.
pub(crate) fn text(text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Reads a JSON body of type `T`; an empty body reads as `{}`, so bodies whose fields all
/// have defaults may be left out.
///
/// # Errors
/// 413 over 1 MiB; 400 with serde's message (which names the field, line and column).
pub(crate) async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let bytes = read_limited(body, MAX_JSON_BYTES, || "the JSON body".to_owned()).await?;
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Reads a whole body of at most `max` bytes; `what` names it in the 413.
///
/// # Errors
/// 413 "{what} is larger than {max} bytes"; 400 when the body broke off.
pub(crate) async fn read_limited(
    body: Incoming,
    max: usize,
    what: impl FnOnce() -> String,
) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(format!(
            "{} is larger than {max} bytes",
            what()
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body broke off: {e}"
        ))),
    }
}

/// An upload read whole, with its sha256 computed as it streamed in.
pub(crate) struct Upload {
    /// The bytes.
    pub(crate) bytes: Vec<u8>,
    /// Their sha256, lowercase hex.
    pub(crate) digest: String,
}

/// Reads an upload of at most `max` bytes, hashing it as it arrives.
///
/// # Errors
/// 413 past `max`, after reading (and dropping) up to 64 MiB more so the client sees it; 400
/// when the body breaks off.
pub(crate) async fn read_upload(
    content_length: Option<u64>,
    mut body: Incoming,
    max: u64,
) -> Result<Upload, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the component is larger than the control plane's limit of {max} bytes; make it smaller (build with --release, strip debug info) or raise --max-component-bytes"
        ))
    };
    let declared_too_large = content_length.is_some_and(|len| len > max);
    if content_length.is_some_and(|len| len > max.saturating_add(MAX_DRAIN_BYTES)) {
        return Err(too_large());
    }
    let mut hasher = Sha256::new();
    let mut bytes = Vec::with_capacity(if declared_too_large {
        0
    } else {
        content_length.unwrap_or(0) as usize
    });
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("the upload broke off: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len() as u64;
        if received > max || declared_too_large {
            // Read the rest before answering: a client still sending when the connection
            // closes gets a reset instead of the 413. Past the drain limit, close anyway.
            if received > max.saturating_add(MAX_DRAIN_BYTES) {
                return Err(too_large());
            }
            bytes = Vec::new();
            continue;
        }
        hasher.update(&data);
        bytes.extend_from_slice(&data);
    }
    if received > max || declared_too_large {
        return Err(too_large());
    }
    Ok(Upload {
        bytes,
        digest: hex::encode(hasher.finalize()),
    })
}

/// A 200 answer streaming `file` (of `len` bytes) as `content_type`.
pub(crate) fn file(file: tokio::fs::File, len: u64, content_type: &'static str) -> Response<Body> {
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buffer))), Some(file)))
            }
            // End the stream after an error: hyper aborts the response.
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}
