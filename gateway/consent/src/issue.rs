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

/// What a citizen agreed to, as a consent authority records it: the claims of one consent
/// token. [`ConsentGrant::claims`] gives the JSON [`SigningKey::issue`] signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentGrant {
    /// The consent id (`jti`): the handle a revocation names.
    pub id: String,
    /// The consent authority (`iss`).
    pub issuer: String,
    /// The gateway federation the token is for (`aud`).
    pub audience: String,
    /// The citizen, as requests name them (`sub`).
    pub subject: String,
    /// The consumer agency's SPIFFE ID (`azp`).
    pub consumer: String,
    /// The purpose.
    pub purpose: String,
    /// The dataset and the fields the citizen agreed to share from it.
    pub dataset: String,
    /// The fields.
    pub fields: Vec<String>,
    /// When it was given (`iat`, also `nbf`), Unix seconds.
    pub issued_at: u64,
    /// When it ends (`exp`), Unix seconds.
    pub expires_at: u64,
    /// How many requests it allows, if it limits them.
    pub max_uses: Option<u64>,
    /// SHA-256 of the consumer's certificate (DER), to bind the token to it (`cnf.x5t#S256`).
    pub cert_sha256: Option<[u8; 32]>,
}

impl ConsentGrant {
    /// The token's claims.
    pub fn claims(&self) -> serde_json::Value {
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "azp": self.consumer,
            "purpose": self.purpose,
            "jti": self.id,
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.expires_at,
            "authorization_details": [{
                "type": crate::verify::DETAILS_TYPE,
                "dataset": self.dataset,
                "fields": self.fields,
            }],
        });
        if let Some(uses) = self.max_uses {
            claims["max_uses"] = uses.into();
        }
        if let Some(hash) = self.cert_sha256 {
            claims["cnf"] = serde_json::json!({ "x5t#S256": URL_SAFE_NO_PAD.encode(hash) });
        }
        claims
    }
}

/// A new random consent id: 128 bits, hex.
pub fn new_consent_id() -> Result<String, IssueError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes)
        .map_err(|_| IssueError("the system random generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The consent id (`jti`) and expiry (`exp`, Unix seconds) a token claims, read WITHOUT
/// verifying it: for a consent authority's own tools (revoking a token it issued), never for a
/// decision to release anything.
pub fn peek_id(token: &str) -> Result<(String, u64), IssueError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| IssueError("not a JWT: it has no payload".into()))?;
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| IssueError("not a JWT: the payload is not base64url JSON".into()))?;
    let id = claims["jti"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| IssueError("the token has no jti".into()))?;
    let exp = claims["exp"]
        .as_u64()
        .ok_or_else(|| IssueError("the token has no integer exp".into()))?;
    Ok((id.to_owned(), exp))
}
