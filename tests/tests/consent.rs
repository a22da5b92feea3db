//! Consent through the real gateway: a token releases exactly the fields it covers, every bad
//! token refuses the request with its own reason code and releases nothing, uses and frequency
//! limits are counted, a revocation by the consent authority holds from the next request on, and
//! the consent authorities' keys rotate without a restart.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use isnad_proto::v1::RevokeConsentRequest;
use isnad_proto::v1::admin_client::AdminClient;
use isnad_tests::consent::{RELOAD_WITHIN, unix_now};
use isnad_tests::{Federation, applicant, channel_with, get, refusal, request};
use serde_json::json;
use tonic::Code;

const DATASET: &str = "labour.employment";
const PURPOSE: &str = "housing-grant";

/// A request for `fields` of the applicant's employment, with `token`.
fn with_token(fields: &[&str], token: &str) -> isnad_proto::v1::AttributesRequest {
    isnad_proto::v1::AttributesRequest {
        consent_token: token.to_owned(),
        ..request(DATASET, PURPOSE, fields)
    }
}

fn withheld(response: &isnad_proto::v1::AttributesResponse) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = response
        .withheld
        .iter()
        .map(|o| (o.field.clone(), o.reason.clone(), o.rule_id.clone()))
        .collect();
    out.sort();
    out
}

const CONSENT_RULE: &str = "housing-key-worker-by-consent";

