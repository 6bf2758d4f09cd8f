//! Compiled-artifact cache: Cranelift's output for a component, kept on disk so that a restart
//! loads machine code instead of compiling again.
//!
//! A file is named by the component's sha256 and a hash of the engine's configuration, so a
//! different wasmtime or different settings never meet an old file. Each file carries the
//! sha256 of its payload; a file that fails that check, or that wasmtime refuses, is compiled
//! again and replaced, never trusted. (The data dir itself must be writable only by the node:
//! the checksum catches corruption, not an attacker who can write there.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"EDGEART1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// How a component came to be ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Loaded from a precompiled artifact on disk.
    Cached,
    /// Compiled now (and stored, when there is a cache).
    Compiled,
}

/// Precompiled components in one folder.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing) for code compiled by the engine whose
    /// [`edge_engine::key`] is `engine_key`.
    pub(crate) fn open(dir: &Path, engine_key: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: engine_key.to_owned(),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Whether a file for `digest` is there (it is checked only when loaded).
    pub(crate) fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// The precompiled component for `digest`, if a sound one is on disk.
    fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read compiled artifact, compiling again: {e}");
                return None;
            }
        };
        let Some(payload) = verified_payload(&bytes) else {
            tracing::warn!(path = %path.display(), "compiled artifact is corrupt or foreign, compiling again");
            return None;
        };
        // SAFETY: `payload` is what `Component::serialize` wrote for this digest and engine
        // configuration, here or on the control plane (which the node trusts with its code:
        // it fetched the bytes with its token and checked their sha256 against the snapshot;
        // `--compile-locally` keeps it from asking): the checksum matched, and wasmtime checks
        // its own header and the engine's compatibility before using it.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, payload) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "wasmtime refused the compiled artifact, compiling again: {e}");
                None
            }
        }
    }

    /// Stores `compiled` for `digest`, atomically: a crash leaves the old file or the new one.
    pub(crate) fn store(&self, digest: &str, compiled: &[u8]) -> std::io::Result<()> {
        let path = self.path(digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = Vec::with_capacity(HEADER_LEN + compiled.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&Sha256::digest(compiled));
        file.extend_from_slice(compiled);
        std::fs::write(&tmp, &file)?;
        std::fs::rename(&tmp, &path)
    }
}

fn verified_payload(file: &[u8]) -> Option<&[u8]> {
    let (header, payload) = file.split_at_checked(HEADER_LEN)?;
    let (magic, checksum) = header.split_at(MAGIC.len());
    (magic == MAGIC && checksum == Sha256::digest(payload).as_slice()).then_some(payload)
}

/// The component for `bytes` (whose sha256 is `digest`), from `cache` when it holds a sound
/// artifact, else compiled now and stored there.
///
/// # Errors
/// The bytes are not a valid component (wasmtime's message says why).
pub(crate) fn load_or_compile(
    engine: &Engine,
    cache: Option<&ArtifactCache>,
    bytes: &[u8],
    digest: &str,
) -> wasmtime::Result<(Component, Provenance)> {
    if let Some(component) = cache.and_then(|c| c.load(engine, digest)) {
        return Ok((component, Provenance::Cached));
    }
    let started = Instant::now();
    let component = Component::new(engine, bytes)?;
    tracing::debug!(
        digest,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compiled"
    );
    if let Some(cache) = cache
        && let Err(e) = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|compiled| cache.store(digest, &compiled))
    {
        tracing::warn!(dir = %cache.dir.display(), "cannot store compiled artifact; the next start compiles again: {e}");
    }
    Ok((component, Provenance::Compiled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_checked() {
        let payload = b"machine code".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(&payload));
        file.extend_from_slice(&payload);
        assert_eq!(verified_payload(&file), Some(&payload[..]));

        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verified_payload(&flipped), None);
        assert_eq!(verified_payload(&file[..10]), None);
        let mut foreign = file.clone();
        foreign[0] = b'X';
        assert_eq!(verified_payload(&foreign), None);
    }
}
