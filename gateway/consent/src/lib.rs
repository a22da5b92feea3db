//! Consent tokens: JWTs (`typ: consent+jwt`) signed by a consent authority, which the gateway
//! verifies before it releases a field whose rule needs the citizen's consent.
//!
//! **Crypto backend.** jsonwebtoken 10 is built without either of its backends (aws-lc-rs or
//! RustCrypto); [`provider`] gives it one of our own that supports exactly EdDSA (Ed25519) and
//! ES256 and refuses every other algorithm: no RSA code at all, and no way for an `HS256` or
//! `none` token to reach a verifier. ES256, signing and digests run on `ring`, the library
//! rustls already uses here; Ed25519 signature checks run on ed25519-dalek (about 33 us against
//! ring's 47 on the gateway's machines, which is what brings a first verification under the
//! 40 us of issue 4), with the checks of its `verify_strict` and the trusted keys parsed once
//! (see `ed25519.rs`). ed25519-dalek is no rustls provider and installs nothing: rustls keeps
//! ring as its only provider. The jsonwebtoken provider is installed once per process, before
//! any jsonwebtoken call, by [`provider::install`]; jsonwebtoken's fallback (which panics) is
//! never reached from this crate.
//!
//! - [`provider`]: the jsonwebtoken provider.
//! - [`jwks`]: the trusted consent authorities' public keys (a JWKS file, several keys for
//!   rotation).
//!
//! - [`verify`]: verifying a token for one request, with a cache of verified tokens.
//! - [`issue`]: signing tokens, for the development consent authority and tests.

mod ed25519;
pub mod issue;
pub mod jwks;
pub mod provider;
pub mod verify;

pub use issue::{ConsentGrant, IssueError, SigningKey, jwks_json, new_consent_id, peek_id};
pub use jwks::{Jwks, JwksError, PublicKey, SigningAlgorithm};
pub use verify::{Consent, ConsentError, DEFAULT_MAX_LIFETIME, Request, Verifier, VerifierConfig};
