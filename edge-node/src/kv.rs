//! KV for functions (`wasi:keyvalue`): a replica of every namespace on this node.
//!
//! Reads are served from the replica, in memory, without a network round trip: eventually
//! consistent, as Cloudflare's edge reads are. With a control plane, the control plane is the
//! durable source of truth: a write goes there first (so increments from every node add up),
//! then into the replica with the number the control plane gave it, so the node that wrote
//! reads its write at once; other nodes get it from the KV log they follow
//! ([`Kv::follow`], a long-poll like the snapshot's). Each entry keeps the log number of its
//! value and only a newer one replaces it, so the two paths may arrive in any order.
//! Without a control plane (`--routes`), the node is the source of truth itself.
//!
//! The replica is saved to `DATA_DIR/kv.json` (mode 0600) shortly after each change and read
//! back at start, so a node restarted while the control plane is away still serves reads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use edge_wire::kv::{self, Batch, Change, Changes, Increment, Pair, Written};
use serde::{Deserialize, Serialize};

/// How long after a change the replica is saved (changes in between are saved together).
const SAVE_DELAY: Duration = Duration::from_millis(50);
/// How long one long-poll of the KV log waits.
const FOLLOW_WAIT_SECS: u64 = 25;
/// The replica's file in the data dir.
pub const FILE: &str = "kv.json";
/// Keys per page of `list-keys`.
pub const PAGE: usize = 1000;

/// Why a KV operation failed; the message is what the guest sees.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A key or value breaks a limit.
    #[error("{0}")]
    Invalid(String),
    /// The control plane, which takes every write, cannot be reached or refused it.
    #[error("{0}")]
    Unavailable(String),
}

/// One key's latest value (`None` once deleted) and its place in the log.
#[derive(Debug, Clone)]
struct Entry {
    value: Option<Bytes>,
    seq: u64,
}

/// The node's KV replica.
pub struct Kv {
    namespaces: RwLock<HashMap<Box<str>, BTreeMap<String, Entry>>>,
    /// With a control plane: how far the log has been followed. Without: the last number
    /// given to a write.
    seq: AtomicU64,
    backend: Backend,
    file: Option<PathBuf>,
    save_pending: AtomicBool,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

enum Backend {
    /// This node is the source of truth.
    Local,
    /// The control plane at `base` is.
    Remote {
        client: reqwest::Client,
        base: String,
        token: String,
    },
}

/// What `kv.json` holds.
#[derive(Serialize, Deserialize)]
struct Saved {
    seq: u64,
    entries: Vec<Change>,
}

impl Kv {
    /// A replica that is its own source of truth (a node without a control plane), saved in
    /// `file` when given.
    pub fn local(file: Option<PathBuf>) -> Arc<Self> {
        Self::open(Backend::Local, file)
    }

