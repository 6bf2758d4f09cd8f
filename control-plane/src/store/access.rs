//! Tokens (kept as sha256 hashes) and registered nodes. Neither bumps the revision.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Duration;

use edge_wire::{NodeInfo, NodeStatus, Scope, TokenInfo};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{Error, Result, Store, TokenIdentity, from_sql_int, to_sql_int, validate};

/// A node heard from within this long is live.
pub const LIVE_WINDOW: Duration = Duration::from_secs(90);

impl Store {
    /// The token whose secret is `secret`, if any. Reads memory only.
    pub fn authenticate(&self, secret: &str) -> Option<TokenIdentity> {
        let hash = crate::auth::hash(secret);
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            .copied()
    }

    /// How many tokens exist.
    pub fn token_count(&self) -> usize {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stores a token with secret `secret` (only its hash is kept) and returns it, secret
    /// included.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name.
    pub fn add_token(
        &self,
        scope: Scope,
        name: &str,
        secret: &str,
        now_ms: u64,
    ) -> Result<TokenInfo> {
        validate::label("token", name)?;
        let hash = crate::auth::hash(secret);
        let id = self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (name, scope, hash, created_unix_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, scope.as_str(), &hash[..], to_sql_int(now_ms)],
            )?;
            Ok(from_sql_int(tx.last_insert_rowid()))
        })?;
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash, TokenIdentity { id, scope });
        tracing::info!(id, scope = scope.as_str(), name, "token created");
        Ok(TokenInfo {
            id,
            name: name.to_owned(),
            scope,
            created_unix_ms: now_ms,
            token: Some(secret.to_owned()),
        })
    }

    /// Every token, without secrets, oldest first.
    ///
    /// # Errors
    /// A database error or a malformed stored scope.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.read(|tx| {
            let rows = tx
                .prepare("SELECT id, name, scope, created_unix_ms FROM tokens ORDER BY id")?
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, name, scope, created)| {
                    Ok(TokenInfo {
                        id: from_sql_int(id),
                        name,
                        scope: parse_scope(&scope)?,
                        created_unix_ms: from_sql_int(created),
                        token: None,
                    })
                })
                .collect()
        })
    }

    /// Deletes token `id`. The last admin token cannot be deleted: nobody could make tokens
    /// any more.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Invalid`] for the last admin token.
    pub fn delete_token(&self, id: u64) -> Result<()> {
        self.write(|tx| {
            let scope: String = tx
                .query_row(
                    "SELECT scope FROM tokens WHERE id = ?1",
                    [to_sql_int(id)],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "there is no token with id {id}; list them with GET /v1/tokens"
                    ))
                })?;
            let admins: i64 = tx.query_row(
                "SELECT count(*) FROM tokens WHERE scope = 'admin'",
                [],
                |row| row.get(0),
            )?;
            if scope == Scope::Admin.as_str() && admins <= 1 {
                return Err(Error::Invalid(format!(
                    "token {id} is the last admin token; create another admin token before deleting this one"
                )));
            }
            tx.execute("DELETE FROM tokens WHERE id = ?1", [to_sql_int(id)])?;
            Ok(())
        })?;
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, token| token.id != id);
        tracing::info!(id, "token deleted");
        Ok(())
    }

    /// Registers node `name`, or updates the address of the node already registered under
    /// that name; returns its id.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or overlong name.
    pub fn register_node(&self, name: &str, address: &str, now_ms: u64) -> Result<u64> {
        if name.is_empty() {
            return Err(Error::Invalid(
                "a node needs a name to register; pass its host name".into(),
            ));
        }
        validate::label("node", name)?;
        validate::label("node address", address)?;
        let id = self.write(|tx| {
            let id: i64 = tx.query_row(
                "INSERT INTO nodes (name, address, last_seen_unix_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE
                 SET address = excluded.address, last_seen_unix_ms = excluded.last_seen_unix_ms
                 RETURNING id",
                params![name, address, to_sql_int(now_ms)],
                |row| row.get(0),
            )?;
            Ok(from_sql_int(id))
        })?;
        tracing::info!(id, name, address, "node registered");
        Ok(id)
    }

    /// Records what node `id` reports: the revision it serves and its health.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown node.
    pub fn node_status(&self, id: u64, status: &NodeStatus, now_ms: u64) -> Result<()> {
        let updated = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE nodes SET revision = ?2, healthy = ?3, error = ?4, last_seen_unix_ms = ?5
                 WHERE id = ?1",
                params![
                    to_sql_int(id),
                    to_sql_int(status.revision),
                    status.healthy,
                    status.error,
                    to_sql_int(now_ms)
                ],
            )?)
        })?;
        if updated == 0 {
            return Err(unknown_node(id));
        }
        if status.healthy {
            tracing::debug!(node = id, revision = status.revision, "node status");
        } else {
            tracing::warn!(
                node = id,
                revision = status.revision,
                error = status.error.as_deref().unwrap_or(""),
                "node reports it cannot apply the latest snapshot"
            );
        }
        Ok(())
    }

    /// Notes that node `id` was heard from (it is waiting in a long-poll).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown node.
    pub fn touch_node(&self, id: u64, now_ms: u64) -> Result<()> {
        let updated = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE nodes SET last_seen_unix_ms = ?2 WHERE id = ?1",
                params![to_sql_int(id), to_sql_int(now_ms)],
            )?)
        })?;
        if updated == 0 {
            return Err(unknown_node(id));
        }
        Ok(())
    }

    /// Every registered node, by id; `live` when heard from within [`LIVE_WINDOW`] of `now_ms`.
    ///
    /// # Errors
    /// A database error.
    pub fn nodes(&self, now_ms: u64) -> Result<Vec<NodeInfo>> {
        self.read(|tx| {
            let nodes = tx
                .prepare(
                    "SELECT id, name, address, revision, healthy, error, last_seen_unix_ms
                     FROM nodes ORDER BY id",
                )?
                .query_map([], |row| {
                    let last_seen = from_sql_int(row.get(6)?);
                    Ok(NodeInfo {
                        id: from_sql_int(row.get(0)?),
                        name: row.get(1)?,
                        address: row.get(2)?,
                        revision: from_sql_int(row.get(3)?),
                        healthy: row.get(4)?,
                        error: row.get(5)?,
                        last_seen_unix_ms: last_seen,
                        live: now_ms.saturating_sub(last_seen) < LIVE_WINDOW.as_millis() as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(nodes)
        })
    }
}

fn unknown_node(id: u64) -> Error {
    Error::NotFound(format!(
        "there is no node with id {id}; register again with POST /v1/nodes/register"
    ))
}

fn parse_scope(scope: &str) -> Result<Scope> {
    scope.parse().map_err(|detail| Error::Corrupt {
        what: "token scope",
        detail,
    })
}

/// The token table, by hash of the secret.
pub(super) fn load_tokens(conn: &Connection) -> Result<HashMap<[u8; 32], TokenIdentity>> {
    let rows = conn
        .prepare("SELECT id, scope, hash FROM tokens")?
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, scope, hash)| {
            let hash: [u8; 32] = hash.try_into().map_err(|_| Error::Corrupt {
                what: "token hash",
                detail: format!("token {id}'s hash is not 32 bytes"),
            })?;
            Ok((
                hash,
                TokenIdentity {
                    id: from_sql_int(id),
                    scope: parse_scope(&scope)?,
                },
            ))
        })
        .collect()
}
