//! Consent tokens for the end-to-end tests, signed with the development consent authority that
//! `isnad up` made for the federation (`DIR/consent/authority.pk8`), as the citizen's consent
//! app would.

use std::time::{Duration, SystemTime};

use isnad_consent::{ConsentGrant, SigningAlgorithm, SigningKey};

use crate::{FEDERATION, Federation, applicant};

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Federation {
    /// The development consent authority's signing key.
    pub fn consent_key(&self) -> SigningKey {
        let pkcs8 = std::fs::read(self.dir().join("consent/authority.pk8")).unwrap();
        SigningKey::from_pkcs8("dev-consent-1", SigningAlgorithm::EdDSA, &pkcs8).unwrap()
    }

    /// The applicant's consent for `consumer` to read `fields` of `dataset` for `purpose`,
    /// valid for an hour from a minute ago, with a fresh id.
    pub fn grant(
        &self,
        consumer: &str,
        dataset: &str,
        purpose: &str,
        fields: &[&str],
    ) -> ConsentGrant {
        let now = unix_now();
        ConsentGrant {
            id: isnad_consent::new_consent_id().unwrap(),
            issuer: format!("https://consent.{FEDERATION}"),
            audience: FEDERATION.to_owned(),
            subject: applicant(),
            consumer: format!("spiffe://{FEDERATION}/agency/{consumer}"),
            purpose: purpose.to_owned(),
            dataset: dataset.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            issued_at: now - 60,
            expires_at: now + 3600,
            max_uses: None,
            cert_sha256: None,
        }
    }

    /// `grant` signed by the development consent authority.
    pub fn token(&self, grant: &ConsentGrant) -> String {
        self.consent_key().issue(&grant.claims()).unwrap()
    }

    /// `claims` (any JSON, however wrong) signed by the development consent authority.
    pub fn token_of_claims(&self, claims: &serde_json::Value) -> String {
        self.consent_key().issue(claims).unwrap()
    }
}

/// How long the gateway may take to see a changed file (it polls every second).
pub const RELOAD_WITHIN: Duration = Duration::from_secs(10);
