//! Functions' secrets: sealed in the `secrets` table, opened only to build the snapshots nodes
//! fetch. The API lists their names and update times, never their values.

use std::collections::BTreeMap;

use edge_wire::{Changed, Secret, SecretInfo};
use rusqlite::{Transaction, params};

use super::{Error, Result, Store, from_sql_int, to_sql_int, validate};
use crate::secrets::SecretsKey;

impl Store {
    /// Sets secret `name` of `function` (which need not be deployed yet) to `value`, at a new
    /// revision, so nodes serving the function get it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad function or secret name, or a value that is too large or
    /// not UTF-8; [`Error::NoSecretsKey`] without a key.
    pub fn put_secret(
        &self,
        function: &str,
        name: &str,
        value: &[u8],
        now_ms: u64,
    ) -> Result<Changed> {
        validate::function_name(function)?;
        validate::secret(name, value)?;
        let key = self.secrets_key.as_deref().ok_or(Error::NoSecretsKey)?;
        let (nonce, sealed) = key.seal(function, name, value);
        let ((), revision) = self.change(|tx| {
            tx.execute(
                "INSERT INTO secrets (function, name, key_id, nonce, sealed, updated_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (function, name) DO UPDATE SET key_id = excluded.key_id,
                 nonce = excluded.nonce, sealed = excluded.sealed,
                 updated_unix_ms = excluded.updated_unix_ms",
                params![function, name, key.id(), nonce, sealed, to_sql_int(now_ms)],
            )?;
            Ok(())
        })?;
        tracing::info!(function, secret = name, revision, "secret set");
        Ok(Changed {
            revision,
            version: None,
        })
    }

    /// Removes secret `name` of `function`, at a new revision.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no such secret.
    pub fn delete_secret(&self, function: &str, name: &str) -> Result<Changed> {
        let ((), revision) = self.change(|tx| {
            let deleted = tx.execute(
                "DELETE FROM secrets WHERE function = ?1 AND name = ?2",
                [function, name],
            )?;
            if deleted == 0 {
                return Err(Error::NotFound(format!(
                    "`{function}` has no secret {name}; `edge secrets list {function}` shows its secrets"
                )));
            }
            Ok(())
        })?;
        tracing::info!(function, secret = name, revision, "secret deleted");
        Ok(Changed {
            revision,
            version: None,
        })
    }

    /// The names and update times of `function`'s secrets, by name.
    ///
    /// # Errors
    /// A database error.
    pub fn secrets(&self, function: &str) -> Result<Vec<SecretInfo>> {
        self.read(|tx| {
            let rows = tx
                .prepare(
                    "SELECT name, updated_unix_ms FROM secrets WHERE function = ?1 ORDER BY name",
                )?
                .query_map([function], |row| {
                    Ok(SecretInfo {
                        name: row.get(0)?,
                        updated_unix_ms: from_sql_int(row.get(1)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

/// `function`'s secrets, opened, for its snapshot entry.
pub(super) fn opened(
    tx: &Transaction<'_>,
    function: &str,
    key: Option<&SecretsKey>,
) -> Result<BTreeMap<String, Secret>> {
    let mut statement = tx.prepare_cached(
        "SELECT name, key_id, nonce, sealed FROM secrets WHERE function = ?1 ORDER BY name",
    )?;
    let rows = statement
        .query_map([function], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut secrets = BTreeMap::new();
    for (name, key_id, nonce, sealed) in rows {
        let key = key.ok_or(Error::NoSecretsKey)?;
        if key_id != key.id() {
            return Err(Error::WrongSecretsKey {
                sealed_with: key_id,
                given: key.id().to_owned(),
            });
        }
        let plain = key
            .open(function, &name, &nonce, &sealed)
            .map_err(|_| Error::Corrupt {
                what: "secret",
                detail: format!("secret {name} of `{function}` does not open with its key"),
            })?;
        let value = String::from_utf8(plain).map_err(|_| Error::Corrupt {
            what: "secret",
            detail: format!("secret {name} of `{function}` is not UTF-8"),
        })?;
        secrets.insert(name, Secret(value));
    }
    Ok(secrets)
}
