//! The development PKI of isnad: a federation CA and SPIFFE-named certificates for the sample
//! identities. For development and tests only, never production: keys are generated on the
//! machine, held in plain files, and the CA is online. `certs/README.md` says how a real
//! federation issues, names and rotates certificates.
//!
//! Every certificate carries exactly one URI SAN, its SPIFFE ID:
//! `spiffe://<trust-domain>/{agency,auditor,admin,gateway}/<name>`. Development certificates
//! also carry `localhost`, 127.0.0.1 and ::1, so standard gRPC tools can connect on loopback.
//! All keys are ECDSA P-256; every leaf is usable both as a TLS server and as a TLS client.
//!
//! Private keys are never logged: [`IssuedCert`] and [`CertificateAuthority`] leave them out of
//! their `Debug` output, and nothing here prints.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
pub use time::{Duration, OffsetDateTime};

/// The longest SPIFFE ID accepted, as the SPIFFE specification and the gateway limit it.
const MAX_SPIFFE_ID_LEN: usize = 2048;

/// A party of the federation and its SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The file name of its certificate and key (`<name>.pem`, `<name>.key`), and the common
    /// name of its certificate.
    pub name: String,
    /// Its SPIFFE ID, the one URI SAN of its certificate.
    pub spiffe_id: String,
}

impl Identity {
    fn of(trust_domain: &str, kind: &str, name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            spiffe_id: format!("spiffe://{trust_domain}/{kind}/{name}"),
        }
    }

    /// An agency (consumer or provider): `spiffe://<trust_domain>/agency/<id>`, named `id`.
    pub fn agency(trust_domain: &str, id: &str) -> Identity {
        Identity::of(trust_domain, "agency", id)
    }

    /// An auditor: `spiffe://<trust_domain>/auditor/<name>`.
    pub fn auditor(trust_domain: &str, name: &str) -> Identity {
        Identity::of(trust_domain, "auditor", name)
    }

    /// An administrator (security team): `spiffe://<trust_domain>/admin/<name>`.
    pub fn admin(trust_domain: &str, name: &str) -> Identity {
        Identity::of(trust_domain, "admin", name)
    }

    /// A gateway node: `spiffe://<trust_domain>/gateway/<node>`, named `node`.
    pub fn gateway(trust_domain: &str, node: &str) -> Identity {
        Identity::of(trust_domain, "gateway", node)
    }
}

/// Why a certificate could not be made, loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, written or created.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A trust domain is empty or has characters other than `[a-z0-9.-_]`.
    #[error("invalid trust domain {0:?}: use lowercase letters, digits, '.', '-', '_'")]
    InvalidTrustDomain(String),
    /// An identity or file name is empty or has characters other than `[a-z0-9.-_]`.
    #[error("invalid {what} {value:?}: use lowercase letters, digits, '-', '.', '_'")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name.
        value: String,
    },
    /// A SPIFFE ID is malformed.
    #[error("invalid SPIFFE ID {value:?}: {rule}")]
    InvalidSpiffeId {
        /// The ID.
        value: String,
        /// What is wrong with it.
        rule: &'static str,
    },
    /// The validity period of a request ends before it starts.
    #[error("invalid validity: not_after {not_after} is not after not_before {not_before}")]
    InvalidValidity {
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// A CA certificate and key could not be loaded.
    #[error("cannot load the CA{location}: {reason}")]
    InvalidCa {
        /// Where from (" from <dir>"), or empty when loaded from strings.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// Only one of `ca.pem` and `ca.key` is in the PKI directory.
    #[error(
        "{present} exists but {missing} does not: restore it, or remove both to create a new CA \
         (and reissue every certificate)"
    )]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// rcgen could not generate a key or build a certificate (for example a DNS name that is
    /// not ASCII).
    #[error("cannot create the key or certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A certificate or revocation list given to read is not one this CA issued, or does not
    /// parse.
    #[error("{what}: {reason}")]
    Unreadable {
        /// Which file or item.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)
}

fn check_trust_domain(value: &str) -> Result<(), Error> {
    if !value.is_empty() && value.bytes().all(is_name_char) {
        Ok(())
    } else {
        Err(Error::InvalidTrustDomain(value.to_owned()))
    }
}

