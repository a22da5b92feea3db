//! TLS and identity for every isnad process: the gateway, the reference provider, the `isnad
//! query` client, the tests and the load generator all go through this crate, so there is one
//! TLS policy and one notion of who a peer is.
//!
//! - [`policy`]: the TLS policy (TLS 1.3 only, ring, cipher suites, key exchange groups, ALPN),
//!   and the server and client configurations built from it.
//! - [`identity`]: SPIFFE IDs and how they are read from a peer certificate.
//! - [`server`]: the accept loop (bounded concurrent handshakes, per source address too, a
//!   handshake timeout, a connection cap) that hands tonic connections tagged with the peer's
//!   identity.
//! - [`idle`]: closing connections with no request in progress.
//! - [`client`]: client connections over mutual TLS (bare, or as a tonic channel) that check
//!   the server's SPIFFE ID.
//! - [`material`]: loading certificates, keys and revocation lists from PEM files.
//! - [`live`]: material reloaded while serving (rotation, revocation lists).
//! - [`coalesce`]: write coalescing for busy HTTP/2 connections.

pub mod client;
pub mod coalesce;
pub mod identity;
pub mod idle;
pub mod live;
pub mod material;
pub mod policy;
pub mod server;

pub use identity::{CertificateId, IdentityError, PeerInfo, SpiffeId};
pub use live::LiveTls;
pub use material::{TlsFiles, TlsMaterial};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the configuration (for example a key that does not match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built from the trust anchors.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A certificate revocation list cannot be used.
    #[error("certificate revocation list {crl}: {what}")]
    Crl {
        /// Its file.
        crl: String,
        /// What is wrong with it.
        what: String,
    },
    /// An endpoint address is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
}
