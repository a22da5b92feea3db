//! The policy store's speed: one 20-field decision against 10,000 rules, the same grants decided
//! by cedar-policy (narrowed to the consumer's policies), and loading and compiling the 10,000
//! rules from YAML.
//!
//! ```sh
//! cargo bench -p isnad-bench --features policy-bench --bench policy
//! ```
//!
//! The store is generated deterministically: 550 agencies (500 consumers, half federal, and 50
//! providers), one group, 50 datasets of 30 typed fields, 20 purposes, 10,000 rules. A field's
//! treatment depends on the field only (allow, a transform that fits its type, or deny), so no
//! two rules contradict. Before anything is timed, both engines decide every field of the request
//! and must agree on released or withheld.

use std::fmt::Write;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use isnad_policy::{Date, FieldDecision, PolicySet, Sources};

// The allocator of the `isnad` binary (gateway/src/main.rs), so that the figures are the ones the
// gateway sees; cedar runs with it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AGENCIES: usize = 500;
const PROVIDERS: usize = 50;
const DATASETS: usize = 50;
const FIELDS: usize = 30;
const PURPOSES: usize = 20;
const RULES: usize = 10_000;
const FIELDS_PER_RULE: usize = 8;

fn field_type(field: usize) -> &'static str {
    ["string", "int", "date", "bool", "string"][field % 5]
}

/// What every rule does with `field`, so that rules never contradict.
fn treatment(field: usize) -> String {
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
fn rule(i: usize) -> (String, usize, usize, Vec<usize>) {
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

fn store() -> Sources {
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
    Sources::from_files(files)
}

/// The same grants as cedar policies, narrowed to `consumer`: its own rules and its groups';
/// with `only`, further narrowed to one (dataset, purpose).
fn cedar_policies(
    consumer: &str,
    consumer_is_federal: bool,
    only: Option<(usize, usize)>,
) -> cedar_policy::PolicySet {
    let mut text = String::new();
    for i in 0..RULES {
        let (rule_consumer, dataset, purpose, fields) = rule(i);
        let applies =
            rule_consumer == consumer || (rule_consumer == "federal" && consumer_is_federal);
        if !applies || only.is_some_and(|only| only != (dataset, purpose)) {
            continue;
        }
        for f in fields {
            let effect = if treatment(f) == "deny" {
                "forbid"
            } else {
                "permit"
            };
            writeln!(
                text,
                "{effect}(principal == Agency::\"{consumer}\", action == Action::\"u{purpose:02}\", \
                 resource == Field::\"d{dataset:02}/f{f:02}\");"
            )
            .ok();
        }
    }
    text.parse().expect("the cedar policies parse")
}

fn cedar_decide(
    authorizer: &cedar_policy::Authorizer,
    policies: &cedar_policy::PolicySet,
    entities: &cedar_policy::Entities,
    principal: &cedar_policy::EntityUid,
    action: &cedar_policy::EntityUid,
    resources: &[cedar_policy::EntityUid],
) -> Vec<bool> {
    resources
        .iter()
        .map(|resource| {
            let request = cedar_policy::Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                cedar_policy::Context::empty(),
                None,
            )
            .expect("a valid request");
            authorizer
                .is_authorized(&request, policies, entities)
                .decision()
                == cedar_policy::Decision::Allow
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let sources = store();
    let day = Date::from_calendar_date(2026, time_month(), 1).expect("day");

    let started = Instant::now();
    let set = PolicySet::compile(&sources, day).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "load and compile {} rules: {:.1} ms (one run)",
        set.rule_count(),
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(set.rule_count(), RULES);

    // a0000 (federal) asks d00 for u00: the rules i with i % 500 == 0, and the group's.
    let consumer = "a0000";
    let fields: Vec<String> = (0..20).map(|f| format!("f{f:02}")).collect();
    let decision = set
        .decide(consumer, "d00", "u00", &fields, day)
        .expect("rules apply");
    let ours: Vec<bool> = decision
        .fields
        .iter()
        .map(FieldDecision::is_released)
        .collect();
    let released = ours.iter().filter(|r| **r).count();
    println!(
        "request: 20 fields, {released} released ({} transformed), {} withheld",
        decision
            .fields
            .iter()
            .filter(|d| matches!(
                d,
                FieldDecision::Release {
                    transform: Some(_),
                    ..
                }
            ))
            .count(),
        20 - released
    );
    assert!(released > 0 && released < 20, "a mix of outcomes");

    let policies = cedar_policies(consumer, true, None);
    let narrow = cedar_policies(consumer, true, Some((0, 0)));
    let authorizer = cedar_policy::Authorizer::new();
    let entities = cedar_policy::Entities::empty();
    let principal: cedar_policy::EntityUid =
        format!("Agency::\"{consumer}\"").parse().expect("uid");
    let action: cedar_policy::EntityUid = "Action::\"u00\"".parse().expect("uid");
    let resources: Vec<cedar_policy::EntityUid> = fields
        .iter()
        .map(|f| format!("Field::\"d00/{f}\"").parse().expect("uid"))
        .collect();
    let theirs = cedar_decide(
        &authorizer,
        &policies,
        &entities,
        &principal,
        &action,
        &resources,
    );
    assert_eq!(ours, theirs, "isnad and cedar must agree on every field");
    let narrowed = cedar_decide(
        &authorizer,
        &narrow,
        &entities,
        &principal,
        &action,
        &resources,
    );
    assert_eq!(
        ours, narrowed,
        "isnad and cedar (narrowed) must agree on every field"
    );
    println!(
        "cedar policies: {} for {consumer}, {} for {consumer} with d00 and u00",
        policies.policies().count(),
        narrow.policies().count()
    );

    let mut group = c.benchmark_group("policy");
    group.bench_function("isnad: decide 20 fields, 10,000 rules", |b| {
        b.iter(|| {
            black_box(
                set.decide(black_box(consumer), "d00", "u00", black_box(&fields), day)
                    .expect("decided"),
            )
        })
    });
    group.bench_function("cedar: decide 20 fields, consumer's policies", |b| {
        b.iter(|| {
            black_box(cedar_decide(
                &authorizer,
                &policies,
                &entities,
                black_box(&principal),
                &action,
                &resources,
            ))
        })
    });
    group.bench_function(
        "cedar: decide 20 fields, consumer's policies for d00 and u00",
        |b| {
            b.iter(|| {
                black_box(cedar_decide(
                    &authorizer,
                    &narrow,
                    &entities,
                    black_box(&principal),
                    &action,
                    &resources,
                ))
            })
        },
    );
    group.sample_size(10);
    group.bench_function("isnad: load and compile 10,000 rules", |b| {
        b.iter(|| black_box(PolicySet::compile(black_box(&sources), day).expect("compiles")))
    });
    group.finish();
}

fn time_month() -> isnad_policy::Month {
    isnad_policy::Month::June
}

criterion_group!(benches, bench);
criterion_main!(benches);