#[tokio::test]
async fn a_consent_releases_exactly_the_fields_it_covers() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let fields = ["employed", "occupation", "contract_type"];

    // Without a token, the consent fields are withheld; the statute field is released.
    let response = get(&mut client, request(DATASET, PURPOSE, &fields))
        .await
        .expect("answered");
    assert_eq!(
        response.attributes.keys().collect::<Vec<_>>(),
        vec!["employed"]
    );
    assert_eq!(
        withheld(&response),
        vec![
            (
                "contract_type".into(),
                "consent_required".into(),
                CONSENT_RULE.into()
            ),
            (
                "occupation".into(),
                "consent_required".into(),
                CONSENT_RULE.into()
            ),
        ]
    );

    // With a token for occupation only: occupation is released, contract_type is outside it.
    let grant = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    let token = federation.token(&grant);
    let response = get(&mut client, with_token(&fields, &token))
        .await
        .expect("answered");
    let mut released: Vec<_> = response.attributes.keys().cloned().collect();
    released.sort();
    assert_eq!(released, vec!["employed", "occupation"]);
    assert_eq!(
        withheld(&response),
        vec![(
            "contract_type".into(),
            "consent_scope".into(),
            CONSENT_RULE.into()
        )]
    );

    // A token covering both releases both.
    let both = federation.grant(
        "housing-programme",
        DATASET,
        PURPOSE,
        &["occupation", "contract_type"],
    );
    let response = get(&mut client, with_token(&fields, &federation.token(&both)))
        .await
        .expect("answered");
    assert_eq!(response.attributes.len(), 3, "{response:?}");
    assert!(response.withheld.is_empty());
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason_and_releases_nothing() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let good = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    let claims = good.claims();
    let with = |change: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut claims = claims.clone();
        change(claims.as_object_mut().expect("test setup"));
        federation.token_of_claims(&claims)
    };
    let good_token = federation.token(&good);
    let [header, payload, signature]: [&str; 3] = good_token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("test setup");
    let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);

    // Signed with the authority's key, but `none` or HS256 with the public key as the secret.
    let none = format!(
        "{}.{payload}.",
        b64(r#"{"alg":"none","typ":"consent+jwt","kid":"dev-consent-1"}"#)
    );
    let public = federation.consent_key().public_jwk()["x"]
        .as_str()
        .expect("test setup")
        .to_owned();
    let hs_input = format!(
        "{}.{payload}",
        b64(r#"{"alg":"HS256","typ":"consent+jwt","kid":"dev-consent-1"}"#)
    );
    let secret = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &URL_SAFE_NO_PAD.decode(public).expect("test setup"),
    );
    let hs256 = format!(
        "{hs_input}.{}",
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&secret, hs_input.as_bytes()))
    );
    // An unknown kid, and a wrong typ, each signed properly with the authority's key.
    let pair =
        ring::signature::Ed25519KeyPair::from_pkcs8(federation.consent_key().pkcs8()).expect("key");
    let signed = |header: &str| {
        let input = format!("{}.{payload}", b64(header));
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()))
        )
    };
    let unknown_kid = signed(r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"dev-consent-9"}"#);
    let wrong_typ = signed(r#"{"alg":"EdDSA","typ":"JWT","kid":"dev-consent-1"}"#);
    // A payload changed after signing.
    let mut tampered_claims = claims.clone();
    tampered_claims["authorization_details"][0]["fields"] = json!(["occupation", "contract_type"]);
    let tampered = format!("{header}.{}.{signature}", b64(&tampered_claims.to_string()));
    let now = unix_now();
    let cases: Vec<(&str, String, Code, &str)> = vec![
        (
            "alg none",
            none,
            Code::PermissionDenied,
            "consent_algorithm",
        ),
        (
            "HS256 with the public key",
            hs256,
            Code::PermissionDenied,
            "consent_algorithm",
        ),
        (
            "unknown kid",
            unknown_kid,
            Code::PermissionDenied,
            "consent_unknown_key",
        ),
        (
            "wrong typ",
            wrong_typ,
            Code::PermissionDenied,
            "consent_type",
        ),
        (
            "expired",
            with(&|c| {
                c.insert("exp".into(), json!(now - 120));
            }),
            Code::PermissionDenied,
            "consent_expired",
        ),
        (
            "not yet valid",
            with(&|c| {
                c.insert("nbf".into(), json!(now + 600));
            }),
            Code::PermissionDenied,
            "consent_not_yet_valid",
        ),
        (
            "exp as a string",
            with(&|c| {
                c.insert("exp".into(), json!((now + 600).to_string()));
            }),
            Code::InvalidArgument,
            "consent_claims",
        ),
        (
            "another gateway federation",
            with(&|c| {
                c.insert("aud".into(), json!("other.example"));
            }),
            Code::PermissionDenied,
            "consent_audience",
        ),
        (
            "issued to another agency",
            with(&|c| {
                c.insert(
                    "azp".into(),
                    json!("spiffe://isnad.example/agency/health-authority"),
                );
            }),
            Code::PermissionDenied,
            "consent_party",
        ),
        (
            "another citizen",
            with(&|c| {
                c.insert("sub".into(), json!("784190000000000"));
            }),
            Code::PermissionDenied,
            "consent_subject",
        ),
        (
            "another purpose",
            with(&|c| {
                c.insert("purpose".into(), json!("newborn-registration"));
            }),
            Code::PermissionDenied,
            "consent_purpose",
        ),
        (
            "another dataset",
            with(&|c| {
                c.insert(
                    "authorization_details".into(),
                    json!([{"type": "isnad_attributes", "dataset": "civil.family",
                            "fields": ["occupation"]}]),
                );
            }),
            Code::PermissionDenied,
            "consent_dataset",
        ),
        (
            "an untrusted issuer",
            with(&|c| {
                c.insert("iss".into(), json!("https://consent.other.example"));
            }),
            Code::PermissionDenied,
            "consent_issuer",
        ),
        (
            "bound to another certificate",
            with(&|c| {
                c.insert(
                    "cnf".into(),
                    json!({"x5t#S256": URL_SAFE_NO_PAD.encode([9u8; 32])}),
                );
            }),
            Code::PermissionDenied,
            "consent_binding",
        ),
        (
            "tampered payload",
            tampered,
            Code::PermissionDenied,
            "consent_signature",
        ),
        (
            "truncated",
            good_token[..good_token.len() / 2].to_owned(),
            Code::InvalidArgument,
            "consent_malformed",
        ),
        (
            "garbage",
            "not a token at all".to_owned(),
            Code::InvalidArgument,
            "consent_malformed",
        ),
    ];
    for (case, token, code, reason) in cases {
        let result = get(&mut client, with_token(&["employed", "occupation"], &token)).await;
        if let Err(status) = &result {
            assert!(
                !status.message().contains(&applicant()),
                "{case}: the message names the subject: {}",
                status.message()
            );
        }
        // Refused as a whole: not even the statute field `employed` is released.
        assert_eq!(refusal(result), (code, reason.to_owned()), "{case}");
    }
    // The good token still works after all that.
    let response = get(&mut client, with_token(&["occupation"], &good_token))
        .await
        .expect("the good token is accepted");
    assert!(response.attributes.contains_key("occupation"));
    let logs = federation.process.logs();
    assert!(
        !logs.contains(&applicant()),
        "the gateway's log names the subject"
    );
}

#[tokio::test]
async fn a_token_of_a_megabyte_is_refused_before_it_is_parsed() {
    let federation = Federation::start();
    // A gateway that accepts requests of 4 MiB, so that the token itself is what is too large.
    let gateway = federation
        .start_gateway(&federation.sample_gateway_config("  max_request_bytes: 4194304\n", ""));
    let mut client =
        isnad_tests::client_with(gateway.addr, &federation.material("housing-programme"));
    let huge = "a".repeat(1 << 20);
    assert_eq!(
        refusal(get(&mut client, with_token(&["occupation"], &huge)).await),
        (Code::InvalidArgument, "consent_too_large".to_owned())
    );
}

