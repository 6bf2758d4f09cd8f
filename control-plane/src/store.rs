//! All state but the component bytes, in one SQLite database (`control-plane.db` in the data
//! dir, WAL mode): functions, immutable versions, routes, tokens, nodes and the revision.
//!
//! ```text
//! change (deploy, rollback, canary, route, delete)
//!   ─▶ one IMMEDIATE transaction: edit rows, revision += 1, read the new Snapshot back
//!   ─▶ commit ─▶ publish Arc<Published> on a watch channel (still under the connection lock,
//!      so snapshots are published in revision order)
//! ```
//!
//! Tokens and node reports are written in their own transactions but do not bump the
//! revision: they are not part of the [`Snapshot`], and a node's status report must not wake
//! every node's long-poll.
//!
//! The store is synchronous: one connection behind a [`Mutex`]. Async callers run it on a
//! blocking thread (`tokio::task::spawn_blocking`); the lock is never held across an await.
//! [`Store::published`] and [`Store::authenticate`] only read memory, so long-polls and token
//! checks never touch the database.

mod access;
mod functions;
mod kv;
mod schema;
mod secrets;
#[cfg(test)]
mod tests;
pub mod validate;

pub use access::LIVE_WINDOW;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use edge_wire::{Revision, Scope, Snapshot};
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};
use tokio::sync::watch;

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with the store. [`Error::NotFound`] and [`Error::Invalid`] are the
/// caller's mistakes; the rest are the server's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named function, version, route, token or node does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request breaks a rule (a bad name, no earlier version, ...).
    #[error("{0}")]
    Invalid(String),
    /// The database file cannot be opened or is not a database.
    #[error(
        "cannot open the database {path}: {source}; if the file is damaged, restore it from a backup or pass another --data-dir"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// Another process holds the database.
    #[error(
        "the database {path} is in use by another edge-control-plane; stop that one, or pass another --data-dir"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The database was written by a newer build.
    #[error(
        "the database {path} has schema version {found}, but this edge-control-plane knows versions up to {known}; run a newer edge-control-plane"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// A stored value cannot be read back.
    #[error("the database holds a malformed {what}: {detail}; restore it from a backup")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The database's secrets were sealed with another key than the one given.
    #[error(
        "the database's secrets were sealed with the secrets key {sealed_with}, but the key given is {given}; start with --secrets-key-file naming the original key file (nothing was changed)"
    )]
    WrongSecretsKey {
        /// The id of the key the rows name.
        sealed_with: String,
        /// The id of the key given.
        given: String,
    },
    /// A secret is needed but the store has no key (only in tests and tools).
    #[error("the database holds secrets, but no secrets key was given; pass --secrets-key-file")]
    NoSecretsKey,
    /// Any other database failure.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// The snapshot at the latest revision, built once per change and shared by every reader.
#[derive(Debug)]
pub struct Published {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The snapshot as JSON, ready to send.
    pub json: Bytes,
}

impl Published {
    fn new(snapshot: Snapshot) -> Self {
        let json = serde_json::to_vec(&snapshot).expect("a snapshot serialises");
        Self {
            snapshot,
            json: json.into(),
        }
    }

    /// The snapshot's revision.
    pub fn revision(&self) -> Revision {
        self.snapshot.revision
    }
}

/// A token as the authenticator knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIdentity {
    /// Its id.
    pub id: u64,
    /// Its scope.
    pub scope: Scope,
}

