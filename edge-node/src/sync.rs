//! Keeps the node's routing table in step with the control plane, as a background task.
//!
//! ```text
//! register ─▶ GET /v1/snapshot?after=REV&wait=30 (long-poll: answers the moment a change lands)
//!          ─▶ fetch the components it lacks, by digest (sha256 checked) ─▶ save them to disk
//!             and with each, the control plane's compiled code when it is for this engine
//!             (sha256 checked) ─▶ the artifact cache
//!          ─▶ load every function of the snapshot (precompiled artifact, or Cranelift)
//!          ─▶ swap the routing table in one store ─▶ save the snapshot ─▶ report the revision
//! any error ─▶ the old table keeps serving; retry after a backoff (0.1 s doubling to 10 s,
//!              full jitter); a snapshot that cannot be loaded is reported unhealthy
//! ```
//!
//! No request ever meets a half-applied snapshot or waits for Cranelift: everything is loaded
//! before the one `ArcSwap::store`. The control plane compiles each component once, so a
//! deploy costs a node a download and an mmap rather than a compilation; compiled code that
//! is missing, corrupt, or for another engine (a different wasmtime build or CPU) is only
//! a slower path: the node compiles the component itself. On start the node serves the snapshot saved on disk, so a
//! node restarted while the control plane is down serves what it served before.

pub mod disk;

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use edge_wire::{NodeStatus, RegisterNode, Registered, Revision, Snapshot, paths};
use tokio::sync::watch;

use crate::config::{LimitOverrides, Limits};
use crate::deployment::Deployment;
use crate::router::Router;
use crate::runtime::{Function, Grants, LoadError, Policy, Runtime};
use crate::server::{RouteTable, State};

use self::disk::Disk;

/// How long one long-poll asks the control plane to wait.
const LONG_POLL: Duration = Duration::from_secs(30);
/// First and largest pause between attempts after a failure.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));
/// Times a component whose bytes do not match their digest is fetched again within one apply.
const FETCH_ATTEMPTS: u32 = 3;

/// Where the control plane is and who this node is.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Base URL, `http://127.0.0.1:7070`.
    pub url: String,
    /// A token of scope `node`.
    pub token: String,
    /// The name the node registers under.
    pub node_name: String,
    /// Load the machine code the control plane compiled, when it is for this node's engine,
    /// instead of compiling here.
    pub precompiled: bool,
}

/// Why a snapshot could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A component is neither on disk nor obtainable.
    #[error("component {digest} of function `{function}`: {message}")]
    Component {
        /// The function.
        function: String,
        /// Its digest.
        digest: String,
        /// What went wrong.
        message: String,
    },
    /// A function does not load on this node.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A route names a function the snapshot lacks.
    #[error("route {route} names function `{function}`, which the snapshot does not deploy")]
    UnknownFunction {
        /// The route.
        route: String,
        /// The function.
        function: String,
    },
}

/// Turns snapshots into routing tables, reusing functions loaded for earlier ones.
pub(crate) struct Applier {
    pub(crate) runtime: Arc<Runtime>,
    disk: Disk,
    defaults: Limits,
    loaded: HashMap<LoadedKey, Arc<Function>>,
}

impl Applier {
    pub(crate) fn new(runtime: Arc<Runtime>, disk: Disk, defaults: Limits) -> Self {
        Self {
            runtime,
            disk,
            defaults,
            loaded: HashMap::new(),
        }
    }

