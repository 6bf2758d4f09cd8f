//! The node's copy of its last applied snapshot and of the components it uses, so a node
//! restarted while the control plane is away serves what it served before.
//!
//! ```text
//! <data-dir>/snapshot.json              the last snapshot applied (written after it applied);
//!                                       it holds the functions' secrets: mode 0600
//! <data-dir>/components/<sha256>.wasm   every component it names (written before it applied)
//! ```
//! Files are written to a temporary name, synced and renamed, so a crash leaves either the old
//! file or the new one. A component is checked against its digest whenever it is read.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use edge_wire::Snapshot;
use sha2::Digest as _;

/// Errors of the on-disk copy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The saved snapshot is not valid JSON of the expected shape.
    #[error(
        "saved snapshot {path} is unreadable ({message}); it will be replaced by the control plane's"
    )]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A component's bytes do not hash to its name.
    #[error("component {digest} has sha256 {actual}; the copy is corrupt")]
    Digest {
        /// The digest it should have.
        digest: String,
        /// The one it has.
        actual: String,
    },
}

/// The node's data dir, as far as sync is concerned.
#[derive(Debug, Clone)]
pub struct Disk {
    snapshot: PathBuf,
    components: PathBuf,
}

impl Disk {
    /// Opens (creating) the layout under `data_dir`.
    ///
    /// # Errors
    /// The folders cannot be created.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        let components = data_dir.join("components");
        std::fs::create_dir_all(&components).map_err(|source| Error::Io {
            action: "cannot create",
            path: components.clone(),
            source,
        })?;
        Ok(Self {
            snapshot: data_dir.join("snapshot.json"),
            components,
        })
    }

    /// The saved snapshot, if there is one.
    ///
    /// # Errors
    /// It exists but cannot be read or parsed.
    pub fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let bytes = match std::fs::read(&self.snapshot) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    action: "cannot read",
                    path: self.snapshot.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Snapshot {
                path: self.snapshot.clone(),
                message: e.to_string(),
            })
    }

    /// Saves `snapshot` as the one applied.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(snapshot).expect("a snapshot serializes");
        write_atomically(&self.snapshot, &json)
    }

    /// The component `digest`, checked, or `None` when there is no (intact) copy.
    pub fn component(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.component_path(digest);
        let bytes = std::fs::read(&path).ok()?;
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if actual != digest {
            tracing::warn!(path = %path.display(), "stored component is corrupt; fetching it again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Stores component bytes under their digest, after checking them.
    ///
    /// # Errors
    /// The bytes do not hash to `digest`, or the file cannot be written.
    pub fn save_component(&self, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        let actual = hex::encode(sha2::Sha256::digest(bytes));
        if actual != digest {
            return Err(Error::Digest {
                digest: digest.to_owned(),
                actual,
            });
        }
        write_atomically(&self.component_path(digest), bytes)
    }

    /// Deletes stored components that `snapshot` does not use.
    pub fn prune(&self, snapshot: &Snapshot) {
        let keep = snapshot.digests();
        let Ok(entries) = std::fs::read_dir(&self.components) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let digest = name.strip_suffix(".wasm").unwrap_or(&name);
            if !keep.contains(&digest) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        self.components.join(format!("{digest}.wasm"))
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |action, source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    // A leftover from a crash keeps its mode when reopened: start from a new file.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // Only the node's user may read it: the snapshot carries secrets.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| io("cannot create", e))?;
    file.write_all(bytes).map_err(|e| io("cannot write", e))?;
    file.sync_all().map_err(|e| io("cannot sync", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("cannot replace", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_checked_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let bytes = b"\0asm pretend";
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        assert!(matches!(
            disk.save_component(&"0".repeat(64), bytes),
            Err(Error::Digest { .. })
        ));
        disk.save_component(&digest, bytes).unwrap();
        assert_eq!(disk.component(&digest).as_deref(), Some(&bytes[..]));
        // Corrupt the stored copy: it is refused and removed.
        std::fs::write(dir.path().join(format!("components/{digest}.wasm")), b"x").unwrap();
        assert_eq!(disk.component(&digest), None);
        assert!(
            !dir.path()
                .join(format!("components/{digest}.wasm"))
                .exists()
        );
    }

    #[test]
    fn snapshot_round_trips_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        assert!(disk.snapshot().unwrap().is_none());
        let snapshot = Snapshot {
            revision: 7,
            ..Snapshot::default()
        };
        disk.save_snapshot(&snapshot).unwrap();
        assert_eq!(disk.snapshot().unwrap(), Some(snapshot));
        std::fs::write(dir.path().join("snapshot.json"), b"{not json").unwrap();
        assert!(matches!(disk.snapshot(), Err(Error::Snapshot { .. })));
    }
}
