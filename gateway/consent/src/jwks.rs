//! The trusted consent authorities' public keys: a JWKS file (RFC 7517), several keys at once so
//! that an authority can rotate (publish the new key, sign with it, retire the old one).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use crate::ed25519;

/// The largest JWKS file accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// The algorithms a consent may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// Ed25519 (`kty: OKP`, `crv: Ed25519`).
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (`kty: EC`, `crv: P-256`).
    ES256,
}

impl SigningAlgorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
        }
    }
}

/// One trusted key.
#[derive(Clone)]
pub struct PublicKey {
    /// The key id tokens name in their `kid`.
    pub kid: String,
    /// The one algorithm this key verifies.
    pub algorithm: SigningAlgorithm,
    key: DecodingKey,
}

impl PublicKey {
    /// The key, for jsonwebtoken.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The trusted keys, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: BTreeMap<String, PublicKey>,
}

/// Why a JWKS file was refused: the key (by position and `kid`, when known) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", self.place())]
pub struct JwksError {
    /// The key's position in `keys`, if the error is about one key.
    pub index: Option<usize>,
    /// The key's `kid`, if it has one.
    pub kid: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl JwksError {
    fn whole(message: impl Into<String>) -> JwksError {
        JwksError {
            index: None,
            kid: None,
            message: message.into(),
        }
    }

    fn place(&self) -> String {
        match (self.index, &self.kid) {
            (Some(index), Some(kid)) => format!("key {index} ({kid:?}): "),
            (Some(index), None) => format!("key {index}: "),
            _ => String::new(),
        }
    }
}

impl Jwks {
    /// Reads a JWKS document: `{"keys": [...]}` with Ed25519 (`OKP`) and P-256 (`EC`) public
    /// keys, each with a unique `kid`. A private key (`d`), another key type or curve, an
    /// `alg` or `use` that does not fit, or a duplicate `kid` refuses the whole file.
    pub fn from_json(bytes: &[u8]) -> Result<Jwks, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::whole(format!(
                "the JWKS file is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        let document: Value = serde_json::from_slice(bytes)
            .map_err(|error| JwksError::whole(format!("not JSON: {error}")))?;
        let Some(keys) = document.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::whole(
                "a JWKS is an object with a \"keys\" array",
            ));
        };
        let mut jwks = Jwks::default();
        for (index, key) in keys.iter().enumerate() {
            let Some(fields) = key.as_object() else {
                return Err(JwksError {
                    index: Some(index),
                    kid: None,
                    message: "not a JSON object".into(),
                });
            };
            let key = public_key(fields).map_err(|message| JwksError {
                index: Some(index),
                kid: fields.get("kid").and_then(Value::as_str).map(str::to_owned),
                message,
            })?;
            if jwks.keys.contains_key(&key.kid) {
                return Err(JwksError {
                    index: Some(index),
                    kid: Some(key.kid),
                    message: "duplicate kid: every key needs its own".into(),
                });
            }
            jwks.keys.insert(key.kid.clone(), key);
        }
        if jwks.keys.is_empty() {
            return Err(JwksError::whole("the JWKS holds no key"));
        }
        Ok(jwks)
    }

    /// The key a token's `kid` names.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (never true for a JWKS read from a file).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("\"{name}\" must be a string")),
    }
}

