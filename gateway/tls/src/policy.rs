//! The TLS policy, in one place: TLS 1.3 only, the ring crypto provider, AEAD suites, X25519 and
//! P-256 key exchange, ALPN `h2`, client certificates required by servers, the peer identity
//! checked by SPIFFE ID rather than by DNS name, revoked certificates refused, and no session
//! resumption on servers (every connection is verified against the certificates and
//! revocation lists in force).
//!
//! Configurations take their certificates, trust anchors and revocation lists from a
//! [`LiveTls`] at every handshake, so they follow its reloads.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

use crate::TlsError;
use crate::identity::SpiffeId;
use crate::live::LiveTls;
use crate::material::TlsMaterial;

/// The only protocol version isnad speaks.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// gRPC runs on HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// The crypto provider: ring, restricted to the TLS 1.3 AEAD suites and to X25519 and P-256.
///
/// Built explicitly and passed to every config, so no process-wide default provider is needed and
/// two providers can never be linked in by accident.
pub fn provider() -> Arc<CryptoProvider> {
    let base = ring::default_provider();
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![ring::kx_group::X25519, ring::kx_group::SECP256R1],
        ..base
    })
}

/// A server configuration that presents `tls`'s certificate and requires a client certificate
/// chaining to its trust anchors and not revoked.
///
/// The client's identity (its SPIFFE ID) is read after the handshake by [`crate::server`]; a
/// certificate without one still completes the handshake so the caller gets a precise gRPC error
/// rather than a bare TLS alert.
pub fn server_config(tls: &Arc<LiveTls>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(Arc::new(LiveClientVerifier(tls.clone())))
        .with_cert_resolver(Arc::new(LiveCertificate(tls.clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // A resumed session skips certificate verification: a revoked or expired client could
    // come back on an old ticket. Clients keep their connections open, so this costs little.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// [`server_config`] of material that never changes.
pub fn fixed_server_config(material: TlsMaterial) -> Result<ServerConfig, TlsError> {
    server_config(&LiveTls::fixed(material)?)
}

/// The certificate in force, for both ends of a connection.
#[derive(Debug)]
struct LiveCertificate(Arc<LiveTls>);

impl ResolvesServerCert for LiveCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

impl ResolvesClientCert for LiveCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn revoked() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Revoked)
}

/// Verifies client certificates with the trust anchors and revocation lists in force.
#[derive(Debug)]
struct LiveClientVerifier(Arc<LiveTls>);

impl ClientCertVerifier for LiveClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from material that a reload replaces; they are optional, and
        // federation clients hold one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.0.current();
        let verified =
            current
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now)?;
        if current.revokes(end_entity.as_ref()) {
            return Err(revoked());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().client_verifier.supported_verify_schemes()
    }
}

/// Which server a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedPeer {
    /// Exactly this SPIFFE ID (the gateway calling a provider agency).
    Exactly(SpiffeId),
    /// Any gateway node of this trust domain (a consumer calling the gateway).
    AnyGateway {
        /// The federation's trust domain.
        trust_domain: String,
    },
}

impl ExpectedPeer {
    fn accepts(&self, id: &SpiffeId) -> bool {
        match self {
            ExpectedPeer::Exactly(expected) => expected == id,
            ExpectedPeer::AnyGateway { trust_domain } => {
                id.trust_domain() == trust_domain && id.path().starts_with("gateway/")
            }
        }
    }
}

/// A client configuration that presents `tls`'s certificate and accepts only a server whose
/// certificate chains to its trust anchors, is not revoked and carries the expected SPIFFE ID.
pub fn client_config(tls: &Arc<LiveTls>, expected: ExpectedPeer) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        tls: tls.clone(),
        expected,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(LiveCertificate(tls.clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// [`client_config`] of material that never changes.
pub fn fixed_client_config(
    material: TlsMaterial,
    expected: ExpectedPeer,
) -> Result<ClientConfig, TlsError> {
    client_config(&LiveTls::fixed(material)?, expected)
}

/// Verifies a server the SPIFFE way: chain to the trust anchors, not revoked, then the URI SAN
/// as identity. DNS names are not identity in a federation, so the server name is not checked.
#[derive(Debug)]
struct SpiffeServerVerifier {
    tls: Arc<LiveTls>,
    expected: ExpectedPeer,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let current = self.tls.current();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &current.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if current.revokes(end_entity.as_ref()) {
            return Err(revoked());
        }
        let id = SpiffeId::from_certificate(end_entity).map_err(|error| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(error),
            )))
        })?;
        if !self.expected.accepts(&id) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable: only TLS 1.3 is offered.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
