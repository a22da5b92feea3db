//! The compiled decision table and per-field evaluation.

use foldhash::{HashMap, HashMapExt};
use std::path::Path;

use time::{Date, OffsetDateTime};

use crate::error::LoadErrors;
use crate::load::{self, Sources, Store};
use crate::model::{Agency, AgencyId, Catalogue, Dataset, PolicyRevision};
use crate::rule::{Rule, RuleStatus, Transform, Treatment};

/// Why a field was withheld. The codes are stable: clients and auditors match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithheldReason {
    /// No rule in force grants the field to this consumer for this purpose (default deny).
    NotGranted,
    /// A rule denies the field.
    DeniedByRule,
    /// The dataset has no such field.
    UnknownField,
}

impl WithheldReason {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            WithheldReason::NotGranted => "not_granted",
            WithheldReason::DeniedByRule => "denied_by_rule",
            WithheldReason::UnknownField => "unknown_field",
        }
    }

    /// The reason a code names.
    pub fn from_code(code: &str) -> Option<WithheldReason> {
        [
            WithheldReason::NotGranted,
            WithheldReason::DeniedByRule,
            WithheldReason::UnknownField,
        ]
        .into_iter()
        .find(|reason| reason.code() == code)
    }
}

/// The decision for one requested field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldDecision<'p> {
    /// Release the field, as held or transformed.
    Release {
        /// The rule that releases it (its legal basis says whether consent is needed).
        rule: &'p Rule,
        /// The form it is released in; `None` as the provider holds it.
        transform: Option<&'p Transform>,
    },
    /// Withhold the field.
    Withhold {
        /// Why.
        reason: WithheldReason,
        /// The rule that decided, if one did.
        rule: Option<&'p Rule>,
    },
}

impl<'p> FieldDecision<'p> {
    /// The rule that decided, if one did.
    pub fn rule(&self) -> Option<&'p Rule> {
        match *self {
            FieldDecision::Release { rule, .. } => Some(rule),
            FieldDecision::Withhold { rule, .. } => rule,
        }
    }

    /// Whether the field is released.
    pub fn is_released(&self) -> bool {
        matches!(self, FieldDecision::Release { .. })
    }

    /// The treatment that was applied, as in a rule: `allow`, a transform, or `deny` for any
    /// withheld field.
    pub fn treatment_text(&self) -> String {
        match self {
            FieldDecision::Release {
                transform: Some(transform),
                ..
            } => transform.to_string(),
            FieldDecision::Release { .. } => "allow".to_owned(),
            FieldDecision::Withhold { .. } => "deny".to_owned(),
        }
    }
}

/// Why a whole request is refused before any field is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The dataset is not in the catalogue.
    UnknownDataset,
    /// The purpose is not in the catalogue's vocabulary.
    UnknownPurpose,
    /// The caller is not an agency of the catalogue.
    UnknownConsumer,
    /// No enforced rule gives this consumer anything from this dataset for this purpose.
    NoRule,
}

impl Refusal {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::UnknownDataset => "unknown_dataset",
            Refusal::UnknownPurpose => "unknown_purpose",
            Refusal::UnknownConsumer => "unknown_consumer",
            Refusal::NoRule => "no_rule",
        }
    }

    /// The refusal a code names.
    pub fn from_code(code: &str) -> Option<Refusal> {
        [
            Refusal::UnknownDataset,
            Refusal::UnknownPurpose,
            Refusal::UnknownConsumer,
            Refusal::NoRule,
        ]
        .into_iter()
        .find(|refusal| refusal.code() == code)
    }
}

/// The decisions for one request.
#[derive(Debug)]
pub struct Decision<'p> {
    /// The dataset asked for.
    pub dataset: &'p Dataset,
    /// Its provider agency.
    pub provider: &'p Agency,
    /// One decision per requested field, in request order.
    pub fields: Vec<FieldDecision<'p>>,
    /// When a shadow rule applies to this consumer, dataset and purpose: what the decisions
    /// would be with the shadow rules in force, one per requested field. Report it; never
    /// enforce it.
    pub shadow: Option<Vec<FieldDecision<'p>>>,
}

