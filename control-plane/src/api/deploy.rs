//! Components, functions, versions, rollbacks, canaries, secrets and routes.

use std::sync::Arc;

use edge_wire::{NewVersion, Rollback, Route, SetCanary, Uploaded};
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{self, Body, read_json};
use super::error::ApiError;
use super::{State, now_ms};
use crate::compiler::{CompileError, Compiler};

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
    let state2 = state.clone();
    let digest = upload.digest.clone();
    let size = upload.bytes.len() as u64;
    // Validating and compiling a component is CPU work, and storing it is file I/O: all off
    // the runtime. Compiled first, so a component wasmtime refuses is not kept.
    let existed = tokio::task::spawn_blocking(move || {
        let state = state2;
        edge_wire::check_component(&upload.bytes)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let compiled = match &state.compiler {
            Some(compiler) => compile(&state, compiler, &upload.digest, &upload.bytes)?,
            None => None,
        };
        let existed = state
            .components
            .store(&upload.digest, &upload.bytes)
            .map_err(|e| ApiError::internal(format!("cannot store a component: {e}")))?;
        if let (Some(compiler), Some(sha256)) = (&state.compiler, compiled) {
            state
                .store
                .add_compiled(&upload.digest, compiler.key(), &sha256)?;
        }
        Ok::<_, ApiError>(existed)
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

/// Compiles `bytes` for the nodes unless code for them is already stored; the new code's
/// sha256, to record once the component itself is stored.
fn compile(
    state: &State,
    compiler: &Compiler,
    digest: &str,
    bytes: &[u8],
) -> Result<Option<String>, ApiError> {
    if let Some(sha256) = state.store.compiled(digest, compiler.key())?
        && compiler.code().contains(&sha256)
    {
        return Ok(None);
    }
    compiler.compile(bytes).map(Some).map_err(|e| match e {
        CompileError::Invalid(_) => ApiError::bad_request(e.to_string()),
        CompileError::Store(_) => ApiError::internal(e.to_string()),
    })
}

/// `GET /v1/components/{digest}`.
pub(super) async fn download(state: &Arc<State>, digest: &str) -> Answer {
    let Some(path) = state.components.path(digest) else {
        return Err(ApiError::bad_request(format!(
            "{digest:?} is not a component digest (64 lowercase hex digits of sha256)"
        )));
    };
    send_file(&path, "application/wasm", || {
        format!("there is no component with digest {digest}; upload it with PUT /v1/components")
    })
    .await
}

/// `GET /v1/compiled/{sha256}`.
pub(super) async fn download_compiled(state: &Arc<State>, sha256: &str) -> Answer {
    let path = state
        .compiler
        .as_ref()
        .and_then(|c| c.code().path(sha256))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "there is no compiled code {sha256:?} (this control plane runs with --no-precompile, or the name is not a sha256); compile the component on the node"
            ))
        })?;
    send_file(&path, "application/octet-stream", || {
        format!("there is no compiled code {sha256}; compile the component on the node")
    })
    .await
}

async fn send_file(
    path: &std::path::Path,
    content_type: &'static str,
    missing: impl FnOnce() -> String,
) -> Answer {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(missing()));
        }
        Err(e) => return Err(ApiError::internal(format!("cannot open {path:?}: {e}"))),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("cannot stat {path:?}: {e}")))?
        .len();
    Ok(body::file(file, len, content_type))
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

/// `POST /v1/purge`.
pub(super) async fn purge(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    let purge: edge_wire::Purge = read_json(request.into_body()).await?;
    let changed = state.db(move |store| store.purge(&purge, now_ms())).await?;
    Ok(body::json(&changed))
}

/// `GET /v1/functions/{name}/secrets`: names and times only.
pub(super) async fn list_secrets(state: &Arc<State>, name: &str) -> Answer {
    let name = name.to_owned();
    let secrets = state.db(move |store| store.secrets(&name)).await?;
    Ok(body::json(&secrets))
}

/// `PUT /v1/functions/{name}/secrets/{secret}`: the body is the value.
pub(super) async fn put_secret(
    state: &Arc<State>,
    name: &str,
    secret: &str,
    request: Request<Incoming>,
) -> Answer {
    let value = body::read_limited(request.into_body(), edge_wire::MAX_SECRET_BYTES, || {
        format!("the value of secret {secret}")
    })
    .await?;
    let (name, secret) = (name.to_owned(), secret.to_owned());
    let changed = state
        .db(move |store| store.put_secret(&name, &secret, &value, now_ms()))
        .await?;
    Ok(body::json(&changed))
}

/// `DELETE /v1/functions/{name}/secrets/{secret}`.
pub(super) async fn delete_secret(state: &Arc<State>, name: &str, secret: &str) -> Answer {
    let (name, secret) = (name.to_owned(), secret.to_owned());
    let changed = state
        .db(move |store| store.delete_secret(&name, &secret))
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
        cache: false,
    };
    let changed = state.db(move |store| store.delete_route(&route)).await?;
    Ok(body::json(&changed))
}
