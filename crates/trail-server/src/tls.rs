//! HTTPS served by Trail itself: the certificate chain and private key read from PEM files,
//! and re-read on demand (`trail serve` does it on SIGHUP) while the server runs.
//!
//! The acceptor's configuration never changes; its certificate resolver hands each new
//! handshake the pair in force at that moment. [`Tls::reload`] reads and checks both files
//! before it swaps anything in, so a reload that fails (a file missing, half written, a key
//! that does not match its certificate) leaves the previous pair serving. Connections
//! already open keep the pair they were made with.
//!
//! The cryptography provider is pinned to aws-lc-rs, the same one Trail's clients use, so
//! one provider is built and nothing depends on a process-wide default.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// Where the certificate chain and its private key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key of the first certificate (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS #8, PKCS #1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("the key in {} cannot serve the certificate in {}: {reason}", key.display(), cert.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The one cryptography provider of Trail's TLS.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server's TLS: its acceptor, and the pair in force, which [`Tls::reload`] replaces.
pub struct Tls {
    files: TlsFiles,
    current: Arc<RwLock<Arc<CertifiedKey>>>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// Gives every handshake the pair in force when it starts.
#[derive(Debug)]
struct Current(Arc<RwLock<Arc<CertifiedKey>>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.0))
    }
}

fn read(lock: &RwLock<Arc<CertifiedKey>>) -> Arc<CertifiedKey> {
    // The lock only ever holds a whole pair: one poisoned by a panic is still good.
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Tls {
    /// Reads and checks both files: the server cannot start without a usable pair.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = provider();
        let pair = load_pair(&files, &provider)?;
        let current = Arc::new(RwLock::new(Arc::new(pair)));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(current.clone())));
        // Trail speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Re-reads both files; on success, new connections get the new pair. On failure
    /// nothing changes, and the error says which file is wrong.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.files, &provider())?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// The files this server reads its pair from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The acceptor new connections go through.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The certificate chain in force, as served (DER, leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        read(&self.current).cert.clone()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let pem = read_file(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let pem = read_file(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: files.key.clone(),
        },
        e => TlsError::Pem {
            path: files.key.clone(),
            reason: e.to_string(),
        },
    })?;
    // Parses the key, parses the leaf certificate, and checks that they belong together.
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 and its key, as PEM.
    fn pair() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_reload_swaps_the_pair_and_a_failed_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let write = |cert: &str, key: &str| {
            std::fs::write(&files.cert, cert).unwrap();
            std::fs::write(&files.key, key).unwrap();
        };
        let (a_cert, a_key) = pair();
        let (b_cert, b_key) = pair();
        write(&a_cert, &a_key);
        let tls = Tls::load(files.clone()).unwrap();
        assert_eq!(tls.chain(), vec![der(&a_cert)]);

        write(&b_cert, &b_key);
        tls.reload().unwrap();
        assert_eq!(tls.chain(), vec![der(&b_cert)], "the new pair is served");

        // Half written, mismatched, gone: each refused, naming the file; B still served.
        write("-----BEGIN CERTIFICATE-----\nAAAA", &b_key);
        let e = tls.reload().unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
        write(&a_cert, &b_key);
        let e = tls.reload().unwrap_err().to_string();
        assert!(e.contains("key.pem") && e.contains("cert.pem"), "{e}");
        std::fs::remove_file(&files.key).unwrap();
        let e = tls.reload().unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("key.pem"),
            "{e}"
        );
        assert_eq!(tls.chain(), vec![der(&b_cert)], "still the last good pair");
    }

    #[test]
    fn files_that_cannot_serve_are_refused_at_load_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let cert_file = dir.path().join("c.pem");
        let key_file = dir.path().join("k.pem");
        let load = |cert: &str, key: &str| {
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            Tls::load(TlsFiles {
                cert: cert_file.clone(),
                key: key_file.clone(),
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(load(&cert, &key), Ok(()));
        let no_cert = load(&key, &key).unwrap_err();
        assert!(
            no_cert.contains("c.pem") && no_cert.contains("no PEM certificate"),
            "{no_cert}"
        );
        let no_key = load(&cert, &cert).unwrap_err();
        assert!(
            no_key.contains("k.pem") && no_key.contains("no PEM private key"),
            "{no_key}"
        );
        let missing = Tls::load(TlsFiles {
            cert: dir.path().join("nowhere.pem"),
            key: key_file.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(missing.contains("nowhere.pem"), "{missing}");
    }
}
