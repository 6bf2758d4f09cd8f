//! Tokens, nodes, and the snapshot long-poll.

use std::sync::Arc;
use std::time::Duration;

use edge_wire::paths::MAX_WAIT_SECS;
use edge_wire::{NewToken, NodeStatus, RegisterNode, Registered, Revision};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body, read_json};
use super::error::ApiError;
use super::{State, no_content, now_ms};

type Answer = Result<Response<Body>, ApiError>;

/// Long-poll wait when the request does not say.
const DEFAULT_WAIT_SECS: u64 = 30;

/// `GET /v1/tokens`.
pub(super) async fn list_tokens(state: &Arc<State>) -> Answer {
    let tokens = state.db(|store| store.tokens()).await?;
    Ok(body::json(&tokens))
}

/// `POST /v1/tokens`.
pub(super) async fn create_token(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    let new: NewToken = read_json(request.into_body()).await?;
    let secret = crate::auth::generate().map_err(ApiError::internal)?;
    let token = state
        .db(move |store| store.add_token(new.scope, &new.name, &secret, now_ms()))
        .await?;
    Ok(body::json(&token))
}

/// `DELETE /v1/tokens/{id}`.
pub(super) async fn delete_token(state: &Arc<State>, id: &str) -> Answer {
    let id = parse_id("token", id)?;
    state.db(move |store| store.delete_token(id)).await?;
    Ok(no_content())
}

/// `GET /v1/nodes`.
pub(super) async fn list_nodes(state: &Arc<State>) -> Answer {
    let nodes = state.db(|store| store.nodes(now_ms())).await?;
    Ok(body::json(&nodes))
}

/// `POST /v1/nodes/register`.
pub(super) async fn register(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    let node: RegisterNode = read_json(request.into_body()).await?;
    let id = state
        .db(move |store| store.register_node(&node.name, &node.address, now_ms()))
        .await?;
    Ok(body::json(&Registered { id }))
}

/// `POST /v1/nodes/{id}/status`.
pub(super) async fn status(state: &Arc<State>, id: &str, request: Request<Incoming>) -> Answer {
    let id = parse_id("node", id)?;
    let status: NodeStatus = read_json(request.into_body()).await?;
    state
        .db(move |store| store.node_status(id, &status, now_ms()))
        .await?;
    Ok(no_content())
}

/// `GET /v1/snapshot?after=REV&wait=SECS&node=ID`.
pub(super) async fn snapshot(state: &Arc<State>, query: Option<&str>) -> Answer {
    let query = SnapshotQuery::parse(query.unwrap_or(""))?;
    if let Some(node) = query.node {
        // A node waiting here is live. An unknown id is no reason to withhold the snapshot.
        if let Err(e) = state
            .db(move |store| store.touch_node(node, now_ms()))
            .await
        {
            tracing::debug!(
                node,
                "snapshot request names a node that is not registered: {e:?}"
            );
        }
    }
    let mut updates = state.store.subscribe();
    let mut shutdown = state.shutdown.clone();
    let newer = |published: &Arc<crate::store::Published>| published.revision() > query.after;
    let published = {
        let current = updates.borrow_and_update().clone();
        if newer(&current) {
            current
        } else {
            tokio::select! {
                // Biased: a change that lands as the wait ends is still sent.
                biased;
                changed = async { updates.wait_for(newer).await.map(|p| p.clone()) } => {
                    changed.map_err(|_| ApiError::shutting_down())?
                }
                () = tokio::time::sleep(query.wait) => {
                    return Ok(body::empty(StatusCode::NOT_MODIFIED));
                }
                () = edge_serving::stopped(&mut shutdown) => return Err(ApiError::shutting_down()),
            }
        }
    };
    Ok(body::json_bytes(published.json.clone()))
}

/// The snapshot long-poll's query.
#[derive(Debug, PartialEq, Eq)]
struct SnapshotQuery {
    after: Revision,
    wait: Duration,
    node: Option<u64>,
}

impl SnapshotQuery {
    /// Parses `after=REV&wait=SECS&node=ID`, each optional; `wait` is capped at
    /// [`MAX_WAIT_SECS`].
    fn parse(query: &str) -> Result<Self, ApiError> {
        let mut parsed = SnapshotQuery {
            after: 0,
            wait: Duration::from_secs(DEFAULT_WAIT_SECS),
            node: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter {key}={value:?} must be a whole number"
                    ))
                })
            };
            match key {
                "after" => parsed.after = number()?,
                "wait" => parsed.wait = Duration::from_secs(number()?.min(MAX_WAIT_SECS)),
                "node" => parsed.node = Some(number()?),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {key:?}; use after=REVISION, wait=SECONDS and node=ID"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

fn parse_id(what: &str, id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} id {id:?} must be a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_query() {
        let q = SnapshotQuery::parse("after=5&wait=1&node=3").unwrap();
        assert_eq!(
            q,
            SnapshotQuery {
                after: 5,
                wait: Duration::from_secs(1),
                node: Some(3)
            }
        );
        let q = SnapshotQuery::parse("").unwrap();
        assert_eq!(
            (q.after, q.wait.as_secs(), q.node),
            (0, DEFAULT_WAIT_SECS, None)
        );
        let q = SnapshotQuery::parse("wait=3600").unwrap();
        assert_eq!(q.wait.as_secs(), MAX_WAIT_SECS);
        assert!(SnapshotQuery::parse("after=x").is_err());
        assert!(SnapshotQuery::parse("since=1").is_err());
    }
}
