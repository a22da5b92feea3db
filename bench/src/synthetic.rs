//! Synthetic inputs shared by the benchmarks: a policy store of 10,000 rules and a realistic
//! audit record. Deterministic, so that every run measures the same work.
//!
//! The store: 550 agencies (500 consumers, half federal, and 50 providers), one group, 50
//! datasets of 30 typed fields, 20 purposes, 10,000 rules. A field's treatment depends on the
//! field only (allow, a transform that fits its type, or deny), so no two rules contradict.

use std::fmt::Write;

use isnad_audit::{AuditRecord, Decision, Released, Withheld, pseudonym};

/// Consumer agencies (`a0000`..), half of them federal.
pub const AGENCIES: usize = 500;
/// Provider agencies (`p00`..).
pub const PROVIDERS: usize = 50;
/// Datasets (`d00`..), each held by provider `d % PROVIDERS`.
pub const DATASETS: usize = 50;
/// Fields per dataset (`f00`..).
pub const FIELDS: usize = 30;
/// Purposes (`u00`..).
pub const PURPOSES: usize = 20;
/// Rules in the store.
pub const RULES: usize = 10_000;
/// Fields each rule names.
pub const FIELDS_PER_RULE: usize = 8;

/// The type of field `field` in every dataset.
pub fn field_type(field: usize) -> &'static str {
    ["string", "int", "date", "bool", "string"][field % 5]
}

/// What every rule does with `field`, so that rules never contradict.
pub fn treatment(field: usize) -> String {
    if field % 7 == 3 {
        return "deny".into();
    }
    if field % 4 != 1 {
        return "allow".into();
    }
    match field_type(field) {
        "string" => "{ mask: { keep_last: 4 } }".into(),
        "int" => "{ generalize: { step: 1000 } }".into(),
        "date" => "{ derive: age_over(18) }".into(),
        _ => "allow".into(),
    }
}

/// The rule `i`: consumer, dataset, purpose and fields.
pub fn rule(i: usize) -> (String, usize, usize, Vec<usize>) {
    let consumer = if i % 100 == 99 {
        "federal".to_owned()
    } else {
        format!("a{:04}", i % AGENCIES)
    };
    let fields = (0..FIELDS_PER_RULE)
        .map(|k| (i / AGENCIES + 3 * k) % FIELDS)
        .collect();
    (consumer, (i * 7) % DATASETS, (i * 3) % PURPOSES, fields)
}

/// The store's files: `catalogue.yaml` and ten rule files of 1,000 rules each.
pub fn policy_files() -> Vec<(String, Vec<u8>)> {
    let mut catalogue = String::from("federation: bench.example\nagencies:\n");
    for a in 0..AGENCIES {
        if a % 2 == 0 {
            writeln!(catalogue, "  a{a:04}: {{ name: A{a}, level: federal }}").ok();
        } else {
            writeln!(
                catalogue,
                "  a{a:04}: {{ name: A{a}, level: local, emirate: dubai }}"
            )
            .ok();
        }
    }
    for p in 0..PROVIDERS {
        writeln!(
            catalogue,
            "  p{p:02}: {{ name: P{p}, level: federal, endpoint: \"https://p{p}.example:7601\" }}"
        )
        .ok();
    }
    catalogue.push_str("groups:\n  federal: { level: federal }\ndatasets:\n");
    for d in 0..DATASETS {
        writeln!(
            catalogue,
            "  d{d:02}:\n    provider: p{:02}\n    fields:",
            d % PROVIDERS
        )
        .ok();
        for f in 0..FIELDS {
            writeln!(
                catalogue,
                "      f{f:02}: {{ type: {}, class: personal }}",
                field_type(f)
            )
            .ok();
        }
    }
    catalogue.push_str("purposes:\n");
    for u in 0..PURPOSES {
        writeln!(catalogue, "  u{u:02}: {{ code: U{u} }}").ok();
    }
    let mut files = vec![("catalogue.yaml".to_owned(), catalogue.into_bytes())];
    for chunk in 0..10 {
        let mut rules = String::from("rules:\n");
        for i in chunk * RULES / 10..(chunk + 1) * RULES / 10 {
            let (consumer, dataset, purpose, fields) = rule(i);
            writeln!(
                rules,
                "  - id: r{i:05}\n    consumer: {consumer}\n    dataset: d{dataset:02}\n    \
                 purpose: u{purpose:02}\n    legal_basis: statute\n    reference: Law {i}\n    \
                 fields:"
            )
            .ok();
            for f in fields {
                writeln!(rules, "      f{f:02}: {}", treatment(f)).ok();
            }
        }
        files.push((format!("rules/r{chunk}.yaml"), rules.into_bytes()));
    }
    files
}

/// A realistic record (543 bytes: five fields asked, four released, one withheld).
pub fn audit_record(i: u64) -> Vec<u8> {
    AuditRecord {
        time: 1_795_000_000_000_000_000 + i * 1_000,
        node: "gw-1".into(),
        request_id: format!("01JF{i:022}"),
        consumer: "housing-programme".into(),
        provider: "identity-authority".into(),
        dataset: "identity.person".into(),
        purpose: "housing-grant".into(),
        legal_basis: "statute".into(),
        basis_reference: "Federal Housing Law 2019 art. 7(2)".into(),
        consent_id: Some(format!("consent-{:016x}", i.wrapping_mul(0x9E37_79B9))),
        subject: pseudonym(
            b"bench pseudonym key",
            &format!("784-1990-{:07}-1", i % 1_000_003),
        ),
        requested: [
            "full_name_en",
            "date_of_birth",
            "nationality",
            "emirate",
            "iban",
        ]
        .map(String::from)
        .to_vec(),
        released: vec![
            Released {
                field: "full_name_en".into(),
                treatment: "allow".into(),
                rule_id: "housing-identity-1".into(),
            },
            Released {
                field: "date_of_birth".into(),
                treatment: "age_over(21)".into(),
                rule_id: "housing-identity-1".into(),
            },
            Released {
                field: "nationality".into(),
                treatment: "allow".into(),
                rule_id: "housing-identity-1".into(),
            },
            Released {
                field: "emirate".into(),
                treatment: "allow".into(),
                rule_id: "housing-identity-1".into(),
            },
        ],
        withheld: vec![Withheld {
            field: "iban".into(),
            reason: "field_not_granted".into(),
            rule_id: String::new(),
        }],
        decision: Decision::Released,
        policy_revision: [0xAB; 32],
        released_digest: [0xCD; 32],
        status: "ok".into(),
    }
    .encode()
    .expect("a bench record encodes")
}
