//! Validation of a policy store built in memory: one test per error, each pinning the exact
//! `file:line:column` and the key part of the message, plus the rules that must be accepted
//! (non-overlapping windows, shadow beside enforce, deny-only rules without a legal basis) and
//! how deny and groups are decided.
//!
//! Columns are 1-based and point at the value (or, for a whole rule, at the first key of the
//! rule's mapping, after `- `).

use isnad_policy::{
    AgencyId, Date, FieldDecision, LoadErrors, PolicySet, Refusal, Sources, Transform,
    WithheldReason,
};

/// The sample federation's catalogue: agencies housing-programme, identity-authority,
/// labour-ministry (federal), civil-registry, health-authority (Dubai); groups federal-agencies
/// and dubai-agencies; datasets identity.person, civil.family, labour.employment; purposes
/// housing-grant and newborn-registration.
const CATALOGUE: &str = include_str!("../../deploy/local/catalogue.yaml");

/// The day the stores are compiled on.
fn day() -> Date {
    Date::from_calendar_date(2026, time::Month::June, 1).expect("a valid date")
}

fn date(year: i32, month: time::Month, day: u8) -> Date {
    Date::from_calendar_date(year, month, day).expect("a valid date")
}

/// Compiles the sample catalogue with `rules` (`(path, content)`, e.g. `("rules/x.yaml", ...)`).
fn compile(rules: &[(&str, &str)]) -> Result<PolicySet, LoadErrors> {
    let files = std::iter::once(("catalogue.yaml", CATALOGUE)).chain(rules.iter().copied());
    PolicySet::compile(&Sources::from_files(files), day())
}

/// The store must load.
fn accepted(rules: &[(&str, &str)]) -> PolicySet {
    compile(rules).unwrap_or_else(|errors| panic!("the store should load, but: {errors}"))
}

