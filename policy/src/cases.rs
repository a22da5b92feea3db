//! Policy test cases: YAML files under `tests/` in the store, each a list of requests and the
//! decision expected for every field. Security teams run them in CI (`isnad policy test DIR`),
//! so a change that releases more, or less, than intended fails the pull request.
//!
//! ```yaml
//! cases:
//!   - name: the housing programme sees the applicant's age, not the birth date
//!     consumer: housing-programme
//!     dataset: identity.person
//!     purpose: housing-grant
//!     date: 2026-06-01                 # optional: the day to decide on (default today)
//!     expect:
//!       full_name_en: allow
//!       date_of_birth: { derive: age_over(21) }
//!       mobile: { withheld: denied_by_rule, rule: contact-details-never-shared }
//!       sex: { withheld: not_granted }
//!     expect_shadow:                   # optional: the shadow decisions
//!       emirate: deny
//!   - name: no grant for another purpose
//!     consumer: health-authority
//!     dataset: labour.employment
//!     purpose: newborn-registration
//!     expect_refusal: no_rule
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;
use time::Date;

use crate::decide::{FieldDecision, PolicySet, Refusal, WithheldReason};
use crate::error::{LoadErrors, PolicyError};
use crate::load::{Report, parse};
use crate::rule::Treatment;
use crate::source::TreatmentDoc;

const TESTS_DIR: &str = "tests";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesDoc {
    cases: Vec<Spanned<CaseDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDoc {
    name: String,
    consumer: String,
    dataset: String,
    purpose: String,
    #[serde(default)]
    date: Option<Spanned<String>>,
    #[serde(default)]
    expect: BTreeMap<String, Spanned<ExpectDoc>>,
    #[serde(default)]
    expect_shadow: BTreeMap<String, Spanned<ExpectDoc>>,
    #[serde(default)]
    expect_refusal: Option<Spanned<String>>,
}

/// A treatment, or `{withheld: reason, rule: id}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpectDoc {
    Withheld {
        withheld: String,
        #[serde(default)]
        rule: Option<String>,
    },
    Treatment(TreatmentDoc),
}

/// What a case expects for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Released as held (`allow`) or transformed.
    Released(Treatment),
    /// Withheld for this reason, by this rule if named. `deny` in a case means withheld by any
    /// rule or reason.
    Withheld {
        /// The reason; `None` accepts any.
        reason: Option<WithheldReason>,
        /// The rule; `None` accepts any.
        rule: Option<String>,
    },
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Released(treatment) => treatment.fmt(f),
            Expectation::Withheld { reason, rule } => {
                f.write_str("withheld")?;
                if let Some(reason) = reason {
                    write!(f, " ({})", reason.code())?;
                }
                if let Some(rule) = rule {
                    write!(f, " by {rule}")?;
                }
                Ok(())
            }
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// The file and line of the case.
    pub location: String,
    /// The case's name.
    pub name: String,
    /// Each mismatch, as a sentence; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every case's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseReport {
    /// In file order.
    pub cases: Vec<CaseOutcome>,
}

impl CaseReport {
    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|case| !case.passed()).count()
    }
}

