//! The compiled decision table and per-field evaluation.

use std::collections::HashMap;
use std::path::Path;

use crate::error::LoadErrors;
use crate::load::{self, Treatment};
use crate::model::{Agency, Catalogue, Dataset, PolicyRevision, RuleId};

/// Why a field was withheld. The codes are stable: clients and auditors match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithheldReason {
    /// No rule grants the field to this consumer for this purpose (default deny).
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
}

/// The decision for one requested field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldDecision {
    /// Release the field as the provider holds it.
    Release {
        /// The rule that allows it.
        rule: RuleId,
    },
    /// Withhold the field.
    Withhold {
        /// Why.
        reason: WithheldReason,
        /// The rule that decided, if one did.
        rule: Option<RuleId>,
    },
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
    /// No rule gives this consumer anything from this dataset for this purpose.
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
}

/// The decisions for one request.
#[derive(Debug)]
pub struct Decision<'p> {
    /// The dataset asked for.
    pub dataset: &'p Dataset,
    /// Its provider agency.
    pub provider: &'p Agency,
    /// One decision per requested field, in request order.
    pub fields: Vec<(String, FieldDecision)>,
}

/// What the rules for one (consumer, dataset, purpose) do with each field; deny already applied.
#[derive(Debug, Default)]
struct Grant {
    fields: HashMap<String, FieldDecision>,
}

/// An immutable, compiled policy store. Cheap to share; replaced whole on reload.
#[derive(Debug)]
pub struct PolicySet {
    catalogue: Catalogue,
    revision: PolicyRevision,
    rule_count: usize,
    /// consumer -> dataset -> purpose -> grant; nested so lookups borrow the request's strings.
    table: HashMap<String, HashMap<String, HashMap<String, Grant>>>,
}

impl PolicySet {
    /// Loads, validates and compiles the store in `dir` (`catalogue.yaml` and `rules/*.yaml`).
    pub fn load_dir(dir: &Path) -> Result<PolicySet, LoadErrors> {
        let store = load::load_dir(dir)?;
        let rule_count = store.rules.len();
        let mut table: HashMap<String, HashMap<String, HashMap<String, Grant>>> = HashMap::new();
        for rule in &store.rules {
            for consumer in &rule.consumers {
                let grant = table
                    .entry(consumer.as_str().to_owned())
                    .or_default()
                    .entry(rule.dataset.as_str().to_owned())
                    .or_default()
                    .entry(rule.purpose.as_str().to_owned())
                    .or_default();
                for (field, treatment) in &rule.fields {
                    let decision = match treatment {
                        Treatment::Allow => FieldDecision::Release {
                            rule: rule.id.clone(),
                        },
                        Treatment::Deny => FieldDecision::Withhold {
                            reason: WithheldReason::DeniedByRule,
                            rule: Some(rule.id.clone()),
                        },
                    };
                    // Deny wins; between two allows the first rule (in file order) is reported.
                    match grant.fields.get(field) {
                        Some(FieldDecision::Withhold { .. }) => {}
                        Some(FieldDecision::Release { .. })
                            if matches!(decision, FieldDecision::Release { .. }) => {}
                        _ => {
                            grant.fields.insert(field.clone(), decision);
                        }
                    }
                }
            }
        }
        Ok(PolicySet {
            catalogue: store.catalogue,
            revision: store.revision,
            rule_count,
            table,
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

    /// How many rules the store holds.
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// Decides, for each requested field, whether `consumer` may receive it from `dataset` for
    /// `purpose`. Default deny.
    pub fn decide<'p, S: AsRef<str>>(
        &'p self,
        consumer: &str,
        dataset: &str,
        purpose: &str,
        fields: &[S],
    ) -> Result<Decision<'p>, Refusal> {
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
        let grant = self
            .table
            .get(consumer)
            .and_then(|by_dataset| by_dataset.get(dataset.id.as_str()))
            .and_then(|by_purpose| by_purpose.get(purpose))
            .ok_or(Refusal::NoRule)?;
        let fields = fields
            .iter()
            .map(|field| {
                let field = field.as_ref();
                let decision = if !dataset.fields.contains_key(field) {
                    FieldDecision::Withhold {
                        reason: WithheldReason::UnknownField,
                        rule: None,
                    }
                } else {
                    grant
                        .fields
                        .get(field)
                        .cloned()
                        .unwrap_or(FieldDecision::Withhold {
                            reason: WithheldReason::NotGranted,
                            rule: None,
                        })
                };
                (field.to_owned(), decision)
            })
            .collect();
        Ok(Decision {
            dataset,
            provider,
            fields,
        })
    }
}
