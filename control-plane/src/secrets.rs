//! The key that seals functions' secrets at rest, kept in a file outside the database
//! (`--secrets-key-file`, by default `secrets.key` in the data dir: put it elsewhere, on
//! another disk or a secrets mount, so that a copy of the database alone reveals nothing).
//!
//! Each secret is sealed with ChaCha20-Poly1305 (ring) under a fresh random nonce, with its
//! function and name as associated data, so a sealed value moved to another row does not
//! open. Rows remember the key's id (the first 16 hex digits of its sha256), so a replaced key
//! file is named as such instead of looking like damage.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Digest as _;

/// A secrets key: 32 random bytes, written as 64 hex digits.
pub struct SecretsKey {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing it failed.
    #[error(
        "cannot use the secrets key file {path}: {source}; pass --secrets-key-file a file you can read and write"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It does not hold a key.
    #[error(
        "the secrets key file {path} does not hold a key (64 hex digits); restore the file this control plane created, or remove it only if the database has no secrets"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// No random bytes.
    #[error("cannot make a secrets key: the OS's random source failed: {0}")]
    Random(String),
}

/// A sealed value that does not open.
#[derive(Debug, thiserror::Error)]
#[error("a sealed secret does not open")]
pub struct Unsealable;

impl SecretsKey {
    /// The key from `bytes`.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let id = hex(&sha2::Sha256::digest(bytes)[..8]);
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("32 bytes is a ChaCha20 key"),
        );
        Self { key, id }
    }

    /// The key in `path`, or a new one written there (mode 0600) when there is no file.
    ///
    /// # Errors
    /// The file cannot be read or written, or does not hold a key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = unhex(text.trim()).ok_or_else(|| KeyError::Malformed {
                    path: path.to_owned(),
                })?;
                Ok(Self::from_bytes(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                writeln!(file, "{}", hex(&bytes)).map_err(io)?;
                file.sync_all().map_err(io)?;
                let key = Self::from_bytes(bytes);
                tracing::info!(file = %path.display(), key_id = key.id, "created the secrets key; keep a copy: without it the secrets cannot be read");
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's id: the first 16 hex digits of its sha256.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plaintext` sealed for `(function, name)`: the nonce and the ciphertext with its tag.
    pub fn seal(&self, function: &str, name: &str, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS's random source works once it has");
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(function, name)),
                &mut sealed,
            )
            .expect("sealing a value under 4 GiB does not fail");
        (nonce.to_vec(), sealed)
    }

    /// The plaintext of a value sealed for `(function, name)`.
    ///
    /// # Errors
    /// Another key sealed it, or it was changed or moved.
    pub fn open(
        &self,
        function: &str,
        name: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, Unsealable> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(function, name)), &mut buffer)
            .map_err(|_| Unsealable)?;
        Ok(plain.to_vec())
    }
}

fn aad(function: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(function.len() + name.len() + 1);
    aad.extend_from_slice(function.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let key = SecretsKey::from_bytes([7; 32]);
        let (nonce, sealed) = key.seal("gw", "TOKEN", b"s3cret-value");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            key.open("gw", "TOKEN", &nonce, &sealed).unwrap(),
            b"s3cret-value"
        );
        assert!(key.open("other", "TOKEN", &nonce, &sealed).is_err());
        assert!(key.open("gw", "OTHER", &nonce, &sealed).is_err());
        let other = SecretsKey::from_bytes([8; 32]);
        assert!(other.open("gw", "TOKEN", &nonce, &sealed).is_err());
        assert_ne!(key.id(), other.id());
        let (nonce2, _) = key.seal("gw", "TOKEN", b"s3cret-value");
        assert_ne!(nonce, nonce2, "a fresh nonce each time");
    }

    #[test]
    fn the_key_file_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secrets.key");
        let made = SecretsKey::load_or_create(&path).unwrap();
        let read = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(made.id(), read.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key\n").unwrap();
        let error = SecretsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("does not hold a key"), "{error}");
    }
}