/// The database, the latest snapshot and the token table.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    published: watch::Sender<Arc<Published>>,
    tokens: RwLock<HashMap<[u8; 32], TokenIdentity>>,
    /// The engine whose compiled code snapshots offer, when the control plane compiles.
    engine: Option<String>,
    /// Seals and opens the functions' secrets.
    secrets_key: Option<Arc<crate::secrets::SecretsKey>>,
    /// The newest number of the KV log.
    kv_seq: watch::Sender<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates its schema, and takes an
    /// exclusive lock on it for as long as the store lives. Snapshots offer the code compiled
    /// for `engine` (an `edge_engine::key`), when given.
    ///
    /// # Errors
    /// [`Error::Open`] for an unreadable or damaged file, [`Error::Locked`] when another
    /// process has it, [`Error::TooNew`] for a schema from a newer build.
    pub fn open(path: &Path, engine: Option<&str>) -> Result<Store> {
        Self::open_with_key(path, engine, None)
    }

    /// As [`Store::open`], sealing and opening secrets with `secrets_key`.
    ///
    /// # Errors
    /// As [`Store::open`], and [`Error::WrongSecretsKey`] when the secrets were sealed with
    /// another key.
    pub fn open_with_key(
        path: &Path,
        engine: Option<&str>,
        secrets_key: Option<Arc<crate::secrets::SecretsKey>>,
    ) -> Result<Store> {
        let open_error = |source: rusqlite::Error| {
            if source.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
                Error::Locked {
                    path: path.to_owned(),
                }
            } else {
                Error::Open {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let mut conn = Connection::open(path).map_err(open_error)?;
        // This process holds the only connection, so "busy" means another process: fail at
        // once rather than after rusqlite's default 5 s wait.
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(open_error)?;
        // One process owns the database: EXCLUSIVE locking keeps the file locked from the
        // first transaction on, so a second control plane on the same data dir fails at once
        // instead of serving a copy of the state that the first one's watchers never see.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        // Durable commits: a deploy that answered must survive a power cut. Writes are rare.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
            .map_err(open_error)?;
        if let Err(found) = schema::migrate(&mut conn).map_err(open_error)? {
            return Err(Error::TooNew {
                path: path.to_owned(),
                found,
                known: schema::VERSION,
            });
        }
        let snapshot = {
            let tx = conn.transaction()?;
            let revision = current_revision(&tx)?;
            functions::snapshot(&tx, revision, engine, secrets_key.as_deref())?
        };
        let tokens = access::load_tokens(&conn)?;
        let kv_seq: i64 = conn.query_row("SELECT kv_seq FROM state WHERE id = 1", [], |row| {
            row.get(0)
        })?;
        let (kv_seq, _) = watch::channel(from_sql_int(kv_seq));
        let (published, _) = watch::channel(Arc::new(Published::new(snapshot)));
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            published,
            tokens: RwLock::new(tokens),
            engine: engine.map(str::to_owned),
            secrets_key,
            kv_seq,
        })
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.published.borrow().revision()
    }

    /// The latest snapshot.
    pub fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// A receiver that sees every new snapshot, for long-polls.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.published.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction drops the transaction, which rolls it back: the connection
        // is still good.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `edit` in one transaction that also bumps the revision, then publishes the new
    /// snapshot. Nothing is written or published when `edit` fails.
    fn change<T>(&self, edit: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<(T, Revision)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = edit(&tx)?;
        tx.execute("UPDATE state SET revision = revision + 1 WHERE id = 1", [])?;
        let revision = current_revision(&tx)?;
        let snapshot = functions::snapshot(
            &tx,
            revision,
            self.engine.as_deref(),
            self.secrets_key.as_deref(),
        )?;
        tx.commit()?;
        // Still under the connection lock: no later revision can be published before this one.
        self.published
            .send_replace(Arc::new(Published::new(snapshot)));
        Ok((value, revision))
    }

    /// Runs `edit` in one transaction that leaves the revision alone.
    fn write<T>(&self, edit: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = edit(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `read` in one (read) transaction, so it sees a single revision.
    fn read<T>(&self, read: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        read(&tx)
    }
}

fn current_revision(tx: &Transaction<'_>) -> Result<Revision> {
    let revision: i64 = tx.query_row("SELECT revision FROM state WHERE id = 1", [], |row| {
        row.get(0)
    })?;
    Ok(from_sql_int(revision))
}

/// SQLite integers are i64; ids, revisions and times are never negative.
fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Saturates rather than wrapping: a u64 past i64::MAX (year 292 million) is a bug elsewhere.
fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
