//! The database schema, versioned by `PRAGMA user_version`: migration `i` takes the schema from
//! version `i` to `i + 1`, in one transaction. Add migrations at the end; never edit one that
//! has shipped.

use rusqlite::Connection;

/// Migrations in order; the schema version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r"
    -- One row: the revision every change to the served model bumps.
    CREATE TABLE state (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL
    );
    INSERT INTO state (id, revision) VALUES (1, 0);

    -- The active version and the optional canary of each function.
    CREATE TABLE functions (
        name           TEXT PRIMARY KEY,
        active         INTEGER NOT NULL,
        canary_version INTEGER,
        canary_percent INTEGER,
        CHECK ((canary_version IS NULL) = (canary_percent IS NULL))
    );

    -- Immutable versions; deleting a function deletes them.
    CREATE TABLE versions (
        function        TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
        version         INTEGER NOT NULL,
        digest          TEXT NOT NULL,
        env             TEXT NOT NULL,
        limits          TEXT NOT NULL,
        created_unix_ms INTEGER NOT NULL,
        PRIMARY KEY (function, version)
    );

    -- host NULL matches any host. SQLite treats NULLs as distinct in a UNIQUE constraint, so
    -- uniqueness is on an expression that maps NULL to '' (never a valid host).
    CREATE TABLE routes (
        id       INTEGER PRIMARY KEY,
        host     TEXT,
        path     TEXT NOT NULL,
        function TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE
    );
    CREATE UNIQUE INDEX routes_host_path ON routes (ifnull(host, ''), path);

    -- Only the sha256 of a token's secret is kept. AUTOINCREMENT: a deleted id is never reused.
    CREATE TABLE tokens (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        name            TEXT NOT NULL,
        scope           TEXT NOT NULL,
        hash            BLOB NOT NULL UNIQUE,
        created_unix_ms INTEGER NOT NULL
    );

    CREATE TABLE nodes (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        name              TEXT NOT NULL UNIQUE,
        address           TEXT NOT NULL,
        revision          INTEGER NOT NULL DEFAULT 0,
        healthy           INTEGER NOT NULL DEFAULT 1,
        error             TEXT,
        last_seen_unix_ms INTEGER NOT NULL
    );
    ",
    // 2: machine code compiled for nodes, per component and engine (`edge_engine::key`); the
    // code itself is in `compiled/<sha256>`. Components are never deleted, so neither is this.
    r"
    CREATE TABLE compiled (
        component TEXT NOT NULL,
        engine    TEXT NOT NULL,
        sha256    TEXT NOT NULL,
        PRIMARY KEY (component, engine)
    );
    ",
    // 3: routes cached by the nodes; purges, each at the revision that carries it to nodes.
    r"
    ALTER TABLE routes ADD COLUMN cache INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE purges (
        revision        INTEGER PRIMARY KEY,
        target          TEXT NOT NULL,
        created_unix_ms INTEGER NOT NULL
    );
    ",
    // 4: the origins each version may send requests to, a JSON list of patterns.
    r"
    ALTER TABLE versions ADD COLUMN outbound TEXT NOT NULL DEFAULT '[]';
    ",
    // 5: functions' secrets, sealed with the secrets key (kept outside the database); a
    // function's secrets may be set before its first version, and go with it when deleted.
    r"
    CREATE TABLE secrets (
        function        TEXT NOT NULL,
        name            TEXT NOT NULL,
        key_id          TEXT NOT NULL,
        nonce           BLOB NOT NULL,
        sealed          BLOB NOT NULL,
        updated_unix_ms INTEGER NOT NULL,
        PRIMARY KEY (function, name)
    );
    ",
    // 6: KV: the latest value of every key (NULL once deleted, so nodes learn of it), each
    // row at the sequence number of its last write in the KV log; the namespaces each
    // version may open.
    r"
    CREATE TABLE kv (
        namespace       TEXT NOT NULL,
        key             TEXT NOT NULL,
        value           BLOB,
        seq             INTEGER NOT NULL,
        updated_unix_ms INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    CREATE INDEX kv_by_seq ON kv (seq);
    ALTER TABLE state ADD COLUMN kv_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE versions ADD COLUMN kv TEXT NOT NULL DEFAULT '[]';
    ",
];

/// The schema version this build writes.
pub(super) const VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the schema up to [`VERSION`].
///
/// # Errors
/// `Err(found)` when the database is newer than this build; a database error otherwise.
pub(super) fn migrate(conn: &mut Connection) -> Result<Result<(), u32>, rusqlite::Error> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > VERSION {
        return Ok(Err(found));
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", done as u32 + 1)?;
        tx.commit()?;
        tracing::info!(schema_version = done + 1, "database schema migrated");
    }
    Ok(Ok(()))
}