    pub(crate) fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Loads every function version `snapshot` names from the components on disk (compiling
    /// on a blocking thread), then builds its table. Nothing is swapped here.
    pub(crate) async fn build(&mut self, snapshot: &Snapshot) -> Result<RouteTable, ApplyError> {
        let mut loaded = HashMap::new();
        let mut deployments = HashMap::new();
        for (name, deployment) in &snapshot.functions {
            let secrets = &deployment.secrets;
            let active = self
                .function(name, &deployment.active, secrets, &mut loaded)
                .await?;
            let entry = match &deployment.canary {
                Some(canary) if canary.percent > 0 => {
                    let trial = self
                        .function(name, &canary.version, secrets, &mut loaded)
                        .await?;
                    Deployment::with_canary(active, trial, canary.percent)
                }
                _ => Deployment::single(active),
            };
            deployments.insert(name.as_str(), Arc::new(entry));
        }
        let mut entries = Vec::with_capacity(snapshot.routes.len());
        for route in &snapshot.routes {
            let deployment = deployments.get(route.function.as_str()).ok_or_else(|| {
                ApplyError::UnknownFunction {
                    route: crate::config::describe(route.host.as_deref(), &route.path),
                    function: route.function.clone(),
                }
            })?;
            let target = crate::server::Target {
                upstream: crate::server::Upstream::Function(deployment.clone()),
                cache: route.cache,
            };
            entries.push((route.host.clone(), route.path.clone(), target));
        }
        // Functions no longer deployed are dropped (their instances finish first: requests
        // in flight hold their own reference).
        self.loaded = loaded;
        Ok(Router::new(entries))
    }

    /// The function `version` of `name` with `secrets`: already loaded (the same version with
    /// the same secrets), or loaded now.
    async fn function(
        &self,
        name: &str,
        version: &edge_wire::Version,
        secrets: &Secrets,
        loaded: &mut HashMap<LoadedKey, Arc<Function>>,
    ) -> Result<Arc<Function>, ApplyError> {
        let key = (
            name.to_owned(),
            version.version,
            version.digest.clone(),
            secrets.clone(),
        );
        if let Some(function) = loaded.get(&key).or_else(|| self.loaded.get(&key)) {
            let function = function.clone();
            loaded.insert(key, function.clone());
            return Ok(function);
        }
        let bytes = self
            .disk
            .component(&version.digest)
            .ok_or_else(|| ApplyError::Component {
                function: name.to_owned(),
                digest: version.digest.clone(),
                message: "not on disk".into(),
            })?;
        let limits = LimitOverrides {
            timeout_ms: version.limits.timeout_ms,
            memory_mb: version.limits.memory_mb,
            max_body_bytes: version.limits.max_body_bytes,
            max_concurrency: version.limits.max_concurrency,
        }
        .apply(self.defaults);
        let runtime = self.runtime.clone();
        let source = format!("{name} v{} ({})", version.version, &version.digest[..12]);
        let function_name = name.to_owned();
        let outbound = Policy::parse(&version.outbound).map_err(|e| ApplyError::Component {
            function: name.to_owned(),
            digest: version.digest.clone(),
            message: e.to_string(),
        })?;
        // Secrets are configuration values the API never shows; one wins over a value of the
        // same name.
        let mut env = version.env.clone();
        env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.0.clone())));
        let grants = Grants {
            env: env.into_iter().collect(),
            outbound,
            kv: version.kv.clone(),
        };
        let function = tokio::task::spawn_blocking(move || {
            runtime.load(&function_name, &bytes, limits, grants, &source)
        })
        .await
        .expect("loading a function does not panic")?;
        loaded.insert(key, function.clone());
        Ok(function)
    }
}

/// A function's secrets, as the snapshot carries them.
type Secrets = std::collections::BTreeMap<String, edge_wire::Secret>;
/// A loaded function: its name, version, component and secrets.
type LoadedKey = (String, u32, String, Secrets);

/// The node's side of the conversation with the control plane.
pub(crate) struct Sync {
    config: SyncConfig,
    client: reqwest::Client,
    applier: Applier,
    state: Arc<State>,
    revision: Revision,
    address: String,
    node_id: Option<u64>,
}

enum Step {
    /// Something changed (or nothing did, a long-poll ran out): go again at once.
    Again,
    /// The control plane could not be reached or refused: wait, then go again.
    Failed(String),
}

