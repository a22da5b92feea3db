//! Consent token verification: a valid token for each algorithm, key rotation, the cache, and
//! every attack of the list, each refused with its own reason code.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use isnad_consent::{
    ConsentError, Jwks, Request, SigningAlgorithm, SigningKey, Verifier, VerifierConfig, jwks_json,
};
use serde_json::{Value, json};

const CALLER: &str = "spiffe://isnad.example/agency/housing-programme";
const SUBJECT: &str = "784199012345678";
const CERT: [u8; 32] = [7; 32];

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

fn secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn claims() -> Value {
    json!({
        "iss": "consent.isnad.example",
        "sub": SUBJECT,
        "aud": "isnad.example",
        "azp": CALLER,
        "purpose": "housing-grant",
        "jti": "consent-1",
        "iat": secs(now()) - 60,
        "nbf": secs(now()) - 60,
        "exp": secs(now()) + 3600,
        "max_uses": 5,
        "authorization_details": [
            { "type": "isnad_attributes", "dataset": "identity.person",
              "fields": ["full_name_en", "date_of_birth"] },
            { "type": "another_kind", "whatever": true }
        ]
    })
}

fn request() -> Request<'static> {
    Request {
        caller: CALLER,
        subject: SUBJECT,
        purpose: "housing-grant",
        dataset: "identity.person",
        client_cert_sha256: Some(CERT),
    }
}

struct Setup {
    ed: SigningKey,
    ec: SigningKey,
    verifier: Verifier,
}

fn setup() -> Setup {
    let ed = SigningKey::generate("ed-2026", SigningAlgorithm::EdDSA).expect("key");
    let ec = SigningKey::generate("ec-2026", SigningAlgorithm::ES256).expect("key");
    let jwks = Jwks::from_json(jwks_json(&[&ed, &ec]).as_bytes()).expect("jwks");
    let config = VerifierConfig::new("isnad.example", vec!["consent.isnad.example".into()]);
    let verifier = Verifier::new(jwks, config).expect("verifier");
    Setup { ed, ec, verifier }
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims();
    change(claims.as_object_mut().expect("an object"));
    claims
}

fn code(setup: &Setup, token: &str) -> &'static str {
    match setup.verifier.verify(token, &request(), now()) {
        Ok(_) => "accepted",
        Err(error) => {
            assert!(!error.to_string().contains(SUBJECT), "{error}");
            error.code()
        }
    }
}

/// A token with any header, signed with `key` (Ed25519) over the exact bytes.
fn hand_signed(header: &Value, claims: &Value, key: &SigningKey) -> String {
    hand_signed_text(&header.to_string(), claims.to_string(), key)
}

/// The same with the header and payload as written, so that they can be any bytes.
fn hand_signed_text(header: &str, claims: impl AsRef<[u8]>, key: &SigningKey) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(key.pkcs8()).expect("key");
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()))
    )
}

#[test]
fn valid_tokens_of_both_algorithms_and_rotated_keys_verify() {
    let setup = setup();
    for key in [&setup.ed, &setup.ec] {
        let token = key.issue(&claims()).expect("token");
        let consent = setup
            .verifier
            .verify(&token, &request(), now())
            .expect("valid");
        assert_eq!(consent.id, "consent-1");
        assert_eq!(consent.max_uses, Some(5));
        assert!(consent.covers("full_name_en") && consent.covers("date_of_birth"));
        assert!(
            !consent.covers("nationality"),
            "outside authorization_details"
        );
        assert_eq!(
            secs(consent.expires_at),
            secs(now()) + 3600,
            "expiry from exp"
        );
    }
}

#[test]
fn refuses_algorithm_attacks() {
    let setup = setup();
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"consent+jwt","kid":"ed-2026"}"#)
    );
    assert_eq!(code(&setup, &none), "consent_algorithm");
    // HS256 with the Ed25519 public key as the HMAC secret (key confusion).
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"consent+jwt","kid":"ed-2026"}"#);
    let input = format!("{header}.{payload}");
    let public = setup.ed.public_jwk()["x"].as_str().expect("x").to_owned();
    let secret = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &URL_SAFE_NO_PAD.decode(public).expect("b64"),
    );
    let hs256 = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&secret, input.as_bytes()))
    );
    assert_eq!(code(&setup, &hs256), "consent_algorithm");
    // An ES256 header on the Ed25519 key's kid.
    let crossed = hand_signed(
        &json!({"alg": "ES256", "typ": "consent+jwt", "kid": "ed-2026"}),
        &claims(),
        &setup.ed,
    );
    assert_eq!(code(&setup, &crossed), "consent_unknown_key");
}

