//! Functions, versions, routes, and the snapshot built from them.

use std::collections::BTreeMap;

use edge_wire::{
    Canary, Changed, FunctionDeployment, FunctionInfo, Limits, NewVersion, Purge, PurgeRecord,
    Revision, Route, Snapshot, Version, VersionInfo,
};
use rusqlite::{OptionalExtension as _, Transaction, params};

use super::{Error, Result, Store, from_sql_int, to_sql_int, validate};

/// A function's row.
struct FunctionRow {
    active: u32,
    canary: Option<(u32, u8)>,
}

impl Store {
    /// The sha256 of the code compiled from `component` for `engine`, if there is one.
    pub fn compiled(&self, component: &str, engine: &str) -> Result<Option<String>> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT sha256 FROM compiled WHERE component = ?1 AND engine = ?2",
                    (component, engine),
                    |row| row.get(0),
                )
                .optional()?)
        })
    }

    /// Records that `sha256` is the code compiled from `component` for `engine`. Not a change
    /// of the served model: the revision stays; the next snapshot offers it.
    pub fn add_compiled(&self, component: &str, engine: &str, sha256: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO compiled (component, engine, sha256) VALUES (?1, ?2, ?3)",
                (component, engine, sha256),
            )?;
            Ok(())
        })
    }

    /// Adds version N+1 of `name` (creating the function if new), makes it active, ends any
    /// canary, and points `new.routes` at it; a route that pointed at another function is
    /// moved. The caller checks that the component `new.digest` was uploaded.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, digest or route.
    pub fn new_version(&self, name: &str, new: &NewVersion, now_ms: u64) -> Result<Changed> {
        validate::function_name(name)?;
        validate::digest(&new.digest)?;
        let routes = new
            .routes
            .iter()
            .map(|route| validate::route(route, Some(name)))
            .collect::<Result<Vec<_>>>()?;
        for pattern in &new.outbound {
            validate::outbound(pattern)?;
        }
        for namespace in &new.kv {
            edge_wire::kv::check_namespace(namespace).map_err(Error::Invalid)?;
        }
        let kv = serde_json::to_string(&new.kv).expect("a string list serialises");
        let env = serde_json::to_string(&new.env).expect("a string map serialises");
        let outbound = serde_json::to_string(&new.outbound).expect("a string list serialises");
        let limits = serde_json::to_string(&new.limits).expect("limits serialise");
        let (version, revision) = self.change(|tx| {
            let latest: Option<u32> = tx.query_row(
                "SELECT max(version) FROM versions WHERE function = ?1",
                [name],
                |row| row.get(0),
            )?;
            let version = latest.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO functions (name, active) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE
                 SET active = excluded.active, canary_version = NULL, canary_percent = NULL",
                params![name, version],
            )?;
            tx.execute(
                "INSERT INTO versions
                 (function, version, digest, env, outbound, kv, limits, created_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    name,
                    version,
                    new.digest,
                    env,
                    outbound,
                    kv,
                    limits,
                    to_sql_int(now_ms)
                ],
            )?;
            for route in &routes {
                upsert_route(tx, route)?;
            }
            Ok(version)
        })?;
        tracing::info!(
            function = name,
            version,
            revision,
            digest = new.digest,
            "version deployed"
        );
        Ok(Changed {
            revision,
            version: Some(version),
        })
    }

    /// Makes version `to` of `name` active, or, when `to` is `None`, the highest version below
    /// the active one. Ends any canary. Any version other than the active one may be chosen,
    /// a later one included (rolling forward again).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown function or version; [`Error::Invalid`] when `to` is
    /// already active or there is no earlier version.
    pub fn rollback(&self, name: &str, to: Option<u32>) -> Result<Changed> {
        let ((from, to), revision) = self.change(|tx| {
            let function = function_row(tx, name)?;
            let to = match to {
                Some(to) => {
                    require_version(tx, name, to)?;
                    if to == function.active {
                        return Err(Error::Invalid(format!(
                            "version {to} is already the active version of `{name}`; pass another version"
                        )));
                    }
                    to
                }
                None => tx
                    .query_row(
                        "SELECT max(version) FROM versions WHERE function = ?1 AND version < ?2",
                        params![name, function.active],
                        |row| row.get::<_, Option<u32>>(0),
                    )?
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "`{name}` has no earlier version than its active version {}; pass the version to make active",
                            function.active
                        ))
                    })?,
            };
            tx.execute(
                "UPDATE functions SET active = ?2, canary_version = NULL, canary_percent = NULL
                 WHERE name = ?1",
                params![name, to],
            )?;
            Ok((function.active, to))
        })?;
        tracing::info!(function = name, from, to, revision, "rolled back");
        Ok(Changed {
            revision,
            version: Some(to),
        })
    }

    /// Sends `percent` of `name`'s requests to `version`; `percent` 0 ends the canary.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a percent over 99 or the active version; [`Error::NotFound`] for
    /// an unknown function or version.
    pub fn set_canary(&self, name: &str, version: u32, percent: u8) -> Result<Changed> {
        if percent > 99 {
            return Err(Error::Invalid(format!(
                "canary percent {percent} is out of range: use 1 to 99, or 0 to end the canary"
            )));
        }
        let ((), revision) = self.change(|tx| {
            let function = function_row(tx, name)?;
            if percent == 0 {
                tx.execute(
                    "UPDATE functions SET canary_version = NULL, canary_percent = NULL
                     WHERE name = ?1",
                    [name],
                )?;
                return Ok(());
            }
            require_version(tx, name, version)?;
            if version == function.active {
                return Err(Error::Invalid(format!(
                    "version {version} is the active version of `{name}`; a canary needs another version"
                )));
            }
            tx.execute(
                "UPDATE functions SET canary_version = ?2, canary_percent = ?3 WHERE name = ?1",
                params![name, version, percent],
            )?;
            Ok(())
        })?;
        if percent == 0 {
            tracing::info!(function = name, revision, "canary ended");
        } else {
            tracing::info!(function = name, version, percent, revision, "canary set");
        }
        Ok(Changed {
            revision,
            version: (percent > 0).then_some(version),
        })
    }

    /// Deletes `name` with its versions and routes. (Versions go too, so a function created
    /// again under the same name starts at version 1 with no history to roll back to.) The
    /// component files stay: other versions may share them.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown function.
    pub fn delete_function(&self, name: &str) -> Result<Changed> {
        let (routes, revision) = self.change(|tx| {
            function_row(tx, name)?;
            let routes: i64 = tx.query_row(
                "SELECT count(*) FROM routes WHERE function = ?1",
                [name],
                |r| r.get(0),
            )?;
            // ON DELETE CASCADE removes the versions and routes.
            tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
            tx.execute("DELETE FROM secrets WHERE function = ?1", [name])?;
            Ok(routes)
        })?;
        tracing::info!(function = name, routes, revision, "function deleted");
        Ok(Changed {
            revision,
            version: None,
        })
    }

    /// Every function with its versions, by name.
    ///
    /// # Errors
    /// A database error.
    pub fn functions(&self) -> Result<Vec<FunctionInfo>> {
        self.read(|tx| {
            let names = tx
                .prepare("SELECT name FROM functions ORDER BY name")?
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            names.iter().map(|name| function_info(tx, name)).collect()
        })
    }

    /// One function with its versions.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the function.
    pub fn function(&self, name: &str) -> Result<FunctionInfo> {
        self.read(|tx| function_info(tx, name))
    }

    /// Every route, by host (any-host routes first) and path.
    ///
    /// # Errors
    /// A database error.
    pub fn routes(&self) -> Result<Vec<Route>> {
        self.read(routes)
    }

    /// Adds a route, or points an existing one (same host and path) at `route.function`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed route; [`Error::NotFound`] when its function does
    /// not exist.
    pub fn put_route(&self, route: &Route) -> Result<Changed> {
        let route = validate::route(route, None)?;
        let ((), revision) = self.change(|tx| {
            function_row(tx, &route.function)?;
            upsert_route(tx, &route)
        })?;
        tracing::info!(%route, revision, "route set");
        Ok(Changed {
            revision,
            version: None,
        })
    }

    /// Deletes the route with `route`'s host and path (its function is not compared).
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no such route.
    pub fn delete_route(&self, route: &Route) -> Result<Changed> {
        // Normalised the way it was stored.
        let (host, path) = validate::route_key(route)?;
        let ((), revision) = self.change(|tx| {
            let deleted = tx.execute(
                "DELETE FROM routes WHERE host IS ?1 AND path = ?2",
                params![host, path],
            )?;
            if deleted == 0 {
                return Err(Error::NotFound(format!(
                    "there is no route for {}{path}; list them with GET /v1/routes",
                    host.as_deref().unwrap_or("*"),
                )));
            }
            Ok(())
        })?;
        tracing::info!(
            host = host.as_deref().unwrap_or("*"),
            path,
            revision,
            "route deleted"
        );
        Ok(Changed {
            revision,
            version: None,
        })
    }
}

