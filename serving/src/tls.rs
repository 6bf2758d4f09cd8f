//! TLS by rustls: certificate and key from PEM files (or a self-signed pair for local use),
//! ALPN `h2` then `http/1.1` on TCP.

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
    /// The self-signed certificate could not be made or kept.
    #[error(
        "cannot make a self-signed certificate in {path}: {detail}; pass --data-dir with a writable folder, or --tls-cert and --tls-key"
    )]
    SelfSigned {
        /// The file or folder.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// rustls refused the pair (usually: the key does not match the certificate).
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(rustls::Error),
}

/// A certificate chain and its key, read and checked once, for every listener that needs them
/// (TCP with TLS, QUIC).
#[derive(Debug)]
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads the PEM files.
    ///
    /// # Errors
    /// Unreadable or malformed files, or a key that does not match the certificate.
    pub fn load(files: &TlsFiles) -> Result<Self, Error> {
        let certs = load_certs(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| Error::Key {
            path: files.key.display().to_string(),
            detail: e.to_string(),
        })?;
        let identity = Self { certs, key };
        // Checks that the key matches the certificate.
        identity.server_config(Versions::Default)?;
        Ok(identity)
    }

    /// A rustls server configuration with this identity and no ALPN protocols yet.
    ///
    /// # Errors
    /// rustls refuses the pair.
    pub fn server_config(&self, versions: Versions) -> Result<rustls::ServerConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider);
        let builder = match versions {
            Versions::Default => builder.with_safe_default_protocol_versions(),
            Versions::Tls13 => builder.with_protocol_versions(&[&rustls::version::TLS13]),
        };
        builder
            .map_err(Error::Config)?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(Error::Config)
    }

    /// The acceptor of the TCP listener: ALPN `h2`, then `http/1.1`.
    ///
    /// # Errors
    /// rustls refuses the pair.
    pub fn tcp_acceptor(&self) -> Result<TlsAcceptor, Error> {
        let mut config = self.server_config(Versions::Default)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The TLS versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3 (TCP).
    Default,
    /// TLS 1.3 only (QUIC requires it).
    Tls13,
}

/// An acceptor for the given certificate and key.
///
/// # Errors
/// Unreadable or malformed files, or a key that does not match the certificate.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    Identity::load(files)?.tcp_acceptor()
}

/// A certificate for local use, made by [`self_signed`]: `ca` is what clients must trust.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate (signed by `ca`) and its key, for the listeners.
    pub files: TlsFiles,
    /// The local certificate authority's certificate, PEM.
    pub ca: std::path::PathBuf,
    /// Whether this call made them (else they were already in the folder).
    pub created: bool,
}

/// The names a self-signed certificate is for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A local certificate authority and a certificate it signed for `localhost`, `127.0.0.1` and
/// `::1`, kept in `dir` (`ca.pem`, `cert.pem`, `key.pem`; the keys 0600) and reused on later
/// starts, so a client told to trust `ca.pem` once keeps trusting the node. The CA's key is
/// not kept: nothing else can be signed with it.
///
/// # Errors
/// The folder cannot be written, or holds a certificate or key that cannot be read.
pub fn self_signed(dir: &Path) -> Result<SelfSigned, Error> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let ca_path = dir.join("ca.pem");
    let io_err = |path: &Path, e: std::io::Error| Error::SelfSigned {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    if files.cert.exists() && files.key.exists() && ca_path.exists() {
        Identity::load(&files)?;
        return Ok(SelfSigned {
            files,
            ca: ca_path,
            created: false,
        });
    }
    let gen_err = |e: rcgen::Error| Error::SelfSigned {
        path: dir.display().to_string(),
        detail: e.to_string(),
    };
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge-node local CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let ca = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;

    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    write_private(&files.key, key.serialize_pem().as_bytes()).map_err(|e| io_err(&files.key, e))?;
    std::fs::write(&files.cert, cert.pem()).map_err(|e| io_err(&files.cert, e))?;
    std::fs::write(&ca_path, ca.pem()).map_err(|e| io_err(&ca_path, e))?;
    Ok(SelfSigned {
        files,
        ca: ca_path,
        created: true,
    })
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
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
