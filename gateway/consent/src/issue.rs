//! Issuing consent tokens: what a consent authority does. The gateway never issues; this is
//! here for the development consent authority of `isnad up` and the demo, and for tests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

use crate::jwks::SigningAlgorithm;
use crate::provider;
use crate::verify::TOKEN_TYPE;

/// A consent authority's private key, PKCS#8.
pub struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IssueError(String);

impl SigningKey {
    /// A new random key.
    pub fn generate(kid: &str, algorithm: SigningAlgorithm) -> Result<SigningKey, IssueError> {
        let random = SystemRandom::new();
        let pkcs8 = match algorithm {
            SigningAlgorithm::EdDSA => {
                Ed25519KeyPair::generate_pkcs8(&random).map(|der| der.as_ref().to_vec())
            }
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
                    .map(|der| der.as_ref().to_vec())
            }
        }
        .map_err(|_| IssueError("cannot generate a key".into()))?;
        SigningKey::from_pkcs8(kid, algorithm, &pkcs8)
    }

    /// A key from its PKCS#8 DER.
    pub fn from_pkcs8(
        kid: &str,
        algorithm: SigningAlgorithm,
        pkcs8: &[u8],
    ) -> Result<SigningKey, IssueError> {
        let public = match algorithm {
            SigningAlgorithm::EdDSA => provider::ed25519_public(pkcs8),
            SigningAlgorithm::ES256 => provider::p256_public(pkcs8),
        }
        .ok_or_else(|| IssueError(format!("not a PKCS#8 {} key", algorithm.name())))?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            algorithm,
            pkcs8: pkcs8.to_vec(),
            public,
        })
    }

    /// The PKCS#8 DER, to store the key.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (a JSON object), for the JWKS the gateways trust.
    pub fn public_jwk(&self) -> serde_json::Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self.algorithm {
            SigningAlgorithm::EdDSA => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": self.kid, "x": b64(&self.public),
            }),
            SigningAlgorithm::ES256 => serde_json::json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                "x": b64(self.public.get(1..33).unwrap_or_default()),
                "y": b64(self.public.get(33..).unwrap_or_default()),
            }),
        }
    }

    /// Signs `claims` as a consent token (`typ: consent+jwt`, this key's `kid` and algorithm).
    pub fn issue(&self, claims: &serde_json::Value) -> Result<String, IssueError> {
        provider::install().map_err(|error| IssueError(error.into()))?;
        let (algorithm, key) = match self.algorithm {
            SigningAlgorithm::EdDSA => (Algorithm::EdDSA, EncodingKey::from_ed_der(&self.pkcs8)),
            SigningAlgorithm::ES256 => (Algorithm::ES256, EncodingKey::from_ec_der(&self.pkcs8)),
        };
        let mut header = Header::new(algorithm);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key)
            .map_err(|error| IssueError(format!("cannot sign: {error}")))
    }
}

/// A JWKS document of `keys`' public halves.
pub fn jwks_json(keys: &[&SigningKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>() })
        .to_string()
}
