//! Verifying a consent token for one request.
//!
//! The order of checks: size, shape, header (`alg` in the allow-list, `typ`, no `crit`, `kid`
//! in the trusted keys and made for that algorithm, then the whole header as jsonwebtoken's
//! JOSE header), signature (jsonwebtoken's `crypto::verify`, through our provider), claims
//! present and of the right JSON type (read once, by this module: jsonwebtoken's `decode`
//! would parse the header twice and the payload twice more, for checks that are all off here,
//! about 2 us of a 40 us budget); then, for this request, time (with leeway), issuer, audience, authorized party,
//! subject, purpose, certificate binding and dataset. A token whose signature and claims
//! passed once is cached by its SHA-256 until it expires, so the per-request checks are all
//! that run the next time. Revocation is not checked here: the shared state does it for every
//! request.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;

use crate::jwks::{Jwks, SigningAlgorithm};
use crate::provider;

/// The `typ` every consent token carries.
pub const TOKEN_TYPE: &str = "consent+jwt";

/// The `type` of an `authorization_details` entry this gateway reads.
pub const DETAILS_TYPE: &str = "isnad_attributes";

/// The longest consent lifetime accepted by default: a year and a day.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the gateway trusts and expects.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The gateway's federation id: tokens must name it in `aud`.
    pub audience: String,
    /// The consent authorities (`iss`) whose tokens are accepted.
    pub issuers: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// How many verified tokens are remembered.
    pub cache_entries: usize,
    /// The longest a consent may be valid (`exp - iat`). It also bounds how long a revocation
    /// that names no expiry is kept.
    pub max_lifetime: Duration,
}

impl VerifierConfig {
    /// The defaults: 30 s leeway, 8 KiB tokens, 10,000 cached tokens, a lifetime of at most
    /// 366 days.
    pub fn new(audience: impl Into<String>, issuers: Vec<String>) -> VerifierConfig {
        VerifierConfig {
            audience: audience.into(),
            issuers,
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            cache_entries: 10_000,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

/// The request a token is presented with.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The consumer agency's SPIFFE ID, from its certificate.
    pub caller: &'a str,
    /// The subject the request names.
    pub subject: &'a str,
    /// The purpose the request states.
    pub purpose: &'a str,
    /// The dataset asked for.
    pub dataset: &'a str,
    /// SHA-256 of the consumer's certificate (DER), for tokens bound to it (`cnf.x5t#S256`).
    pub client_cert_sha256: Option<[u8; 32]>,
}

/// A verified consent, for one request's dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The consent id (`jti`), the handle a revocation names.
    pub id: String,
    /// The consent authority.
    pub issuer: String,
    /// When it expires.
    pub expires_at: SystemTime,
    /// How many requests it allows, if it limits them.
    pub max_uses: Option<u64>,
    /// The dataset's fields the citizen agreed to share.
    pub fields: BTreeSet<String>,
}

impl Consent {
    /// Whether the consent covers `field`; a field it does not cover is withheld
    /// (`consent_scope`), the rest of the request goes on.
    pub fn covers(&self, field: &str) -> bool {
        self.fields.contains(field)
    }
}

/// Why a token was refused. Messages never carry claim values: they may identify a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("the consent token is longer than {0} bytes")]
    TooLarge(usize),
    #[error("the consent token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the consent token's algorithm is not accepted: use EdDSA or ES256")]
    Algorithm,
    #[error("the consent token's typ is not \"consent+jwt\"")]
    Type,
    #[error("the consent token's kid names no trusted key for its algorithm")]
    UnknownKey,
    #[error("the consent token's signature does not verify")]
    Signature,
    #[error("the consent token's claim {0} is missing or of the wrong type")]
    Claims(&'static str),
    #[error("the consent token has expired")]
    Expired,
    #[error("the consent token is valid for longer than this gateway accepts (exp - iat)")]
    Lifetime,
    #[error("the consent token is not valid yet")]
    NotYetValid,
    #[error("the consent token's issuer is not a trusted consent authority")]
    Issuer,
    #[error("the consent token is not for this gateway (aud)")]
    Audience,
    #[error("the consent token was issued to another agency (azp)")]
    Party,
    #[error("the consent token's sub does not match the request's subject")]
    Subject,
    #[error("the consent token's purpose does not match the request's purpose")]
    Purpose,
    #[error("the consent token is bound to another certificate (cnf)")]
    Binding,
    #[error("the consent token does not cover the requested dataset")]
    Dataset,
}

impl ConsentError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ConsentError::TooLarge(_) => "consent_too_large",
            ConsentError::Malformed(_) => "consent_malformed",
            ConsentError::Algorithm => "consent_algorithm",
            ConsentError::Type => "consent_type",
            ConsentError::UnknownKey => "consent_unknown_key",
            ConsentError::Signature => "consent_signature",
            ConsentError::Claims(_) => "consent_claims",
            ConsentError::Expired => "consent_expired",
            ConsentError::Lifetime => "consent_lifetime",
            ConsentError::NotYetValid => "consent_not_yet_valid",
            ConsentError::Issuer => "consent_issuer",
            ConsentError::Audience => "consent_audience",
            ConsentError::Party => "consent_party",
            ConsentError::Subject => "consent_subject",
            ConsentError::Purpose => "consent_purpose",
            ConsentError::Binding => "consent_binding",
            ConsentError::Dataset => "consent_dataset",
        }
    }
}

