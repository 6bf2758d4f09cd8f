//! The HTTP+JSON API. Bodies are the `edge_wire` types; every error is `{"error": "..."}`
//! with a 4xx or 5xx status.
//!
//! # Authentication
//! Every call but `GET /healthz` needs `Authorization: Bearer TOKEN` (the `edge` CLI takes
//! `--token` or `EDGE_TOKEN`). No token or an unknown one: **401**. A token whose scope does
//! not allow the call: **403**, naming the scope needed. Scopes nest, admin ⊃ deploy ⊃ read;
//! `node` is separate (admin may do what node may).
//!
//! # Endpoints
//! | method and path | scope | request body | answer |
//! |---|---|---|---|
//! | `GET /healthz` | none | | 200 `ok` |
//! | `GET /v1/revision` | read | | `{"revision": N}` |
//! | `PUT /v1/components` | deploy | component bytes | [`Uploaded`](edge_wire::Uploaded) |
//! | `GET /v1/components/{sha256}` | node or deploy | | the bytes, `application/wasm` |
//! | `GET /v1/compiled/{sha256}` | node | | machine code for the snapshot's `engine`, `application/octet-stream` |
//! | `GET /v1/functions` | read | | `[`[`FunctionInfo`](edge_wire::FunctionInfo)`]` |
//! | `GET /v1/functions/{name}` | read | | [`FunctionInfo`](edge_wire::FunctionInfo) |
//! | `DELETE /v1/functions/{name}` | deploy | | [`Changed`](edge_wire::Changed) |
//! | `POST /v1/functions/{name}/versions` | deploy | [`NewVersion`](edge_wire::NewVersion) | [`Changed`](edge_wire::Changed) with the new version |
//! | `POST /v1/functions/{name}/rollback` | deploy | [`Rollback`](edge_wire::Rollback) (may be empty) | [`Changed`](edge_wire::Changed) with the now-active version |
//! | `GET /v1/functions/{name}/secrets` | read | | `[`[`SecretInfo`](edge_wire::SecretInfo)`]`: names and update times, never values |
//! | `PUT /v1/functions/{name}/secrets/{secret}` | deploy | the value (UTF-8, at most 64 KiB) | [`Changed`](edge_wire::Changed) |
//! | `DELETE /v1/functions/{name}/secrets/{secret}` | deploy | | [`Changed`](edge_wire::Changed) |
//! | `POST /v1/functions/{name}/canary` | deploy | [`SetCanary`](edge_wire::SetCanary) | [`Changed`](edge_wire::Changed) with the canary version (none when ended) |
//! | `GET /v1/routes` | read | | `[`[`Route`](edge_wire::Route)`]` |
//! | `PUT /v1/routes` | deploy | [`Route`](edge_wire::Route) | [`Changed`](edge_wire::Changed) |
//! | `DELETE /v1/routes` | deploy | [`Route`](edge_wire::Route) (host and path; `function` ignored) | [`Changed`](edge_wire::Changed) |
//! | `POST /v1/purge` | deploy | [`Purge`](edge_wire::Purge) | [`Changed`](edge_wire::Changed): nodes that report its revision have purged |
//! | `GET /v1/tokens` | admin | | `[`[`TokenInfo`](edge_wire::TokenInfo)`]`, no secrets |
//! | `POST /v1/tokens` | admin | [`NewToken`](edge_wire::NewToken) | [`TokenInfo`](edge_wire::TokenInfo) with `token`, shown this once |
//! | `DELETE /v1/tokens/{id}` | admin | | 204 |
//! | `GET /v1/nodes` | read | | `[`[`NodeInfo`](edge_wire::NodeInfo)`]` |
//! | `POST /v1/nodes/register` | node | [`RegisterNode`](edge_wire::RegisterNode) | [`Registered`](edge_wire::Registered) |
//! | `POST /v1/nodes/{id}/status` | node | [`NodeStatus`](edge_wire::NodeStatus) | 204 |
//! | `GET /v1/snapshot?after=REV&wait=SECS&node=ID` | node | | [`Snapshot`](edge_wire::Snapshot), or 304 |
//! | `GET /v1/kv/{namespace}?prefix=P&cursor=C` | read or node | | [`Keys`](edge_wire::kv::Keys), a page of 1000 |
//! | `POST /v1/kv/{namespace}` | deploy or node | [`Batch`](edge_wire::kv::Batch) | [`Written`](edge_wire::kv::Written) |
//! | `GET /v1/kv/{namespace}/{key}` | read or node | | the value, `application/octet-stream`; 404 |
//! | `PUT /v1/kv/{namespace}/{key}` | deploy or node | the value (at most 1 MiB) | [`Written`](edge_wire::kv::Written) |
//! | `DELETE /v1/kv/{namespace}/{key}` | deploy or node | | [`Written`](edge_wire::kv::Written) |
//! | `POST /v1/kv/{namespace}/{key}/increment` | deploy or node | [`Increment`](edge_wire::kv::Increment) | [`Written`](edge_wire::kv::Written) with the new number |
//! | `GET /v1/kv-changes?after=SEQ&wait=SECS` | node | | [`Changes`](edge_wire::kv::Changes), or 304 |
//!
//! Every change to functions, versions, routes, canaries or secrets is one transaction that
//! bumps the revision; its answer, [`Changed`](edge_wire::Changed), carries that revision. Tokens and
//! node reports do not bump it.
//!
//! # Rules
//! - **Upload**: at most `--max-component-bytes` (default 64 MiB; 413 past it). The bytes must
//!   be a WASI 0.2 component exporting `wasi:http/incoming-handler` and importing only what
//!   nodes provide ([`edge_wire::check_component`]); otherwise 400 with its message. Stored
//!   under its sha256; `existed` says whether it was already there. Unless the control plane
//!   runs with `--no-precompile`, the upload also compiles the component with the nodes'
//!   settings (once per component and engine; 400 with wasmtime's message when it cannot),
//!   and every snapshot names that code per version (`compiled`, with the snapshot's
//!   `engine`), so nodes with the same engine load it instead of compiling.
//! - **Function names**: `[a-z0-9][a-z0-9-]{0,62}`, else 400. Unknown function: 404.
//! - **New version**: `digest` must name an uploaded component (400 otherwise). Creates the
//!   function if new, adds version N+1, makes it active, ends any canary, and adds `routes`
//!   (each naming this function or none); a route with the same host and path that pointed at
//!   another function is moved to this one (logged).
//! - **Rollback**: `to` unset means the highest version below the active one (400 when there
//!   is none); any other existing version may be named (404 for an unknown one, 400 for the
//!   active one). Ends any canary.
//! - **Canary**: `percent` 1 to 99 sends that share to `version`, which must exist (404) and
//!   not be the active one (400); `percent` 0 ends the canary; over 99 is 400.
//! - **Delete function**: removes the function, its versions and its routes; component files
//!   stay (content-addressed, possibly shared). A function created again starts at version 1.
//! - **Routes**: host lowercase without port, or absent for any host; path starts with `/`
//!   (normalised without a trailing slash). `PUT` needs an existing function (404 otherwise)
//!   and replaces the route with the same host and path. `DELETE` of an unknown route: 404.
//! - **Secrets**: per function (which need not be deployed yet; deleting the function deletes
//!   them), named like environment variables (`[A-Za-z_][A-Za-z0-9_]*`, at most 128), sealed
//!   with ChaCha20-Poly1305 under the secrets key (`--secrets-key-file`, outside the database).
//!   Only snapshots carry their values, to nodes (scope `node`); the guest sees them as its
//!   configuration values (a secret wins over a configuration value of the same name). Never
//!   logged, never answered by the API.
//! - **KV**: namespaces are named like functions and exist once written to; keys (UTF-8, at
//!   most 512 bytes) are one percent-encoded path segment; values at most 1 MiB. Every write
//!   takes the next number of the KV log; nodes follow the log with the `kv-changes`
//!   long-poll (the latest value of each key changed after SEQ, oldest first, 1000 at most)
//!   and write through the same API for their functions. KV writes do not bump the revision.
//! - **Tokens**: `edge_` and 64 hex digits, stored as sha256. The last admin token cannot be
//!   deleted (400).
//! - **Nodes**: registering an existing name returns its id. A status for an unknown id is
//!   404 (register again). `live` in `GET /v1/nodes` means heard from (register, status, or a
//!   snapshot request with `node=ID`) within the last 90 s.
//! - **Snapshot long-poll**: answers the snapshot at once when the current revision is greater
//!   than `after` (default 0), else as soon as a change makes it so, else 304 with no body after
//!   `wait` seconds (default 30, capped at [`MAX_WAIT_SECS`](edge_wire::paths::MAX_WAIT_SECS)).
//!   The wait rides a watch channel of the latest snapshot, which is kept in memory already
//!   serialised, so waiting nodes cost no database work. `node=ID` marks that node as heard
//!   from. A poll open when the control plane stops gets 503.
//!
//! Unknown paths: 404. A known path with the wrong method: 405 with `Allow`. Malformed JSON:
//! 400 with serde's message (field, line and column). JSON bodies are limited to 1 MiB (413).