impl Sync {
    pub(crate) fn new(
        config: SyncConfig,
        applier: Applier,
        state: Arc<State>,
        revision: Revision,
        address: String,
    ) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds");
        Self {
            config,
            client,
            applier,
            state,
            revision,
            address,
            node_id: None,
        }
    }

    /// Runs until `stop` turns true.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            let step = tokio::select! {
                step = self.step() => step,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match step {
                Step::Again => failures = 0,
                Step::Failed(why) => {
                    failures = failures.saturating_add(1);
                    let pause = backoff(failures);
                    // The first failure is news; the rest repeat it at debug level.
                    if failures == 1 {
                        tracing::warn!(control_plane = %self.config.url, "{why}; retrying, serving revision {} meanwhile", self.revision);
                    } else {
                        tracing::debug!(control_plane = %self.config.url, attempt = failures, retry_in_ms = pause.as_millis() as u64, "{why}");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                }
            }
        }
    }

    async fn step(&mut self) -> Step {
        let node_id = match self.node_id {
            Some(id) => id,
            None => match self.register().await {
                Ok(id) => {
                    tracing::info!(control_plane = %self.config.url, node_id = id, "registered");
                    self.node_id = Some(id);
                    // Say what this node serves right away (it may be a restart from disk).
                    self.report(None).await;
                    id
                }
                Err(why) => return Step::Failed(why),
            },
        };
        let url = format!(
            "{}{}?after={}&wait={}&node={node_id}",
            self.config.url,
            paths::SNAPSHOT,
            self.revision,
            LONG_POLL.as_secs()
        );
        let response = match self
            .client
            .get(&url)
            .bearer_auth(&self.config.token)
            .timeout(LONG_POLL + Duration::from_secs(15))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return Step::Failed(format!("control plane unreachable: {e}")),
        };
        match response.status().as_u16() {
            304 => return Step::Again,
            200 => {}
            _ => return Step::Failed(refusal(response).await),
        }
        let snapshot: Snapshot = match response.bytes().await.map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(e)) => {
                return Step::Failed(format!(
                    "the control plane sent a snapshot this node cannot read ({e}); is it a different version?"
                ));
            }
            Err(e) => return Step::Failed(format!("snapshot download broke off: {e}")),
        };
        self.purge(&snapshot);
        if let Err(why) = self.fetch_components(&snapshot).await {
            return Step::Failed(why);
        }
        match self.applier.build(&snapshot).await {
            Ok(table) => {
                let routes = table.len();
                self.state.routes.store(Arc::new(table));
                self.revision = snapshot.revision;
                if let Err(e) = self.applier.disk().save_snapshot(&snapshot) {
                    tracing::error!(
                        "applied revision {} but cannot save it: {e}",
                        snapshot.revision
                    );
                }
                self.applier.disk().prune(&snapshot);
                tracing::info!(
                    revision = snapshot.revision,
                    functions = snapshot.functions.len(),
                    routes,
                    "snapshot applied"
                );
                self.report(None).await;
            }
            Err(e) => {
                // The same snapshot will not load any better next time: report it and wait
                // for the next revision, still serving the old table.
                tracing::error!(
                    revision = snapshot.revision,
                    "cannot apply snapshot: {e}; still serving revision {}",
                    self.revision
                );
                let failed = snapshot.revision;
                self.report(Some(e.to_string())).await;
                self.revision = self.revision.max(failed);
            }
        }
        Step::Again
    }

    /// Applies the snapshot's purges this node has not applied yet: those above the revision
    /// it serves. When the list may not reach back that far, everything goes.
    fn purge(&self, snapshot: &Snapshot) {
        let cache = &self.state.cache;
        if self.revision == 0 {
            // Nothing was served yet, so nothing is cached.
            return;
        }
        if snapshot.purges_from >= self.revision {
            tracing::info!(
                revision = snapshot.revision,
                "purging the whole cache: purges since revision {} may be missing",
                self.revision
            );
            cache.purge(&crate::cache::Purge::All);
            return;
        }
        for record in snapshot
            .purges
            .iter()
            .filter(|r| r.revision > self.revision)
        {
            match crate::cache::Purge::from_wire(&record.purge) {
                Some(purge) => {
                    cache.purge(&purge);
                    tracing::info!(revision = record.revision, ?purge, "purged");
                }
                None => tracing::warn!(
                    revision = record.revision,
                    "ignoring a purge of an unreadable URL: {:?}",
                    record.purge
                ),
            }
        }
    }

    async fn register(&self) -> Result<u64, String> {
        let response = self
            .client
            .post(format!("{}{}/register", self.config.url, paths::NODES))
            .bearer_auth(&self.config.token)
            .json(&RegisterNode {
                name: self.config.node_name.clone(),
                address: self.address.clone(),
            })
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("control plane unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("registering: {e}"))?;
        serde_json::from_slice::<Registered>(&body)
            .map(|r| r.id)
            .map_err(|e| format!("the control plane's answer to registering is unreadable: {e}"))
    }

    /// Tells the control plane which revision this node serves; best effort.
    async fn report(&mut self, error: Option<String>) {
        let Some(id) = self.node_id else { return };
        let status = NodeStatus {
            revision: self.revision,
            healthy: error.is_none(),
            error,
        };
        let sent = self
            .client
            .post(format!("{}{}/{id}/status", self.config.url, paths::NODES))
            .bearer_auth(&self.config.token)
            .json(&status)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                // The control plane forgot this node (its database was reset): register anew.
                self.node_id = None;
            }
            Ok(r) if !r.status().is_success() => {
                tracing::warn!("status report refused: {}", refusal(r).await);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("status report failed: {e}"),
        }
    }

    /// Fetches every component of `snapshot` that is not on disk, checking each digest, and
    /// the compiled code the snapshot offers for those this node has no code for.
    async fn fetch_components(&self, snapshot: &Snapshot) -> Result<(), String> {
        let runtime = &self.applier.runtime;
        let compiled =
            self.config.precompiled && snapshot.engine.as_deref() == Some(runtime.engine_key());
        let wanted: HashMap<&str, &str> = compiled
            .then(|| snapshot.compiled())
            .into_iter()
            .flatten()
            .filter(|(digest, _)| !runtime.has_artifact(digest))
            .collect();
        let (components, ()) = tokio::join!(self.fetch_missing(snapshot), async {
            for (digest, sha256) in &wanted {
                self.fetch_compiled(digest, sha256).await;
            }
        });
        components
    }

    /// Fetches the code `sha256` compiled from component `digest` into the artifact cache.
    /// Best effort: without it the node compiles the component.
    async fn fetch_compiled(&self, digest: &str, sha256: &str) {
        let url = format!("{}{}/{sha256}", self.config.url, paths::COMPILED);
        let fetched = match self.fetch(&url, "compiled code").await {
            Ok(bytes) => bytes,
            Err(why) => {
                tracing::warn!(digest, "{why}; compiling the component here instead");
                return;
            }
        };
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&fetched));
        if actual != sha256 {
            tracing::warn!(
                digest,
                expected = sha256,
                actual,
                "compiled code arrived corrupt (sha256 mismatch); discarded, compiling the component here instead"
            );
            return;
        }
        if let Err(e) = self.applier.runtime.store_artifact(digest, &fetched) {
            tracing::warn!(
                digest,
                "cannot keep compiled code ({e}); compiling the component here instead"
            );
        }
    }

    async fn fetch_missing(&self, snapshot: &Snapshot) -> Result<(), String> {
        for digest in snapshot.digests() {
            if self.applier.disk().component(digest).is_some() {
                continue;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let bytes = self.fetch_component(digest).await?;
                // The disk checks the digest before it writes: one hash per fetch.
                let actual = match self.applier.disk().save_component(digest, &bytes) {
                    Ok(()) => break,
                    Err(disk::Error::Digest { actual, .. }) => actual,
                    Err(e) => return Err(e.to_string()),
                };
                tracing::warn!(
                    digest,
                    actual,
                    attempt,
                    "component arrived corrupt (sha256 mismatch); discarded"
                );
                if attempt >= FETCH_ATTEMPTS {
                    return Err(format!(
                        "component {digest} arrived corrupt {attempt} times"
                    ));
                }
            }
        }
        Ok(())
    }

    async fn fetch_component(&self, digest: &str) -> Result<bytes::Bytes, String> {
        let url = format!("{}{}/{digest}", self.config.url, paths::COMPONENTS);
        self.fetch(&url, &format!("component {digest}")).await
    }

    async fn fetch(&self, url: &str, what: &str) -> Result<bytes::Bytes, String> {
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.config.token)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| format!("fetching {what}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching {what}: {}", refusal(response).await));
        }
        response
            .bytes()
            .await
            .map_err(|e| format!("fetching {what}: {e}"))
    }
}

/// A refusal's status and the control plane's `{"error": ...}` message.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let message = response
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<edge_wire::ErrorBody>(&b).ok())
        .map(|b| b.error)
        .unwrap_or_default();
    match status.as_u16() {
        401 => format!(
            "the control plane refused the node's token (401 {message}); pass a token of scope `node` with --token"
        ),
        403 => format!(
            "the node's token lacks scope `node` (403 {message}); create one with `edge tokens create --scope node`"
        ),
        _ => format!("the control plane answered {status}: {message}"),
    }
}

/// Full jitter: a random pause up to the exponential bound, so restarted nodes spread out.
fn backoff(failures: u32) -> Duration {
    let bound = BACKOFF
        .0
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF.1);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    bound
        .mul_f64((random % 1000) as f64 / 1000.0)
        .max(BACKOFF.0 / 2)
}
