//! TLS by rustls: certificate and key from PEM files, ALPN `h2` then `http/1.1`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its key, both PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error(
        "cannot load TLS certificate from {path}: {detail}; pass a PEM file with the chain, leaf first"
    )]
    Cert {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error(
        "cannot load TLS private key from {path}: {detail}; pass a PEM file with a PKCS#8, PKCS#1 or SEC1 key"
    )]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// rustls refused the pair (usually: the key does not match the certificate).
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(rustls::Error),
}

/// An acceptor for the given certificate and key.
///
/// # Errors
/// Unreadable or malformed files, or a key that does not match the certificate.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| Error::Key {
        path: files.key.display().to_string(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(Error::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let err = |detail: String| Error::Cert {
        path: path.display().to_string(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}
