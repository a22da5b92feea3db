//! The consent token path: whatever a consumer sends as `consent_token`, verification never
//! panics, and a token it accepts really is for the request it was presented with.
//!
//! The first input byte picks the mode:
//! - even: the rest is the token, as a consumer could send any bytes;
//! - odd: the rest is `header JSON 0xFF claims JSON`, signed with the trusted Ed25519 key, so
//!   that the fuzzer gets past the signature and explores the header and claim checks.
//!
//! Oracle for an accepted token: its claims (parsed independently here) name the request's
//! subject, purpose, agency and dataset, the gateway's audience and a trusted issuer, are
//! within their time window, and the header is EdDSA or ES256 with typ consent+jwt.

#![no_main]

use std::sync::OnceLock;

use ring::signature::KeyPair;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use isnad_consent::{Jwks, Request, SigningAlgorithm, SigningKey, Verifier, VerifierConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CALLER: &str = "spiffe://isnad.example/agency/housing-programme";
const SUBJECT: &str = "784199012345678";
const ISSUER: &str = "https://consent.isnad.example";
const NOW: u64 = 1_780_000_000;

struct Setup {
    key: ring::signature::Ed25519KeyPair,
    verifier: Verifier,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        // A fixed key, so that seeds signed with it stay valid across runs.
        let seed = [7u8; 32];
        let public = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
        let pkcs8 = pkcs8_of(&seed, public.public_key().as_ref());
        let signing = SigningKey::from_pkcs8("fuzz-1", SigningAlgorithm::EdDSA, &pkcs8)
            .expect("pkcs8");
        let jwks = Jwks::from_json(isnad_consent::jwks_json(&[&signing]).as_bytes()).expect("jwks");
        let verifier = Verifier::new(
            jwks,
            VerifierConfig::new("isnad.example", vec![ISSUER.to_owned()]),
        )
        .expect("verifier");
        Setup {
            key: public,
            verifier,
        }
    })
}

/// The PKCS#8 v2 DER of an Ed25519 key (RFC 5958, RFC 8410), as ring writes it.
fn pkcs8_of(seed: &[u8; 32], public: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
    der.extend_from_slice(public);
    der
}

fn request() -> Request<'static> {
    Request {
        caller: CALLER,
        subject: SUBJECT,
        purpose: "housing-grant",
        dataset: "identity.person",
        client_cert_sha256: Some([3; 32]),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let setup = setup();
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut parts = rest.splitn(2, |&b| b == 0xFF);
        let (Some(header), Some(claims)) = (parts.next(), parts.next()) else {
            return;
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = setup.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    let result = setup.verifier.verify(&token, &request(), now());
    // A second call (the cache) must agree.
    assert_eq!(result, setup.verifier.verify(&token, &request(), now()));
    let Ok(consent) = result else {
        let error = result.expect_err("an error");
        assert!(!error.to_string().contains(SUBJECT));
        assert!(!error.code().is_empty());
        return;
    };
    let mut parts = token.split('.');
    let decode = |part: Option<&str>| -> Value {
        part.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .expect("an accepted token has a JSON header and payload")
    };
    let header = decode(parts.next());
    let claims = decode(parts.next());
    assert!(matches!(header["alg"].as_str(), Some("EdDSA" | "ES256")));
    assert_eq!(header["typ"].as_str(), Some("consent+jwt"));
    assert_eq!(claims["sub"].as_str(), Some(SUBJECT));
    assert_eq!(claims["azp"].as_str(), Some(CALLER));
    assert_eq!(claims["purpose"].as_str(), Some("housing-grant"));
    assert_eq!(claims["iss"].as_str(), Some(ISSUER));
    assert_eq!(claims["jti"].as_str(), Some(consent.id.as_str()));
    let aud_ok = match &claims["aud"] {
        Value::String(aud) => aud == "isnad.example",
        Value::Array(auds) => auds.iter().any(|a| a == "isnad.example"),
        _ => false,
    };
    assert!(aud_ok, "{claims}");
    let exp = claims["exp"].as_u64().expect("integer exp");
    let nbf = claims["nbf"].as_u64().expect("integer nbf");
    assert!(exp + 30 > NOW && nbf <= NOW + 30, "{claims}");
    let datasets = claims["authorization_details"]
        .as_array()
        .expect("details")
        .iter()
        .any(|d| d["dataset"] == "identity.person");
    assert!(datasets, "{claims}");
    if let Some(bound) = claims["cnf"]["x5t#S256"].as_str() {
        assert_eq!(URL_SAFE_NO_PAD.decode(bound).ok(), Some(vec![3; 32]));
    }
});