/// Inserts `route`, or moves an existing route with its host and path to its function.
fn upsert_route(tx: &Transaction<'_>, route: &Route) -> Result<()> {
    let existing: Option<String> = tx
        .query_row(
            "SELECT function FROM routes WHERE host IS ?1 AND path = ?2",
            params![route.host, route.path],
            |row| row.get(0),
        )
        .optional()?;
    match existing {
        Some(function) if function == route.function => {
            tx.execute(
                "UPDATE routes SET cache = ?3 WHERE host IS ?1 AND path = ?2",
                params![route.host, route.path, route.cache],
            )?;
        }
        Some(function) => {
            tx.execute(
                "UPDATE routes SET function = ?3, cache = ?4 WHERE host IS ?1 AND path = ?2",
                params![route.host, route.path, route.function, route.cache],
            )?;
            tracing::info!(
                %route,
                from = function,
                "route moved from function `{function}` to `{}`",
                route.function
            );
        }
        None => {
            tx.execute(
                "INSERT INTO routes (host, path, function, cache) VALUES (?1, ?2, ?3, ?4)",
                params![route.host, route.path, route.function, route.cache],
            )?;
        }
    }
    Ok(())
}

fn function_row(tx: &Transaction<'_>, name: &str) -> Result<FunctionRow> {
    tx.query_row(
        "SELECT active, canary_version, canary_percent FROM functions WHERE name = ?1",
        [name],
        |row| {
            let canary_version: Option<u32> = row.get(1)?;
            let canary_percent: Option<u8> = row.get(2)?;
            Ok(FunctionRow {
                active: row.get(0)?,
                canary: canary_version.zip(canary_percent),
            })
        },
    )
    .optional()?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "there is no function named `{name}`; list them with GET /v1/functions"
        ))
    })
}