/// Reads every `tests/*.yaml` of the store in `dir` and runs its cases against `set`, deciding
/// on `today` unless a case names its own date. A case file with errors (unknown keys, bad
/// dates, unknown reasons) fails as a whole, with every error, before anything runs.
pub fn run_cases(set: &PolicySet, dir: &Path, today: Date) -> Result<CaseReport, LoadErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    match std::fs::read_dir(dir.join(TESTS_DIR)) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".yaml") || name.ends_with(".yml") {
                    files.push(PathBuf::from(TESTS_DIR).join(name));
                }
            }
        }
        Err(error) => errors.push(PolicyError {
            file: PathBuf::from(TESTS_DIR),
            line: 0,
            column: 0,
            message: format!("cannot read the test cases: {error}"),
        }),
    }
    files.sort();
    let mut cases = Vec::new();
    for file in &files {
        let text = match std::fs::read(dir.join(file)).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                Report {
                    file,
                    errors: &mut errors,
                }
                .whole("not valid UTF-8");
                continue;
            }
            Err(error) => {
                Report {
                    file,
                    errors: &mut errors,
                }
                .whole(format!("cannot read: {error}"));
                continue;
            }
        };
        let Some(doc) = parse::<CasesDoc>(file, &text, &mut errors) else {
            continue;
        };
        let mut report = Report {
            file,
            errors: &mut errors,
        };
        for case in doc.cases {
            if let Some(case) = build_case(case, file, &mut report) {
                cases.push(case);
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    if cases.is_empty() {
        return Err(LoadErrors(vec![PolicyError {
            file: PathBuf::from(TESTS_DIR),
            line: 0,
            column: 0,
            message: "no test cases: add tests/*.yaml with a `cases:` list".into(),
        }]));
    }
    Ok(CaseReport {
        cases: cases.iter().map(|case| run(set, case, today)).collect(),
    })
}

struct Case {
    location: String,
    name: String,
    consumer: String,
    dataset: String,
    purpose: String,
    date: Option<Date>,
    expect: Vec<(String, Expectation)>,
    expect_shadow: Vec<(String, Expectation)>,
    expect_refusal: Option<Refusal>,
}

fn build_case(case: Spanned<CaseDoc>, file: &Path, report: &mut Report<'_>) -> Option<Case> {
    let errors_before = report.errors.len();
    let at = case.referenced;
    let doc = case.value;
    let date = doc.date.as_ref().and_then(|date| {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let parsed = Date::parse(date.value.trim(), &format).ok();
        if parsed.is_none() {
            report.at(
                date.referenced,
                format!("date {:?} is not a date; write YYYY-MM-DD", date.value),
            );
        }
        parsed
    });
    let mut expectations = |docs: BTreeMap<String, Spanned<ExpectDoc>>| {
        let mut out = Vec::new();
        for (field, expect) in docs {
            match expectation(&expect.value) {
                Ok(expectation) => out.push((field, expectation)),
                Err(message) => report.at(expect.referenced, format!("field {field:?}: {message}")),
            }
        }
        out
    };
    let expect = expectations(doc.expect);
    let expect_shadow = expectations(doc.expect_shadow);
    let expect_refusal = doc.expect_refusal.as_ref().and_then(|refusal| {
        let parsed = Refusal::from_code(&refusal.value);
        if parsed.is_none() {
            report.at(
                refusal.referenced,
                format!(
                    "unknown refusal {:?}; use unknown_dataset, unknown_purpose, \
                     unknown_consumer or no_rule",
                    refusal.value
                ),
            );
        }
        parsed
    });
    if expect.is_empty() && expect_refusal.is_none() {
        report.at(
            at,
            "the case expects nothing: give `expect:` or `expect_refusal:`",
        );
    }
    if !expect.is_empty() && expect_refusal.is_some() {
        report.at(
            at,
            "a case expects either field decisions or a refusal, not both",
        );
    }
    if report.errors.len() > errors_before {
        return None;
    }
    Some(Case {
        location: format!("{}:{}", file.display(), at.line()),
        name: doc.name,
        consumer: doc.consumer,
        dataset: doc.dataset,
        purpose: doc.purpose,
        date,
        expect,
        expect_shadow,
        expect_refusal,
    })
}

fn expectation(doc: &ExpectDoc) -> Result<Expectation, String> {
    match doc {
        ExpectDoc::Withheld { withheld, rule } => {
            let reason = WithheldReason::from_code(withheld).ok_or_else(|| {
                format!(
                    "unknown reason {withheld:?}; use not_granted, denied_by_rule or unknown_field"
                )
            })?;
            Ok(Expectation::Withheld {
                reason: Some(reason),
                rule: rule.clone(),
            })
        }
        ExpectDoc::Treatment(treatment) => match crate::treatment::from_doc(treatment)? {
            Treatment::Deny => Ok(Expectation::Withheld {
                reason: None,
                rule: None,
            }),
            released => Ok(Expectation::Released(released)),
        },
    }
}

fn run(set: &PolicySet, case: &Case, today: Date) -> CaseOutcome {
    let day = case.date.unwrap_or(today);
    let mut failures = Vec::new();
    let fields: Vec<&str> = case
        .expect
        .iter()
        .chain(&case.expect_shadow)
        .map(|(field, _)| field.as_str())
        .collect();
    match (
        set.decide(&case.consumer, &case.dataset, &case.purpose, &fields, day),
        case.expect_refusal,
    ) {
        (Err(refusal), Some(expected)) if refusal == expected => {}
        (Err(refusal), Some(expected)) => failures.push(format!(
            "expected the request refused with {}, got {}",
            expected.code(),
            refusal.code()
        )),
        (Err(refusal), None) => {
            failures.push(format!("the request was refused with {}", refusal.code()))
        }
        (Ok(_), Some(expected)) => failures.push(format!(
            "expected the request refused with {}, but it was decided field by field",
            expected.code()
        )),
        (Ok(decision), None) => {
            let count = case.expect.len();
            for ((field, expected), got) in case.expect.iter().zip(&decision.fields) {
                compare(field, expected, got, "", &mut failures);
            }
            if !case.expect_shadow.is_empty() {
                match &decision.shadow {
                    Some(shadow) => {
                        for ((field, expected), got) in
                            case.expect_shadow.iter().zip(&shadow[count..])
                        {
                            compare(field, expected, got, "shadow: ", &mut failures);
                        }
                    }
                    None => failures
                        .push("expected shadow decisions, but no shadow rule applies".into()),
                }
            }
        }
    }
    CaseOutcome {
        location: case.location.clone(),
        name: case.name.clone(),
        failures,
    }
}

fn compare(
    field: &str,
    expected: &Expectation,
    got: &FieldDecision<'_>,
    prefix: &str,
    failures: &mut Vec<String>,
) {
    let matches = match (expected, got) {
        (Expectation::Released(treatment), FieldDecision::Release { transform, .. }) => {
            match (treatment, transform) {
                (Treatment::Allow, None) => true,
                (Treatment::Transform(want), Some(have)) => want == *have,
                _ => false,
            }
        }
        (
            Expectation::Withheld { reason, rule },
            FieldDecision::Withhold {
                reason: r,
                rule: by,
            },
        ) => {
            reason.is_none_or(|reason| reason == *r)
                && rule
                    .as_ref()
                    .is_none_or(|rule| by.is_some_and(|by| by.id.as_str() == rule))
        }
        _ => false,
    };
    if !matches {
        failures.push(format!(
            "{prefix}{field}: expected {expected}, got {}",
            describe(got)
        ));
    }
}

/// A decision in the words of a case file.
pub(crate) fn describe(decision: &FieldDecision<'_>) -> String {
    match decision {
        FieldDecision::Release { rule, transform } => format!(
            "{} by {}",
            transform.map_or("allow".to_owned(), |t| t.to_string()),
            rule.id
        ),
        FieldDecision::Withhold { reason, rule } => match rule {
            Some(rule) => format!("withheld ({}) by {}", reason.code(), rule.id),
            None => format!("withheld ({})", reason.code()),
        },
    }
}