    /// A replica of the control plane at `base` (writes go there with `token`), saved in
    /// `file` when given.
    pub fn remote(base: &str, token: &str, file: Option<PathBuf>) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(FOLLOW_WAIT_SECS + 15))
            .no_proxy()
            .build()
            .expect("an HTTP client with rustls");
        Self::open(
            Backend::Remote {
                client,
                base: base.trim_end_matches('/').to_owned(),
                token: token.to_owned(),
            },
            file,
        )
    }

    fn open(backend: Backend, file: Option<PathBuf>) -> Arc<Self> {
        let kv = Arc::new(Self {
            namespaces: RwLock::default(),
            seq: AtomicU64::new(0),
            backend,
            file,
            save_pending: AtomicBool::new(false),
        });
        if let Some(path) = &kv.file {
            match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                    Ok(saved) => {
                        kv.apply(&saved.entries);
                        kv.seq.store(saved.seq, Ordering::Relaxed);
                        tracing::info!(file = %path.display(), seq = saved.seq, keys = saved.entries.len(), "KV replica loaded");
                    }
                    Err(e) => tracing::warn!(
                        file = %path.display(),
                        "the saved KV replica is unreadable ({e}); starting empty, the control plane's log fills it again"
                    ),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), "cannot read the saved KV replica: {e}")
                }
            }
        }
        kv
    }

    /// The value of `key` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<Bytes> {
        let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        namespaces.get(namespace)?.get(key)?.value.clone()
    }

    /// Up to [`PAGE`] keys of `namespace` after `after`, in order, and whether more follow.
    pub fn keys(&self, namespace: &str, after: Option<&str>) -> (Vec<String>, bool) {
        let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        let Some(entries) = namespaces.get(namespace) else {
            return (Vec::new(), false);
        };
        let range = match after {
            Some(after) => entries
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => entries.range::<str, _>(..),
        };
        let mut keys: Vec<String> = range
            .filter(|(_, entry)| entry.value.is_some())
            .map(|(key, _)| key.clone())
            .take(PAGE + 1)
            .collect();
        let more = keys.len() > PAGE;
        keys.truncate(PAGE);
        (keys, more)
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// A bad key or value; the control plane cannot take the write.
    pub async fn set(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        kv::check_key(key).map_err(KvError::Invalid)?;
        kv::check_value(key, &value).map_err(KvError::Invalid)?;
        let seq = match &self.backend {
            Backend::Local => self.next_seq(),
            Backend::Remote { .. } => {
                let path = kv::key_path(namespace, key);
                let value = value.clone();
                self.write_remote(move |r| r.put(path).body(value))
                    .await?
                    .seq
            }
        };
        self.put_entry(namespace, key, Some(value.into()), seq);
        Ok(())
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// A bad key; the control plane cannot take the write.
    pub async fn delete(self: &Arc<Self>, namespace: &str, key: &str) -> Result<(), KvError> {
        kv::check_key(key).map_err(KvError::Invalid)?;
        let seq = match &self.backend {
            Backend::Local => self.next_seq(),
            Backend::Remote { .. } => {
                let path = kv::key_path(namespace, key);
                self.write_remote(move |r| r.delete(path)).await?.seq
            }
        };
        self.put_entry(namespace, key, None, seq);
        Ok(())
    }

    /// Adds `delta` to the number under `key` (none is 0); the new number.
    ///
    /// # Errors
    /// The value is not a number, the sum overflows, or the control plane cannot take it.
    pub async fn increment(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, KvError> {
        kv::check_key(key).map_err(KvError::Invalid)?;
        match &self.backend {
            Backend::Local => {
                let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
                let entries = namespaces.entry(namespace.into()).or_default();
                let current = entries.get(key).and_then(|e| e.value.as_deref());
                let value = kv::incremented(current, delta)
                    .map_err(|why| KvError::Invalid(format!("KV key {key:?} {why}")))?;
                let seq = self.next_seq();
                entries.insert(
                    key.to_owned(),
                    Entry {
                        value: Some(value.to_string().into()),
                        seq,
                    },
                );
                drop(namespaces);
                self.schedule_save();
                Ok(value)
            }
            Backend::Remote { .. } => {
                let path = format!("{}/increment", kv::key_path(namespace, key));
                let written = self
                    .write_remote(move |r| r.post(path).json(&Increment { delta }))
                    .await?;
                let value = written.value.unwrap_or_default();
                self.put_entry(namespace, key, Some(value.to_string().into()), written.seq);
                Ok(value)
            }
        }
    }

    /// Stores `set` and deletes `delete` together.
    ///
    /// # Errors
    /// A bad key or value (nothing is written then); the control plane cannot take it.
    pub async fn batch(
        self: &Arc<Self>,
        namespace: &str,
        set: Vec<Pair>,
        delete: Vec<String>,
    ) -> Result<(), KvError> {
        for pair in &set {
            kv::check_key(&pair.key).map_err(KvError::Invalid)?;
            kv::check_value(&pair.key, &pair.value).map_err(KvError::Invalid)?;
        }
        for key in &delete {
            kv::check_key(key).map_err(KvError::Invalid)?;
        }
        if set.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let count = (set.len() + delete.len()) as u64;
        let first = match &self.backend {
            Backend::Local => {
                let last = self.seq.fetch_add(count, Ordering::Relaxed) + count;
                last + 1 - count
            }
            Backend::Remote { .. } => {
                let path = format!("{}/{namespace}", edge_wire::paths::KV);
                let batch = Batch {
                    set: set.clone(),
                    delete: delete.clone(),
                };
                let last = self
                    .write_remote(move |r| r.post(path).json(&batch))
                    .await?
                    .seq;
                last + 1 - count
            }
        };
        let mut seq = first;
        for pair in set {
            self.put_entry(namespace, &pair.key, Some(pair.value.into()), seq);
            seq += 1;
        }
        for key in delete {
            self.put_entry(namespace, &key, None, seq);
            seq += 1;
        }
        Ok(())
    }

    /// Applies entries of the control plane's log (or of the saved replica).
    fn apply(self: &Arc<Self>, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            let entries = namespaces
                .entry(change.namespace.as_str().into())
                .or_default();
            newer(
                entries,
                &change.key,
                change.value.clone().map(Bytes::from),
                change.seq,
            );
        }
        drop(namespaces);
        self.schedule_save();
    }

    fn put_entry(self: &Arc<Self>, namespace: &str, key: &str, value: Option<Bytes>, seq: u64) {
        {
            let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
            let entries = namespaces.entry(namespace.into()).or_default();
            newer(entries, key, value, seq);
        }
        self.schedule_save();
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends a write to the control plane; its answer, or why it failed.
    async fn write_remote(
        &self,
        build: impl FnOnce(Requests<'_>) -> reqwest::RequestBuilder,
    ) -> Result<Written, KvError> {
        let Backend::Remote {
            client,
            base,
            token,
        } = &self.backend
        else {
            unreachable!("remote writes only with a control plane");
        };
        let request = build(Requests { client, base }).bearer_auth(token);
        let unavailable = |why: String| {
            KvError::Unavailable(format!(
                "the KV write did not reach the control plane ({why}); writes need it, reads keep working"
            ))
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_client_error() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            return Err(KvError::Invalid(message));
        }
        if !status.is_success() {
            return Err(unavailable(format!("it answered {status}")));
        }
        response
            .json::<Written>()
            .await
            .map_err(|e| unavailable(e.to_string()))
    }

    /// Follows the control plane's KV log until `stop` turns true (a no-op without one).
    pub async fn follow(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Backend::Remote {
            client,
            base,
            token,
        } = &self.backend
        else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let after = self.seq.load(Ordering::Relaxed);
            let url = format!(
                "{base}{}?after={after}&wait={FOLLOW_WAIT_SECS}",
                edge_wire::paths::KV_CHANGES
            );
            let poll = client.get(url).bearer_auth(token).send();
            let response = tokio::select! {
                response = poll => response,
                () = edge_serving::stopped(&mut stop) => return,
            };
            let failed = match response {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_MODIFIED => None,
                Ok(r) if r.status().is_success() => match r.json::<Changes>().await {
                    Ok(changes) => {
                        self.apply(&changes.changes);
                        let last = changes.changes.last().map_or(after, |c| c.seq);
                        self.seq.fetch_max(last, Ordering::Relaxed);
                        None
                    }
                    Err(e) => Some(e.to_string()),
                },
                Ok(r) => Some(format!("it answered {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            match failed {
                None => backoff = Duration::from_millis(100),
                Some(why) => {
                    tracing::debug!("following the KV log failed ({why}); retrying in {backoff:?}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = edge_serving::stopped(&mut stop) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Saves the replica soon (once for all changes until then).
    fn schedule_save(self: &Arc<Self>) {
        if self.file.is_none() || self.save_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.save_pending.store(false, Ordering::Release);
            return;
        };
        let kv = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(SAVE_DELAY).await;
            kv.save_pending.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(move || kv.save_now()).await;
        });
    }

    /// Writes the replica to its file (atomically).
    pub fn save_now(&self) {
        let Some(path) = &self.file else { return };
        let saved = {
            let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
            let mut entries = Vec::new();
            for (namespace, keys) in namespaces.iter() {
                for (key, entry) in keys {
                    entries.push(Change {
                        seq: entry.seq,
                        namespace: namespace.to_string(),
                        key: key.clone(),
                        value: entry.value.as_ref().map(|v| v.to_vec()),
                    });
                }
            }
            Saved {
                seq: self.seq.load(Ordering::Relaxed),
                entries,
            }
        };
        let json = serde_json::to_vec(&saved).expect("the replica serialises");
        if let Err(e) = crate::sync::disk::write_atomically(path, &json) {
            tracing::warn!("cannot save the KV replica: {e}");
        }
    }
}

/// Builds requests against the control plane.
struct Requests<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
}

impl Requests<'_> {
    fn put(&self, path: String) -> reqwest::RequestBuilder {
        self.client.put(format!("{}{path}", self.base))
    }
    fn delete(&self, path: String) -> reqwest::RequestBuilder {
        self.client.delete(format!("{}{path}", self.base))
    }
    fn post(&self, path: String) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }
}

/// Puts `value` at `seq` unless the entry already holds a newer one.
fn newer(entries: &mut BTreeMap<String, Entry>, key: &str, value: Option<Bytes>, seq: u64) {
    match entries.get_mut(key) {
        Some(entry) if entry.seq >= seq => {}
        Some(entry) => *entry = Entry { value, seq },
        None => {
            entries.insert(key.to_owned(), Entry { value, seq });
        }
    }
}
