//! The policy store: loading the sample federation, deciding per field, and reporting errors.

use std::path::{Path, PathBuf};

use isnad_policy::{Date, FieldDecision, PolicySet, Refusal, Sources, Transform, WithheldReason};

/// The day the tests decide on: the sample's windows are fixed, so results do not depend on
/// the calendar.
fn day() -> Date {
    Date::from_calendar_date(2026, time::Month::June, 1).expect("date")
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local")
}

fn sample() -> PolicySet {
    let sources = Sources::read_dir(&sample_dir()).unwrap_or_else(|errors| panic!("{errors}"));
    PolicySet::compile(&sources, day()).unwrap_or_else(|errors| panic!("{errors}"))
}

/// Rule id and treatment text of a decision, or the reason code of a withholding.
fn summary(decision: &FieldDecision<'_>) -> (String, Option<String>) {
    match decision {
        FieldDecision::Release { rule, .. } => {
            (decision.treatment_text(), Some(rule.id.to_string()))
        }
        FieldDecision::Withhold { reason, rule } => (
            reason.code().to_owned(),
            rule.map(|rule| rule.id.to_string()),
        ),
    }
}

fn decision(set: &PolicySet, field: &str) -> (String, Option<String>) {
    let decided = set
        .decide(
            "housing-programme",
            "identity.person",
            "housing-grant",
            &[field],
            day(),
        )
        .expect("housing-programme has rules for identity.person");
    summary(&decided.fields[0])
}

fn owned(treatment: &str, rule: Option<&str>) -> (String, Option<String>) {
    (treatment.to_owned(), rule.map(str::to_owned))
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
        owned("allow", Some("housing-identity"))
    );
}

#[test]
fn releases_a_transformed_field_naming_the_transform() {
    let set = sample();
    assert_eq!(
        decision(&set, "date_of_birth"),
        owned("age_over(21)", Some("housing-identity"))
    );
    let family = set
        .decide(
            "housing-programme",
            "civil.family",
            "housing-grant",
            &["family_book_number", "spouse_subject"],
            day(),
        )
        .expect("decided");
    let transforms: Vec<Option<&Transform>> = family
        .fields
        .iter()
        .map(|d| match d {
            FieldDecision::Release { transform, .. } => *transform,
            FieldDecision::Withhold { .. } => panic!("released"),
        })
        .collect();
    assert_eq!(
        transforms,
        [
            Some(&Transform::parse("mask(keep_last=4)").expect("parses")),
            Some(&Transform::Hash)
        ]
    );
}

#[test]
fn withholds_an_ungranted_field_by_default() {
    assert_eq!(
        decision(&sample(), "id_card_expiry"),
        owned("not_granted", None)
    );
}

#[test]
fn a_group_rule_denies_for_every_member() {
    assert_eq!(
        decision(&sample(), "mobile"),
        owned("denied_by_rule", Some("contact-details-never-shared"))
    );
}

#[test]
fn an_unknown_field_is_withheld_not_an_error() {
    assert_eq!(
        decision(&sample(), "blood_type"),
        owned(WithheldReason::UnknownField.code(), None)
    );
}

#[test]
fn a_rule_applies_only_inside_its_window() {
    let set = sample();
    let decide = |day: Date| {
        let decided = set
            .decide(
                "housing-programme",
                "labour.employment",
                "housing-grant",
                &["employed"],
                day,
            )
            .expect("decided");
        summary(&decided.fields[0])
    };
    assert_eq!(decide(day()), owned("allow", Some("housing-employment")));
    let before = Date::from_calendar_date(2025, time::Month::December, 31).expect("date");
    assert_eq!(decide(before), owned("not_granted", None));
}

#[test]
fn shadow_rules_are_reported_beside_never_enforced() {
    let set = sample();
    let fields = ["monthly_salary_aed", "employer_name", "employed"];
    let decided = set
        .decide(
            "housing-programme",
            "labour.employment",
            "housing-grant",
            &fields,
            day(),
        )
        .expect("decided");
    let enforced: Vec<_> = decided.fields.iter().map(summary).collect();
    assert_eq!(
        enforced,
        [
            owned(
                "generalize(bands=[0,5000,10000,15000,20000,30000])",
                Some("housing-employment")
            ),
            owned("allow", Some("housing-employment")),
            owned("allow", Some("housing-employment")),
        ]
    );
    let shadow: Vec<_> = decided
        .shadow
        .as_ref()
        .expect("a shadow rule applies")
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        shadow,
        [
            owned(
                "generalize(step=10000)",
                Some("housing-employment-coarser-bands")
            ),
            owned("denied_by_rule", Some("housing-employment-coarser-bands")),
            owned("allow", Some("housing-employment")),
        ]
    );
    // No shadow rule for identity data: nothing to report.
    let identity = set
        .decide(
            "housing-programme",
            "identity.person",
            "housing-grant",
            &["sex"],
            day(),
        )
        .expect("decided");
    assert!(identity.shadow.is_none());
}

#[test]
fn refuses_unknown_dataset_purpose_consumer_and_missing_rules() {
    let set = sample();
    let refusal = |consumer, dataset, purpose| {
        set.decide(consumer, dataset, purpose, &["x"], day())
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
    let sources = Sources::read_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    match PolicySet::compile(&sources, day()) {
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
    legal_basis: consent
    fields:
      full_name_en: allow
      shoe_size: allow
  - id: one
    consumer: housing-programme
    dataset: identity.person
    purpose: world-domination
    legal_basis: consent
    fields:
      sex: mask
",
    );
    let expect = [
        "rules/extra.yaml:3:15: unknown consumer \"nobody\"",
        "rules/extra.yaml:9:18: dataset \"identity.person\" has no field \"shoe_size\"",
        "rules/extra.yaml:10:9: duplicate rule id \"one\": already used at rules/extra.yaml:2:9",
        "rules/extra.yaml:13:14: unknown purpose \"world-domination\"",
        "rules/extra.yaml:16:12: field \"sex\": mask needs an argument",
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
    let errors = Sources::read_dir(dir.path())
        .and_then(|sources| PolicySet::compile(&sources, day()))
        .expect_err("rejected");
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
    legal_basis: consent
    fields: { sex: allow }
",
    );
    let after = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(before.revision(), after.revision());
}