mod body;
mod deploy;
mod error;
mod fleet;
mod kv;

use std::sync::Arc;
use std::time::Instant;

use edge_wire::Scope;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;
use tracing::Instrument as _;

use self::body::Body;
use self::error::ApiError;
use crate::compiler::Compiler;
use crate::components::Components;
use crate::store::{self, Store, TokenIdentity};

/// What every request shares.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) store: Arc<Store>,
    pub(crate) components: Arc<Components>,
    /// Compiles uploads for the nodes; none with `--no-precompile`.
    pub(crate) compiler: Option<Arc<Compiler>>,
    pub(crate) max_component_bytes: u64,
    /// Turns true when the control plane stops, to end long-polls.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl State {
    /// Runs `f` on the store on a blocking thread.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint<'a> {
    Healthz,
    Revision,
    Components,
    Component(&'a str),
    Compiled(&'a str),
    Functions,
    Function(&'a str),
    Versions(&'a str),
    Rollback(&'a str),
    Canary(&'a str),
    Secrets(&'a str),
    Secret(&'a str, &'a str),
    Routes,
    Tokens,
    Token(&'a str),
    Nodes,
    Register,
    NodeStatus(&'a str),
    Snapshot,
    Purge,
    KvNamespace(&'a str),
    KvKey(&'a str, &'a str),
    KvIncrement(&'a str, &'a str),
    KvChanges,
}

impl<'a> Endpoint<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match segments.as_slice() {
            ["healthz"] => Self::Healthz,
            ["v1", "revision"] => Self::Revision,
            ["v1", "components"] => Self::Components,
            ["v1", "components", digest] => Self::Component(digest),
            ["v1", "compiled", sha256] => Self::Compiled(sha256),
            ["v1", "functions"] => Self::Functions,
            ["v1", "functions", name] => Self::Function(name),
            ["v1", "functions", name, "versions"] => Self::Versions(name),
            ["v1", "functions", name, "rollback"] => Self::Rollback(name),
            ["v1", "functions", name, "canary"] => Self::Canary(name),
            ["v1", "functions", name, "secrets"] => Self::Secrets(name),
            ["v1", "functions", name, "secrets", secret] => Self::Secret(name, secret),
            ["v1", "routes"] => Self::Routes,
            ["v1", "purge"] => Self::Purge,
            ["v1", "tokens"] => Self::Tokens,
            ["v1", "tokens", id] => Self::Token(id),
            ["v1", "nodes"] => Self::Nodes,
            ["v1", "nodes", "register"] => Self::Register,
            ["v1", "nodes", id, "status"] => Self::NodeStatus(id),
            ["v1", "snapshot"] => Self::Snapshot,
            ["v1", "kv", namespace] => Self::KvNamespace(namespace),
            ["v1", "kv", namespace, key] => Self::KvKey(namespace, key),
            ["v1", "kv", namespace, key, "increment"] => Self::KvIncrement(namespace, key),
            ["v1", "kv-changes"] => Self::KvChanges,
            _ => return None,
        })
    }

    /// The methods the endpoint answers, for 405's `Allow`.
    fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const POST: &[Method] = &[Method::POST];
        match self {
            Self::Healthz
            | Self::Revision
            | Self::Component(_)
            | Self::Compiled(_)
            | Self::Functions
            | Self::Secrets(_)
            | Self::Nodes
            | Self::KvChanges
            | Self::Snapshot => GET,
            Self::KvNamespace(_) => &[Method::GET, Method::POST],
            Self::KvKey(..) => &[Method::GET, Method::PUT, Method::DELETE],
            Self::KvIncrement(..) => POST,
            Self::Secret(..) => &[Method::PUT, Method::DELETE],
            Self::Components => &[Method::PUT],
            Self::Function(_) => &[Method::GET, Method::DELETE],
            Self::Versions(_)
            | Self::Rollback(_)
            | Self::Canary(_)
            | Self::Register
            | Self::Purge
            | Self::NodeStatus(_) => POST,
            Self::Routes => &[Method::GET, Method::PUT, Method::DELETE],
            Self::Tokens => &[Method::GET, Method::POST],
            Self::Token(_) => &[Method::DELETE],
        }
    }

    /// The scopes, any one of which allows `method` here; empty for no authentication.
    fn scopes(self, method: &Method) -> &'static [Scope] {
        match self {
            Self::Healthz => &[],
            Self::Component(_) => &[Scope::Node, Scope::Deploy],
            Self::Compiled(_)
            | Self::Register
            | Self::NodeStatus(_)
            | Self::Snapshot
            | Self::KvChanges => &[Scope::Node],
            // Nodes read and write KV for their functions.
            Self::KvNamespace(_) | Self::KvKey(..) | Self::KvIncrement(..) => {
                if *method == Method::GET {
                    &[Scope::Node, Scope::Read]
                } else {
                    &[Scope::Node, Scope::Deploy]
                }
            }
            Self::Tokens | Self::Token(_) => &[Scope::Admin],
            _ if *method == Method::GET => &[Scope::Read],
            _ => &[Scope::Deploy],
        }
    }
}

/// Answers one request, in a span with its method, path, token id and status.
pub(crate) async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let span = tracing::debug_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        token = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let response = match route(&state, request).await {
            Ok(response) => response,
            Err(error) => {
                if error.status().is_client_error() {
                    tracing::debug!(status = error.status().as_u16(), ?error, "refused");
                }
                error.into_response()
            }
        };
        tracing::Span::current().record("status", response.status().as_u16());
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

async fn route(state: &Arc<State>, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_owned();
    let Some(endpoint) = Endpoint::parse(&path) else {
        return Err(ApiError::not_found(format!(
            "there is no API at {path}; the API's paths start with /v1/ (see the control plane's API reference)"
        )));
    };
    let method = request.method().clone();
    if !endpoint.methods().contains(&method) {
        return Err(ApiError::method_not_allowed(
            &method,
            &path,
            endpoint.methods(),
        ));
    }
    let scopes = endpoint.scopes(&method);
    if !scopes.is_empty() {
        let token = authorize(&state.store, &request, scopes)?;
        tracing::Span::current().record("token", token.id);
    }
    use Endpoint as E;
    match (endpoint, method) {
        (E::Healthz, _) => Ok(body::text("ok")),
        (E::Revision, _) => Ok(body::json(&serde_json::json!({
            "revision": state.store.revision()
        }))),
        (E::Components, _) => deploy::upload(state, request).await,
        (E::Component(digest), _) => deploy::download(state, digest).await,
        (E::Compiled(sha256), _) => deploy::download_compiled(state, sha256).await,
        (E::Functions, _) => deploy::list_functions(state).await,
        (E::Function(name), Method::GET) => deploy::get_function(state, name).await,
        (E::Function(name), _) => deploy::delete_function(state, name).await,
        (E::Versions(name), _) => deploy::new_version(state, name, request).await,
        (E::Rollback(name), _) => deploy::rollback(state, name, request).await,
        (E::Canary(name), _) => deploy::canary(state, name, request).await,
        (E::Secrets(name), _) => deploy::list_secrets(state, name).await,
        (E::Secret(name, secret), Method::PUT) => {
            deploy::put_secret(state, name, secret, request).await
        }
        (E::Secret(name, secret), _) => deploy::delete_secret(state, name, secret).await,
        (E::Routes, Method::GET) => deploy::list_routes(state).await,
        (E::Routes, Method::PUT) => deploy::put_route(state, request).await,
        (E::Routes, _) => deploy::delete_route(state, request).await,
        (E::Purge, _) => deploy::purge(state, request).await,
        (E::Tokens, Method::GET) => fleet::list_tokens(state).await,
        (E::Tokens, _) => fleet::create_token(state, request).await,
        (E::Token(id), _) => fleet::delete_token(state, id).await,
        (E::Nodes, _) => fleet::list_nodes(state).await,
        (E::Register, _) => fleet::register(state, request).await,
        (E::NodeStatus(id), _) => fleet::status(state, id, request).await,
        (E::Snapshot, _) => fleet::snapshot(state, request.uri().query()).await,
        (E::KvNamespace(ns), Method::GET) => kv::list(state, ns, request.uri().query()).await,
        (E::KvNamespace(ns), _) => kv::batch(state, ns, request).await,
        (E::KvKey(ns, key), Method::GET) => kv::get(state, ns, key).await,
        (E::KvKey(ns, key), Method::PUT) => kv::put(state, ns, key, request).await,
        (E::KvKey(ns, key), _) => kv::delete(state, ns, key).await,
        (E::KvIncrement(ns, key), _) => kv::increment(state, ns, key, request).await,
        (E::KvChanges, _) => kv::changes(state, request.uri().query()).await,
    }
}

/// The token of `request`, when it may do what needs one of `scopes`.
fn authorize(
    store: &Store,
    request: &Request<Incoming>,
    scopes: &[Scope],
) -> Result<TokenIdentity, ApiError> {
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "this call needs an API token: send `Authorization: Bearer TOKEN` (the edge CLI takes --token or EDGE_TOKEN); the first admin token is in the file admin-token in the control plane's data dir",
        ));
    };
    let Some(secret) = header.to_str().ok().and_then(crate::auth::bearer) else {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer TOKEN`; pass the token with --token or EDGE_TOKEN",
        ));
    };
    let Some(token) = store.authenticate(secret) else {
        return Err(ApiError::unauthorized(
            "the API token is not valid (unknown, mistyped or deleted); pass a valid one with --token or EDGE_TOKEN",
        ));
    };
    if scopes.iter().any(|&needed| token.scope.allows(needed)) {
        return Ok(token);
    }
    let needed = scopes
        .iter()
        .map(|s| format!("`{}`", s.as_str()))
        .collect::<Vec<_>>()
        .join(" or ");
    let enough = Scope::ALL
        .iter()
        .filter(|s| scopes.iter().any(|&needed| s.allows(needed)))
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::forbidden(format!(
        "this call needs the {needed} scope (tokens of scope {enough} have it), but this token's scope is `{}`; create a token with POST /v1/tokens (edge tokens create --scope {})",
        token.scope.as_str(),
        scopes[0].as_str()
    )))
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 204 No Content.
fn no_content() -> Response<Body> {
    body::empty(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_endpoints() {
        use Endpoint as E;
        assert_eq!(Endpoint::parse("/healthz"), Some(E::Healthz));
        assert_eq!(
            Endpoint::parse("/v1/functions/hello/rollback"),
            Some(E::Rollback("hello"))
        );
        assert_eq!(
            Endpoint::parse("/v1/nodes/7/status"),
            Some(E::NodeStatus("7"))
        );
        assert_eq!(Endpoint::parse("/v1/nodes/register"), Some(E::Register));
        assert_eq!(
            Endpoint::parse("/v1/functions/gw/secrets/TOKEN"),
            Some(E::Secret("gw", "TOKEN"))
        );
        assert_eq!(Endpoint::parse("/v1/functions/"), None);
        assert_eq!(Endpoint::parse("/v2/functions"), None);
        assert_eq!(Endpoint::parse("/v1/functions/a/b"), None);
    }

    #[test]
    fn scopes_per_endpoint() {
        use Endpoint as E;
        assert_eq!(E::Functions.scopes(&Method::GET), [Scope::Read]);
        assert_eq!(E::Function("f").scopes(&Method::DELETE), [Scope::Deploy]);
        assert_eq!(E::Routes.scopes(&Method::PUT), [Scope::Deploy]);
        assert_eq!(E::Snapshot.scopes(&Method::GET), [Scope::Node]);
        assert_eq!(E::Compiled("d").scopes(&Method::GET), [Scope::Node]);
        assert_eq!(E::Tokens.scopes(&Method::GET), [Scope::Admin]);
        assert_eq!(E::Secrets("f").scopes(&Method::GET), [Scope::Read]);
        assert_eq!(E::Secret("f", "K").scopes(&Method::PUT), [Scope::Deploy]);
        assert_eq!(
            E::Component("d").scopes(&Method::GET),
            [Scope::Node, Scope::Deploy]
        );
        assert!(E::Healthz.scopes(&Method::GET).is_empty());
    }
}
