//! A consumer agency gets exactly what the policy grants, and bad requests are refused precisely.

use isnad_tests::{Federation, applicant, get, refusal, request};
use tonic::Code;

#[tokio::test]
async fn a_consumer_gets_only_its_allowed_fields() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let response = get(
        &mut client,
        request(
            "identity.person",
            "housing-grant",
            &["full_name_en", "date_of_birth", "nationality"],
        ),
    )
    .await
    .expect("granted");
    let mut released: Vec<&str> = response.attributes.keys().map(String::as_str).collect();
    released.sort_unstable();
    assert_eq!(released, ["date_of_birth", "full_name_en", "nationality"]);
    assert!(response.withheld.is_empty());
    let provenance = response.provenance.expect("provenance");
    assert_eq!(provenance.provider, "identity-authority");
    assert_eq!(provenance.dataset, "identity.person");
    assert!(provenance.policy_revision.starts_with("sha256:"));
}

#[tokio::test]
async fn an_ungranted_field_comes_back_withheld_with_a_reason() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let response = get(
        &mut client,
        request(
            "identity.person",
            "housing-grant",
            &["full_name_en", "mobile", "id_card_expiry", "shoe_size"],
        ),
    )
    .await
    .expect("answered");
    assert_eq!(response.attributes.len(), 1);
    assert!(response.attributes.contains_key("full_name_en"));
    let withheld: Vec<(&str, &str, &str)> = response
        .withheld
        .iter()
        .map(|o| (o.field.as_str(), o.reason.as_str(), o.rule_id.as_str()))
        .collect();
    assert_eq!(
        withheld,
        [
            ("mobile", "denied_by_rule", "contact-details-never-shared"),
            ("id_card_expiry", "not_granted", ""),
            ("shoe_size", "unknown_field", ""),
        ]
    );
}

#[tokio::test]
async fn values_arrive_typed() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let response = get(
        &mut client,
        request(
            "civil.family",
            "housing-grant",
            &["children_count", "marital_status"],
        ),
    )
    .await
    .expect("granted");
    use isnad_proto::v1::value::Kind;
    assert!(matches!(
        response.attributes["children_count"].kind,
        Some(Kind::IntValue(n)) if n >= 1
    ));
    assert!(matches!(
        &response.attributes["marital_status"].kind,
        Some(Kind::StringValue(s)) if s == "married"
    ));
}

#[tokio::test]
async fn unknown_dataset_purpose_and_missing_rule_are_refused_with_reason_codes() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let cases = [
        (
            request("tax.returns", "housing-grant", &["income"]),
            Code::InvalidArgument,
            "unknown_dataset",
        ),
        (
            request("identity.person", "marketing", &["full_name_en"]),
            Code::InvalidArgument,
            "unknown_purpose",
        ),
        (
            request("civil.family", "newborn-registration", &["marital_status"]),
            Code::PermissionDenied,
            "no_rule",
        ),
    ];
    for (req, code, reason) in cases {
        let (got_code, got_reason) = refusal(get(&mut client, req).await);
        assert_eq!((got_code, got_reason.as_str()), (code, reason));
    }
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let mut empty = request("identity.person", "housing-grant", &[]);
    empty.fields.clear();
    let mut oversized = request("identity.person", "housing-grant", &["full_name_en"]);
    oversized.consent_token = "x".repeat(100 * 1024);
    let mut path_like = request("identity.person", "housing-grant", &["../../etc/passwd"]);
    path_like.request_id = "ok-id".into();
    let mut bad_subject = request("identity.person", "housing-grant", &["full_name_en"]);
    bad_subject.subject = "784\u{0}1990".into();
    let cases = [
        (empty, "no_fields"),
        (oversized, "request_too_large"),
        (path_like, "invalid_field_name"),
        (bad_subject, "invalid_subject"),
    ];
    for (req, reason) in cases {
        let (code, got) = refusal(get(&mut client, req).await);
        assert_eq!((code, got.as_str()), (Code::InvalidArgument, reason));
    }
}

#[tokio::test]
async fn an_unknown_subject_is_not_found() {
    let federation = Federation::start();
    let mut client = federation.client("housing-programme");
    let mut req = request("identity.person", "housing-grant", &["full_name_en"]);
    req.subject = "784000000000000".into();
    let (code, reason) = refusal(get(&mut client, req).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "subject_not_found")
    );
}

#[tokio::test]
async fn logs_carry_no_citizen_data() {
    let federation = Federation::start_with_env(&[("ISNAD_LOG", "debug")]);
    let mut client = federation.client("housing-programme");
    get(
        &mut client,
        request(
            "identity.person",
            "housing-grant",
            &["full_name_en", "mobile"],
        ),
    )
    .await
    .expect("answered");
    let _ = get(
        &mut client,
        request("identity.person", "marketing", &["full_name_en"]),
    )
    .await;
    let mut unknown = request("identity.person", "housing-grant", &["full_name_en"]);
    unknown.subject = "784199999999999".into();
    let _ = get(&mut client, unknown).await;
    let logs = federation.process.logs();
    assert!(
        logs.contains("request refused"),
        "the refusals are logged:\n{logs}"
    );
    for secret in [
        applicant().as_str(),
        "784199999999999",
        "Al Ghurair",
        "+9715",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}

#[tokio::test]
async fn a_release_build_refuses_the_benchmark_modes() {
    let federation = Federation::start();
    for mode in ["pass-through", "unaudited"] {
        let config = federation
            .sample_gateway_config("", &format!("bench_mode: {mode}\n"))
            .path;
        let stderr = isnad_tests::serve_refused(&config);
        assert!(
            stderr.contains(&format!(
                "bench_mode: {mode}: this binary was built without the benchmark-only cargo \
                 feature `bench-modes`"
            )),
            "{stderr}"
        );
    }
}
