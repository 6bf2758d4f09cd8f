//! What the control plane, the edge nodes and the `edge` CLI say to each other.
//!
//! ```text
//!  edge CLI ──JSON (these bodies)──▶ control plane ──Snapshot (long-poll)──▶ edge node
//!                                          ▲  GET /v1/components/{sha256} ───────┘
//!                                          └──── NodeStatus (revision applied, health)
//! ```
//!
//! A [`Snapshot`] is everything a node needs to route and serve at one revision: the active
//! version (and canary) of every function and the routes. Components travel separately, by
//! sha256 digest. [`check_component`] is the deploy-time check the control plane runs on an
//! upload and the CLI runs before uploading.
#![warn(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod component;
pub mod kv;
pub mod outbound;

pub use component::{ComponentError, ComponentSummary, check_component, provided_interface};

/// A control-plane revision: every change bumps it by one; 0 is "nothing deployed yet".
pub type Revision = u64;

/// Longest function name.
pub const MAX_FUNCTION_NAME: usize = 63;

/// Whether `name` may name a function: `[a-z0-9][a-z0-9-]{0,62}` (it is also a crate name,
/// a log field and part of metric labels).
pub fn is_function_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=MAX_FUNCTION_NAME).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The API's paths, relative to the control plane's base URL.
pub mod paths {
    /// `PUT` a component's bytes; answers [`super::Uploaded`].
    pub const COMPONENTS: &str = "/v1/components";
    /// `GET /v1/compiled/{sha256}`: machine code the control plane compiled for nodes whose
    /// engine is the snapshot's `engine`.
    pub const COMPILED: &str = "/v1/compiled";
    /// `GET` the snapshot after `?after=REV`, waiting up to `&wait=SECS` for one.
    pub const SNAPSHOT: &str = "/v1/snapshot";
    /// `GET` the functions; `/v1/functions/{name}/...` for one, `/v1/functions/{name}/secrets`
    /// (`GET`) and `/v1/functions/{name}/secrets/{secret}` (`PUT` the value, `DELETE`) for its
    /// secrets.
    pub const FUNCTIONS: &str = "/v1/functions";
    /// `GET`, `PUT` or `DELETE` routes.
    pub const ROUTES: &str = "/v1/routes";
    /// `GET` nodes; `POST /v1/nodes/register`, `POST /v1/nodes/{id}/status`.
    pub const NODES: &str = "/v1/nodes";
    /// `POST` a [`super::Purge`]; answers [`super::Changed`].
    pub const PURGE: &str = "/v1/purge";
    /// `/v1/kv/{namespace}` (`GET` keys, `POST` a batch) and `/v1/kv/{namespace}/{key}`
    /// (`GET`, `PUT`, `DELETE`; `POST .../increment`).
    pub const KV: &str = "/v1/kv";
    /// `GET` the KV log after `?after=SEQ`, waiting up to `&wait=SECS` for a change.
    pub const KV_CHANGES: &str = "/v1/kv-changes";
    /// `GET` or `POST` tokens; `DELETE /v1/tokens/{id}`.
    pub const TOKENS: &str = "/v1/tokens";
    /// Longest long-poll wait a client may ask for, in seconds.
    pub const MAX_WAIT_SECS: u64 = 60;
}

/// Everything a node serves at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The control plane's revision this snapshot is.
    pub revision: Revision,
    /// Every deployed function by name.
    pub functions: BTreeMap<String, FunctionDeployment>,
    /// Routes to those functions.
    pub routes: Vec<Route>,
    /// The engine (`edge_engine::key`) the versions' `compiled`
    /// code is for; a node with another engine compiles the components itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The latest purges, oldest first: every purge with a revision above `purges_from`. A
    /// node applies those above the revision it served before; one that served a revision
    /// at or below `purges_from` may have missed some and empties its cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purges: Vec<PurgeRecord>,
    /// See `purges`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub purges_from: Revision,
}

fn is_zero(revision: &Revision) -> bool {
    *revision == 0
}

/// A purge and the revision that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRecord {
    /// The revision it was made at.
    pub revision: Revision,
    /// What it removes.
    pub purge: Purge,
}

/// `POST /v1/purge`: what to remove from every node's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Purge {
    /// One URL (`https://host/path?query`), every variant.
    Url(String),
    /// Every response tagged with this surrogate key (`Surrogate-Key` or `Cache-Tag`).
    SurrogateKey(String),
    /// Everything a function's routes stored.
    Function(String),
    /// Everything.
    All,
}

impl Snapshot {
    /// Every version the snapshot serves: each function's active one and its canary.
    pub fn versions(&self) -> impl Iterator<Item = &Version> {
        self.functions
            .values()
            .flat_map(|f| std::iter::once(&f.active).chain(f.canary.as_ref().map(|c| &c.version)))
    }

    /// The digests of every component the snapshot uses, each once.
    pub fn digests(&self) -> Vec<&str> {
        let mut digests: Vec<&str> = self.versions().map(|v| v.digest.as_str()).collect();
        digests.sort_unstable();
        digests.dedup();
        digests
    }

