//! Key-value data: the namespaces the function is bound to (`edge deploy --kv NAMESPACE`, or
//! `kv` in a routes file), through the standard `wasi:keyvalue` interfaces (0.2.0-draft).
//!
//! Reads are served by the node the request runs on, from its copy: fast, and eventually
//! consistent across nodes; a function always reads its own writes. [`Store::increment`] is
//! atomic across the whole fleet.
//!
//! ```
//! let store = edge::kv::Store::open("")?; // the function's first namespace
//! store.set("greeting", "hello")?;
//! assert_eq!(store.get_text("greeting")?.as_deref(), Some("hello"));
//! assert_eq!(store.increment("visits", 1)?, 1);
//! assert_eq!(store.increment("visits", 2)?, 3);
//! assert_eq!(store.keys()?, ["greeting", "visits"]);
//! # Ok::<(), edge::Error>(())
//! ```
//!
//! In `cargo test` every namespace is an in-memory map per thread
//! ([`testing::clear_kv`](crate::testing::clear_kv) empties them).

use crate::Result;

/// An open namespace.
pub struct Store {
    #[cfg(target_arch = "wasm32")]
    bucket: bindings::store::Bucket,
    #[cfg(not(target_arch = "wasm32"))]
    namespace: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens `namespace`; `""` opens the function's first one.
    ///
    /// # Errors
    /// The function is not bound to it (the node's log says how to bind it).
    pub fn open(namespace: &str) -> Result<Store> {
        #[cfg(target_arch = "wasm32")]
        {
            let bucket =
                bindings::store::open(namespace).map_err(|e| failed("open", namespace, e))?;
            Ok(Store { bucket })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let namespace = if namespace.is_empty() {
                "default"
            } else {
                namespace
            };
            Ok(Store {
                namespace: namespace.to_owned(),
            })
        }
    }

    /// The value under `key`.
    ///
    /// # Errors
    /// The node refused the call.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        #[cfg(target_arch = "wasm32")]
        {
            self.bucket.get(key).map_err(|e| failed("get", key, e))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Ok(crate::testing::kv_get(&self.namespace, key))
        }
    }

    /// The value under `key`, as text.
    ///
    /// # Errors
    /// The node refused the call, or the value is not UTF-8.
    pub fn get_text(&self, key: &str) -> Result<Option<String>> {
        self.get(key)?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| format!("the value of {key:?} is not UTF-8").into())
            })
            .transpose()
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// A key over 512 bytes or a value over 1 MiB; the control plane cannot take the write.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            self.bucket
                .set(key, value.as_ref())
                .map_err(|e| failed("set", key, e))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::kv_set(&self.namespace, key, Some(value.as_ref().to_vec()));
            Ok(())
        }
    }

    /// Deletes `key` (no error when it is not there).
    ///
    /// # Errors
    /// The control plane cannot take the write.
    pub fn delete(&self, key: &str) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            self.bucket
                .delete(key)
                .map_err(|e| failed("delete", key, e))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::kv_set(&self.namespace, key, None);
            Ok(())
        }
    }

    /// Adds `delta` to the number (decimal text) under `key`, none counting as 0, atomically
    /// across every node; the new number.
    ///
    /// # Errors
    /// The value is not a number; the control plane cannot take the write.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        #[cfg(target_arch = "wasm32")]
        {
            bindings::atomics::increment(&self.bucket, key, delta)
                .map_err(|e| failed("increment", key, e))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let current = match self.get_text(key)? {
                None => 0,
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{key:?} does not hold a number"))?,
            };
            let value = current
                .checked_add(delta)
                .ok_or_else(|| format!("incrementing {key:?} overflows"))?;
            self.set(key, value.to_string())?;
            Ok(value)
        }
    }

    /// Every key, in order.
    ///
    /// # Errors
    /// The node refused the call.
    pub fn keys(&self) -> Result<Vec<String>> {
        #[cfg(target_arch = "wasm32")]
        {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = self
                    .bucket
                    .list_keys(cursor)
                    .map_err(|e| failed("list", "keys", e))?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => return Ok(keys),
                }
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Ok(crate::testing::kv_keys(&self.namespace))
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn failed(what: &str, name: &str, e: bindings::store::Error) -> crate::Error {
    use bindings::store::Error;
    match e {
        Error::NoSuchStore => format!(
            "KV {what} {name:?}: the function has no KV namespace; deploy it with --kv NAMESPACE"
        )
        .into(),
        Error::AccessDenied => format!(
            "KV {what} {name:?}: the function is not bound to that namespace; deploy it with --kv NAMESPACE"
        )
        .into(),
        Error::Other(message) => format!("KV {what} {name:?}: {message}").into(),
    }
}

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
    });
    pub(crate) use self::wasi::keyvalue::{atomics, store};
}
