//! Step 1: the caller's SPIFFE ID, read from its certificate at the handshake, names an agency
//! of the catalogue, and the certificate is not on a revocation list in force (it may have been
//! revoked after the connection was made).

use isnad_policy::{AgencyId, Catalogue};
use isnad_tls::{LiveTls, PeerInfo};
use tonic::Code;

use super::{Denial, Step};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The consumer agency.
    pub agency: AgencyId,
    /// Its SPIFFE ID, as its certificate names it.
    pub spiffe_id: String,
    /// SHA-256 of its certificate (DER), for consent tokens bound to it.
    pub cert_sha256: Option<[u8; 32]>,
}

pub(crate) fn principal(
    peer: Option<&PeerInfo>,
    tls: &LiveTls,
    catalogue: &Catalogue,
) -> Result<Principal, Denial> {
    let deny =
        |code, reason, message: String| Denial::new(Step::Authenticate, code, reason, message);
    let peer = peer.ok_or_else(|| {
        deny(
            Code::Unauthenticated,
            "no_client_identity",
            "the connection carries no TLS peer identity".into(),
        )
    })?;
    if tls.is_revoked(peer) {
        return Err(deny(
            Code::Unauthenticated,
            "certificate_revoked",
            "the client certificate was revoked by the federation CA".into(),
        ));
    }
    let id = peer.identity.as_ref().map_err(|error| {
        deny(
            Code::Unauthenticated,
            "no_spiffe_id",
            format!("client certificate has no usable SPIFFE ID: {error}"),
        )
    })?;
    if id.trust_domain() != catalogue.federation {
        return Err(deny(
            Code::PermissionDenied,
            "foreign_trust_domain",
            format!("{id} is not of the federation {}", catalogue.federation),
        ));
    }
    let agency = catalogue.agency_of_path(id.path()).ok_or_else(|| {
        deny(
            Code::PermissionDenied,
            "unknown_consumer",
            format!("{id} is not an agency of the catalogue"),
        )
    })?;
    Ok(Principal {
        agency: agency.id.clone(),
        spiffe_id: id.as_str().to_owned(),
        cert_sha256: peer.cert_sha256,
    })
}
