//! Components, functions, versions, rollbacks, canaries and routes.

use std::sync::Arc;

use edge_wire::{NewVersion, Rollback, Route, SetCanary, Uploaded};
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{self, Body, read_json};
use super::error::ApiError;
use super::{State, now_ms};

type Answer = Result<Response<Body>, ApiError>;

/// `PUT /v1/components`.
pub(super) async fn upload(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    let content_length = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let upload = body::read_upload(
        content_length,
        request.into_body(),
        state.max_component_bytes,
    )
    .await?;
    let components = state.components.clone();
    let digest = upload.digest.clone();
    let size = upload.bytes.len() as u64;
    // Validating a component is CPU work, and storing it is file I/O: both off the runtime.
    let existed = tokio::task::spawn_blocking(move || {
        edge_wire::check_component(&upload.bytes)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        components
            .store(&upload.digest, &upload.bytes)
            .map_err(|e| ApiError::internal(format!("cannot store a component: {e}")))
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(digest, size, existed, "component uploaded");
    Ok(body::json(&Uploaded {
        digest,
        size,
        existed,
    }))
}

/// `GET /v1/components/{digest}`.
pub(super) async fn download(state: &Arc<State>, digest: &str) -> Answer {
    let Some(path) = state.components.path(digest) else {
        return Err(ApiError::bad_request(format!(
            "{digest:?} is not a component digest (64 lowercase hex digits of sha256)"
        )));
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "there is no component with digest {digest}; upload it with PUT /v1/components"
            )));
        }
        Err(e) => return Err(ApiError::internal(format!("cannot open {path:?}: {e}"))),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("cannot stat {path:?}: {e}")))?
        .len();
    Ok(body::wasm_file(file, len))
}

/// `GET /v1/functions`.
pub(super) async fn list_functions(state: &Arc<State>) -> Answer {
    let functions = state.db(|store| store.functions()).await?;
    Ok(body::json(&functions))
}

/// `GET /v1/functions/{name}`.
pub(super) async fn get_function(state: &Arc<State>, name: &str) -> Answer {
    let name = name.to_owned();
    let function = state.db(move |store| store.function(&name)).await?;
    Ok(body::json(&function))
}

/// `DELETE /v1/functions/{name}`.
pub(super) async fn delete_function(state: &Arc<State>, name: &str) -> Answer {
    let name = name.to_owned();
    let changed = state.db(move |store| store.delete_function(&name)).await?;
    Ok(body::json(&changed))
}

/// `POST /v1/functions/{name}/versions`.
pub(super) async fn new_version(
    state: &Arc<State>,
    name: &str,
    request: Request<Incoming>,
) -> Answer {
    let new: NewVersion = read_json(request.into_body()).await?;
    crate::store::validate::function_name(name)?;
    crate::store::validate::digest(&new.digest)?;
    if !state.components.contains(&new.digest) {
        return Err(ApiError::bad_request(format!(
            "no component with digest {} was uploaded; upload it first with PUT /v1/components",
            new.digest
        )));
    }
    let name = name.to_owned();
    let changed = state
        .db(move |store| store.new_version(&name, &new, now_ms()))
        .await?;
    Ok(body::json(&changed))
}

/// `POST /v1/functions/{name}/rollback`.
pub(super) async fn rollback(state: &Arc<State>, name: &str, request: Request<Incoming>) -> Answer {
    let rollback: Rollback = read_json(request.into_body()).await?;
    let name = name.to_owned();
    let changed = state
        .db(move |store| store.rollback(&name, rollback.to))
        .await?;
    Ok(body::json(&changed))
}

/// `POST /v1/functions/{name}/canary`.
pub(super) async fn canary(state: &Arc<State>, name: &str, request: Request<Incoming>) -> Answer {
    let canary: SetCanary = read_json(request.into_body()).await?;
    let name = name.to_owned();
    let changed = state
        .db(move |store| store.set_canary(&name, canary.version, canary.percent))
        .await?;
    Ok(body::json(&changed))
}

/// `GET /v1/routes`.
pub(super) async fn list_routes(state: &Arc<State>) -> Answer {
    let routes = state.db(|store| store.routes()).await?;
    Ok(body::json(&routes))
}

/// `PUT /v1/routes`.
pub(super) async fn put_route(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    let route: Route = read_json(request.into_body()).await?;
    let changed = state.db(move |store| store.put_route(&route)).await?;
    Ok(body::json(&changed))
}

/// `DELETE /v1/routes`: a [`Route`] body whose `function` may be left out, since host and
/// path identify a route.
pub(super) async fn delete_route(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RouteKey {
        #[serde(default)]
        host: Option<String>,
        path: String,
        #[serde(default, rename = "function")]
        _function: Option<String>,
    }
    let key: RouteKey = read_json(request.into_body()).await?;
    let route = Route {
        host: key.host,
        path: key.path,
        function: String::new(),
    };
    let changed = state.db(move |store| store.delete_route(&route)).await?;
    Ok(body::json(&changed))
}