/// A rule's treatment of one field, by index into the set's rules.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    rule: u32,
    field: u32,
}

/// The rules that treat one field for one (consumer, dataset, purpose), in file order.
#[derive(Debug, Default, Clone)]
struct FieldRules {
    enforce: Vec<Candidate>,
    shadow: Vec<Candidate>,
}

/// Everything the rules say about one (consumer, dataset, purpose).
#[derive(Debug, Default, Clone)]
struct Grant {
    fields: HashMap<String, FieldRules>,
    enforced: bool,
    shadowed: bool,
}

impl Grant {
    fn add(&mut self, index: usize, rule: &Rule) {
        let shadow = rule.status == RuleStatus::Shadow;
        self.enforced |= !shadow;
        self.shadowed |= shadow;
        for (field_index, (field, _)) in rule.fields.iter().enumerate() {
            let candidate = Candidate {
                rule: index as u32,
                field: field_index as u32,
            };
            let rules = slot(&mut self.fields, field);
            if shadow {
                rules.shadow.push(candidate);
            } else {
                rules.enforce.push(candidate);
            }
        }
    }

    /// Adds `other`'s rules, keeping every field's candidates in file order.
    fn merge(&mut self, other: &Grant) {
        self.enforced |= other.enforced;
        self.shadowed |= other.shadowed;
        for (field, theirs) in &other.fields {
            let ours = slot(&mut self.fields, field);
            merge_in_order(&mut ours.enforce, &theirs.enforce);
            merge_in_order(&mut ours.shadow, &theirs.shadow);
        }
    }
}

/// Merges `theirs` into `ours`, both in rule order.
fn merge_in_order(ours: &mut Vec<Candidate>, theirs: &[Candidate]) {
    if theirs.is_empty() {
        return;
    }
    ours.extend_from_slice(theirs);
    // Both halves are sorted; a stable sort of two runs is a merge.
    ours.sort_by_key(|candidate| candidate.rule);
}

/// consumer -> dataset -> purpose -> index into the grants; nested so that lookups borrow the
/// request's strings.
type Table = HashMap<String, HashMap<String, HashMap<String, u32>>>;

/// The value under `key`, inserted empty if missing; allocates the key only then.
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
        .expect("present: inserted above if missing")
}

/// The decision table: a grant per (consumer as written, dataset, purpose), so a rule naming a
/// group of 250 agencies is compiled once, not 250 times; every member agency points at it. An
/// agency that both a group's rules and its own (or two groups') rules name for the same dataset
/// and purpose gets a grant of its own that merges them.
fn build_table(store: &Store) -> (Table, Vec<Grant>) {
    let mut grants: Vec<Grant> = Vec::new();
    let mut named: HashMap<(&str, &str, &str), u32> = HashMap::new();
    let mut order = Vec::new();
    for (index, rule) in store.rules.iter().enumerate() {
        let key = (
            rule.consumer.as_str(),
            rule.dataset.as_str(),
            rule.purpose.as_str(),
        );
        let grant = *named.entry(key).or_insert_with(|| {
            order.push(key);
            grants.push(Grant::default());
            (grants.len() - 1) as u32
        });
        grants[grant as usize].add(index, rule);
    }

    let mut table = Table::new();
    // Whether a grant was made by merging for one agency, so it may be changed in place.
    let mut merged = vec![false; grants.len()];
    for key @ (consumer, dataset, purpose) in order {
        let grant = named[&key];
        for agency in store.members(consumer) {
            let by_purpose = slot(slot(&mut table, agency.as_str()), dataset);
            let Some(existing) = by_purpose.get_mut(purpose) else {
                by_purpose.insert(purpose.to_owned(), grant);
                continue;
            };
            if *existing == grant {
                continue;
            }
            let addition = std::mem::take(&mut grants[grant as usize]);
            if merged[*existing as usize] {
                grants[*existing as usize].merge(&addition);
            } else {
                let mut combined = grants[*existing as usize].clone();
                combined.merge(&addition);
                grants.push(combined);
                merged.push(true);
                *existing = (grants.len() - 1) as u32;
            }
            grants[grant as usize] = addition;
        }
    }
    (table, grants)
}

