//! SPIFFE identities: `spiffe://<trust-domain>/<path>`, carried as the one URI SAN of every
//! certificate in the federation.

use std::fmt;
use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const SCHEME: &str = "spiffe://";
const MAX_LEN: usize = 2048;

/// A validated SPIFFE ID.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: String,
    /// Byte offset of the `/` that ends the trust domain.
    path_start: usize,
}

/// Why a peer has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the certificate cannot be parsed")]
    Unparseable,
    /// The certificate has no URI SAN.
    #[error("the certificate has no URI subject alternative name (SPIFFE ID)")]
    NoSpiffeId,
    /// The certificate has more than one URI SAN.
    #[error("the certificate has more than one URI subject alternative name")]
    SeveralUris,
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("not a valid SPIFFE ID: {0}")]
    Invalid(&'static str),
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID: lowercase trust domain of `[a-z0-9.-_]`, a non-empty
    /// path of non-empty segments of `[A-Za-z0-9.-_]`, no query or fragment.
    pub fn parse(uri: &str) -> Result<SpiffeId, IdentityError> {
        if uri.len() > MAX_LEN {
            return Err(IdentityError::Invalid("longer than 2048 bytes"));
        }
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or(IdentityError::Invalid("scheme is not spiffe://"))?;
        let slash = rest
            .find('/')
            .ok_or(IdentityError::Invalid("no path after the trust domain"))?;
        let (domain, path) = (&rest[..slash], &rest[slash + 1..]);
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(IdentityError::Invalid("bad trust domain"));
        }
        if path.is_empty()
            || path.split('/').any(|segment| {
                segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || !segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            })
        {
            return Err(IdentityError::Invalid("bad path"));
        }
        Ok(SpiffeId {
            uri: uri.to_owned(),
            path_start: SCHEME.len() + slash,
        })
    }

    /// Reads the SPIFFE ID from a DER certificate: its one URI SAN.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|_| IdentityError::Unparseable)?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| IdentityError::Unparseable)?
            .ok_or(IdentityError::NoSpiffeId)?;
        let mut uris = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            });
        let uri = uris.next().ok_or(IdentityError::NoSpiffeId)?;
        if uris.next().is_some() {
            return Err(IdentityError::SeveralUris);
        }
        SpiffeId::parse(uri)
    }

    /// The trust domain, e.g. `isnad.example`.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.path_start]
    }

    /// The path without its leading `/`, e.g. `agency/housing-programme`.
    pub fn path(&self) -> &str {
        &self.uri[self.path_start + 1..]
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

/// What a server knows about the peer of a connection, fixed at the end of the handshake and
/// attached to every request on that connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's SPIFFE ID, or why it has none.
    pub identity: Result<SpiffeId, IdentityError>,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// SHA-256 of the peer's leaf certificate (DER): what a consent token bound to a
    /// certificate (`cnf.x5t#S256`, RFC 8705) must name.
    pub cert_sha256: Option<[u8; 32]>,
    /// The leaf certificate's issuer and serial number, by which revocation lists name it.
    pub certificate: Option<CertificateId>,
    /// The connection's requests in progress, for its idle timeout ([`crate::idle`]).
    pub activity: crate::idle::Activity,
}

/// A certificate as a revocation list names it: its issuer's name (DER) and its serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateId {
    /// The issuer's distinguished name, DER.
    pub issuer: Vec<u8>,
    /// The serial number, big-endian bytes as encoded.
    pub serial: Vec<u8>,
}

impl CertificateId {
    /// The issuer and serial of a DER certificate, if it parses.
    pub fn of(der: &[u8]) -> Option<CertificateId> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(CertificateId {
            issuer: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
        })
    }
}

impl PeerInfo {
    /// Reads the identity from the peer's certificate chain as rustls reports it.
    pub fn from_chain(
        chain: Option<&[CertificateDer<'static>]>,
        remote: Option<SocketAddr>,
    ) -> Self {
        let leaf = chain.and_then(|chain| chain.first());
        let identity = match leaf {
            Some(leaf) => SpiffeId::from_certificate(leaf),
            None => Err(IdentityError::NoCertificate),
        };
        let cert_sha256 = leaf.and_then(|leaf| {
            ring::digest::digest(&ring::digest::SHA256, leaf.as_ref())
                .as_ref()
                .try_into()
                .ok()
        });
        PeerInfo {
            identity,
            remote,
            cert_sha256,
            certificate: leaf.and_then(|leaf| CertificateId::of(leaf.as_ref())),
            activity: crate::idle::Activity::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_trust_domain_and_path() {
        let id =
            SpiffeId::parse("spiffe://isnad.example/agency/housing-programme").expect("valid id");
        assert_eq!(id.trust_domain(), "isnad.example");
        assert_eq!(id.path(), "agency/housing-programme");
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "https://isnad.example/agency/a",
            "spiffe://isnad.example",
            "spiffe://isnad.example/",
            "spiffe://Isnad.example/agency/a",
            "spiffe://isnad.example/agency//a",
            "spiffe://isnad.example/agency/../admin",
            "spiffe://isnad.example/agency/a?x=1",
            "spiffe:///agency/a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
