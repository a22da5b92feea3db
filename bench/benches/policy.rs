//! The policy store's speed: one 20-field decision against 10,000 rules, the same grants decided
//! by cedar-policy (narrowed to the consumer's policies), and loading and compiling the 10,000
//! rules from YAML.
//!
//! ```sh
//! cargo bench -p isnad-bench --features policy-bench --bench policy
//! ```
//!
//! The store is `isnad_bench::synthetic::policy_files` (10,000 rules, no two contradicting).
//! Before anything is timed, both engines decide every field of the request and must agree on
//! released or withheld.

use std::fmt::Write;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use isnad_bench::synthetic::*;
use isnad_policy::{Date, FieldDecision, PolicySet, Sources};

// The allocator of the `isnad` binary (gateway/src/main.rs), so that the figures are the ones the
// gateway sees; cedar runs with it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn store() -> Sources {
    Sources::from_files(policy_files())
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
