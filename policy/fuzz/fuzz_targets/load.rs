//! The policy loader on arbitrary bytes: parse, validate and compile a store, and, when it
//! compiles, decide every request it could be asked. Must never panic.
//!
//! Input: the catalogue, then up to two rule files, separated by 0xFF (a byte that is never in
//! UTF-8 text; bytes after a third separator are ignored). `seeds/load/` holds the sample store
//! in this form.

#![no_main]

use isnad_policy::{
    Date, FieldDecision, PolicySet, Refusal, Sources, Treatment, WithheldReason, explain,
};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: u8 = 0xFF;
const RULE_FILES: [&str; 2] = ["rules/a.yaml", "rules/b.yaml"];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&byte| byte == SEPARATOR);
    let mut files: Vec<(&str, &[u8])> = vec![("catalogue.yaml", parts.next().unwrap_or_default())];
    files.extend(RULE_FILES.into_iter().zip(parts));
    let day = Date::from_calendar_date(2026, time::Month::June, 1).expect("a valid date");
    let sources = Sources::from_files(files.iter().copied());
    match PolicySet::compile(&sources, day) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refused store names its errors");
            for error in &errors.0 {
                let _ = error.to_string();
                // Every error is about one of the files it was given, and not past its end.
                let name = error.file.to_str().expect("a UTF-8 path");
                match files.iter().find(|(file, _)| *file == name) {
                    Some((_, bytes)) => {
                        let lines = yaml_lines(bytes);
                        assert!(
                            error.line as usize <= lines,
                            "{error} is past the end of {name} ({lines} lines)"
                        );
                    }
                    None => assert_eq!(name, "catalogue.yaml", "{error}: no such file"),
                }
            }
            let _ = errors.to_string();
        }
        Ok(set) => decide_everything(&set, day),
    }
});

/// The number of lines as YAML counts them: a line break is LF, CR LF or a lone CR.
fn yaml_lines(bytes: &[u8]) -> usize {
    let lone_cr = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        .count();
    bytes.iter().filter(|&&b| b == b'\n').count() + lone_cr + 1
}

/// Every (agency, dataset, purpose) with every field and one unknown field: the decisions are
/// one per field, and a released field is released by a rule in force that does not deny it;
/// every reason code reads back as itself, and the explanation prints. A request that names an
/// agency, dataset or purpose the catalogue lacks is refused with that reason.
fn decide_everything(set: &PolicySet, day: Date) {
    let catalogue = set.catalogue();
    if let (Some(consumer), Some(dataset), Some(purpose)) = (
        catalogue.agencies.keys().next(),
        catalogue.datasets.keys().next(),
        catalogue.purposes.keys().next(),
    ) {
        let (consumer, dataset, purpose) = (consumer.as_str(), dataset.as_str(), purpose.as_str());
        // Not a valid id of any kind, so no catalogue can hold it.
        let unknown = "NOT IN THE CATALOGUE";
        for ((c, d, p), refusal) in [
            ((unknown, dataset, purpose), Refusal::UnknownConsumer),
            ((consumer, unknown, purpose), Refusal::UnknownDataset),
            ((consumer, dataset, unknown), Refusal::UnknownPurpose),
        ] {
            assert_eq!(set.decide(c, d, p, &["f"], day).err(), Some(refusal));
            let explained = explain(set, c, d, p, &["f"], day);
            assert_eq!(explained.refusal, Some(refusal));
            let _ = explained.to_string();
        }
    }
    for consumer in catalogue.agencies.keys() {
        for dataset in catalogue.datasets.values() {
            let mut fields: Vec<&str> = dataset.fields.keys().map(String::as_str).collect();
            fields.push("not-a-field");
            for purpose in catalogue.purposes.keys() {
                let (consumer, purpose) = (consumer.as_str(), purpose.as_str());
                let explained = explain(set, consumer, dataset.id.as_str(), purpose, &fields, day);
                assert_eq!(explained.fields.len(), fields.len());
                let _ = explained.to_string();
                let decision =
                    match set.decide(consumer, dataset.id.as_str(), purpose, &fields, day) {
                        Ok(decision) => decision,
                        Err(refusal) => {
                            assert_eq!(Refusal::from_code(refusal.code()), Some(refusal));
                            continue;
                        }
                    };
                assert_eq!(decision.fields.len(), fields.len());
                for (field, decided) in fields.iter().zip(&decision.fields) {
                    let _ = decided.treatment_text();
                    if let FieldDecision::Withhold { reason, .. } = decided {
                        assert_eq!(WithheldReason::from_code(reason.code()), Some(*reason));
                    }
                    if let FieldDecision::Release { rule, .. } = decided {
                        assert!(rule.window.contains(day), "{} is not in force", rule.id);
                        assert!(
                            !rule
                                .fields
                                .iter()
                                .any(|(name, t)| name == field && *t == Treatment::Deny),
                            "{} releases {field} it denies",
                            rule.id
                        );
                        let denied = set
                            .rules_for(consumer, dataset.id.as_str(), purpose, field)
                            .iter()
                            .any(|(rule, treatment)| {
                                **treatment == Treatment::Deny
                                    && rule.window.contains(day)
                                    && rule.status == isnad_policy::RuleStatus::Enforce
                            });
                        assert!(
                            !denied,
                            "{field} released although an enforced rule denies it"
                        );
                    }
                }
            }
        }
    }
}
