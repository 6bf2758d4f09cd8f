//! Component bytes, content-addressed: `<data-dir>/components/<sha256 hex>`.
//!
//! A file is written under a temporary name in the same folder, fsynced, then renamed into
//! place (and the folder fsynced), so a file under a digest's name is always complete: a crash
//! leaves at most a temporary file, which the next start removes.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::validate::is_digest;

/// Temporary files start with this; no digest does.
const TEMP_PREFIX: &str = ".upload-";

/// The component folder.
#[derive(Debug)]
pub struct Components {
    dir: PathBuf,
    next_temp: AtomicU64,
}

impl Components {
    /// Opens (creating) the folder `dir` and removes temporary files a crash left behind.
    ///
    /// # Errors
    /// When the folder cannot be created or read.
    pub fn open(dir: &Path) -> io::Result<Components> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                tracing::info!(file = %entry.path().display(), "removing an unfinished upload");
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Components {
            dir: dir.to_owned(),
            next_temp: AtomicU64::new(0),
        })
    }

    /// The file of `digest`, when `digest` is one (64 lowercase hex digits). The file may not
    /// exist.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        is_digest(digest).then(|| self.dir.join(digest))
    }

    /// Whether the component `digest` is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_some_and(|path| path.is_file())
    }

    /// Stores `bytes` under `digest` (their sha256, computed by the caller) unless a file is
    /// already there; returns whether it was.
    ///
    /// # Errors
    /// When writing, syncing or renaming fails; nothing is left under the digest's name then.
    pub fn store(&self, digest: &str, bytes: &[u8]) -> io::Result<bool> {
        let Some(path) = self.path(digest) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{digest:?} is not a sha256 digest"),
            ));
        };
        if path.is_file() {
            return Ok(true);
        }
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            // The rename itself is durable only once the folder is synced.
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map(|()| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_under_the_digest_and_cleans_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let components = dir.path().join("components");
        fs::create_dir_all(&components).unwrap();
        fs::write(components.join(".upload-1-0"), b"half").unwrap();
        let store = Components::open(&components).unwrap();
        assert!(!components.join(".upload-1-0").exists());

        let digest = "ab".repeat(32);
        assert!(!store.contains(&digest));
        assert!(!store.store(&digest, b"bytes").unwrap());
        assert!(store.store(&digest, b"bytes").unwrap());
        assert!(store.contains(&digest));
        assert_eq!(fs::read(components.join(&digest)).unwrap(), b"bytes");
        assert_eq!(fs::read_dir(&components).unwrap().count(), 1);

        assert!(store.path("../etc/passwd").is_none());
        assert!(store.store("AB", b"x").is_err());
    }
}