#[tokio::test]
async fn a_consent_is_used_at_most_max_uses_times_and_a_replayed_request_id_is_refused() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let mut grant = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    grant.max_uses = Some(2);
    let token = federation.token(&grant);
    let ask = |id: &str| isnad_proto::v1::AttributesRequest {
        request_id: id.to_owned(),
        ..with_token(&["occupation"], &token)
    };
    get(&mut client, ask("use-1")).await.expect("first use");
    // The same request id again: refused, and it consumes no use.
    assert_eq!(
        refusal(get(&mut client, ask("use-1")).await),
        (Code::AlreadyExists, "request_replayed".to_owned())
    );
    get(&mut client, ask("use-2")).await.expect("second use");
    assert_eq!(
        refusal(get(&mut client, ask("use-3")).await),
        (Code::PermissionDenied, "consent_uses_exhausted".to_owned())
    );
    // Fields that need no consent are still released with the used-up token in the request.
    let statute = get(&mut client, with_token(&["employed"], &token))
        .await
        .expect("no consent needed");
    assert!(statute.attributes.contains_key("employed"));
}

#[tokio::test]
async fn the_rules_frequency_limit_refuses_the_eleventh_request_of_the_day() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let grant = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    let token = federation.token(&grant);
    // The sample rule allows 10 a day per applicant; requests that release no field of that
    // rule do not count.
    for _ in 0..3 {
        get(&mut client, request(DATASET, PURPOSE, &["employed"]))
            .await
            .expect("not limited");
    }
    for n in 1..=10 {
        get(&mut client, with_token(&["occupation"], &token))
            .await
            .unwrap_or_else(|status| panic!("request {n} of 10: {status:?}"));
    }
    assert_eq!(
        refusal(get(&mut client, with_token(&["occupation"], &token)).await),
        (Code::ResourceExhausted, "rate_limited".to_owned())
    );
    // Another agency's reads, or another person's, are counted apart: the statute rules of the
    // health authority have no limit at all.
    let mut health = federation.client("health-authority");
    get(
        &mut health,
        request("identity.person", "newborn-registration", &["full_name_en"]),
    )
    .await
    .expect("not limited");
}

#[tokio::test]
async fn only_the_consent_authority_revokes_and_a_revocation_holds_from_the_next_request() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let grant = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    let token = federation.token(&grant);
    get(&mut client, with_token(&["occupation"], &token))
        .await
        .expect("valid");

    let revoke = RevokeConsentRequest {
        consent_id: grant.id.clone(),
        expires_at: Some((SystemTime::UNIX_EPOCH + Duration::from_secs(grant.expires_at)).into()),
    };
    for (name, code, reason) in [
        ("admin", Code::PermissionDenied, "not_consent_authority"),
        (
            "housing-programme",
            Code::PermissionDenied,
            "not_consent_authority",
        ),
    ] {
        let mut admin =
            AdminClient::new(channel_with(federation.gateway, &federation.material(name)));
        let status = admin
            .revoke_consent(revoke.clone())
            .await
            .expect_err("not the consent authority");
        assert_eq!(
            (
                status.code(),
                isnad_proto::errors::reason(&status).unwrap_or_default()
            ),
            (code, reason.to_owned()),
            "{name}"
        );
    }
    // Still valid: nobody else could revoke it.
    get(&mut client, with_token(&["occupation"], &token))
        .await
        .expect("still valid");

    let mut authority = AdminClient::new(channel_with(
        federation.gateway,
        &federation.material("consent-authority"),
    ));
    let empty = authority
        .revoke_consent(RevokeConsentRequest::default())
        .await
        .expect_err("no id");
    assert_eq!(
        isnad_proto::errors::reason(&empty).as_deref(),
        Some("invalid_consent_id")
    );
    let revoked = authority
        .revoke_consent(revoke.clone())
        .await
        .expect("revoked")
        .into_inner();
    assert_eq!(revoked.consent_id, grant.id);
    assert_eq!(
        refusal(get(&mut client, with_token(&["occupation"], &token)).await),
        (Code::PermissionDenied, "consent_revoked".to_owned())
    );
    // Revoking again is the same as once.
    authority
        .revoke_consent(revoke)
        .await
        .expect("revoking twice is fine");
    // Another consent of the same citizen is unaffected.
    let other = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    get(
        &mut client,
        with_token(&["occupation"], &federation.token(&other)),
    )
    .await
    .expect("another consent");
}

