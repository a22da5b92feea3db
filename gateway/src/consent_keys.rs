//! The consent authorities' keys in force, and reloading them without a restart.
//!
//! The JWKS file is re-read when its content changes (polled with the policy store, and on
//! SIGHUP), so an authority rotates by publishing a file with the new key beside the old one,
//! signing with the new one, and later dropping the old. A file that does not parse, or holds a
//! key the gateway refuses, is refused whole with its error, logged once, and the keys in force
//! stay. Each reload builds a new verifier, so its cache of verified tokens never outlives the
//! keys it was filled under.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use isnad_consent::{Jwks, Verifier, VerifierConfig};

use crate::config::ConsentConfig;

/// The verifier in force and how to reload it.
#[derive(Debug)]
pub struct ConsentKeys {
    path: PathBuf,
    config: VerifierConfig,
    /// Who may revoke consents through `Admin.RevokeConsent`.
    authorities: Vec<String>,
    current: ArcSwap<Verifier>,
    /// SHA-256 of the content last read (in force, or refused), so a poll reloads only on a
    /// change and reports a broken file once.
    seen: Mutex<[u8; 32]>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

fn read(path: &Path, config: &VerifierConfig) -> anyhow::Result<(Verifier, [u8; 32])> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("JWKS {}: {e}", path.display()))?;
    let jwks =
        Jwks::from_json(&bytes).map_err(|e| anyhow::anyhow!("JWKS {}: {e}", path.display()))?;
    let verifier = Verifier::new(jwks, config.clone())
        .map_err(|e| anyhow::anyhow!("consent verifier: {e}"))?;
    Ok((verifier, digest(&bytes)))
}

impl ConsentKeys {
    /// Reads the JWKS the configuration names; tokens must be for `federation` (`aud`).
    pub fn load(config: &ConsentConfig, federation: &str) -> anyhow::Result<ConsentKeys> {
        anyhow::ensure!(
            !config.issuers.is_empty(),
            "consent.issuers: name at least one consent authority (the `iss` of its tokens)"
        );
        let verifier_config = VerifierConfig {
            leeway: Duration::from_secs(config.leeway_s),
            max_token_bytes: config.max_token_bytes,
            max_lifetime: Duration::from_secs(config.max_lifetime_days.saturating_mul(86_400)),
            ..VerifierConfig::new(federation, config.issuers.clone())
        };
        let (verifier, seen) = read(&config.jwks, &verifier_config)?;
        let authorities = if config.authorities.is_empty() {
            vec![format!("spiffe://{federation}/admin/consent-authority")]
        } else {
            config.authorities.clone()
        };
        Ok(ConsentKeys {
            path: config.jwks.clone(),
            config: verifier_config,
            authorities,
            current: ArcSwap::from_pointee(verifier),
            seen: Mutex::new(seen),
        })
    }

    /// The verifier in force.
    pub fn verifier(&self) -> Arc<Verifier> {
        self.current.load_full()
    }

    /// Whether `spiffe_id` may revoke consents.
    pub fn is_authority(&self, spiffe_id: &str) -> bool {
        self.authorities.iter().any(|id| id == spiffe_id)
    }

    /// The longest consent lifetime accepted: how long a revocation without an expiry is kept.
    pub fn max_lifetime(&self) -> Duration {
        self.config.max_lifetime
    }

    /// Re-reads the JWKS if its content changed since it was last read.
    pub fn poll(&self, trigger: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                // Report a vanished file once, by remembering the digest of nothing.
                let nothing = digest(&[]);
                if *seen != nothing {
                    *seen = nothing;
                    tracing::error!(
                        trigger,
                        path = %self.path.display(),
                        %error,
                        "consent keys unreadable; the keys in force stay"
                    );
                }
                return;
            }
        };
        if digest(&bytes) == *seen {
            return;
        }
        match read(&self.path, &self.config) {
            Ok((verifier, read_digest)) => {
                self.current.store(Arc::new(verifier));
                *seen = read_digest;
                tracing::info!(trigger, path = %self.path.display(), "consent keys reloaded");
            }
            Err(error) => {
                *seen = digest(&bytes);
                tracing::error!(
                    trigger,
                    "consent keys refused; the keys in force stay: {error:#}"
                );
            }
        }
    }
}
