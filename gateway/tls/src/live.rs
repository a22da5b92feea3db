//! TLS material that changes while serving: certificate and key rotation, CA rotation and
//! certificate revocation lists, reloaded from files without a restart.
//!
//! Configurations built on a [`LiveTls`] ([`crate::policy`]) never change themselves: their
//! certificate resolvers and verifiers read the material in force at every handshake, so a
//! reload takes effect for the next handshake, and connections already open keep the
//! certificates they were made with. A reload that fails (a missing file, a key that does not
//! match its certificate, a revocation list that is not signed by a federation CA or is out of
//! date) changes nothing: the material in force stays, and the error is returned and logged.
//!
//! Revocation is checked against the revocation lists in force: by the verifiers at every
//! handshake (inbound and outbound), and by [`LiveTls::is_revoked`] for connections that were
//! open before a certificate was revoked (the gateway asks it for every request). Lists are
//! checked when loaded: each must be signed by one of the trust anchors, and be current (its
//! `nextUpdate` not passed). Once loaded, a list that passes its `nextUpdate` stays in force (the
//! revocations it holds are still true) and [`LiveTls::poll`] logs an error until a newer one
//! is installed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::identity::{CertificateId, PeerInfo};
use crate::material::{TlsFiles, TlsMaterial};
use crate::{TlsError, policy};

/// The material in force.
pub(crate) struct Loaded {
    /// The trust anchors.
    pub(crate) roots: Arc<RootCertStore>,
    /// This party's certificate chain and key.
    pub(crate) certified: Arc<CertifiedKey>,
    /// Checks a client's chain against `roots` (revocation is checked separately).
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    /// Every revoked certificate of every list.
    pub(crate) revoked: HashSet<CertificateId>,
    /// The earliest `nextUpdate` of the lists.
    next_update: Option<SystemTime>,
    /// The leaf's serial and expiry, for the logs.
    summary: String,
}

impl Loaded {
    fn build(material: TlsMaterial, now: SystemTime) -> Result<Loaded, TlsError> {
        let provider = policy::provider();
        let summary = describe_leaf(material.chain.first().map(|c| c.as_ref()));
        let (revoked, next_update) = revocations(&material.ca, &material.crls, now)?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(material.roots.clone(), provider.clone())
                .build()?;
        let certified = CertifiedKey::from_der(material.chain, material.key, &provider)?;
        Ok(Loaded {
            roots: material.roots,
            certified: Arc::new(certified),
            client_verifier,
            revoked,
            next_update,
            summary,
        })
    }

    /// Whether the certificate `der` is on a revocation list in force.
    pub(crate) fn revokes(&self, der: &[u8]) -> bool {
        !self.revoked.is_empty()
            && CertificateId::of(der).is_some_and(|id| self.revoked.contains(&id))
    }
}

/// A file's content at one moment (its digest, or none if it could not be read). Content,
/// not modification times: a file replaced within the file system's timestamp granularity by
/// one of the same size still counts as changed. The files are a few kilobytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    digest: Option<[u8; 32]>,
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    files
        .paths()
        .map(|path| Stamp {
            path: path.to_owned(),
            digest: std::fs::read(path).ok().and_then(|bytes| {
                ring::digest::digest(&ring::digest::SHA256, &bytes)
                    .as_ref()
                    .try_into()
                    .ok()
            }),
        })
        .collect()
}

/// TLS material in force, and where to reload it from.
pub struct LiveTls {
    files: Option<TlsFiles>,
    current: ArcSwap<Loaded>,
    /// Counts the reloads: a connection rechecks its peer when it changes.
    generation: AtomicU64,
    /// The files as they were at the last load attempt, and whether a stale list was reported.
    watch: Mutex<(Vec<Stamp>, bool)>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("files", &self.files)
            .field("in_force", &self.current.load().summary)
            .finish_non_exhaustive()
    }
}

impl LiveTls {
    /// Loads `files`; later [`LiveTls::poll`] and [`LiveTls::reload`] read them again.
    pub fn load(files: TlsFiles) -> Result<Arc<LiveTls>, TlsError> {
        let watch = stamps(&files);
        let loaded = Loaded::build(files.load()?, SystemTime::now())?;
        Ok(Arc::new(LiveTls {
            files: Some(files),
            current: ArcSwap::from_pointee(loaded),
            generation: AtomicU64::new(0),
            watch: Mutex::new((watch, false)),
        }))
    }

    /// Material that never changes (clients and tests that hold it in memory).
    pub fn fixed(material: TlsMaterial) -> Result<Arc<LiveTls>, TlsError> {
        let loaded = Loaded::build(material, SystemTime::now())?;
        Ok(Arc::new(LiveTls {
            files: None,
            current: ArcSwap::from_pointee(loaded),
            generation: AtomicU64::new(0),
            watch: Mutex::new((Vec::new(), false)),
        }))
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.current.load()
    }