#[tokio::test]
async fn the_consent_cli_issues_and_revokes() {
    let federation = Federation::start();
    let dir = federation.dir().to_str().expect("test setup").to_owned();
    let subject = applicant();
    let output = std::process::Command::new(isnad_tests::isnad_bin())
        .args([
            "consent",
            "issue",
            "--dir",
            &dir,
            "--for",
            "housing-programme",
        ])
        .args([
            "--subject",
            &subject,
            "--dataset",
            DATASET,
            "--purpose",
            PURPOSE,
        ])
        .args(["--fields", "occupation", "--bind-cert", "--max-uses", "3"])
        .output()
        .expect("test setup");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout)
        .expect("test setup")
        .trim()
        .to_owned();
    let mut client = federation.client("housing-programme");
    get(&mut client, with_token(&["occupation"], &token))
        .await
        .expect("the issued token works");
    // Bound to the housing programme's certificate: another certificate with the same SPIFFE
    // ID cannot use it.
    let ca = federation.ca();
    let twin = ca
        .issue(&isnad_certs::IssueRequest::for_identity(
            &isnad_certs::Identity::agency(isnad_tests::FEDERATION, "housing-programme"),
            1,
        ))
        .expect("test setup");
    let scratch = tempfile::tempdir().expect("test setup");
    let twin = isnad_tests::material_from(
        scratch.path(),
        &std::fs::read_to_string(federation.pki().join("ca.pem")).expect("test setup"),
        "housing-programme",
        &twin,
    );
    let mut twin_client = isnad_tests::client_with(federation.gateway, &twin);
    assert_eq!(
        refusal(get(&mut twin_client, with_token(&["occupation"], &token)).await),
        (Code::PermissionDenied, "consent_binding".to_owned())
    );

    let output = std::process::Command::new(isnad_tests::isnad_bin())
        .args(["consent", "revoke", "--dir", &dir, "--token", &token])
        .output()
        .expect("test setup");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("revoked"));
    assert_eq!(
        refusal(get(&mut client, with_token(&["occupation"], &token)).await),
        (Code::PermissionDenied, "consent_revoked".to_owned())
    );
}

#[tokio::test]
async fn consent_keys_rotate_without_a_restart_and_a_broken_jwks_keeps_the_keys_in_force() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let old = federation.consent_key();
    let new = isnad_consent::SigningKey::generate(
        "dev-consent-2",
        isnad_consent::SigningAlgorithm::ES256,
    )
    .expect("test setup");
    let grant = federation.grant("housing-programme", DATASET, PURPOSE, &["occupation"]);
    let by_new = new.issue(&grant.claims()).expect("test setup");
    assert_eq!(
        refusal(get(&mut client, with_token(&["occupation"], &by_new)).await),
        (Code::PermissionDenied, "consent_unknown_key".to_owned())
    );

    let jwks = federation.dir().join("consent/jwks.json");
    let replace = |text: String| {
        let tmp = jwks.with_extension("tmp");
        std::fs::write(&tmp, text).expect("test setup");
        std::fs::rename(&tmp, &jwks).expect("test setup");
    };
    // The authority publishes its new key beside the old one.
    replace(isnad_consent::jwks_json(&[&old, &new]));
    let start = Instant::now();
    loop {
        match get(&mut client, with_token(&["occupation"], &by_new)).await {
            Ok(_) => break,
            Err(status) => {
                assert!(
                    start.elapsed() < RELOAD_WITHIN,
                    "the new key was not picked up: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let by_old = old.issue(&grant.claims()).expect("test setup");
    get(&mut client, with_token(&["occupation"], &by_old))
        .await
        .expect("the old key is still trusted");

    // A broken file, and one with a private key in it: refused, the keys in force stay.
    replace("{ not json".to_owned());
    let mut private = serde_json::from_str::<serde_json::Value>(&isnad_consent::jwks_json(&[&new]))
        .expect("test setup");
    private["keys"][0]["d"] = json!("c2VjcmV0");
    let start = Instant::now();
    while !federation.process.logs().contains("consent keys refused") {
        assert!(start.elapsed() < RELOAD_WITHIN, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replace(private.to_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for token in [&by_old, &by_new] {
        get(&mut client, with_token(&["occupation"], token))
            .await
            .expect("the keys in force stay");
    }
    // The old key retired: its tokens are refused from then on.
    replace(isnad_consent::jwks_json(&[&new]));
    let start = Instant::now();
    loop {
        match get(&mut client, with_token(&["occupation"], &by_old)).await {
            Err(status)
                if isnad_proto::errors::reason(&status).as_deref()
                    == Some("consent_unknown_key") =>
            {
                break;
            }
            other => {
                assert!(
                    start.elapsed() < RELOAD_WITHIN,
                    "the old key still works: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