/// Identity and file names: `[a-z0-9.-_]+`, and not `.` or `..` (they are file names too).
fn check_name(what: &'static str, value: &str) -> Result<(), Error> {
    if !value.is_empty() && value != "." && value != ".." && value.bytes().all(is_name_char) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

/// The rules of the gateway's SPIFFE ID parser (`isnad_tls::identity::SpiffeId::parse`): a
/// lowercase trust domain, a non-empty path of non-empty segments of `[A-Za-z0-9.-_]` other
/// than `.` and `..`, no query, fragment, port or user info.
fn check_spiffe_id(id: &str) -> Result<(), Error> {
    let invalid = |rule| Error::InvalidSpiffeId {
        value: id.to_owned(),
        rule,
    };
    if id.len() > MAX_SPIFFE_ID_LEN {
        return Err(invalid("longer than 2048 bytes"));
    }
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or_else(|| invalid("must start with spiffe://"))?;
    let (domain, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("needs a path after the trust domain"))?;
    if domain.is_empty() || !domain.bytes().all(is_name_char) {
        return Err(invalid(
            "the trust domain must be lowercase letters, digits, '.', '-', '_'",
        ));
    }
    if path.split('/').any(|segment| {
        segment.is_empty()
            || segment == "."
            || segment == ".."
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    }) {
        return Err(invalid(
            "the path must be non-empty segments of letters, digits, '.', '-', '_' (not . or ..)",
        ));
    }
    Ok(())
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The subject's common name.
    pub common_name: String,
    /// The one URI SAN; `None` makes a certificate without any URI SAN (tests use it).
    pub spiffe_id: Option<String>,
    /// DNS SANs; [`IssueRequest::for_identity`] puts `localhost`.
    pub dns_names: Vec<String>,
    /// IP SANs; [`IssueRequest::for_identity`] puts 127.0.0.1 and ::1.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity; may be in the past (tests make expired certificates so).
    pub not_after: OffsetDateTime,
}

impl IssueRequest {
    /// A certificate for `identity`: common name its name, URI SAN its SPIFFE ID, usable on
    /// loopback (`localhost`, 127.0.0.1, ::1), valid from an hour ago for `days` days.
    pub fn for_identity(identity: &Identity, days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        IssueRequest {
            common_name: identity.name.clone(),
            spiffe_id: Some(identity.spiffe_id.clone()),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }
}

/// A certificate and its private key, PEM. `Debug` leaves the key out.
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"(hidden)")
            .finish()
    }
}

/// A certificate authority that can issue certificates; holds its key in memory. `Debug`
/// leaves the key out.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA for `trust_domain` with a fresh P-256 key: CA with path length 0,
    /// key usages keyCertSign, cRLSign and digitalSignature, subject CN
    /// "<trust_domain> development CA" and O "isnad development federation", valid from an
    /// hour ago for ten years.
    pub fn generate(trust_domain: &str) -> Result<Self, Error> {
        check_trust_domain(trust_domain)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("{trust_domain} development CA"));
        name.push(DnType::OrganizationName, "isnad development federation");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and PKCS#8 key, as [`CertificateAuthority::cert_pem`] and
    /// [`CertificateAuthority::key_pem`] give them. Certificates it issues name the loaded
    /// certificate's subject as issuer and its subject key identifier as authority key
    /// identifier, so they chain to it. Refuses a key that does not belong to the certificate
    /// and a certificate without the keyCertSign key usage.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCa {
            location: String::new(),
            reason,
        };
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| invalid(format!("the key is not a PKCS#8 PEM private key ({e})")))?;
        let cert_der = pem_to_der(cert_pem)
            .ok_or_else(|| invalid("the certificate is not a PEM CERTIFICATE".into()))?;
        if !contains(&cert_der, &key.subject_public_key_info()) {
            return Err(invalid("the key does not belong to the certificate".into()));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| invalid(format!("the certificate does not parse ({e})")))?;
        if !issuer.key_usages().contains(&KeyUsagePurpose::KeyCertSign) {
            return Err(invalid(
                "the certificate may not sign certificates (no keyCertSign key usage)".into(),
            ));
        }
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM: the trust anchor to give gateways and clients.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM. Secret: store it with mode 0600, never log it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a leaf certificate with a fresh P-256 key: not a CA, key usage
    /// digitalSignature, extended key usages serverAuth and clientAuth, the request's names
    /// and validity. Validates the SPIFFE ID (see the crate documentation) and that the
    /// validity ends after it starts.
    pub fn issue(&self, request: &IssueRequest) -> Result<IssuedCert, Error> {
        if request.not_after <= request.not_before {
            return Err(Error::InvalidValidity {
                not_before: request.not_before,
                not_after: request.not_after,
            });
        }
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, request.common_name.clone());
        if let Some(id) = &request.spiffe_id {
            check_spiffe_id(id)?;
            params
                .subject_alt_names
                .push(SanType::URI(id.as_str().try_into()?));
        }
        for dns in &request.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.as_str().try_into()?));
        }
        for ip in &request.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = request.not_before;
        params.not_after = request.not_after;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate on a revocation list: its serial number and when it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's serial number, big-endian bytes as in the certificate.
    pub serial: Vec<u8>,
    /// When the CA revoked it.
    pub at: OffsetDateTime,
}

