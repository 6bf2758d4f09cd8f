//! KV namespaces: read and written by the CLI (tokens of scope read/deploy) and by nodes on
//! behalf of their functions (scope node), and the log nodes follow.

use std::sync::Arc;
use std::time::Duration;

use edge_wire::kv::{self, Batch, Increment};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body, read_json};
use super::error::ApiError;
use super::{State, now_ms};

type Answer = Result<Response<Body>, ApiError>;

/// The key a path segment names.
fn key(segment: &str) -> Result<String, ApiError> {
    kv::decode_segment(segment)
        .ok_or_else(|| ApiError::bad_request("the KV key in the path is not percent-encoded UTF-8"))
}

/// `GET /v1/kv/{namespace}?prefix=P&cursor=C`.
pub(super) async fn list(state: &Arc<State>, namespace: &str, query: Option<&str>) -> Answer {
    let mut prefix = String::new();
    let mut cursor = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = key(value)?;
        match name {
            "prefix" => prefix = value,
            "cursor" => cursor = Some(value),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {name:?}; use prefix and cursor"
                )));
            }
        }
    }
    let namespace = namespace.to_owned();
    let keys = state
        .db(move |store| store.kv_keys(&namespace, &prefix, cursor.as_deref()))
        .await?;
    Ok(body::json(&keys))
}

/// `GET /v1/kv/{namespace}/{key}`: the value's bytes.
pub(super) async fn get(state: &Arc<State>, namespace: &str, segment: &str) -> Answer {
    let (namespace, key) = (namespace.to_owned(), key(segment)?);
    let shown = key.clone();
    let ns = namespace.clone();
    match state.db(move |store| store.kv_get(&ns, &key)).await? {
        Some(value) => {
            let mut response = Response::new(body::full(value));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            Ok(response)
        }
        None => Err(ApiError::not_found(format!(
            "KV namespace {namespace} has no key {shown:?}"
        ))),
    }
}

/// `PUT /v1/kv/{namespace}/{key}`: the body is the value.
pub(super) async fn put(
    state: &Arc<State>,
    namespace: &str,
    segment: &str,
    request: Request<Incoming>,
) -> Answer {
    let key = key(segment)?;
    let value = body::read_limited(request.into_body(), kv::MAX_VALUE_BYTES, || {
        format!("the value for KV key {key:?}")
    })
    .await?;
    let namespace = namespace.to_owned();
    let written = state
        .db(move |store| store.kv_put(&namespace, &key, &value, now_ms()))
        .await?;
    Ok(body::json(&written))
}

/// `DELETE /v1/kv/{namespace}/{key}`.
pub(super) async fn delete(state: &Arc<State>, namespace: &str, segment: &str) -> Answer {
    let (namespace, key) = (namespace.to_owned(), key(segment)?);
    let written = state
        .db(move |store| store.kv_delete(&namespace, &key, now_ms()))
        .await?;
    Ok(body::json(&written))
}

/// `POST /v1/kv/{namespace}/{key}/increment`.
pub(super) async fn increment(
    state: &Arc<State>,
    namespace: &str,
    segment: &str,
    request: Request<Incoming>,
) -> Answer {
    let key = key(segment)?;
    let Increment { delta } = read_json(request.into_body()).await?;
    let namespace = namespace.to_owned();
    let written = state
        .db(move |store| store.kv_increment(&namespace, &key, delta, now_ms()))
        .await?;
    Ok(body::json(&written))
}

/// `POST /v1/kv/{namespace}`: a [`Batch`].
pub(super) async fn batch(
    state: &Arc<State>,
    namespace: &str,
    request: Request<Incoming>,
) -> Answer {
    let batch: Batch = read_json(request.into_body()).await?;
    let namespace = namespace.to_owned();
    let written = state
        .db(move |store| store.kv_batch(&namespace, &batch.set, &batch.delete, now_ms()))
        .await?;
    Ok(body::json(&written))
}

/// `GET /v1/kv-changes?after=SEQ&wait=SECS`: the log after SEQ at once when there is some,
/// else as soon as a write makes some, else 304 after `wait`.
pub(super) async fn changes(state: &Arc<State>, query: Option<&str>) -> Answer {
    let mut after = 0;
    let mut wait = Duration::from_secs(edge_wire::paths::MAX_WAIT_SECS / 2);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = value.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter {name}={value:?} must be a whole number"
            ))
        })?;
        match name {
            "after" => after = number,
            "wait" => {
                wait = Duration::from_secs(number.min(edge_wire::paths::MAX_WAIT_SECS));
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {name:?}; use after and wait"
                )));
            }
        }
    }
    let mut updates = state.store.subscribe_kv();
    let mut shutdown = state.shutdown.clone();
    if *updates.borrow_and_update() <= after {
        tokio::select! {
            biased;
            changed = updates.wait_for(|seq| *seq > after) => {
                changed.map_err(|_| ApiError::shutting_down())?;
            }
            () = tokio::time::sleep(wait) => return Ok(body::empty(StatusCode::NOT_MODIFIED)),
            () = edge_serving::stopped(&mut shutdown) => return Err(ApiError::shutting_down()),
        }
    }
    let changes = state.db(move |store| store.kv_changes(after)).await?;
    Ok(body::json(&changes))
}