/// The claims of a verified token, typed.
#[derive(Debug)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    azp: String,
    purpose: String,
    jti: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    max_uses: Option<u64>,
    cnf_x5t: Option<Vec<u8>>,
    /// (dataset, fields) per `authorization_details` entry.
    details: Vec<(String, Vec<String>)>,
}

/// Verifies consent tokens against one set of trusted keys. Build a new one when the JWKS is
/// reloaded (the cache goes with the keys it was filled under).
#[derive(Debug)]
pub struct Verifier {
    jwks: Jwks,
    config: VerifierConfig,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<[u8; 32], Arc<Claims>>,
    order: VecDeque<[u8; 32]>,
}

impl Verifier {
    /// A verifier for tokens signed by `jwks`' keys.
    pub fn new(jwks: Jwks, config: VerifierConfig) -> Result<Verifier, &'static str> {
        provider::install()?;
        Ok(Verifier {
            jwks,
            config,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Verifies `token` for `request` at `now`.
    pub fn verify(
        &self,
        token: &str,
        request: &Request<'_>,
        now: SystemTime,
    ) -> Result<Consent, ConsentError> {
        let claims = self.claims(token)?;
        self.check(&claims, request, now)
    }

    /// The token's claims, from the cache or verified now.
    fn claims(&self, token: &str) -> Result<Arc<Claims>, ConsentError> {
        if token.len() > self.config.max_token_bytes {
            return Err(ConsentError::TooLarge(self.config.max_token_bytes));
        }
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .map_err(|_| ConsentError::Malformed("digest"))?;
        if let Some(claims) = self.lock().entries.get(&digest) {
            return Ok(claims.clone());
        }
        let claims = Arc::new(self.verify_signed(token)?);
        let mut cache = self.lock();
        if self.config.cache_entries > 0 && !cache.entries.contains_key(&digest) {
            while cache.entries.len() >= self.config.cache_entries {
                match cache.order.pop_front() {
                    Some(oldest) => {
                        cache.entries.remove(&oldest);
                    }
                    None => break,
                }
            }
            cache.order.push_back(digest);
            cache.entries.insert(digest, claims.clone());
        }
        Ok(claims)
    }

    /// How many verified tokens are cached.
    pub fn cached(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Header, signature and claim types: what does not depend on the request.
    fn verify_signed(&self, token: &str) -> Result<Claims, ConsentError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ConsentError::Malformed(
                "a JWT has three parts separated by dots",
            ));
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(ConsentError::Malformed("the header is not base64url JSON"))?;
        let algorithm = match header.get("alg").and_then(Value::as_str) {
            Some("EdDSA") => SigningAlgorithm::EdDSA,
            Some("ES256") => SigningAlgorithm::ES256,
            _ => return Err(ConsentError::Algorithm),
        };
        if header.get("typ").and_then(Value::as_str) != Some(TOKEN_TYPE) {
            return Err(ConsentError::Type);
        }
        if header.get("crit").is_some() {
            return Err(ConsentError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let key = header
            .get("kid")
            .and_then(Value::as_str)
            .and_then(|kid| self.jwks.get(kid))
            .filter(|key| key.algorithm == algorithm)
            .ok_or(ConsentError::UnknownKey)?;
        // jsonwebtoken reads the header as a JOSE header (and refuses what its type does not
        // hold: a member of another type, an `x5c` that is no list of strings...), then checks
        // the signature with the provider, for exactly the algorithm checked above.
        jsonwebtoken::decode_header(token)
            .map_err(|_| ConsentError::Malformed("the header is not a JOSE header"))?;
        let signed = token.len() - signature.len() - 1;
        let valid = jsonwebtoken::crypto::verify(
            signature,
            &token.as_bytes()[..signed],
            key.decoding_key(),
            match algorithm {
                SigningAlgorithm::EdDSA => Algorithm::EdDSA,
                SigningAlgorithm::ES256 => Algorithm::ES256,
            },
        )
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidAlgorithm => ConsentError::Algorithm,
            _ => ConsentError::Malformed("the signature is not base64url"),
        })?;
        if !valid {
            return Err(ConsentError::Signature);
        }
        let payload: Payload = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(ConsentError::Malformed("the payload is not base64url JSON"))?;
        typed(payload)
    }

    /// What depends on the request and the time.
    fn check(
        &self,
        claims: &Claims,
        request: &Request<'_>,
        now: SystemTime,
    ) -> Result<Consent, ConsentError> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let leeway = self.config.leeway.as_secs();
        if now.saturating_sub(leeway) >= claims.exp {
            return Err(ConsentError::Expired);
        }
        if now.saturating_add(leeway) < claims.nbf || now.saturating_add(leeway) < claims.iat {
            return Err(ConsentError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.config.max_lifetime.as_secs() {
            return Err(ConsentError::Lifetime);
        }
        if !self.config.issuers.contains(&claims.iss) {
            return Err(ConsentError::Issuer);
        }
        if !claims.aud.contains(&self.config.audience) {
            return Err(ConsentError::Audience);
        }
        if claims.azp != request.caller {
            return Err(ConsentError::Party);
        }
        if claims.sub != request.subject {
            return Err(ConsentError::Subject);
        }
        if claims.purpose != request.purpose {
            return Err(ConsentError::Purpose);
        }
        if let Some(bound) = &claims.cnf_x5t
            && request
                .client_cert_sha256
                .map(|hash| hash.to_vec())
                .as_ref()
                != Some(bound)
        {
            return Err(ConsentError::Binding);
        }
        let mut entries = claims
            .details
            .iter()
            .filter(|(dataset, _)| dataset == request.dataset)
            .peekable();
        if entries.peek().is_none() {
            return Err(ConsentError::Dataset);
        }
        Ok(Consent {
            id: claims.jti.clone(),
            issuer: claims.iss.clone(),
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp),
            max_uses: claims.max_uses,
            fields: entries
                .flat_map(|(_, fields)| fields.iter().cloned())
                .collect(),
        })
    }
}

/// The claims this gateway reads, each as the JSON value the token holds (`null` included: a
/// claim that is there, of the wrong type), for [`typed`] to check; other claims are read and
/// dropped. The payload must be a JSON object, and a claim this gateway reads may appear once
/// only (RFC 7519, 4; `jsonwebtoken::decode`, used before, refused a second `exp`, `nbf`,
/// `sub`, `iss` or `aud`).
#[derive(Debug, Default)]
struct Payload {
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    azp: Option<Value>,
    purpose: Option<Value>,
    jti: Option<Value>,
    iat: Option<Value>,
    nbf: Option<Value>,
    exp: Option<Value>,
    max_uses: Option<Value>,
    cnf: Option<Value>,
    authorization_details: Option<Value>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ClaimName {
    Iss,
    Sub,
    Aud,
    Azp,
    Purpose,
    Jti,
    Iat,
    Nbf,
    Exp,
    MaxUses,
    Cnf,
    AuthorizationDetails,
    #[serde(other)]
    Other,
}

impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(json: D) -> Result<Payload, D::Error> {
        json.deserialize_map(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> serde::de::Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut payload = Payload::default();
        while let Some(name) = map.next_key::<ClaimName>()? {
            let slot = match name {
                ClaimName::Iss => &mut payload.iss,
                ClaimName::Sub => &mut payload.sub,
                ClaimName::Aud => &mut payload.aud,
                ClaimName::Azp => &mut payload.azp,
                ClaimName::Purpose => &mut payload.purpose,
                ClaimName::Jti => &mut payload.jti,
                ClaimName::Iat => &mut payload.iat,
                ClaimName::Nbf => &mut payload.nbf,
                ClaimName::Exp => &mut payload.exp,
                ClaimName::MaxUses => &mut payload.max_uses,
                ClaimName::Cnf => &mut payload.cnf,
                ClaimName::AuthorizationDetails => &mut payload.authorization_details,
                ClaimName::Other => {
                    // Read as a value, not skipped: serde_json's skipping does not check a
                    // string's UTF-8, its escapes' surrogates or a number's range, and the
                    // whole payload must stay valid JSON (the fuzzer found this).
                    map.next_value::<Value>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(serde::de::Error::custom("a claim is named twice"));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(payload)
    }
}

fn string(claim: Option<Value>, name: &'static str) -> Result<String, ConsentError> {
    match claim {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        _ => Err(ConsentError::Claims(name)),
    }
}

/// A NumericDate: a JSON integer of seconds (a string or a fraction is an error).
fn seconds(claim: Option<&Value>, name: &'static str) -> Result<u64, ConsentError> {
    claim
        .and_then(Value::as_u64)
        .ok_or(ConsentError::Claims(name))
}

fn strings(items: Vec<Value>) -> Option<Vec<String>> {
    items
        .into_iter()
        .map(|item| match item {
            Value::String(item) => Some(item),
            _ => None,
        })
        .collect()
}

fn typed(claims: Payload) -> Result<Claims, ConsentError> {
    let aud = match claims.aud {
        Some(Value::String(aud)) => vec![aud],
        Some(Value::Array(items)) => strings(items).ok_or(ConsentError::Claims("aud"))?,
        _ => return Err(ConsentError::Claims("aud")),
    };
    let max_uses = match claims.max_uses {
        None => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|uses| *uses > 0)
                .ok_or(ConsentError::Claims("max_uses"))?,
        ),
    };
    let cnf_x5t = match claims.cnf {
        None => None,
        Some(cnf) => Some(
            cnf.get("x5t#S256")
                .and_then(Value::as_str)
                .and_then(|hash| URL_SAFE_NO_PAD.decode(hash).ok())
                .filter(|hash| hash.len() == 32)
                .ok_or(ConsentError::Claims("cnf"))?,
        ),
    };
    let details = match claims.authorization_details {
        Some(Value::Array(entries)) => entries
            .into_iter()
            .map(detail)
            .collect::<Option<Vec<_>>>()
            .ok_or(ConsentError::Claims("authorization_details"))?,
        _ => return Err(ConsentError::Claims("authorization_details")),
    };
    Ok(Claims {
        iss: string(claims.iss, "iss")?,
        sub: string(claims.sub, "sub")?,
        aud,
        azp: string(claims.azp, "azp")?,
        purpose: string(claims.purpose, "purpose")?,
        jti: string(claims.jti, "jti")?,
        iat: seconds(claims.iat.as_ref(), "iat")?,
        nbf: seconds(claims.nbf.as_ref(), "nbf")?,
        exp: seconds(claims.exp.as_ref(), "exp")?,
        max_uses,
        cnf_x5t,
        details: details.into_iter().flatten().collect(),
    })
}

/// One `authorization_details` entry: `Some(None)` for another type (ignored), `None` if an
/// entry of ours is malformed.
fn detail(entry: Value) -> Option<Option<(String, Vec<String>)>> {
    let Value::Object(mut entry) = entry else {
        return None;
    };
    if entry.get("type")?.as_str()? != DETAILS_TYPE {
        return Some(None);
    }
    let Value::String(dataset) = entry.remove("dataset")? else {
        return None;
    };
    let Value::Array(fields) = entry.remove("fields")? else {
        return None;
    };
    Some(Some((dataset, strings(fields)?)))
}