#[test]
fn refuses_header_problems() {
    let setup = setup();
    let unknown_kid = SigningKey::from_pkcs8("ed-2020", SigningAlgorithm::EdDSA, setup.ed.pkcs8())
        .expect("key")
        .issue(&claims())
        .expect("token");
    assert_eq!(code(&setup, &unknown_kid), "consent_unknown_key");
    let no_kid = hand_signed(
        &json!({"alg": "EdDSA", "typ": "consent+jwt"}),
        &claims(),
        &setup.ed,
    );
    assert_eq!(code(&setup, &no_kid), "consent_unknown_key");
    let wrong_typ = hand_signed(
        &json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed-2026"}),
        &claims(),
        &setup.ed,
    );
    assert_eq!(code(&setup, &wrong_typ), "consent_type");
    let signed_by_stranger = SigningKey::generate("ed-2026", SigningAlgorithm::EdDSA)
        .expect("key")
        .issue(&claims())
        .expect("token");
    assert_eq!(code(&setup, &signed_by_stranger), "consent_signature");
    // What jsonwebtoken's JOSE header does not hold: a member of the wrong type, an unknown
    // member that is not a string.
    for member in [json!({"x5c": 5}), json!({"cty": ["a"]}), json!({"note": 1})] {
        let mut header = json!({"alg": "EdDSA", "typ": "consent+jwt", "kid": "ed-2026"});
        header
            .as_object_mut()
            .expect("an object")
            .extend(member.as_object().expect("an object").clone());
        let token = hand_signed(&header, &claims(), &setup.ed);
        assert_eq!(code(&setup, &token), "consent_malformed", "{member}");
    }
    let fine = json!({"alg": "EdDSA", "typ": "consent+jwt", "kid": "ed-2026", "note": "x"});
    assert_eq!(
        code(&setup, &hand_signed(&fine, &claims(), &setup.ed)),
        "accepted"
    );
}

#[test]
fn refuses_time_problems_and_wrong_types() {
    let setup = setup();
    let issue = |claims: Value| setup.ed.issue(&claims).expect("token");
    let expired = issue(with(|c| {
        c.insert("exp".into(), json!(secs(now()) - 31));
    }));
    assert_eq!(code(&setup, &expired), "consent_expired");
    // Within the 30 s leeway.
    let just_expired = issue(with(|c| {
        c.insert("exp".into(), json!(secs(now()) - 10));
    }));
    assert_eq!(code(&setup, &just_expired), "accepted");
    let early = issue(with(|c| {
        c.insert("nbf".into(), json!(secs(now()) + 120));
    }));
    assert_eq!(code(&setup, &early), "consent_not_yet_valid");
    // Valid for longer than the gateway accepts (366 days by default), and just within it.
    let too_long = issue(with(|c| {
        c.insert("exp".into(), json!(secs(now()) - 60 + 366 * 86_400 + 1));
    }));
    assert_eq!(code(&setup, &too_long), "consent_lifetime");
    let a_year = issue(with(|c| {
        c.insert("exp".into(), json!(secs(now()) - 60 + 366 * 86_400));
    }));
    assert_eq!(code(&setup, &a_year), "accepted");
    let exp_as_string = issue(with(|c| {
        c.insert("exp".into(), json!((secs(now()) + 3600).to_string()));
    }));
    assert_eq!(code(&setup, &exp_as_string), "consent_claims");
    let no_nbf = issue(with(|c| {
        c.remove("nbf");
    }));
    assert_eq!(code(&setup, &no_nbf), "consent_claims");
    let fractional = issue(with(|c| {
        c.insert("exp".into(), json!(1.5e9));
    }));
    assert_eq!(code(&setup, &fractional), "consent_claims");
    let zero_uses = issue(with(|c| {
        c.insert("max_uses".into(), json!(0));
    }));
    assert_eq!(code(&setup, &zero_uses), "consent_claims");
}