    /// Changes with every reload that put new material in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the peer's certificate is on a revocation list in force now (it may have been
    /// revoked after its connection was made).
    pub fn is_revoked(&self, peer: &PeerInfo) -> bool {
        let current = self.current.load();
        !current.revoked.is_empty()
            && peer
                .certificate
                .as_ref()
                .is_some_and(|id| current.revoked.contains(id))
    }

    /// The certificate in force: its serial number and expiry, for status pages and logs.
    pub fn summary(&self) -> String {
        self.current.load().summary.clone()
    }

    /// Reads the files again and puts them in force; on any error the material in force
    /// stays. `trigger` says why, for the log.
    pub fn reload(&self, trigger: &str) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        watch.0 = stamps(files);
        let loaded = files
            .load()
            .and_then(|material| Loaded::build(material, SystemTime::now()));
        match loaded {
            Ok(loaded) => {
                let summary = loaded.summary.clone();
                let revoked = loaded.revoked.len();
                self.current.store(Arc::new(loaded));
                self.generation.fetch_add(1, Ordering::AcqRel);
                watch.1 = false;
                tracing::info!(trigger, certificate = %summary, revoked, "TLS material reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    trigger,
                    %error,
                    in_force = %self.current.load().summary,
                    "TLS material not reloaded; the material in force stays"
                );
                Err(error)
            }
        }
    }

    /// Reloads if any file changed since the last attempt; reports a revocation list in force
    /// that passed its `nextUpdate`. Returns the reload's outcome, if one was attempted.
    pub fn poll(&self) -> Option<Result<(), TlsError>> {
        let files = self.files.as_ref()?;
        let changed = {
            let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = self
                .current
                .load()
                .next_update
                .is_some_and(|next| next < SystemTime::now());
            if stale && !watch.1 {
                tracing::error!(
                    "a certificate revocation list in force is past its nextUpdate: install the \
                     CA's current list (revocations it holds stay in force meanwhile)"
                );
            }
            watch.1 = stale;
            stamps(files) != watch.0
        };
        changed.then(|| self.reload("file change"))
    }
}

/// Watches an open connection's peer for revocation: after each reload of the material, the
/// peer's certificate is checked again, and once it is revoked every read and write of the
/// connection fails, which closes it.
#[derive(Debug)]
pub(crate) struct PeerWatch {
    tls: Arc<LiveTls>,
    peer: PeerInfo,
    checked: u64,
    revoked: bool,
}

impl PeerWatch {
    /// `checked`: the generation the handshake was made with (taken before it began, so a
    /// reload during the handshake is caught).
    pub(crate) fn new(tls: Arc<LiveTls>, peer: PeerInfo, checked: u64) -> PeerWatch {
        PeerWatch {
            tls,
            peer,
            checked,
            revoked: false,
        }
    }

    /// An error once the peer's certificate is revoked.
    pub(crate) fn check(&mut self) -> std::io::Result<()> {
        let generation = self.tls.generation();
        if generation != self.checked && !self.revoked {
            self.checked = generation;
            if self.tls.is_revoked(&self.peer) {
                self.revoked = true;
                tracing::info!(
                    peer = self
                        .peer
                        .identity
                        .as_ref()
                        .map(|id| id.as_str())
                        .unwrap_or("?"),
                    "closing the connection of a revoked certificate"
                );
            }
        }
        if self.revoked {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the peer's certificate was revoked",
            ));
        }
        Ok(())
    }
}

/// `<serial hex>, expires <date>` of a leaf certificate.
fn describe_leaf(der: Option<&[u8]>) -> String {
    let Some((_, cert)) = der.and_then(|der| X509Certificate::from_der(der).ok()) else {
        return "(unparseable certificate)".into();
    };
    format!(
        "serial {}, expires {}",
        isnad_hex(cert.raw_serial()),
        cert.validity().not_after
    )
}