fn coordinate(fields: &Map<String, Value>, name: &str, length: usize) -> Result<Vec<u8>, String> {
    let value = text(fields, name)?.ok_or_else(|| format!("\"{name}\" is missing"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("\"{name}\" is not base64url without padding"))?;
    if bytes.len() != length {
        return Err(format!("\"{name}\" is {} bytes, not {length}", bytes.len()));
    }
    Ok(bytes)
}

fn public_key(fields: &Map<String, Value>) -> Result<PublicKey, String> {
    if fields.contains_key("d") {
        return Err(
            "holds a private key (\"d\"): a JWKS of trusted keys must hold public keys \
                    only; remove the key and keep the private part with the consent authority"
                .into(),
        );
    }
    let kid = text(fields, "kid")?
        .filter(|kid| !kid.is_empty())
        .ok_or("\"kid\" is missing: tokens name their key by it")?;
    if let Some(usage) = text(fields, "use")?
        && usage != "sig"
    {
        return Err(format!(
            "\"use\" is {usage:?}; consent keys are for signatures (\"sig\")"
        ));
    }
    let (algorithm, raw) = match (text(fields, "kty")?, text(fields, "crv")?) {
        (Some("OKP"), Some("Ed25519")) => {
            let x = coordinate(fields, "x", 32)?;
            // Parsed now (and kept for the provider): a key that is no point, or a weak one,
            // would refuse every token, or accept forged ones.
            ed25519::PublicKey::cached(&x).map_err(|error| format!("\"x\" {error}"))?;
            (SigningAlgorithm::EdDSA, x)
        }
        (Some("EC"), Some("P-256")) => {
            let mut point = vec![0x04];
            point.extend(coordinate(fields, "x", 32)?);
            point.extend(coordinate(fields, "y", 32)?);
            (SigningAlgorithm::ES256, point)
        }
        (kty, crv) => {
            return Err(format!(
                "key type {:?} on curve {:?} is not accepted: use OKP/Ed25519 (EdDSA) or \
                 EC/P-256 (ES256)",
                kty.unwrap_or("missing"),
                crv.unwrap_or("missing")
            ));
        }
    };
    if let Some(alg) = text(fields, "alg")?
        && alg != algorithm.name()
    {
        return Err(format!(
            "\"alg\" is {alg:?} but the key is for {}",
            algorithm.name()
        ));
    }
    Ok(PublicKey {
        kid: kid.to_owned(),
        algorithm,
        // Both take the raw public key: 32 bytes for Ed25519, the uncompressed point for P-256.
        key: match algorithm {
            SigningAlgorithm::EdDSA => DecodingKey::from_ed_der(&raw),
            SigningAlgorithm::ES256 => DecodingKey::from_ec_der(&raw),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ed25519() -> (Vec<u8>, String) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        let public = provider::ed25519_public(pkcs8.as_ref()).expect("public key");
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","kid":"ed-1","x":"{}"}}"#,
            b64(&public)
        );
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn p256() -> (Vec<u8>, String) {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("key");
        let point = provider::p256_public(pkcs8.as_ref()).expect("public key");
        let jwk = format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"ec-1","alg":"ES256","use":"sig","x":"{}","y":"{}"}}"#,
            b64(&point[1..33]),
            b64(&point[33..])
        );
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn jwks(keys: &[&str]) -> Result<Jwks, JwksError> {
        Jwks::from_json(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes())
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    /// Signs with jsonwebtoken through our provider and verifies with a key from the JWKS.
    fn round_trip(
        algorithm: Algorithm,
        pkcs8: &[u8],
        kid: &str,
        set: &Jwks,
    ) -> jsonwebtoken::errors::Result<String> {
        provider::install().expect("our provider");
        let key = match algorithm {
            Algorithm::EdDSA => EncodingKey::from_ed_der(pkcs8),
            _ => EncodingKey::from_ec_der(pkcs8),
        };
        let claims = Claims {
            sub: "s".into(),
            exp: 4_000_000_000,
        };
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)?;
        let public = set.get(kid).expect("the key is in the set");
        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            public.decoding_key(),
            &Validation::new(algorithm),
        )?;
        Ok(decoded.claims.sub)
    }

    #[test]
    fn signs_and_verifies_eddsa_and_es256_with_ring_keys_from_the_set() {
        let (ed_private, ed_jwk) = ed25519();
        let (ec_private, ec_jwk) = p256();
        let set = jwks(&[&ed_jwk, &ec_jwk]).expect("two keys");
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.get("ed-1").map(|k| k.algorithm),
            Some(SigningAlgorithm::EdDSA)
        );
        assert_eq!(
            set.get("ec-1").map(|k| k.algorithm),
            Some(SigningAlgorithm::ES256)
        );
        assert_eq!(
            round_trip(Algorithm::EdDSA, &ed_private, "ed-1", &set).expect("EdDSA"),
            "s"
        );
        assert_eq!(
            round_trip(Algorithm::ES256, &ec_private, "ec-1", &set).expect("ES256"),
            "s"
        );
        // A key from another authority does not verify.
        let (_, other_jwk) = ed25519();
        let other = jwks(&[&other_jwk]).expect("one key");
        assert!(round_trip(Algorithm::EdDSA, &ed_private, "ed-1", &other).is_err());
    }

    #[test]
    fn the_provider_refuses_every_other_algorithm() {
        provider::install().expect("our provider");
        let hmac = EncodingKey::from_secret(b"the public key as an HMAC secret");
        for algorithm in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES384,
            Algorithm::PS256,
        ] {
            let signed = jsonwebtoken::encode(
                &Header::new(algorithm),
                &Claims {
                    sub: "s".into(),
                    exp: 1,
                },
                &hmac,
            );
            assert!(signed.is_err(), "{algorithm:?} must not sign");
        }
        let (_, jwk) = ed25519();
        let set = jwks(&[&jwk]).expect("one key");
        // An HS256 token, verified against the Ed25519 key's bytes as if they were a secret.
        let forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzIiwiZXhwIjo0MDAwMDAwMDAwfQ.c2lnbmF0dXJl";
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<Claims>(
            forged,
            set.get("ed-1").expect("key").decoding_key(),
            &validation,
        );
        assert!(decoded.is_err());
    }

    #[test]
    fn installing_twice_or_from_many_threads_is_fine() {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(provider::install))
            .collect();
        for thread in threads {
            assert_eq!(thread.join().expect("no panic"), Ok(()));
        }
    }

    fn refused(keys: &[&str]) -> String {
        jwks(keys).expect_err("the set must be refused").to_string()
    }

    #[test]
    fn refuses_private_keys_duplicates_and_unknown_key_types() {
        let (_, jwk) = ed25519();
        let private = jwk.replace(r#""kid""#, r#""d":"AAAA","kid""#);
        assert!(refused(&[&private]).starts_with("key 0 (\"ed-1\"): holds a private key"));
        assert!(refused(&[&jwk, &jwk]).contains("key 1 (\"ed-1\"): duplicate kid"));
        let rsa = r#"{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}"#;
        assert!(refused(&[rsa]).contains("key type \"RSA\""));
        let x448 = jwk.replace("Ed25519", "Ed448");
        assert!(refused(&[&x448]).contains("curve \"Ed448\""));
        let no_kid = jwk.replace(r#""kid":"ed-1","#, "");
        assert!(refused(&[&no_kid]).contains("\"kid\" is missing"));
        let encryption = jwk.replace(r#""kid""#, r#""use":"enc","kid""#);
        assert!(refused(&[&encryption]).contains("\"use\" is \"enc\""));
        let wrong_alg = jwk.replace(r#""kid""#, r#""alg":"ES256","kid""#);
        assert!(refused(&[&wrong_alg]).contains("\"alg\" is \"ES256\""));
        let short = r#"{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}"#;
        assert!(refused(&[short]).contains("\"x\" is 3 bytes, not 32"));
        assert!(refused(&[]).contains("no key"));
        // The identity point (small order: it would verify forged signatures) and y = 2 (no
        // point of the curve).
        let weak = r#"{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
        assert!(refused(&[weak]).contains("\"x\" is a point of small order"));
        let off_curve = weak.replace("AQAA", "AgAA");
        assert!(refused(&[&off_curve]).contains("\"x\" is not the encoding of a point"));
        assert!(
            Jwks::from_json(b"{")
                .expect_err("not JSON")
                .to_string()
                .starts_with("not JSON")
        );
        assert!(Jwks::from_json(b"[]").is_err());
        assert!(
            Jwks::from_json(&vec![b' '; MAX_JWKS_BYTES + 1])
                .expect_err("too large")
                .to_string()
                .contains("larger than")
        );
    }
}
