//! Rules that contradict: two rules that release the same field to the same agency for the same
//! dataset and purpose, on overlapping days, in different forms or one needing consent and the
//! other not. `deny` never contradicts anything (it wins, by design); a shadow rule is compared
//! only with other shadow rules (it is meant to differ from the enforced ones).
//!
//! Releases are grouped by (dataset, purpose, field, shadow?) without expanding groups into
//! their members; two releases in a bucket contradict only if they differ, their windows
//! overlap and their consumers share an agency. A store whose rules name large groups stays
//! cheap to check.

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt};

use crate::error::PolicyError;
use crate::load::Store;
use crate::model::AgencyId;
use crate::rule::{Rule, RuleStatus, Treatment};

/// (dataset, purpose, field, shadow?).
type Bucket<'a> = (&'a str, &'a str, &'a str, bool);

/// A release seen so far: the rule, its treatment of the field, the agencies it names.
type Release<'a> = (&'a Rule, &'a Treatment, &'a [AgencyId]);

/// The first agency in both sorted lists.
fn common<'a>(a: &'a [AgencyId], b: &[AgencyId]) -> Option<&'a AgencyId> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return Some(&a[i]),
        }
    }
    None
}

/// Adds an error for every pair of contradicting rules, at the later one.
pub(crate) fn check(store: &Store, errors: &mut Vec<PolicyError>) {
    let mut seen: HashMap<Bucket<'_>, Vec<Release<'_>>> = HashMap::new();
    let mut reported = BTreeSet::new();
    for rule in &store.rules {
        let shadow = rule.status == RuleStatus::Shadow;
        let members = store.members(&rule.consumer);
        for (field, treatment) in &rule.fields {
            if *treatment == Treatment::Deny {
                continue;
            }
            let key = (
                rule.dataset.as_str(),
                rule.purpose.as_str(),
                field.as_str(),
                shadow,
            );
            let earlier = seen.entry(key).or_default();
            for (other, other_treatment, other_members) in earlier.iter() {
                let differs = *other_treatment != treatment
                    || other.consent_required != rule.consent_required;
                if !differs || !other.window.overlaps(&rule.window) {
                    continue;
                }
                let Some(agency) = common(members, other_members) else {
                    continue;
                };
                if !reported.insert((other.id.clone(), rule.id.clone())) {
                    continue;
                }
                let what = if *other_treatment != treatment {
                    format!(
                        "as {treatment}, but rule {:?} releases it as {other_treatment}",
                        other.id.as_str()
                    )
                } else {
                    format!(
                        "{} consent, but rule {:?} releases it {} consent",
                        if rule.consent_required {
                            "with"
                        } else {
                            "without"
                        },
                        other.id.as_str(),
                        if other.consent_required {
                            "with"
                        } else {
                            "without"
                        },
                    )
                };
                errors.push(PolicyError {
                    file: rule.location.file.clone(),
                    line: rule.location.line,
                    column: rule.location.column,
                    message: format!(
                        "rule {:?} contradicts rule {:?} ({}): it releases {field:?} of {} to \
                         {agency} for {} {what}, on overlapping days ({} and {}); a field gets \
                         one treatment: change one rule, or end one's window before the \
                         other's starts",
                        rule.id.as_str(),
                        other.id.as_str(),
                        other.location,
                        rule.dataset,
                        rule.purpose,
                        rule.window,
                        other.window,
                    ),
                });
            }
            earlier.push((rule, treatment, members));
        }
    }
}
