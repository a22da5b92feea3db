//! Certificates and keys, loaded from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

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
    /// Certificate revocation lists of the federation CA(s), PEM; none means no revocation
    /// checking.
    pub crls: Vec<PathBuf>,
}

/// Loaded TLS material, ready to build configurations from.
pub struct TlsMaterial {
    /// The trust anchors: the federation CA.
    pub roots: Arc<RootCertStore>,
    /// The CA certificates the anchors were made from (they check revocation lists).
    pub ca: Vec<CertificateDer<'static>>,
    /// This party's certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// This party's private key.
    pub key: PrivateKeyDer<'static>,
    /// The CAs' revocation lists, and the file each came from (for errors).
    pub crls: Vec<(String, CertificateRevocationListDer<'static>)>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            roots: self.roots.clone(),
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            crls: self.crls.clone(),
        }
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .field("crls", &self.crls.len())
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
            crls: Vec::new(),
        }
    }

    /// Every file, for watching them: the CA, the certificate, the key, the revocation lists.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .chain(&self.crls)
            .map(PathBuf::as_path)
    }

    /// Reads and parses the files.
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let ca = load_chain(&self.ca)?;
        let roots = roots_of(&self.ca, &ca)?;
        let chain = load_chain(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|e| TlsError::Pem {
            path: self.key.clone(),
            what: format!("no usable private key ({e})"),
        })?;
        let crls = self
            .crls
            .iter()
            .map(|path| Ok((path.display().to_string(), load_crl(path)?)))
            .collect::<Result<Vec<_>, TlsError>>()?;
        Ok(TlsMaterial {
            roots: Arc::new(roots),
            ca,
            chain,
            key,
            crls,
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

/// Reads a revocation list (PEM `X509 CRL`, or DER).
pub fn load_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, TlsError> {
    let bytes = read(path)?;
    if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("no usable revocation list ({e})"),
        })
    } else {
        Ok(CertificateRevocationListDer::from(bytes))
    }
}

/// Reads trust anchors from a PEM file of CA certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_of(path, &load_chain(path)?)
}

fn roots_of(path: &Path, certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("not a usable CA certificate ({e})"),
        })?;
    }
    Ok(roots)
}