/// A certificate revocation list's content: its number and entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevocationList {
    /// The CRL number (RFC 5280 5.2.3); each new list of a CA has a larger one.
    pub number: u64,
    /// The revoked certificates.
    pub revoked: Vec<Revocation>,
}

impl CertificateAuthority {
    /// Signs a certificate revocation list (PEM) of `list`'s entries, valid from an hour ago
    /// until `valid_days` from now: relying parties check certificates this CA issued against
    /// it, and should fetch its successor before `nextUpdate`.
    pub fn revocation_list(&self, list: &RevocationList, valid_days: u32) -> Result<String, Error> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(i64::from(valid_days.max(1))),
            crl_number: SerialNumber::from(list.number.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: list
                .revoked
                .iter()
                .map(|entry| RevokedCertParams {
                    serial_number: SerialNumber::from(entry.serial.clone()),
                    revocation_time: entry.at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// The serial number of the (first) certificate in `cert_pem`.
pub fn serial_number(cert_pem: &str) -> Result<Vec<u8>, Error> {
    let unreadable = |reason: String| Error::Unreadable {
        what: "certificate".into(),
        reason,
    };
    let der = pem_to_der(cert_pem).ok_or_else(|| unreadable("not a PEM CERTIFICATE".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| unreadable(format!("does not parse ({e})")))?;
    Ok(cert.raw_serial().to_vec())
}

/// The number and entries of a PEM revocation list (to carry them into the next one). The
/// signature is not checked here: the list is the CA's own file.
pub fn read_revocation_list(crl_pem: &str) -> Result<RevocationList, Error> {
    let unreadable = |reason: String| Error::Unreadable {
        what: "revocation list".into(),
        reason,
    };
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
        .map_err(|e| unreadable(format!("not a PEM X509 CRL ({e})")))?;
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
        .map_err(|e| unreadable(format!("does not parse ({e})")))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let revoked = crl
        .iter_revoked_certificates()
        .map(|entry| Revocation {
            serial: entry.raw_serial().to_vec(),
            at: entry.revocation_date.to_datetime(),
        })
        .collect();
    Ok(RevocationList { number, revoked })
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DER of the first certificate in `pem`, or `None` if there is none or it is malformed.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| der.to_vec())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file atomically: a fresh temporary file in the same directory (mode 0600 for
/// secrets, from creation on), written and fsynced, renamed over `path`, then the directory
/// fsynced, so a crash leaves either the old file or the whole new one, never half a key.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    // A temporary file left by a crash may have other permissions: start afresh.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&tmp)(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(path)(e));
    }
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(())
}

/// Writes a public file (a certificate, a revocation list) atomically, mode 0644.
pub fn write_public_file(path: &Path, contents: &str) -> Result<(), Error> {
    write_file(path, contents, false)
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))
}

/// Writes `<dir>/<name>.pem` (the certificate and nothing else) and `<dir>/<name>.key` (the
/// key, mode 0600 on unix), creating `dir` if needed. Each file is written atomically
/// (temporary file, fsync, rename); the key is written first. `name` follows the identity
/// name rules (`[a-z0-9.-_]+`), so it cannot leave `dir`.
pub fn write_pair(dir: &Path, name: &str, cert: &IssuedCert) -> Result<(), Error> {
    check_name("certificate name", name)?;
    create_dir(dir)?;
    write_file(&dir.join(format!("{name}.key")), &cert.key_pem, true)?;
    write_file(&dir.join(format!("{name}.pem")), &cert.cert_pem, false)
}

/// Creates a CA in `dir` (`ca.pem`, `ca.key` mode 0600) unless both files exist, in which
/// case it loads them; then issues `<name>.pem`/`<name>.key` for every identity that lacks
/// either file (see [`IssueRequest::for_identity`]). Returns the CA. Idempotent: a second
/// call changes nothing. Refuses a directory with only one of `ca.pem` and `ca.key`
/// ([`Error::IncompleteCa`]) rather than replacing a CA that certificates chain to.
///
/// A loaded CA is used as it is, whatever trust domain it was made for.
pub fn init_dir(
    dir: &Path,
    trust_domain: &str,
    identities: &[Identity],
    days: u32,
) -> Result<CertificateAuthority, Error> {
    check_trust_domain(trust_domain)?;
    for identity in identities {
        check_name("identity name", &identity.name)?;
        check_spiffe_id(&identity.spiffe_id)?;
    }
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca = match (ca_pem.exists(), ca_key.exists()) {
        (true, true) => {
            let read = |path: &Path| std::fs::read_to_string(path).map_err(io_error(path));
            CertificateAuthority::load(&read(&ca_pem)?, &read(&ca_key)?).map_err(|e| match e {
                Error::InvalidCa { reason, .. } => Error::InvalidCa {
                    location: format!(" from {} and {}", ca_pem.display(), ca_key.display()),
                    reason,
                },
                other => other,
            })?
        }
        (false, false) => {
            let ca = CertificateAuthority::generate(trust_domain)?;
            create_dir(dir)?;
            write_file(&ca_key, &ca.key_pem(), true)?;
            write_file(&ca_pem, ca.cert_pem(), false)?;
            ca
        }
        (true, false) => {
            return Err(Error::IncompleteCa {
                present: ca_pem,
                missing: ca_key,
            });
        }
        (false, true) => {
            return Err(Error::IncompleteCa {
                present: ca_key,
                missing: ca_pem,
            });
        }
    };
    for identity in identities {
        let cert = dir.join(format!("{}.pem", identity.name));
        let key = dir.join(format!("{}.key", identity.name));
        if cert.exists() && key.exists() {
            continue;
        }
        let issued = ca.issue(&IssueRequest::for_identity(identity, days))?;
        write_pair(dir, &identity.name, &issued)?;
    }
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_follow_the_gateway_rules() {
        for good in [
            "spiffe://isnad.example/agency/housing-programme",
            "spiffe://td/gateway/Node_1.a",
        ] {
            assert!(check_spiffe_id(good).is_ok(), "{good}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        for bad in [
            "spiffe://isnad.example",
            "spiffe://isnad.example/",
            "spiffe://Isnad.example/agency/a",
            "spiffe://isnad.example/agency//a",
            "spiffe://isnad.example/agency/../admin",
            "spiffe://isnad.example/agency/./a",
            "spiffe://isnad.example/agency/a?x=1",
            "spiffe://isnad.example/agency/a#f",
            "spiffe://isnad.example:443/agency/a",
            "spiffe://user@isnad.example/agency/a",
            "spiffe:///agency/a",
            "SPIFFE://isnad.example/agency/a",
            long.as_str(),
        ] {
            assert!(check_spiffe_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_lowercase_and_cannot_leave_the_directory() {
        assert!(check_name("n", "housing-programme_2.a").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "A", "a b", "é"] {
            assert!(check_name("n", bad).is_err(), "{bad:?}");
        }
    }
}
