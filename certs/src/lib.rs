//! The development PKI of isnad: a federation CA and SPIFFE-named certificates for the sample
//! identities. For development and tests only, never production: keys are generated on the
//! machine, held in plain files, and the CA is online. `certs/README.md` says how a real
//! federation issues, names and rotates certificates.
//!
//! Every certificate carries exactly one URI SAN, its SPIFFE ID:
//! `spiffe://<trust-domain>/{agency,auditor,admin,gateway}/<name>`. Development certificates
//! also carry `localhost`, 127.0.0.1 and ::1, so standard gRPC tools can connect on loopback.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
pub use time::{Duration, OffsetDateTime};

/// A party of the federation and its SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The file name of its certificate and key (`<name>.pem`, `<name>.key`).
    pub name: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
}

impl Identity {
    fn of(trust_domain: &str, kind: &str, name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            spiffe_id: format!("spiffe://{trust_domain}/{kind}/{name}"),
        }
    }

    /// An agency (consumer or provider).
    pub fn agency(trust_domain: &str, id: &str) -> Identity {
        Identity::of(trust_domain, "agency", id)
    }

    /// An auditor.
    pub fn auditor(trust_domain: &str, name: &str) -> Identity {
        Identity::of(trust_domain, "auditor", name)
    }

    /// An administrator (security team).
    pub fn admin(trust_domain: &str, name: &str) -> Identity {
        Identity::of(trust_domain, "admin", name)
    }

    /// A gateway node.
    pub fn gateway(trust_domain: &str, node: &str) -> Identity {
        Identity::of(trust_domain, "gateway", node)
    }
}

/// Why a certificate could not be made or stored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A name is not usable in a certificate.
    #[error("invalid {what} {value:?}: {rule}")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name.
        value: String,
        /// What it must look like.
        rule: &'static str,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

const NAME_RULE: &str = "use lowercase letters, digits, '-', '.', '_'";

fn check_name(what: &'static str, value: &str) -> Result<(), Error> {
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            value: value.to_owned(),
            rule: NAME_RULE,
        })
    }
}

fn check_spiffe_id(id: &str) -> Result<(), Error> {
    let invalid = |rule| Error::InvalidName {
        what: "SPIFFE ID",
        value: id.to_owned(),
        rule,
    };
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or_else(|| invalid("must start with spiffe://"))?;
    let (domain, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("needs a path after the trust domain"))?;
    check_name("trust domain", domain)?;
    if path.split('/').any(|segment| {
        segment.is_empty()
            || segment == ".."
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    }) {
        return Err(invalid("path segments are non-empty [A-Za-z0-9-._]"));
    }
    Ok(())
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The subject's common name.
    pub common_name: String,
    /// The one URI SAN; `None` makes a certificate without any (tests use it).
    pub spiffe_id: Option<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl IssueRequest {
    /// A certificate for `identity`, valid from an hour ago for `days` days, usable on loopback.
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

/// A certificate and its private key, PEM.
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

/// A certificate authority that issues certificates; holds its key in memory.
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
    /// A new CA for `trust_domain`, valid from an hour ago for ten years.
    pub fn generate(trust_domain: &str) -> Result<Self, Error> {
        check_name("trust domain", trust_domain)?;
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

    /// A CA from its certificate and key, as [`CertificateAuthority::cert_pem`] and
    /// [`CertificateAuthority::key_pem`] wrote them.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a leaf certificate: not a CA, digital signature, server and client auth.
    pub fn issue(&self, request: &IssueRequest) -> Result<IssuedCert, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
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
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes a file atomically (temporary file, fsync, rename), with mode 0600 for secrets.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `<dir>/<name>.pem` and `<dir>/<name>.key` (mode 0600), creating `dir` if needed.
pub fn write_pair(dir: &Path, name: &str, cert: &IssuedCert) -> Result<(), Error> {
    check_name("certificate name", name)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    write_file(&dir.join(format!("{name}.key")), &cert.key_pem, true)?;
    write_file(&dir.join(format!("{name}.pem")), &cert.cert_pem, false)
}

/// Creates a CA in `dir` (`ca.pem`, `ca.key`) unless one is there, then issues a certificate
/// for every identity that has none yet. Idempotent: a second call changes nothing.
pub fn init_dir(
    dir: &Path,
    trust_domain: &str,
    identities: &[Identity],
    days: u32,
) -> Result<CertificateAuthority, Error> {
    check_name("trust domain", trust_domain)?;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })
    };
    let ca = if dir.join("ca.pem").exists() && dir.join("ca.key").exists() {
        CertificateAuthority::load(&read("ca.pem")?, &read("ca.key")?)?
    } else {
        let ca = CertificateAuthority::generate(trust_domain)?;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        write_file(&dir.join("ca.key"), &ca.key_pem(), true)?;
        write_file(&dir.join("ca.pem"), ca.cert_pem(), false)?;
        ca
    };
    for identity in identities {
        check_name("identity name", &identity.name)?;
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