#[test]
fn reads_the_payload_as_one_object_of_claims_each_named_once() {
    let setup = setup();
    let header = json!({"alg": "EdDSA", "typ": "consent+jwt", "kid": "ed-2026"}).to_string();
    let signed = |claims: &str| hand_signed_text(&header, claims, &setup.ed);
    let valid = claims().to_string();
    assert_eq!(code(&setup, &signed(&valid)), "accepted");
    // A claim this gateway reads, named twice (first or last, the token is refused).
    for claim in [
        r#""purpose":"housing-grant""#,
        r#""exp":1"#,
        r#""sub":"someone""#,
    ] {
        let twice = valid.replacen('{', &format!("{{{claim},"), 1);
        assert_eq!(
            code(&setup, &signed(&twice)),
            "consent_malformed",
            "{claim}"
        );
    }
    // Claims it does not read are dropped, even named twice...
    let extra = valid.replacen('{', r#"{"note":[1,{"a":null}],"note":"x","#, 1);
    assert_eq!(code(&setup, &signed(&extra)), "accepted");
    // ...but they must be valid JSON: UTF-8, no lone surrogate, numbers within range.
    let mut invalid_utf8 = br#"{"note":"caf"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, b'"', b',']);
    invalid_utf8.extend_from_slice(&valid.as_bytes()[1..]);
    let header_only = |payload: &[u8]| hand_signed_text(&header, payload, &setup.ed);
    assert_eq!(
        code(&setup, &header_only(&invalid_utf8)),
        "consent_malformed"
    );
    for note in [r#""\ud800""#, "1e400", r#""\q""#, "[1,]"] {
        let bad = valid.replacen('{', &format!(r#"{{"note":{note},"#), 1);
        assert_eq!(code(&setup, &signed(&bad)), "consent_malformed", "{note}");
    }
    // The claims' values in an array, or no object at all.
    let values: Vec<Value> = claims()
        .as_object()
        .expect("an object")
        .values()
        .cloned()
        .collect();
    for payload in [Value::Array(values).to_string(), "null".into(), "".into()] {
        assert_eq!(
            code(&setup, &signed(&payload)),
            "consent_malformed",
            "{payload}"
        );
    }
    // An optional claim that is there as null is there, and of the wrong type.
    for claim in ["max_uses", "cnf"] {
        let null = with(|c| {
            c.insert(claim.into(), Value::Null);
        });
        assert_eq!(
            code(&setup, &signed(&null.to_string())),
            "consent_claims",
            "{claim}"
        );
    }
}

#[test]
fn refuses_tokens_for_someone_or_something_else() {
    let setup = setup();
    let cases = [
        ("iss", json!("consent.elsewhere.example"), "consent_issuer"),
        ("aud", json!("other.example"), "consent_audience"),
        ("aud", json!(["a.example", "b.example"]), "consent_audience"),
        (
            "azp",
            json!("spiffe://isnad.example/agency/health-authority"),
            "consent_party",
        ),
        ("sub", json!("784199099999999"), "consent_subject"),
        ("purpose", json!("newborn-registration"), "consent_purpose"),
        (
            "authorization_details",
            json!([{ "type": "isnad_attributes", "dataset": "civil.family", "fields": ["x"] }]),
            "consent_dataset",
        ),
        (
            "authorization_details",
            json!("everything"),
            "consent_claims",
        ),
    ];
    for (claim, value, expected) in cases {
        let token = setup
            .ed
            .issue(&with(|c| {
                c.insert(claim.into(), value.clone());
            }))
            .expect("token");
        assert_eq!(code(&setup, &token), expected, "{claim} = {value}");
    }
    // An audience list that names this gateway is fine.
    let listed = setup
        .ed
        .issue(&with(|c| {
            c.insert("aud".into(), json!(["a.example", "isnad.example"]));
        }))
        .expect("token");
    assert_eq!(code(&setup, &listed), "accepted");
}

#[test]
fn enforces_a_certificate_binding_when_present() {
    let setup = setup();
    let bound_to = |hash: [u8; 32]| {
        setup
            .ed
            .issue(&with(|c| {
                c.insert(
                    "cnf".into(),
                    json!({ "x5t#S256": URL_SAFE_NO_PAD.encode(hash) }),
                );
            }))
            .expect("token")
    };
    assert_eq!(code(&setup, &bound_to(CERT)), "accepted");
    assert_eq!(code(&setup, &bound_to([8; 32])), "consent_binding");
    let without_cert = Request {
        client_cert_sha256: None,
        ..request()
    };
    assert_eq!(
        setup
            .verifier
            .verify(&bound_to(CERT), &without_cert, now())
            .map_err(|e| e.code()),
        Err("consent_binding")
    );
}

#[test]
fn refuses_tampered_truncated_oversized_and_garbage_tokens() {
    let setup = setup();
    let token = setup.ed.issue(&claims()).expect("token");
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = with(|c| {
        c.insert("max_uses".into(), json!(1000));
    });
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    assert_eq!(code(&setup, &tampered), "consent_signature");
    // Another token's signature on these claims.
    let other = setup.ed.issue(&with(|c| {
        c.insert("jti".into(), json!("consent-2"));
    }));
    let other_signature = other
        .expect("token")
        .rsplit('.')
        .next()
        .expect("3 parts")
        .to_owned();
    let swapped = format!("{}.{}.{other_signature}", parts[0], parts[1]);
    assert_eq!(code(&setup, &swapped), "consent_signature");
    // Truncated: without its signature, or cut in the middle.
    assert_eq!(
        code(&setup, &format!("{}.{}", parts[0], parts[1])),
        "consent_malformed"
    );
    assert_eq!(code(&setup, &token[..token.len() / 2]), "consent_malformed");
    assert_eq!(code(&setup, &"a".repeat(1 << 20)), "consent_too_large");
    for garbage in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b.c.d",
        "ünïcødé.x.y",
        "e30.e30.e30",
    ] {
        let got = code(&setup, garbage);
        assert!(
            ["consent_malformed", "consent_algorithm"].contains(&got),
            "{garbage:?}: {got}"
        );
    }
}

#[test]
fn the_cache_skips_the_signature_but_never_the_request_checks() {
    let setup = setup();
    let token = setup.ed.issue(&claims()).expect("token");
    assert!(setup.verifier.verify(&token, &request(), now()).is_ok());
    // Cached now; later it has expired, and another request does not match.
    let later = now() + Duration::from_secs(7200);
    assert_eq!(
        setup.verifier.verify(&token, &request(), later),
        Err(ConsentError::Expired)
    );
    let other = Request {
        subject: "784199099999999",
        ..request()
    };
    assert_eq!(
        setup.verifier.verify(&token, &other, now()),
        Err(ConsentError::Subject)
    );
    // A bad signature is never cached: the same bytes fail every time.
    let forged = format!("{}x", &token[..token.len() - 1]);
    for _ in 0..2 {
        assert!(setup.verifier.verify(&forged, &request(), now()).is_err());
    }
}

#[test]
fn the_cache_is_bounded() {
    let ed = SigningKey::generate("k", SigningAlgorithm::EdDSA).expect("key");
    let jwks = Jwks::from_json(jwks_json(&[&ed]).as_bytes()).expect("jwks");
    let mut config = VerifierConfig::new("isnad.example", vec!["consent.isnad.example".into()]);
    config.cache_entries = 2;
    let verifier = Verifier::new(jwks, config).expect("verifier");
    for id in 0..5 {
        let token = ed
            .issue(&with(|c| {
                c.insert("jti".into(), json!(format!("consent-{id}")));
            }))
            .expect("token");
        assert!(verifier.verify(&token, &request(), now()).is_ok());
    }
    assert_eq!(verifier.cached(), 2);
}

#[test]
fn a_grant_issues_a_token_that_verifies_for_exactly_its_request() {
    let setup = setup();
    let grant = isnad_consent::ConsentGrant {
        id: isnad_consent::new_consent_id().expect("id"),
        issuer: "consent.isnad.example".into(),
        audience: "isnad.example".into(),
        subject: SUBJECT.into(),
        consumer: CALLER.into(),
        purpose: "housing-grant".into(),
        dataset: "identity.person".into(),
        fields: vec!["full_name_en".into()],
        issued_at: secs(now()) - 5,
        expires_at: secs(now()) + 600,
        max_uses: Some(2),
        cert_sha256: Some(CERT),
    };
    let token = setup.ed.issue(&grant.claims()).expect("token");
    let consent = setup
        .verifier
        .verify(&token, &request(), now())
        .expect("valid");
    assert_eq!(consent.id, grant.id);
    assert_eq!(consent.max_uses, Some(2));
    assert!(consent.covers("full_name_en") && !consent.covers("date_of_birth"));
    assert_eq!(
        isnad_consent::peek_id(&token),
        Ok((grant.id.clone(), grant.expires_at))
    );
    // Bound to the certificate it names.
    let other_cert = Request {
        client_cert_sha256: Some([8; 32]),
        ..request()
    };
    assert_eq!(
        setup.verifier.verify(&token, &other_cert, now()),
        Err(ConsentError::Binding)
    );
    // Two ids are never the same.
    assert_ne!(
        isnad_consent::new_consent_id().expect("id"),
        isnad_consent::new_consent_id().expect("id")
    );
}
