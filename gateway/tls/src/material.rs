//! Certificates and keys, loaded from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Where a party's TLS files are: the federation CA, its certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The federation CA certificate(s), PEM.
    pub ca: PathBuf,
    /// This party's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// This party's private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// Loaded TLS material, ready to build configurations from.
pub struct TlsMaterial {
    /// The trust anchors: the federation CA.
    pub roots: Arc<RootCertStore>,
    /// This party's certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// This party's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// The conventional file names of a PKI directory: `ca.pem`, `<name>.pem`, `<name>.key`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Reads and parses the three files.
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let roots = load_roots(&self.ca)?;
        let chain = load_chain(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|e| TlsError::Pem {
            path: self.key.clone(),
            what: format!("no usable private key ({e})"),
        })?;
        Ok(TlsMaterial {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("malformed PEM ({e})"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no certificate in the file".into(),
        });
    }
    Ok(chain)
}

/// Reads trust anchors from a PEM file of CA certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_chain(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("not a usable CA certificate ({e})"),
        })?;
    }
    Ok(roots)
}
