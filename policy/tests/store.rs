//! The policy store: loading the sample federation, deciding per field, and reporting errors.

use std::path::{Path, PathBuf};

use isnad_policy::{FieldDecision, PolicySet, Refusal, WithheldReason};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local")
}

fn sample() -> PolicySet {
    PolicySet::load_dir(&sample_dir()).unwrap_or_else(|errors| panic!("{errors}"))
}

fn decision(set: &PolicySet, field: &str) -> FieldDecision {
    let decided = set
        .decide(
            "housing-programme",
            "identity.person",
            "housing-grant",
            &[field],
        )
        .expect("housing-programme has rules for identity.person");
    decided.fields[0].1.clone()
}

#[test]
fn sample_federation_loads_with_a_sha256_revision() {
    let set = sample();
    assert!(set.revision().as_str().starts_with("sha256:"));
    assert_eq!(set.revision().as_str().len(), 7 + 64);
    assert_eq!(set.catalogue().federation, "isnad.example");
}

#[test]
fn releases_a_granted_field_naming_the_rule() {
    assert_eq!(
        decision(&sample(), "full_name_en"),
        FieldDecision::Release {
            rule: isnad_policy::RuleId::new("housing-identity")
        }
    );
}

#[test]
fn withholds_an_ungranted_field_by_default() {
    assert_eq!(
        decision(&sample(), "id_card_expiry"),
        FieldDecision::Withhold {
            reason: WithheldReason::NotGranted,
            rule: None
        }
    );
}

#[test]
fn a_group_rule_denies_for_every_member() {
    match decision(&sample(), "mobile") {
        FieldDecision::Withhold { reason, rule } => {
            assert_eq!(reason, WithheldReason::DeniedByRule);
            assert_eq!(
                rule.expect("a rule").as_str(),
                "contact-details-never-shared"
            );
        }
        other => panic!("mobile must be withheld, got {other:?}"),
    }
}

#[test]
fn an_unknown_field_is_withheld_not_an_error() {
    assert!(matches!(
        decision(&sample(), "blood_type"),
        FieldDecision::Withhold {
            reason: WithheldReason::UnknownField,
            ..
        }
    ));
}

#[test]
fn refuses_unknown_dataset_purpose_consumer_and_missing_rules() {
    let set = sample();
    let refusal = |consumer, dataset, purpose| {
        set.decide(consumer, dataset, purpose, &["x"])
            .expect_err("refused")
    };
    assert_eq!(
        refusal("housing-programme", "tax.returns", "housing-grant"),
        Refusal::UnknownDataset
    );
    assert_eq!(
        refusal("housing-programme", "identity.person", "marketing"),
        Refusal::UnknownPurpose
    );
    assert_eq!(
        refusal("someone-else", "identity.person", "housing-grant"),
        Refusal::UnknownConsumer
    );
    // health-authority has rules, but none for labour data.
    assert_eq!(
        refusal(
            "health-authority",
            "labour.employment",
            "newborn-registration"
        ),
        Refusal::NoRule
    );
    // A purpose the consumer has no rule for.
    assert_eq!(
        refusal("health-authority", "identity.person", "housing-grant"),
        Refusal::NoRule
    );
}

/// A copy of the sample store with `rules/extra.yaml` added.
fn store_with_extra_rules(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    std::fs::copy(
        sample_dir().join("catalogue.yaml"),
        dir.path().join("catalogue.yaml"),
    )
    .expect("copy catalogue");
    std::fs::write(dir.path().join("rules/extra.yaml"), extra).expect("write rules");
    dir
}

fn errors_of(extra: &str) -> Vec<String> {
    let dir = store_with_extra_rules(extra);
    match PolicySet::load_dir(dir.path()) {
        Ok(_) => panic!("the store should be rejected"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn reports_every_error_with_file_line_and_column() {
    let errors = errors_of(
        "rules:
  - id: one
    consumer: nobody
    dataset: identity.person
    purpose: housing-grant
    fields:
      full_name_en: allow
      shoe_size: allow
  - id: one
    consumer: housing-programme
    dataset: identity.person
    purpose: world-domination
    fields:
      sex: mask
",
    );
    let expect = [
        "rules/extra.yaml:3:15: unknown consumer \"nobody\"",
        "rules/extra.yaml:8:18: dataset \"identity.person\" has no field \"shoe_size\"",
        "rules/extra.yaml:9:9: duplicate rule id \"one\": already used at rules/extra.yaml:2:9",
        "rules/extra.yaml:12:14: unknown purpose \"world-domination\"",
        "rules/extra.yaml:14:12: transform \"mask\" is not implemented yet",
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for (error, expected) in errors.iter().zip(expect) {
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
}

#[test]
fn rejects_unknown_keys() {
    let errors = errors_of(
        "rules:
  - id: two
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    feilds:
      sex: allow
",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("rules/extra.yaml:"), "{errors:?}");
    assert!(errors[0].contains("feilds"), "{errors:?}");
}

#[test]
fn rejects_duplicate_keys_and_malformed_yaml() {
    let duplicate = errors_of(
        "rules:
  - id: three
    id: four
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    fields: { sex: allow }
",
    );
    assert_eq!(duplicate.len(), 1, "{duplicate:?}");
    assert!(duplicate[0].contains("duplicate"), "{duplicate:?}");

    let malformed = errors_of("rules: [ { id: x, \n");
    assert_eq!(malformed.len(), 1, "{malformed:?}");
    assert!(
        malformed[0].starts_with("rules/extra.yaml:"),
        "{malformed:?}"
    );
}

#[test]
fn rejects_a_file_that_is_not_utf8() {
    let dir = store_with_extra_rules("");
    std::fs::write(dir.path().join("rules/extra.yaml"), b"rules: []\n\xff\xfe").expect("write");
    let errors = PolicySet::load_dir(dir.path()).expect_err("rejected");
    assert!(errors.0[0].message.contains("UTF-8"), "{errors}");
}

#[test]
fn the_revision_changes_with_the_content() {
    let before = sample();
    let dir = store_with_extra_rules(
        "rules:
  - id: extra
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    fields: { sex: allow }
",
    );
    let after = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(before.revision(), after.revision());
}