/// The errors of a store that must be rejected, as displayed (`file:line:col: message`).
fn rejected(rules: &[(&str, &str)]) -> Vec<String> {
    match compile(rules) {
        Ok(_) => panic!("the store should be rejected"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// `rules/x.yaml` (with the sample catalogue) has exactly one error, at `at`
/// (`file:line:column`), whose message contains `message`.
fn assert_one_error(rules: &str, at: &str, message: &str) {
    assert_errors(&[("rules/x.yaml", rules)], &[(at, message)]);
}

/// The store has exactly these errors, in this order: each at its `file:line:column` (or
/// `file` for an error about the whole file), its message containing the given text.
fn assert_errors(rules: &[(&str, &str)], expected: &[(&str, &str)]) {
    let errors = rejected(rules);
    assert_eq!(
        errors.len(),
        expected.len(),
        "expected {expected:#?}, got {errors:#?}"
    );
    for (error, (at, message)) in errors.iter().zip(expected) {
        let prefix = format!("{at}: ");
        assert!(
            error.starts_with(&prefix),
            "{error:?} should be at {at:?}; all errors: {errors:#?}"
        );
        assert!(
            error[prefix.len()..].contains(message),
            "{error:?} should say {message:?}; all errors: {errors:#?}"
        );
    }
}

/// A statute rule `r1` releasing to housing-programme from `dataset` for housing-grant, whose
/// only field line is `field` (e.g. `sex: allow`), on line 9, indented by 6: its value is at
/// column 6 + the length of `name: ` + 1.
fn rule_with_field(dataset: &str, field: &str) -> String {
    format!(
        "rules:
  - id: r1
    consumer: housing-programme
    dataset: {dataset}
    purpose: housing-grant
    legal_basis: statute
    reference: Federal Housing Law No. 7 of 2025 (sample), art. 12
    fields:
      {field}
"
    )
}

/// The 1-based line and column where `needle` starts in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("the needle is in the text");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    (line, column)
}

/// The rule id and treatment text (or reason code) of one field's decision.
fn decided(
    set: &PolicySet,
    consumer: &str,
    dataset: &str,
    field: &str,
    on: Date,
) -> (String, Option<String>) {
    let decision = set
        .decide(consumer, dataset, "housing-grant", &[field], on)
        .unwrap_or_else(|refusal| panic!("{consumer} should have a rule: {refusal:?}"));
    summary(&decision.fields[0])
}

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

fn owned(treatment: &str, rule: &str) -> (String, Option<String>) {
    (treatment.to_owned(), Some(rule.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Names that must be in the catalogue.

#[test]
fn a_valid_rule_is_accepted_as_a_baseline() {
    let set = accepted(&[(
        "rules/x.yaml",
        &rule_with_field("identity.person", "sex: allow"),
    )]);
    assert_eq!(set.rule_count(), 1);
    let rule = &set.rules()[0];
    assert_eq!(rule.id.as_str(), "r1");
    assert_eq!(rule.location.to_string(), "rules/x.yaml:2:9");
    assert!(!rule.consent_required, "a statute rule needs no consent");
}

#[test]
fn rejects_an_unknown_dataset() {
    let errors = compile(&[(
        "rules/x.yaml",
        &rule_with_field("tax.returns", "sex: allow"),
    )])
    .expect_err("an unknown dataset is an error");
    // The error's parts, not only its display.
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.file, std::path::Path::new("rules/x.yaml"));
    assert_eq!((error.line, error.column), (4, 14));
    assert!(
        error.message.starts_with(
            "unknown dataset \"tax.returns\"; the catalogue has civil.family, identity.person, \
             labour.employment"
        ),
        "{error}"
    );
}

#[test]
fn rejects_an_unknown_field() {
    assert_one_error(
        &rule_with_field("identity.person", "shoe_size: allow"),
        "rules/x.yaml:9:18",
        "dataset \"identity.person\" has no field \"shoe_size\"; it has date_of_birth, email,",
    );
}

#[test]
fn rejects_an_unknown_consumer_agency_or_group() {
    assert_errors(
        &[(
            "rules/x.yaml",
            "rules:
  - id: typo-agency
    consumer: housing-programe
    dataset: identity.person
    purpose: housing-grant
    fields: { sex: deny }
  - id: typo-group
    consumer: federal-agency
    dataset: identity.person
    purpose: housing-grant
    fields: { sex: deny }
",
        )],
        &[
            (
                "rules/x.yaml:3:15",
                "unknown consumer \"housing-programe\": name an agency or a group",
            ),
            (
                "rules/x.yaml:8:15",
                "unknown consumer \"federal-agency\": name an agency or a group",
            ),
        ],
    );
}

#[test]
fn rejects_an_unknown_purpose() {
    assert_one_error(
        &rule_with_field("identity.person", "sex: allow")
            .replace("purpose: housing-grant", "purpose: marketing"),
        "rules/x.yaml:5:14",
        "unknown purpose \"marketing\": add it to the catalogue's purposes first",
    );
}

// ---------------------------------------------------------------------------------------------
// Treatments.

#[test]
fn rejects_an_unknown_transform_or_treatment() {
    assert_one_error(
        &rule_with_field("identity.person", "sex: { encrypt: aes256 }"),
        "rules/x.yaml:9:12",
        "field \"sex\": unknown transform \"encrypt\"; use allow, deny, hash,",
    );
    assert_one_error(
        &rule_with_field("identity.person", "sex: redact"),
        "rules/x.yaml:9:12",
        "field \"sex\": unknown treatment \"redact\"",
    );
    assert_one_error(
        &rule_with_field("identity.person", "sex: { hash: sha1 }"),
        "rules/x.yaml:9:12",
        "field \"sex\": hash takes no argument: write `hash`",
    );
}

#[test]
fn rejects_a_mask_with_a_wrong_argument() {
    assert_one_error(
        &rule_with_field("identity.person", "sex: { mask: { keep_middle: 2 } }"),
        "rules/x.yaml:9:12",
        "field \"sex\": mask takes `{keep_last: N}` or `{keep_first: N}`, not \"keep_middle\"",
    );
    assert_one_error(
        &rule_with_field("identity.person", "sex: { mask: { keep_last: 65 } }"),
        "rules/x.yaml:9:12",
        "N a whole number from 0 to 64",
    );
}

#[test]
fn rejects_a_derive_with_a_wrong_argument() {
    assert_one_error(
        &rule_with_field("identity.person", "date_of_birth: { derive: age_over(x) }"),
        "rules/x.yaml:9:22",
        "field \"date_of_birth\": derive takes `age_over(N)` (N from 1 to 150) or `year_of`, \
         not \"age_over(x)\"",
    );
    assert_one_error(
        &rule_with_field("identity.person", "date_of_birth: { derive: age_over(0) }"),
        "rules/x.yaml:9:22",
        "not \"age_over(0)\"",
    );
    // A number is written one way: no sign, no leading zero.
    for form in ["age_over(+18)", "age_over(018)"] {
        assert_one_error(
            &rule_with_field(
                "identity.person",
                &format!("date_of_birth: {{ derive: {form} }}"),
            ),
            "rules/x.yaml:9:22",
            &format!("not \"{form}\""),
        );
    }
}

#[test]
fn reads_each_transform_in_its_one_written_form() {
    for written in [
        "age_over(18)",
        "mask(keep_last=4)",
        "mask(keep_first=0)",
        "generalize(step=10)",
        "generalize(bands=[-5,0,10])",
    ] {
        let transform = Transform::parse(written).expect(written);
        assert_eq!(transform.to_string(), written);
    }
    for other in [
        "age_over(+18)",
        "age_over(018)",
        "mask(keep_last=04)",
        "generalize(step=+10)",
        "generalize(bands=[-05,0])",
        "generalize(bands=[-0,1])",
    ] {
        assert_eq!(Transform::parse(other), None, "{other}");
    }
}

#[test]
fn rejects_bands_that_are_not_ascending() {
    assert_one_error(
        &rule_with_field(
            "labour.employment",
            "monthly_salary_aed: { generalize: { bands: [5, 1] } }",
        ),
        "rules/x.yaml:9:27",
        "field \"monthly_salary_aed\": bands must be in strictly ascending order",
    );
    assert_one_error(
        &rule_with_field(
            "labour.employment",
            "monthly_salary_aed: { generalize: { step: 0 } }",
        ),
        "rules/x.yaml:9:27",
        "step is a whole number of at least 1",
    );
}

#[test]
fn rejects_a_transform_map_with_two_keys() {
    assert_one_error(
        &rule_with_field(
            "identity.person",
            "sex: { mask: { keep_last: 4 }, generalize: year }",
        ),
        "rules/x.yaml:9:12",
        "field \"sex\": a transform is a map with exactly one key, not 2",
    );
}

#[test]
fn rejects_age_over_on_a_string_field() {
    assert_one_error(
        &rule_with_field("identity.person", "sex: { derive: age_over(18) }"),
        "rules/x.yaml:9:12",
        "age_over(18) does not fit field \"sex\", of type string; it applies to date fields",
    );
}

#[test]
fn rejects_mask_on_a_date_field() {
    assert_one_error(
        &rule_with_field(
            "identity.person",
            "date_of_birth: { mask: { keep_last: 4 } }",
        ),
        "rules/x.yaml:9:22",
        "mask(keep_last=4) does not fit field \"date_of_birth\", of type date; \
         it applies to string fields",
    );
}

#[test]
fn rejects_generalize_year_on_an_int_field() {
    assert_one_error(
        &rule_with_field(
            "labour.employment",
            "monthly_salary_aed: { generalize: year }",
        ),
        "rules/x.yaml:9:27",
        "generalize(year) does not fit field \"monthly_salary_aed\", of type int; \
         it applies to date fields",
    );
}

#[test]
fn rejects_hash_on_a_bool_field() {
    assert_one_error(
        &rule_with_field("labour.employment", "employed: hash"),
        "rules/x.yaml:9:17",
        "hash does not fit field \"employed\", of type bool",
    );
}

// ---------------------------------------------------------------------------------------------
// Rule ids and contradictions.

#[test]
fn rejects_a_rule_id_used_in_two_files() {
    let first = rule_with_field("identity.person", "sex: allow");
    let second = rule_with_field("identity.person", "nationality: allow");
    assert_errors(
        &[("rules/a.yaml", &first), ("rules/b.yaml", &second)],
        &[(
            "rules/b.yaml:2:9",
            "duplicate rule id \"r1\": already used at rules/a.yaml:2:9",
        )],
    );
}

/// Two enforced statute rules for housing-programme's `sex`, r1 as `allow` until
/// `first_until`, r2 as `second` from `second_from`.
fn two_windows(first_until: &str, second: &str, second_from: &str) -> String {
    format!(
        "rules:
  - id: r1
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    legal_basis: statute
    reference: Law A
    valid_until: {first_until}
    fields:
      sex: allow
  - id: r2
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    legal_basis: statute
    reference: Law A
    valid_from: {second_from}
    fields:
      sex: {second}
"
    )
}

#[test]
fn rejects_two_rules_releasing_a_field_in_different_forms_on_overlapping_days() {
    // The windows share one day: both ends are inclusive.
    assert_one_error(
        &two_windows("2026-12-31", "hash", "2026-12-31"),
        "rules/x.yaml:11:9",
        "rule \"r2\" contradicts rule \"r1\" (rules/x.yaml:2:9): it releases \"sex\" of \
         identity.person to housing-programme for housing-grant as hash, but rule \"r1\" \
         releases it as allow, on overlapping days (from 2026-12-31 and until 2026-12-31)",
    );
}

#[test]
fn accepts_two_rules_releasing_a_field_in_different_forms_on_separate_days() {
    let set = accepted(&[(
        "rules/x.yaml",
        &two_windows("2026-12-31", "hash", "2027-01-01"),
    )]);
    let on = |day| decided(&set, "housing-programme", "identity.person", "sex", day);
    assert_eq!(
        on(date(2026, time::Month::December, 31)),
        owned("allow", "r1")
    );
    assert_eq!(on(date(2027, time::Month::January, 1)), owned("hash", "r2"));
}

#[test]
fn accepts_two_rules_releasing_a_field_in_the_same_form_on_overlapping_days() {
    let set = accepted(&[(
        "rules/x.yaml",
        &two_windows("2026-12-31", "allow", "2026-07-01"),
    )]);
    assert_eq!(
        decided(&set, "housing-programme", "identity.person", "sex", day()),
        owned("allow", "r1")
    );
}

#[test]
fn rejects_a_group_rule_and_an_agency_rule_that_contradict_across_files() {
    let group = rule_with_field("identity.person", "sex: allow")
        .replace("id: r1", "id: federal")
        .replace("consumer: housing-programme", "consumer: federal-agencies");
    let agency = rule_with_field("identity.person", "sex: { mask: { keep_first: 1 } }");
    assert_errors(
        &[("rules/a.yaml", &group), ("rules/b.yaml", &agency)],
        &[(
            "rules/b.yaml:2:9",
            "rule \"r1\" contradicts rule \"federal\" (rules/a.yaml:2:9): it releases \"sex\" of \
             identity.person to housing-programme for housing-grant as mask(keep_first=1), but \
             rule \"federal\" releases it as allow, on overlapping days (always and always)",
        )],
    );
}

#[test]
fn rejects_two_rules_one_requiring_consent_and_the_other_not() {
    let without = rule_with_field("identity.person", "sex: allow");
    let with = rule_with_field("identity.person", "sex: allow")
        .replace("id: r1", "id: r2")
        .replace("    fields:", "    consent_required: true\n    fields:");
    assert_errors(
        &[("rules/a.yaml", &without), ("rules/b.yaml", &with)],
        &[(
            "rules/b.yaml:2:9",
            "rule \"r2\" contradicts rule \"r1\" (rules/a.yaml:2:9): it releases \"sex\" of \
             identity.person to housing-programme for housing-grant with consent, but rule \
             \"r1\" releases it without consent",
        )],
    );
    // The same with consent as the basis, where consent is implied.
    let consent = "rules:
  - id: r2
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    legal_basis: consent
    fields:
      sex: allow
";
    assert_errors(
        &[("rules/a.yaml", &without), ("rules/b.yaml", consent)],
        &[(
            "rules/b.yaml:2:9",
            "with consent, but rule \"r1\" releases it without consent",
        )],
    );
}

/// A shadow statute rule `id` releasing housing-programme's `sex` as `treatment`.
fn shadow_rule(id: &str, treatment: &str) -> String {
    rule_with_field("identity.person", &format!("sex: {treatment}"))
        .replace("id: r1", &format!("id: {id}"))
        .replace("    fields:", "    status: shadow\n    fields:")
}

#[test]
fn accepts_a_shadow_rule_with_another_form_than_the_enforced_one() {
    let enforced = rule_with_field("identity.person", "sex: allow");
    let shadow = shadow_rule("trial", "hash");
    let set = accepted(&[("rules/a.yaml", &enforced), ("rules/b.yaml", &shadow)]);
    let decision = set
        .decide(
            "housing-programme",
            "identity.person",
            "housing-grant",
            &["sex"],
            day(),
        )
        .expect("an enforced rule applies");
    assert_eq!(summary(&decision.fields[0]), owned("allow", "r1"));
    let shadow_decision = decision.shadow.expect("a shadow rule applies");
    assert_eq!(summary(&shadow_decision[0]), owned("hash", "trial"));
}

#[test]
fn rejects_two_shadow_rules_in_different_forms() {
    // Shadow rules are compared with each other, like enforced ones.
    assert_errors(
        &[
            (
                "rules/a.yaml",
                &rule_with_field("identity.person", "sex: allow"),
            ),
            ("rules/b.yaml", &shadow_rule("trial", "hash")),
            (
                "rules/c.yaml",
                &shadow_rule("trial-2", "{ mask: { keep_last: 1 } }"),
            ),
        ],
        &[(
            "rules/c.yaml:2:9",
            "rule \"trial-2\" contradicts rule \"trial\" (rules/b.yaml:2:9): it releases \"sex\" \
             of identity.person to housing-programme for housing-grant as mask(keep_last=1), \
             but rule \"trial\" releases it as hash",
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Windows.

/// A statute rule with `extra` key lines on lines 8 and on (before `fields:`).
fn rule_with_keys(extra: &str) -> String {
    rule_with_field("identity.person", "sex: allow")
        .replace("    fields:", &format!("{extra}    fields:"))
}

#[test]
fn rejects_a_window_that_ended_before_today() {
    assert_one_error(
        &rule_with_keys("    valid_until: 2026-05-31\n"),
        "rules/x.yaml:8:18",
        "the rule expired on 2026-05-31 (today is 2026-06-01); remove it, or extend valid_until",
    );
    // A window that ends today is still in force.
    accepted(&[(
        "rules/x.yaml",
        &rule_with_keys("    valid_until: 2026-06-01\n"),
    )]);
}

#[test]
fn rejects_a_window_that_ends_before_it_starts() {
    assert_one_error(
        &rule_with_keys("    valid_from: 2026-09-01\n    valid_until: 2026-08-01\n"),
        "rules/x.yaml:9:18",
        "valid_until 2026-08-01 is before valid_from 2026-09-01: the rule would never apply",
    );
}

#[test]
fn rejects_malformed_dates() {
    assert_errors(
        &[(
            "rules/x.yaml",
            &rule_with_keys("    valid_from: 2026-02-30\n    valid_until: 01/06/2027\n"),
        )],
        &[
            (
                "rules/x.yaml:8:17",
                "valid_from \"2026-02-30\" is not a date; write YYYY-MM-DD",
            ),
            (
                "rules/x.yaml:9:18",
                "valid_until \"01/06/2027\" is not a date; write YYYY-MM-DD",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Legal basis, consent and status.

#[test]
fn rejects_a_releasing_rule_without_a_legal_basis() {
    let text = "rules:
  - id: r1
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    fields:
      sex: deny
      nationality: hash
";
    assert_one_error(
        text,
        "rules/x.yaml:2:5",
        "the rule releases fields, so it needs a `legal_basis:` (consent, statute or court_order)",
    );
}

#[test]
fn accepts_a_deny_only_rule_without_a_legal_basis() {
    let text = "rules:
  - id: r1
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    fields:
      sex: deny
      nationality: deny
";
    let set = accepted(&[("rules/x.yaml", text)]);
    assert_eq!(set.rules()[0].basis, None);
    assert_eq!(
        decided(&set, "housing-programme", "identity.person", "sex", day()),
        owned(WithheldReason::DeniedByRule.code(), "r1")
    );
}

#[test]
fn rejects_a_statute_or_court_order_without_a_reference() {
    let statute = rule_with_field("identity.person", "sex: allow").replace(
        "    reference: Federal Housing Law No. 7 of 2025 (sample), art. 12\n",
        "",
    );
    assert_one_error(
        &statute,
        "rules/x.yaml:6:18",
        "legal basis statute needs a `reference:` naming the law and article",
    );
    let court_order = rule_with_field("identity.person", "sex: allow")
        .replace("legal_basis: statute", "legal_basis: court_order")
        .replace(
            "reference: Federal Housing Law No. 7 of 2025 (sample), art. 12",
            "reference: \"   \"",
        );
    assert_one_error(
        &court_order,
        "rules/x.yaml:6:18",
        "legal basis court_order needs a `reference:` naming the court order",
    );
}

#[test]
fn rejects_an_unknown_legal_basis() {
    assert_one_error(
        &rule_with_field("identity.person", "sex: allow")
            .replace("legal_basis: statute", "legal_basis: contract"),
        "rules/x.yaml:6:18",
        "unknown legal basis \"contract\"; use consent, statute or court_order",
    );
}

#[test]
fn rejects_an_unknown_status() {
    assert_one_error(
        &rule_with_keys("    status: draft\n"),
        "rules/x.yaml:8:13",
        "unknown status \"draft\"; use enforce or shadow",
    );
}

#[test]
fn rejects_consent_as_the_basis_with_consent_not_required() {
    let text = "rules:
  - id: r1
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    legal_basis: consent
    consent_required: false
    fields:
      sex: allow
";
    assert_one_error(
        text,
        "rules/x.yaml:7:23",
        "a rule whose legal basis is consent always requires consent",
    );
}

// ---------------------------------------------------------------------------------------------
// The YAML itself.

#[test]
fn rejects_unknown_keys_in_rules_and_in_the_catalogue() {
    assert_one_error(
        &rule_with_field("identity.person", "sex: allow").replace("fields:", "feilds:"),
        "rules/x.yaml:8:5",
        "unknown field `feilds`, expected one of id, description, consumer, dataset, purpose, \
         legal_basis, reference, consent_required, valid_from, valid_until, status, limit, fields",
    );

    let catalogue = CATALOGUE.replace("    level: federal\n", "    levle: federal\n");
    let (line, column) = position(&catalogue, "levle: federal");
    let errors = PolicySet::compile(&Sources::from_files([("catalogue.yaml", catalogue)]), day())
        .expect_err("an unknown key in the catalogue is an error");
    assert_eq!(errors.0.len(), 1, "{errors}");
    let expected = format!("catalogue.yaml:{line}:{column}: unknown field `levle`");
    assert!(
        errors.0[0].to_string().starts_with(&expected),
        "{errors} should start with {expected:?}"
    );
}

#[test]
fn rejects_duplicate_keys() {
    // In a rule.
    assert_one_error(
        &rule_with_keys("    purpose: newborn-registration\n"),
        "rules/x.yaml:8:5",
        "duplicate mapping key: purpose",
    );
    // In a rule's fields: neither the allow nor the deny may silently win.
    assert_one_error(
        &rule_with_field("identity.person", "sex: allow\n      sex: deny"),
        "rules/x.yaml:10:7",
        "duplicate mapping key: sex",
    );
}

#[test]
fn refuses_yaml_1_1_booleans() {
    assert_one_error(
        &rule_with_keys("    consent_required: yes\n"),
        "rules/x.yaml:8:23",
        "invalid boolean (strict mode expects true/false)",
    );
    assert_one_error(
        &rule_with_keys("    consent_required: off\n"),
        "rules/x.yaml:8:23",
        "invalid boolean",
    );
    // `true` and `false` are accepted.
    let set = accepted(&[(
        "rules/x.yaml",
        &rule_with_keys("    consent_required: true\n"),
    )]);
    assert!(set.rules()[0].consent_required);
}

#[test]
fn reports_every_error_across_files_at_once() {
    // The catalogue: a dataset whose provider is not an agency.
    let catalogue = CATALOGUE.replace("provider: labour-ministry", "provider: labour-ministri");
    let (line, column) = position(&catalogue, "labour-ministri");
    let catalogue_at = format!("catalogue.yaml:{line}:{column}");
    // rules/a.yaml: an unknown consumer and an unknown field.
    let a = rule_with_field("identity.person", "shoe_size: allow")
        .replace("consumer: housing-programme", "consumer: nobody");
    // rules/b.yaml: does not parse.
    let b = rule_with_keys("    consent_required: yes\n").replace("id: r1", "id: b1");
    // rules/c.yaml: r1 again, and expired.
    let c = rule_with_keys("    valid_until: 2025-12-31\n");
    let files = [
        ("catalogue.yaml", catalogue.as_str()),
        ("rules/a.yaml", &a),
        ("rules/b.yaml", &b),
        ("rules/c.yaml", &c),
    ];
    let errors =
        PolicySet::compile(&Sources::from_files(files), day()).expect_err("the store has errors");
    let expected = [
        (
            catalogue_at.as_str(),
            "dataset \"labour.employment\": unknown provider agency \"labour-ministri\"",
        ),
        ("rules/a.yaml:3:15", "unknown consumer \"nobody\""),
        (
            "rules/a.yaml:9:18",
            "dataset \"identity.person\" has no field \"shoe_size\"",
        ),
        ("rules/b.yaml:8:23", "invalid boolean"),
        (
            "rules/c.yaml:2:9",
            "duplicate rule id \"r1\": already used at rules/a.yaml:2:9",
        ),
        ("rules/c.yaml:8:18", "the rule expired on 2025-12-31"),
    ];
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), expected.len(), "{shown:#?}");
    for (error, (at, message)) in shown.iter().zip(expected) {
        assert!(
            error.starts_with(&format!("{at}: ")) && error.contains(message),
            "{error:?} should be {at}: ...{message}...; all: {shown:#?}"
        );
    }
    // The summary counts them.
    assert!(
        errors
            .to_string()
            .starts_with("the policy store has 6 errors:\n"),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------------------------
// Deny and groups.

/// A deny-only rule of the group federal-agencies for `nationality`.
const GROUP_DENY: &str = "rules:
  - id: federal-deny
    consumer: federal-agencies
    dataset: identity.person
    purpose: housing-grant
    fields:
      nationality: deny
";

#[test]
fn a_group_deny_wins_over_an_agency_allow_in_either_order() {
    let allow = rule_with_field("identity.person", "nationality: allow\n      sex: allow");
    // The deny in the file read first, then last.
    for files in [
        [
            ("rules/a.yaml", GROUP_DENY),
            ("rules/b.yaml", allow.as_str()),
        ],
        [
            ("rules/a.yaml", allow.as_str()),
            ("rules/b.yaml", GROUP_DENY),
        ],
    ] {
        let set = accepted(&files);
        assert_eq!(
            decided(
                &set,
                "housing-programme",
                "identity.person",
                "nationality",
                day()
            ),
            owned("denied_by_rule", "federal-deny"),
            "{files:?}"
        );
        // The agency rule still releases what the group rule does not deny.
        assert_eq!(
            decided(&set, "housing-programme", "identity.person", "sex", day()),
            owned("allow", "r1")
        );
        // Another member of the group gets the deny, and nothing else.
        assert_eq!(
            decided(
                &set,
                "labour-ministry",
                "identity.person",
                "nationality",
                day()
            ),
            owned("denied_by_rule", "federal-deny")
        );
        assert_eq!(
            decided(&set, "labour-ministry", "identity.person", "sex", day()),
            (WithheldReason::NotGranted.code().to_owned(), None)
        );
    }
}

#[test]
fn an_agency_deny_wins_over_a_group_allow() {
    let group_allow = rule_with_field("identity.person", "nationality: allow")
        .replace("id: r1", "id: federal-allow")
        .replace("consumer: housing-programme", "consumer: federal-agencies");
    let agency_deny = "rules:
  - id: housing-deny
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    fields:
      nationality: deny
";
    let set = accepted(&[
        ("rules/a.yaml", &group_allow),
        ("rules/b.yaml", agency_deny),
    ]);
    assert_eq!(
        decided(
            &set,
            "housing-programme",
            "identity.person",
            "nationality",
            day()
        ),
        owned("denied_by_rule", "housing-deny")
    );
    assert_eq!(
        decided(
            &set,
            "identity-authority",
            "identity.person",
            "nationality",
            day()
        ),
        owned("allow", "federal-allow")
    );
}

#[test]
fn a_group_rule_applies_to_each_member_and_to_no_one_else() {
    let rule = rule_with_field("identity.person", "sex: { mask: { keep_first: 1 } }")
        .replace("id: r1", "id: federal")
        .replace("consumer: housing-programme", "consumer: federal-agencies");
    let set = accepted(&[("rules/x.yaml", &rule)]);
    let members: Vec<&str> = set
        .members("federal-agencies")
        .iter()
        .map(AgencyId::as_str)
        .collect();
    assert_eq!(
        members,
        ["housing-programme", "identity-authority", "labour-ministry"]
    );
    for member in members {
        assert_eq!(
            decided(&set, member, "identity.person", "sex", day()),
            owned("mask(keep_first=1)", "federal"),
            "{member}"
        );
    }
    // The local agencies are not members: they have no rule.
    for outsider in ["civil-registry", "health-authority"] {
        let refusal = set
            .decide(
                outsider,
                "identity.person",
                "housing-grant",
                &["sex"],
                day(),
            )
            .expect_err("not a member of the group");
        assert_eq!(refusal, Refusal::NoRule, "{outsider}");
    }
}

/// An agency in two groups, with a rule of its own: each member gets exactly the rules that name
/// it or one of its groups, whatever the order the rules are written in. (The decision table
/// compiles a group's rules once and shares them between its members; this checks that no
/// member's merged rules leak into the shared ones.)
#[test]
fn an_agency_in_two_groups_gets_both_groups_rules_and_its_own_and_no_one_else_does() {
    let catalogue = CATALOGUE.replace(
        "groups:\n",
        "groups:\n  housing-partners:\n    members: [housing-programme, health-authority]\n",
    );
    let rule = |id: &str, consumer: &str, field: &str| {
        format!(
            "rules:\n  - id: {id}\n    consumer: {consumer}\n    dataset: identity.person\n    \
             purpose: housing-grant\n    legal_basis: statute\n    reference: Law 1\n    \
             fields:\n      {field}: allow\n"
        )
    };
    let federal = rule("federal", "federal-agencies", "sex");
    let partners = rule("partners", "housing-partners", "nationality");
    let own = rule("own", "housing-programme", "full_name_en");
    let orders = [
        [&federal, &partners, &own],
        [&own, &partners, &federal],
        [&partners, &own, &federal],
    ];
    for order in orders {
        let files = [
            ("catalogue.yaml", catalogue.as_str()),
            ("rules/a.yaml", order[0].as_str()),
            ("rules/b.yaml", order[1].as_str()),
            ("rules/c.yaml", order[2].as_str()),
        ];
        let set = PolicySet::compile(&Sources::from_files(files), day())
            .unwrap_or_else(|errors| panic!("the store should load, but: {errors}"));
        let released = |consumer: &str| -> Vec<String> {
            ["sex", "nationality", "full_name_en"]
                .into_iter()
                .filter_map(|field| {
                    match decided(&set, consumer, "identity.person", field, day()) {
                        (treatment, Some(rule)) if treatment == "allow" => {
                            Some(format!("{field}:{rule}"))
                        }
                        _ => None,
                    }
                })
                .collect()
        };
        assert_eq!(
            released("housing-programme"),
            ["sex:federal", "nationality:partners", "full_name_en:own"],
            "{order:?}"
        );
        assert_eq!(released("labour-ministry"), ["sex:federal"], "{order:?}");
        assert_eq!(
            released("health-authority"),
            ["nationality:partners"],
            "{order:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Frequency limits.

#[test]
fn a_limit_is_read_with_its_count_and_period() {
    for (per, period) in [
        ("minute", isnad_policy::Period::Minute),
        ("hour", isnad_policy::Period::Hour),
        ("day", isnad_policy::Period::Day),
    ] {
        let set = accepted(&[(
            "rules/x.yaml",
            &rule_with_keys(&format!("    limit: {{ requests: 3, per: {per} }}\n")),
        )]);
        assert_eq!(
            set.rules()[0].limit,
            Some(isnad_policy::Limit {
                requests: 3,
                per: period
            })
        );
    }
    let unlimited = accepted(&[("rules/x.yaml", &rule_with_keys(""))]);
    assert_eq!(unlimited.rules()[0].limit, None);
}

#[test]
fn rejects_a_limit_of_no_requests_or_too_many() {
    for count in ["0", "-1", "1000001"] {
        assert_one_error(
            &rule_with_keys(&format!("    limit: {{ requests: {count}, per: day }}\n")),
            "rules/x.yaml:8:24",
            &format!("limit requests {count} is out of range: allow from 1 to 1000000"),
        );
    }
}

#[test]
fn rejects_an_unknown_limit_period() {
    assert_one_error(
        &rule_with_keys("    limit: { requests: 2, per: month }\n"),
        "rules/x.yaml:8:32",
        "unknown limit period \"month\"; use minute, hour or day",
    );
}

#[test]
fn rejects_a_limit_with_an_unknown_key() {
    let errors = rejected(&[(
        "rules/x.yaml",
        &rule_with_keys("    limit: { requests: 2, per: day, burst: 5 }\n"),
    )]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("rules/x.yaml:8:") && errors[0].contains("burst"),
        "{errors:#?}"
    );
}

#[test]
fn rejects_a_limit_on_a_rule_that_only_denies() {
    let text = "rules:
  - id: r1
    consumer: housing-programme
    dataset: identity.person
    purpose: housing-grant
    limit: { requests: 2, per: day }
    fields:
      sex: deny
";
    assert_one_error(
        text,
        "rules/x.yaml:6:12",
        "the rule releases nothing, so a `limit:` would never apply",
    );
}

#[test]
fn a_changed_limit_shows_in_the_diff() {
    let before = accepted(&[(
        "rules/x.yaml",
        &rule_with_keys("    limit: { requests: 2, per: day }\n"),
    )]);
    let after = accepted(&[(
        "rules/x.yaml",
        &rule_with_keys("    limit: { requests: 5, per: day }\n"),
    )]);
    let changes = isnad_policy::diff(&before, &after);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].change, isnad_policy::Change::Changed);
    assert!(
        changes[0].before[0].contains("at most 2 per day"),
        "{changes:#?}"
    );
    assert!(
        changes[0].after[0].contains("at most 5 per day"),
        "{changes:#?}"
    );
}
