//! What changes between two stores, grant by grant: for every (consumer agency, dataset,
//! purpose, field), what the rules say about it before and after. Groups are expanded, so a
//! change to a group's membership shows as the grants it adds or removes.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::decide::PolicySet;
use crate::rule::{RuleStatus, Treatment};

/// A grant's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GrantKey {
    /// The consumer agency.
    pub consumer: String,
    /// The dataset.
    pub dataset: String,
    /// The purpose.
    pub purpose: String,
    /// The field.
    pub field: String,
}

/// What one rule says about a grant, in words: `allow by housing-identity (statute; always)`.
fn describe(rule: &crate::Rule, treatment: &Treatment) -> String {
    format!(
        "{treatment} by {}{} ({}{}; {}{})",
        rule.id,
        if rule.status == RuleStatus::Shadow {
            " [shadow]"
        } else {
            ""
        },
        rule.basis.as_ref().map_or("no legal basis", |b| b.code()),
        if rule.consent_required {
            ", consent required"
        } else {
            ""
        },
        rule.window,
        rule.limit
            .map_or(String::new(), |limit| format!("; at most {limit}"))
    )
}

/// How a grant changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A grant that did not exist.
    Added,
    /// A grant that no longer exists.
    Removed,
    /// A grant whose treatment, legal basis, consent, window, limit or status changed.
    Changed,
}

/// One changed grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantChange {
    /// What changed.
    pub change: Change,
    /// Which grant.
    #[serde(flatten)]
    pub key: GrantKey,
    /// What the rules said before (empty when added), one line per rule.
    pub before: Vec<String>,
    /// What they say after (empty when removed).
    pub after: Vec<String>,
}

impl fmt::Display for GrantChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.change {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        };
        write!(
            f,
            "{sign} {} {} {} {}: ",
            self.key.consumer, self.key.dataset, self.key.purpose, self.key.field
        )?;
        match self.change {
            Change::Added => write!(f, "{}", self.after.join("; ")),
            Change::Removed => write!(f, "{}", self.before.join("; ")),
            Change::Changed => write!(f, "{} -> {}", self.before.join("; "), self.after.join("; ")),
        }
    }
}

fn grants(set: &PolicySet) -> BTreeMap<GrantKey, Vec<String>> {
    let mut grants: BTreeMap<GrantKey, Vec<String>> = BTreeMap::new();
    for rule in set.rules() {
        for consumer in set.members(&rule.consumer) {
            for (field, treatment) in &rule.fields {
                grants
                    .entry(GrantKey {
                        consumer: consumer.as_str().to_owned(),
                        dataset: rule.dataset.as_str().to_owned(),
                        purpose: rule.purpose.as_str().to_owned(),
                        field: field.clone(),
                    })
                    .or_default()
                    .push(describe(rule, treatment));
            }
        }
    }
    for descriptions in grants.values_mut() {
        descriptions.sort();
    }
    grants
}

/// The grants added, removed or changed from `old` to `new`, in key order. Grants include
/// `deny` entries and shadow rules, each labelled.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Vec<GrantChange> {
    let before = grants(old);
    let mut after = grants(new);
    let mut changes = Vec::new();
    for (key, was) in before {
        match after.remove(&key) {
            None => changes.push(GrantChange {
                change: Change::Removed,
                key,
                before: was,
                after: Vec::new(),
            }),
            Some(now) if now != was => changes.push(GrantChange {
                change: Change::Changed,
                key,
                before: was,
                after: now,
            }),
            Some(_) => {}
        }
    }
    for (key, now) in after {
        changes.push(GrantChange {
            change: Change::Added,
            key,
            before: Vec::new(),
            after: now,
        });
    }
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    changes
}