    /// Each component digest with the sha256 of the code compiled from it, for the versions
    /// that have some.
    pub fn compiled(&self) -> impl Iterator<Item = (&str, &str)> {
        self.versions()
            .filter_map(|v| Some((v.digest.as_str(), v.compiled.as_deref()?)))
    }
}

/// What serves one function: its active version, and optionally a canary taking a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDeployment {
    /// The version that takes the requests the canary does not.
    pub active: Version,
    /// A second version taking `percent` of the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// The function's secrets by name, for whichever version serves: only nodes get them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Secret>,
}

/// A secret's value. Its `Debug` shows nothing, so that it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Longest secret name.
pub const MAX_SECRET_NAME: usize = 128;
/// Largest secret value, bytes.
pub const MAX_SECRET_BYTES: usize = 64 << 10;

/// Whether `name` may name a secret: `[A-Za-z_][A-Za-z0-9_]*`, up to [`MAX_SECRET_NAME`]
/// characters (a name a guest can read as an environment variable).
pub fn is_secret_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_SECRET_NAME
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A secret as the API lists it: never its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When it was last written, milliseconds since the Unix epoch.
    pub updated_unix_ms: u64,
}

/// An immutable version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// 1, 2, 3... per function.
    pub version: u32,
    /// Lowercase hex sha256 of the component's bytes.
    pub digest: String,
    /// Configuration values the function sees.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Origins it may send requests to ([`outbound`] patterns); none when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<String>,
    /// KV namespaces it may open ([`kv`]); none when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// Limits; unset fields take the node's defaults.
    #[serde(default)]
    pub limits: Limits,
    /// The sha256 of the component's machine code, compiled by the control plane for the
    /// snapshot's `engine` (`GET /v1/compiled/{sha256}`); absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled: Option<String>,
}

/// A canary: `version` takes `percent` of a function's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The version on trial.
    pub version: Version,
    /// 1 to 99.
    pub percent: u8,
}

/// Per-version limits; every field optional, falling back to the node's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time per request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Linear memory of one instance, in mebibytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Largest request body, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Instances of the function running at once on one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// Requests whose host and path match go to `function`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Host, lowercase, without port; `None` matches any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix starting with `/`, matched on whole segments.
    pub path: String,
    /// The function's name.
    pub function: String,
    /// Whether nodes answer its GET and HEAD requests from their cache (RFC 9111).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache: bool,
}

impl Route {
    /// Parses `HOST/PATH`, `/PATH` (any host) or `HOST` (path `/`), as the CLI's `--route`.
    ///
    /// # Errors
    /// A message naming the bad part, when the host or path is malformed.
    pub fn parse(spec: &str, function: &str) -> Result<Route, String> {
        let (host, path) = match spec.find('/') {
            Some(0) => (None, spec),
            Some(i) => (Some(&spec[..i]), &spec[i..]),
            None => (Some(spec), "/"),
        };
        let host = match host {
            Some("*") => None,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return Err(format!(
                        "route {spec:?}: host {h:?} is not a host name; write HOST/PATH, e.g. example.com/api, or /api for any host"
                    ));
                }
                Some(h)
            }
            None => None,
        };
        if path.contains(['?', '#', ' ']) || path.contains("//") {
            return Err(format!(
                "route {spec:?}: path {path:?} must be a plain path prefix such as /api"
            ));
        }
        let path = match path.trim_end_matches('/') {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        Ok(Route {
            host,
            path,
            function: function.to_owned(),
            cache: false,
        })
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} -> {}{}",
            self.host.as_deref().unwrap_or("*"),
            self.path,
            self.function,
            if self.cache { " (cached)" } else { "" }
        )
    }
}

/// What a token may do. Each scope includes the ones below it except `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything, tokens included.
    Admin,
    /// Deploy, roll back, route, purge; and everything `read` may.
    Deploy,
    /// Read functions, versions, routes and nodes.
    Read,
    /// What a node needs: snapshots, components, registering and reporting status.
    Node,
}

impl Scope {
    /// Every scope, for messages.
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Deploy, Scope::Read, Scope::Node];

    /// Whether a token of this scope may do what needs `required`.
    pub fn allows(self, required: Scope) -> bool {
        matches!(
            (self, required),
            (Scope::Admin, _)
                | (Scope::Deploy, Scope::Deploy | Scope::Read)
                | (Scope::Read, Scope::Read)
                | (Scope::Node, Scope::Node)
        )
    }

    /// The scope's name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Deploy => "deploy",
            Scope::Read => "read",
            Scope::Node => "node",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}; use one of admin, deploy, read, node"))
    }
}

/// Every error answer of the API: a status code and this body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and how to fix it.
    pub error: String,
}

/// Answer to uploading a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// Its sha256, lowercase hex.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the control plane already had it.
    pub existed: bool,
}