fn isnad_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The revoked certificates of `crls`, each list checked: it parses, one of `roots` signed it,
/// and it is current. Also the earliest `nextUpdate`.
fn revocations(
    ca: &[CertificateDer<'static>],
    crls: &[(String, CertificateRevocationListDer<'static>)],
    now: SystemTime,
) -> Result<(HashSet<CertificateId>, Option<SystemTime>), TlsError> {
    let anchors: Vec<X509Certificate<'_>> = ca
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect();
    let mut revoked = HashSet::new();
    let mut next_update: Option<SystemTime> = None;
    for (n, der) in crls {
        let invalid = |n: &str, what: String| TlsError::Crl {
            crl: n.to_owned(),
            what,
        };
        let (_, crl) = CertificateRevocationList::from_der(der.as_ref())
            .map_err(|e| invalid(n, format!("does not parse ({e})")))?;
        let issuer = anchors
            .iter()
            .find(|anchor| anchor.subject().as_raw() == crl.issuer().as_raw())
            .ok_or_else(|| invalid(n, "its issuer is not a trust anchor (ca)".into()))?;
        crl.verify_signature(issuer.public_key())
            .map_err(|_| invalid(n, format!("is not signed by {}", issuer.subject())))?;
        let Some(next) = crl.next_update() else {
            return Err(invalid(n, "has no nextUpdate".into()));
        };
        let next = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(next.timestamp()).unwrap_or(0));
        if next < now {
            return Err(invalid(
                n,
                "is out of date (its nextUpdate has passed): ask the CA for its current list"
                    .into(),
            ));
        }
        next_update = Some(next_update.map_or(next, |earliest| earliest.min(next)));
        for entry in crl.iter_revoked_certificates() {
            revoked.insert(CertificateId {
                issuer: crl.issuer().as_raw().to_vec(),
                serial: entry.raw_serial().to_vec(),
            });
        }
    }
    Ok((revoked, next_update))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use isnad_certs::{CertificateAuthority, Identity, IssueRequest, Revocation, RevocationList};

    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
        ca: CertificateAuthority,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().expect("dir");
            let ca = CertificateAuthority::generate("isnad.example").expect("ca");
            std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).expect("write");
            let pki = Pki { dir, ca };
            for name in ["gateway", "housing-programme"] {
                pki.issue(name);
            }
            pki
        }

        fn issue(&self, name: &str) {
            let identity = Identity::agency("isnad.example", name);
            let issued = self
                .ca
                .issue(&IssueRequest::for_identity(&identity, 30))
                .expect("issued");
            isnad_certs::write_pair(self.dir.path(), name, &issued).expect("written");
        }

        fn files(&self) -> TlsFiles {
            TlsFiles {
                crls: vec![self.dir.path().join("crl.pem")],
                ..TlsFiles::in_dir(self.dir.path(), "gateway")
            }
        }

        fn revoke(&self, ca: &CertificateAuthority, names: &[&str]) {
            let revoked = names
                .iter()
                .map(|name| Revocation {
                    serial: isnad_certs::serial_number(
                        &std::fs::read_to_string(self.dir.path().join(format!("{name}.pem")))
                            .expect("read"),
                    )
                    .expect("serial"),
                    at: isnad_certs::OffsetDateTime::now_utc(),
                })
                .collect();
            let crl = ca
                .revocation_list(&RevocationList { number: 1, revoked }, 7)
                .expect("crl");
            std::fs::write(self.dir.path().join("crl.pem"), crl).expect("write");
        }

        fn peer(&self, name: &str) -> PeerInfo {
            let chain = crate::material::load_chain(&self.dir.path().join(format!("{name}.pem")))
                .expect("chain");
            PeerInfo::from_chain(Some(&chain), None::<SocketAddr>)
        }
    }

    #[test]
    fn a_certificate_on_a_reloaded_list_is_revoked_and_others_are_not() {
        let pki = Pki::new();
        pki.revoke(&pki.ca, &[]);
        let live = LiveTls::load(pki.files()).expect("loads");
        let housing = pki.peer("housing-programme");
        assert!(!live.is_revoked(&housing));
        let generation = live.generation();

        pki.revoke(&pki.ca, &["housing-programme"]);
        live.reload("test").expect("reloads");
        assert!(live.is_revoked(&housing));
        assert!(!live.is_revoked(&pki.peer("gateway")));
        assert_ne!(live.generation(), generation);
    }

    #[test]
    fn a_list_signed_by_another_ca_is_refused_and_the_list_in_force_stays() {
        let pki = Pki::new();
        pki.revoke(&pki.ca, &["housing-programme"]);
        let live = LiveTls::load(pki.files()).expect("loads");
        let generation = live.generation();

        let other = CertificateAuthority::generate("isnad.example").expect("another ca");
        pki.revoke(&other, &[]);
        let error = live.reload("test").expect_err("refused");
        assert!(error.to_string().contains("is not signed by"), "{error}");
        assert!(live.is_revoked(&pki.peer("housing-programme")));
        assert_eq!(live.generation(), generation);
        // Nor does it load on its own.
        assert!(LiveTls::load(pki.files()).is_err());
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_keeps_the_old_pair() {
        let pki = Pki::new();
        pki.revoke(&pki.ca, &[]);
        let live = LiveTls::load(pki.files()).expect("loads");
        let before = live.summary();
        // Half a rotation: the new key is written, the certificate not yet.
        let cert = pki.dir.path().join("gateway.pem");
        let old_pem = std::fs::read(&cert).expect("read");
        pki.issue("gateway");
        let new_pem = std::fs::read(&cert).expect("read");
        std::fs::write(&cert, &old_pem).expect("write");
        assert!(live.reload("test").is_err());
        assert_eq!(live.summary(), before);
        // The rest of the rotation lands.
        std::fs::write(&cert, &new_pem).expect("write");
        assert_eq!(live.poll().map(|r| r.is_ok()), Some(true));
        assert_ne!(live.summary(), before);
        assert!(live.poll().is_none(), "nothing changed since");
    }
}