fn require_version(tx: &Transaction<'_>, name: &str, version: u32) -> Result<()> {
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM versions WHERE function = ?1 AND version = ?2)",
        params![name, version],
        |row| row.get(0),
    )?;
    if exists {
        return Ok(());
    }
    let versions = tx
        .prepare("SELECT version FROM versions WHERE function = ?1 ORDER BY version")?
        .query_map([name], |row| row.get::<_, u32>(0))?
        .map(|v| v.map(|v| v.to_string()))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Err(Error::NotFound(format!(
        "`{name}` has no version {version}; its versions are {}",
        versions.join(", ")
    )))
}

fn versions(tx: &Transaction<'_>, name: &str) -> Result<Vec<VersionInfo>> {
    let mut statement = tx.prepare(
        "SELECT version, digest, env, outbound, kv, limits, created_unix_ms FROM versions
         WHERE function = ?1 ORDER BY version",
    )?;
    let rows = statement.query_map([name], |row| {
        Ok((
            row.get::<_, u32>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    rows.map(|row| {
        let (version, digest, env, outbound, kv, limits, created) = row?;
        Ok(VersionInfo {
            version,
            digest,
            created_unix_ms: from_sql_int(created),
            env: parse_json("version's env", &env)?,
            outbound: parse_json("version's outbound list", &outbound)?,
            kv: parse_json("version's KV namespaces", &kv)?,
            limits: parse_json::<Limits>("version's limits", &limits)?,
        })
    })
    .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &'static str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn function_info(tx: &Transaction<'_>, name: &str) -> Result<FunctionInfo> {
    let row = function_row(tx, name)?;
    Ok(FunctionInfo {
        name: name.to_owned(),
        active: row.active,
        canary: row.canary,
        versions: versions(tx, name)?,
    })
}

fn routes(tx: &Transaction<'_>) -> Result<Vec<Route>> {
    let routes = tx
        .prepare("SELECT host, path, function, cache FROM routes ORDER BY ifnull(host, ''), path")?
        .query_map([], |row| {
            Ok(Route {
                host: row.get(0)?,
                path: row.get(1)?,
                function: row.get(2)?,
                cache: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(routes)
}

/// The snapshot at `revision`, read inside the transaction that made it, offering the code
/// compiled for `engine`.
pub(super) fn snapshot(
    tx: &Transaction<'_>,
    revision: Revision,
    engine: Option<&str>,
    secrets_key: Option<&crate::secrets::SecretsKey>,
) -> Result<Snapshot> {
    let mut compiled_for =
        tx.prepare_cached("SELECT sha256 FROM compiled WHERE component = ?1 AND engine = ?2")?;
    let mut compiled = |digest: &str| -> Result<Option<String>> {
        let Some(engine) = engine else {
            return Ok(None);
        };
        Ok(compiled_for
            .query_row((digest, engine), |row| row.get(0))
            .optional()?)
    };
    let names = tx
        .prepare("SELECT name FROM functions ORDER BY name")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut functions = BTreeMap::new();
    for name in names {
        let row = function_row(tx, &name)?;
        let mut by_number: BTreeMap<u32, VersionInfo> = versions(tx, &name)?
            .into_iter()
            .map(|v| (v.version, v))
            .collect();
        let mut take = |number: u32| -> Result<Version> {
            let v = by_number.remove(&number).ok_or(Error::Corrupt {
                what: "function",
                detail: format!("`{name}` names version {number}, which does not exist"),
            })?;
            Ok(Version {
                compiled: compiled(&v.digest)?,
                version: v.version,
                digest: v.digest,
                env: v.env,
                outbound: v.outbound,
                kv: v.kv,
                limits: v.limits,
            })
        };
        let active = take(row.active)?;
        let canary = match row.canary {
            Some((version, percent)) => Some(Canary {
                version: take(version)?,
                percent,
            }),
            None => None,
        };
        let secrets = super::secrets::opened(tx, &name, secrets_key)?;
        functions.insert(
            name,
            FunctionDeployment {
                active,
                canary,
                secrets,
            },
        );
    }
    let (purges, purges_from) = purges(tx)?;
    Ok(Snapshot {
        revision,
        functions,
        routes: routes(tx)?,
        engine: engine.map(str::to_owned),
        purges,
        purges_from,
    })
}

/// How many of the latest purges every snapshot carries.
const PURGES_KEPT: usize = 1000;

/// The latest purges, oldest first, and the revision above which that list is complete.
fn purges(tx: &Transaction<'_>) -> Result<(Vec<PurgeRecord>, Revision)> {
    let mut records = tx
        .prepare_cached("SELECT revision, target FROM purges ORDER BY revision DESC LIMIT ?1")?
        .query_map([PURGES_KEPT as i64], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(revision, target)| {
            let purge = serde_json::from_str(&target).map_err(|e| Error::Corrupt {
                what: "purge",
                detail: format!("at revision {revision}: {e}"),
            })?;
            Ok(PurgeRecord {
                revision: from_sql_int(revision),
                purge,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    records.reverse();
    let from = if records.len() == PURGES_KEPT {
        records[0].revision - 1
    } else {
        0
    };
    Ok((records, from))
}

impl Store {
    /// Records a purge; it reaches nodes with the revision it makes.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty key, function name or URL.
    pub fn purge(&self, purge: &Purge, now_ms: u64) -> Result<Changed> {
        let empty = match purge {
            Purge::Url(value) | Purge::SurrogateKey(value) | Purge::Function(value) => {
                value.trim().is_empty()
            }
            Purge::All => false,
        };
        if empty {
            return Err(Error::Invalid(
                "a purge needs a URL, a surrogate key or a function name; or purge all".into(),
            ));
        }
        if let Purge::Url(url) = purge {
            let uri: http::Uri = url.parse().map_err(|e| {
                Error::Invalid(format!("cannot purge {url:?}: {e}; pass https://HOST/PATH"))
            })?;
            if uri.host().is_none() {
                return Err(Error::Invalid(format!(
                    "cannot purge {url:?}: it names no host; pass https://HOST/PATH"
                )));
            }
        }
        let target = serde_json::to_string(purge).expect("a purge serialises");
        let ((), revision) = self.change(|tx| {
            let revision: i64 =
                tx.query_row("SELECT revision + 1 FROM state WHERE id = 1", [], |row| {
                    row.get(0)
                })?;
            tx.execute(
                "INSERT INTO purges (revision, target, created_unix_ms) VALUES (?1, ?2, ?3)",
                params![revision, target, to_sql_int(now_ms)],
            )?;
            // Only the latest ones travel in snapshots; older ones are of no use to anyone.
            tx.execute(
                "DELETE FROM purges WHERE revision <= ?1 - ?2
                 AND revision NOT IN (SELECT revision FROM purges ORDER BY revision DESC LIMIT ?2)",
                params![revision, PURGES_KEPT as i64],
            )?;
            Ok(())
        })?;
        tracing::info!(revision, ?purge, "purge recorded");
        Ok(Changed {
            revision,
            version: None,
        })
    }
}
