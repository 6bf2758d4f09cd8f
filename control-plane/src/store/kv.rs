//! KV: the durable copy of every namespace, and the log nodes follow.
//!
//! Every write takes the next number of the KV log (`state.kv_seq`) and stamps its row with
//! it; a delete keeps the row with no value, so the log can tell nodes. `GET
//! /v1/kv-changes?after=N` is then the rows with `seq > N` in order: each key once, at its
//! latest value, which is all a replica needs. KV writes do not bump the revision (they are
//! not in the snapshot) and do not wake the snapshot long-polls; they have their own watch.

use edge_wire::kv::{self, Change, Changes, Keys, Pair, Written};
use rusqlite::{OptionalExtension as _, Transaction, TransactionBehavior, params};

use super::{Error, Result, Store, from_sql_int, to_sql_int};

/// Keys per page of a listing.
const PAGE: usize = 1000;

impl Store {
    /// The newest number in the KV log.
    pub fn kv_seq(&self) -> u64 {
        *self.kv_seq.borrow()
    }

    /// A receiver that sees every new KV log number, for the changes long-poll.
    pub fn subscribe_kv(&self) -> tokio::sync::watch::Receiver<u64> {
        self.kv_seq.subscribe()
    }

    /// Runs `edit` in one transaction, given the first of `count` new log numbers; publishes
    /// the last after the commit, still under the connection lock (so in order).
    fn kv_write<T>(
        &self,
        count: u64,
        edit: impl FnOnce(&Transaction<'_>, u64) -> Result<T>,
    ) -> Result<(T, u64)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first: i64 = tx.query_row(
            "UPDATE state SET kv_seq = kv_seq + ?1 WHERE id = 1 RETURNING kv_seq - ?1 + 1",
            [to_sql_int(count)],
            |row| row.get(0),
        )?;
        let first = from_sql_int(first);
        let value = edit(&tx, first)?;
        tx.commit()?;
        let last = first + count.saturating_sub(1);
        if count > 0 {
            self.kv_seq.send_replace(last);
        }
        Ok((value, last))
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad namespace, key or value.
    pub fn kv_put(&self, namespace: &str, key: &str, value: &[u8], now_ms: u64) -> Result<Written> {
        check(namespace, key)?;
        kv::check_value(key, value).map_err(Error::Invalid)?;
        let ((), seq) = self.kv_write(1, |tx, seq| {
            upsert(tx, namespace, key, Some(value), seq, now_ms)
        })?;
        Ok(Written { seq, value: None })
    }

    /// Deletes `key` (a key that is not there is no error).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad namespace or key.
    pub fn kv_delete(&self, namespace: &str, key: &str, now_ms: u64) -> Result<Written> {
        check(namespace, key)?;
        let ((), seq) =
            self.kv_write(1, |tx, seq| upsert(tx, namespace, key, None, seq, now_ms))?;
        Ok(Written { seq, value: None })
    }

    /// Adds `delta` to the number stored under `key` (decimal text; none counts as 0), in one
    /// transaction, so increments from every node add up.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the stored value is not a number or the sum overflows.
    pub fn kv_increment(
        &self,
        namespace: &str,
        key: &str,
        delta: u64,
        now_ms: u64,
    ) -> Result<Written> {
        check(namespace, key)?;
        let (value, seq) = self.kv_write(1, |tx, seq| {
            let current = get(tx, namespace, key)?;
            let value = kv::incremented(current.as_deref(), delta)
                .map_err(|why| Error::Invalid(format!("KV key {key:?} in {namespace} {why}")))?;
            upsert(
                tx,
                namespace,
                key,
                Some(value.to_string().as_bytes()),
                seq,
                now_ms,
            )?;
            Ok(value)
        })?;
        Ok(Written {
            seq,
            value: Some(value),
        })
    }

    /// Stores `set` and deletes `delete`, all or nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] for any bad key or value (nothing is written then).
    pub fn kv_batch(
        &self,
        namespace: &str,
        set: &[Pair],
        delete: &[String],
        now_ms: u64,
    ) -> Result<Written> {
        kv::check_namespace(namespace).map_err(Error::Invalid)?;
        for pair in set {
            kv::check_key(&pair.key).map_err(Error::Invalid)?;
            kv::check_value(&pair.key, &pair.value).map_err(Error::Invalid)?;
        }
        for key in delete {
            kv::check_key(key).map_err(Error::Invalid)?;
        }
        let count = (set.len() + delete.len()) as u64;
        if count == 0 {
            return Ok(Written {
                seq: self.kv_seq(),
                value: None,
            });
        }
        let ((), seq) = self.kv_write(count, |tx, first| {
            let mut seq = first;
            for pair in set {
                upsert(tx, namespace, &pair.key, Some(&pair.value), seq, now_ms)?;
                seq += 1;
            }
            for key in delete {
                upsert(tx, namespace, key, None, seq, now_ms)?;
                seq += 1;
            }
            Ok(())
        })?;
        Ok(Written { seq, value: None })
    }

    /// The value under `key`, if there is one.
    ///
    /// # Errors
    /// A database error.
    pub fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(|tx| get(tx, namespace, key))
    }

    /// Keys of `namespace` starting with `prefix`, in order, after `cursor`.
    ///
    /// # Errors
    /// A database error.
    pub fn kv_keys(&self, namespace: &str, prefix: &str, cursor: Option<&str>) -> Result<Keys> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached(
                "SELECT key FROM kv WHERE namespace = ?1 AND value IS NOT NULL
                 AND key > ?2 AND substr(key, 1, length(?3)) = ?3 ORDER BY key LIMIT ?4",
            )?;
            let after = cursor.unwrap_or("");
            let mut keys = statement
                .query_map(
                    params![namespace, after, prefix, (PAGE + 1) as i64],
                    |row| row.get::<_, String>(0),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let cursor = if keys.len() > PAGE {
                keys.truncate(PAGE);
                keys.last().cloned()
            } else {
                None
            };
            Ok(Keys { keys, cursor })
        })
    }

    /// The log after `after`: at most [`kv::MAX_CHANGES`] entries, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub fn kv_changes(&self, after: u64) -> Result<Changes> {
        self.read(|tx| {
            let seq: i64 =
                tx.query_row("SELECT kv_seq FROM state WHERE id = 1", [], |r| r.get(0))?;
            let mut statement = tx.prepare_cached(
                "SELECT seq, namespace, key, value FROM kv WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let changes = statement
                .query_map(params![to_sql_int(after), kv::MAX_CHANGES as i64], |row| {
                    Ok(Change {
                        seq: from_sql_int(row.get(0)?),
                        namespace: row.get(1)?,
                        key: row.get(2)?,
                        value: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Changes {
                changes,
                seq: from_sql_int(seq),
            })
        })
    }
}

fn check(namespace: &str, key: &str) -> Result<()> {
    kv::check_namespace(namespace).map_err(Error::Invalid)?;
    kv::check_key(key).map_err(Error::Invalid)
}

fn get(tx: &Transaction<'_>, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(tx
        .query_row(
            "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2",
            [namespace, key],
            |row| row.get::<_, Option<Vec<u8>>>(0),
        )
        .optional()?
        .flatten())
}

fn upsert(
    tx: &Transaction<'_>,
    namespace: &str,
    key: &str,
    value: Option<&[u8]>,
    seq: u64,
    now_ms: u64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO kv (namespace, key, value, seq, updated_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, seq = excluded.seq,
         updated_unix_ms = excluded.updated_unix_ms",
        params![namespace, key, value, to_sql_int(seq), to_sql_int(now_ms)],
    )?;
    Ok(())
}