/// An immutable, compiled policy store. Cheap to share; replaced whole on reload.
#[derive(Debug)]
pub struct PolicySet {
    catalogue: Catalogue,
    revision: PolicyRevision,
    rules: Vec<Rule>,
    members: std::collections::BTreeMap<String, Vec<AgencyId>>,
    table: Table,
    grants: Vec<Grant>,
}

/// Today in UTC, the day rule windows are checked against.
pub fn today_utc() -> Date {
    OffsetDateTime::now_utc().date()
}

impl PolicySet {
    /// Loads, validates and compiles the store in `dir` as of today (UTC).
    pub fn load_dir(dir: &Path) -> Result<PolicySet, LoadErrors> {
        PolicySet::compile(&Sources::read_dir(dir)?, today_utc())
    }

    /// Validates and compiles `sources` as of `today`: a rule whose window ended before it is an
    /// error.
    pub fn compile(sources: &Sources, today: Date) -> Result<PolicySet, LoadErrors> {
        let store = load::load(sources, today)?;
        // The contradiction check and the table read the same rules: build both at once.
        let (conflicts, (table, grants)) = std::thread::scope(|scope| {
            let check = scope.spawn(|| {
                let mut errors = Vec::new();
                crate::conflict::check(&store, &mut errors);
                errors
            });
            let table = build_table(&store);
            let conflicts = check
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (conflicts, table)
        });
        if !conflicts.is_empty() {
            return Err(load::in_file_order(conflicts));
        }
        Ok(PolicySet {
            catalogue: store.catalogue,
            revision: store.revision,
            rules: store.rules,
            members: store.members,
            table,
            grants,
        })
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The revision of the content this set was compiled from.
    pub fn revision(&self) -> &PolicyRevision {
        &self.revision
    }

    /// How many rules the store holds (enforced and shadow).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The agencies a group or agency id names (empty if it names none).
    pub fn members(&self, consumer: &str) -> &[AgencyId] {
        self.members.get(consumer).map_or(&[], Vec::as_slice)
    }

    /// Decides, for each requested field, whether `consumer` may receive it from `dataset` for
    /// `purpose` on `today`, and in which form. Default deny; `deny` wins; a rule outside its
    /// window does not apply.
    pub fn decide<'p, S: AsRef<str>>(
        &'p self,
        consumer: &str,
        dataset: &str,
        purpose: &str,
        fields: &[S],
        today: Date,
    ) -> Result<Decision<'p>, Refusal> {
        let (dataset, provider) = self.check(consumer, dataset, purpose)?;
        let grant = self
            .grant(consumer, dataset.id.as_str(), purpose)
            .filter(|grant| grant.enforced)
            .ok_or(Refusal::NoRule)?;
        let decisions = fields
            .iter()
            .map(|field| self.decide_field(dataset, grant, field.as_ref(), today, false))
            .collect();
        let shadow = grant.shadowed.then(|| {
            fields
                .iter()
                .map(|field| self.decide_field(dataset, grant, field.as_ref(), today, true))
                .collect()
        });
        Ok(Decision {
            dataset,
            provider,
            fields: decisions,
            shadow,
        })
    }

    /// What the shadow rules would decide for a request, if any shadow rule applies to its
    /// consumer, dataset and purpose. [`PolicySet::decide`] reports the same in
    /// [`Decision::shadow`]; this also answers when no enforced rule applies (the request is
    /// refused with [`Refusal::NoRule`], and a shadow rule is trying out a new grant).
    pub fn decide_shadow<'p, S: AsRef<str>>(
        &'p self,
        consumer: &str,
        dataset: &str,
        purpose: &str,
        fields: &[S],
        today: Date,
    ) -> Option<Vec<FieldDecision<'p>>> {
        let (dataset, _) = self.check(consumer, dataset, purpose).ok()?;
        let grant = self
            .grant(consumer, dataset.id.as_str(), purpose)
            .filter(|grant| grant.shadowed)?;
        Some(
            fields
                .iter()
                .map(|field| self.decide_field(dataset, grant, field.as_ref(), today, true))
                .collect(),
        )
    }

    fn check(
        &self,
        consumer: &str,
        dataset: &str,
        purpose: &str,
    ) -> Result<(&Dataset, &Agency), Refusal> {
        let dataset = self
            .catalogue
            .datasets
            .get(dataset)
            .ok_or(Refusal::UnknownDataset)?;
        if !self.catalogue.purposes.contains_key(purpose) {
            return Err(Refusal::UnknownPurpose);
        }
        if !self.catalogue.agencies.contains_key(consumer) {
            return Err(Refusal::UnknownConsumer);
        }
        let provider = self
            .catalogue
            .agencies
            .get(dataset.provider.as_str())
            .ok_or(Refusal::UnknownDataset)?;
        Ok((dataset, provider))
    }

    fn grant(&self, consumer: &str, dataset: &str, purpose: &str) -> Option<&Grant> {
        let index = *self.table.get(consumer)?.get(dataset)?.get(purpose)?;
        self.grants.get(index as usize)
    }

    fn treatment(&self, candidate: Candidate) -> (&Rule, &Treatment) {
        let rule = &self.rules[candidate.rule as usize];
        (rule, &rule.fields[candidate.field as usize].1)
    }

    /// Deny in force wins; else the first release in force (with `shadow`, a shadow rule's
    /// release before an enforced one's, so a shadow rule can try a new form); else not granted.
    fn decide_field<'p>(
        &'p self,
        dataset: &Dataset,
        grant: &'p Grant,
        field: &str,
        today: Date,
        shadow: bool,
    ) -> FieldDecision<'p> {
        if !dataset.fields.contains_key(field) {
            return FieldDecision::Withhold {
                reason: WithheldReason::UnknownField,
                rule: None,
            };
        }
        let Some(rules) = grant.fields.get(field) else {
            return FieldDecision::Withhold {
                reason: WithheldReason::NotGranted,
                rule: None,
            };
        };
        let shadow_rules: &[Candidate] = if shadow { &rules.shadow } else { &[] };
        let mut release = None;
        for &candidate in shadow_rules.iter().chain(&rules.enforce) {
            let (rule, treatment) = self.treatment(candidate);
            if !rule.window.contains(today) {
                continue;
            }
            match treatment {
                Treatment::Deny => {
                    return FieldDecision::Withhold {
                        reason: WithheldReason::DeniedByRule,
                        rule: Some(rule),
                    };
                }
                Treatment::Allow => {
                    release.get_or_insert(FieldDecision::Release {
                        rule,
                        transform: None,
                    });
                }
                Treatment::Transform(transform) => {
                    release.get_or_insert(FieldDecision::Release {
                        rule,
                        transform: Some(transform),
                    });
                }
            }
        }
        release.unwrap_or(FieldDecision::Withhold {
            reason: WithheldReason::NotGranted,
            rule: None,
        })
    }

    /// Every rule, enforced or shadow, that treats `field` for this consumer, dataset and
    /// purpose, in the order they are considered, with its treatment: what `explain` shows.
    pub fn rules_for<'p>(
        &'p self,
        consumer: &str,
        dataset: &str,
        purpose: &str,
        field: &str,
    ) -> Vec<(&'p Rule, &'p Treatment)> {
        let Some(rules) = self
            .grant(consumer, dataset, purpose)
            .and_then(|grant| grant.fields.get(field))
        else {
            return Vec::new();
        };
        rules
            .enforce
            .iter()
            .chain(&rules.shadow)
            .map(|&candidate| self.treatment(candidate))
            .collect()
    }
}
