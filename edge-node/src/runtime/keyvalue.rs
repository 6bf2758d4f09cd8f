//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) over the node's KV replica
//! ([`crate::kv`]): a function may open only the namespaces its version is bound to.
//!
//! `open("")` (or `"default"`) opens the function's first namespace. Opening another one is
//! `access-denied`, logged with the `--kv` that would allow it.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::host::{Host, RequestLabel};
use crate::kv::{Kv, KvError, PAGE};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::Failure,
        },
    });
}

use self::generated::wasi::keyvalue::{atomics, batch, store};

/// An open namespace. (`pub`: the generated bindings re-export it.)
#[allow(unreachable_pub)]
pub struct Bucket {
    namespace: Arc<str>,
}

/// A failed KV call, as the guest sees it. (`pub`: the generated bindings name it.)
#[derive(Debug)]
#[allow(unreachable_pub)]
pub enum Failure {
    /// No namespace of that name is bound to the function.
    NoSuchStore,
    /// Not allowed.
    AccessDenied,
    /// Anything else, with a message.
    Other(String),
}

impl From<wasmtime::component::ResourceTableError> for Failure {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Self::Other(e.to_string())
    }
}

impl From<KvError> for Failure {
    fn from(e: KvError) -> Self {
        Self::Other(e.to_string())
    }
}

/// What one request's guest may reach in KV.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) kv: &'a Arc<Kv>,
    pub(crate) namespaces: &'a [Arc<str>],
    pub(crate) label: &'a RequestLabel,
}

impl KvView<'_> {
    fn namespace(&self, bucket: &Resource<Bucket>) -> Result<Arc<str>, Failure> {
        Ok(self.table.get(bucket)?.namespace.clone())
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Failure> {
        let namespace = if identifier.is_empty() || identifier == "default" {
            self.namespaces.first().cloned()
        } else {
            self.namespaces
                .iter()
                .find(|n| ***n == *identifier)
                .cloned()
        };
        let Some(namespace) = namespace else {
            tracing::warn!(
                function = %self.label.function,
                request_id = %self.label.request_id,
                "the function opened KV namespace {identifier:?}, which it is not bound to; deploy it with --kv {} (or `kv` in the routes file)",
                if identifier.is_empty() { "NAMESPACE" } else { &identifier },
            );
            return Err(if self.namespaces.is_empty() {
                Failure::NoSuchStore
            } else {
                Failure::AccessDenied
            });
        };
        Ok(self.table.push(Bucket { namespace })?)
    }

    fn convert_error(&mut self, err: Failure) -> wasmtime::Result<store::Error> {
        Ok(match err {
            Failure::NoSuchStore => store::Error::NoSuchStore,
            Failure::AccessDenied => store::Error::AccessDenied,
            Failure::Other(message) => store::Error::Other(message),
        })
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(self.kv.get(&namespace, &key).map(|v| v.to_vec()))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(self.kv.set(&namespace, &key, value).await?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(self.kv.delete(&namespace, &key).await?)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(self.kv.get(&namespace, &key).is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Failure> {
        // The cursor is a position: how many keys came before this page.
        let namespace = self.namespace(&bucket)?;
        let skip = cursor.unwrap_or(0);
        let mut after: Option<String> = None;
        let mut skipped = 0u64;
        while skipped < skip {
            let (keys, more) = self.kv.keys(&namespace, after.as_deref());
            let take = usize::try_from(skip - skipped)
                .unwrap_or(usize::MAX)
                .min(keys.len());
            skipped += take as u64;
            after = keys.get(take.saturating_sub(1)).cloned();
            if !more && take == keys.len() {
                return Ok(store::KeyResponse {
                    keys: Vec::new(),
                    cursor: None,
                });
            }
        }
        let (keys, more) = self.kv.keys(&namespace, after.as_deref());
        let next = more.then(|| skip + keys.len() as u64);
        debug_assert!(keys.len() <= PAGE);
        Ok(store::KeyResponse { keys, cursor: next })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(self.kv.increment(&namespace, &key, delta).await?)
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(keys
            .into_iter()
            .map(|key| {
                let value = self.kv.get(&namespace, &key)?;
                Some((key, value.to_vec()))
            })
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        let namespace = self.namespace(&bucket)?;
        let set = key_values
            .into_iter()
            .map(|(key, value)| edge_wire::kv::Pair { key, value })
            .collect();
        Ok(self.kv.batch(&namespace, set, Vec::new()).await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Failure> {
        let namespace = self.namespace(&bucket)?;
        Ok(self.kv.batch(&namespace, Vec::new(), keys).await?)
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Links the three interfaces.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    store::add_to_linker::<Host, HasKv>(linker, Host::kv)?;
    atomics::add_to_linker::<Host, HasKv>(linker, Host::kv)?;
    batch::add_to_linker::<Host, HasKv>(linker, Host::kv)?;
    Ok(())
}