/// `POST /v1/functions/{name}/versions`: a new version of a function (created if new).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    /// Digest of an uploaded component.
    pub digest: String,
    /// Configuration values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Origins it may send requests to ([`outbound`] patterns).
    #[serde(default)]
    pub outbound: Vec<String>,
    /// KV namespaces it may open.
    #[serde(default)]
    pub kv: Vec<String>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Routes to point at this function (added; existing routes stay).
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A function as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// Its name.
    pub name: String,
    /// The active version's number.
    pub active: u32,
    /// The canary, if any: version and percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<(u32, u8)>,
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// A version as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Its number.
    pub version: u32,
    /// Its component.
    pub digest: String,
    /// When it was created, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Its configuration values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The origins it may send requests to.
    #[serde(default)]
    pub outbound: Vec<String>,
    /// The KV namespaces it may open.
    #[serde(default)]
    pub kv: Vec<String>,
    /// Its limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Answer to a change: the revision it made.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Changed {
    /// The revision that carries the change; nodes that report it serve it.
    pub revision: Revision,
    /// The version concerned, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// `POST /v1/functions/{name}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to make active; the one before the active one when unset.
    #[serde(default)]
    pub to: Option<u32>,
}

/// `POST /v1/functions/{name}/canary`: `percent` 0 ends the canary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCanary {
    /// The version on trial.
    pub version: u32,
    /// 0 (end the canary) to 99.
    pub percent: u8,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it may do.
    pub scope: Scope,
    /// A name to recognise it by.
    #[serde(default)]
    pub name: String,
}

/// A token as the API lists it (the secret itself is shown once, at creation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its id, for deletion.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// When it was created, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The secret: only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /v1/nodes/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterNode {
    /// The node's name (its host name by default); re-registering a name reuses its id.
    pub name: String,
    /// Its public address, for `edge nodes`.
    #[serde(default)]
    pub address: String,
}

/// Answer to registering.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The node's id, for its status reports.
    pub id: u64,
}

/// `POST /v1/nodes/{id}/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    /// The revision the node serves.
    pub revision: Revision,
    /// Whether it could apply the latest snapshot it saw.
    pub healthy: bool,
    /// Why not, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A node as `GET /v1/nodes` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its public address.
    pub address: String,
    /// The revision it serves.
    pub revision: Revision,
    /// Whether it applied the latest snapshot it saw.
    pub healthy: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was last heard from, milliseconds since the Unix epoch.
    pub last_seen_unix_ms: u64,
    /// Heard from recently (a long-poll open or a report within the last 90 s).
    pub live: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_like_the_cli_writes_them() {
        let r = Route::parse("Example.com/api/", "f").unwrap();
        assert_eq!(r.host.as_deref(), Some("example.com"));
        assert_eq!(r.path, "/api");
        let r = Route::parse("/", "f").unwrap();
        assert_eq!((r.host, r.path.as_str()), (None, "/"));
        let r = Route::parse("example.com", "f").unwrap();
        assert_eq!(r.path, "/");
        assert!(Route::parse("exa mple.com/", "f").is_err());
        assert!(Route::parse("example.com/a?b", "f").is_err());
    }

    #[test]
    fn scopes_nest_except_node() {
        assert!(Scope::Admin.allows(Scope::Node));
        assert!(Scope::Deploy.allows(Scope::Read));
        assert!(!Scope::Deploy.allows(Scope::Admin));
        assert!(!Scope::Read.allows(Scope::Deploy));
        assert!(!Scope::Node.allows(Scope::Read));
        assert!(!Scope::Deploy.allows(Scope::Node));
        assert_eq!("deploy".parse::<Scope>(), Ok(Scope::Deploy));
        assert!(
            "root"
                .parse::<Scope>()
                .unwrap_err()
                .contains("admin, deploy")
        );
    }

    #[test]
    fn snapshot_lists_each_digest_once() {
        let v = |n, d: &str| Version {
            version: n,
            digest: d.into(),
            env: BTreeMap::new(),
            outbound: Vec::new(),
            kv: Vec::new(),
            limits: Limits::default(),
            compiled: None,
        };
        let mut s = Snapshot::default();
        s.functions.insert(
            "a".into(),
            FunctionDeployment {
                active: v(1, "x"),
                canary: Some(Canary {
                    version: v(2, "y"),
                    percent: 10,
                }),
                secrets: BTreeMap::from([("TOKEN".into(), Secret("hunter2".into()))]),
            },
        );
        s.functions.insert(
            "b".into(),
            FunctionDeployment {
                active: v(1, "x"),
                canary: None,
                secrets: BTreeMap::new(),
            },
        );
        assert_eq!(s.digests(), ["x", "y"]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
        assert!(json.contains(r#""secrets":{"TOKEN":"hunter2"}"#), "{json}");
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "Debug shows no secret"
        );
    }

    #[test]
    fn secret_names_are_environment_names() {
        for good in ["TOKEN", "_x", "api_key_2"] {
            assert!(is_secret_name(good), "{good}");
        }
        for bad in ["", "2FA", "with-dash", "a b", "é", &"x".repeat(129)] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }
}
