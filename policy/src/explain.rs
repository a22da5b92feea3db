//! Why each field of a request is released or withheld: the decision, the rule that decided,
//! and every other rule that had a say, with why it did or did not apply.

use std::fmt;

use time::Date;

use crate::cases::describe;
use crate::decide::{FieldDecision, PolicySet, Refusal};
use crate::rule::{Rule, RuleStatus, Treatment};

/// The explanation of one request.
#[derive(Debug)]
pub struct Explanation<'p> {
    /// Who asks, for what, from which dataset, on which day.
    pub consumer: String,
    /// The dataset.
    pub dataset: String,
    /// The purpose.
    pub purpose: String,
    /// The day decided on.
    pub day: Date,
    /// The refusal, when the request is refused as a whole.
    pub refusal: Option<Refusal>,
    /// One per requested field (empty when refused).
    pub fields: Vec<FieldExplanation<'p>>,
}

/// The explanation of one field.
#[derive(Debug)]
pub struct FieldExplanation<'p> {
    /// The field.
    pub field: String,
    /// The enforced decision.
    pub decision: Option<FieldDecision<'p>>,
    /// The decision with the shadow rules in force, when one applies.
    pub shadow: Option<FieldDecision<'p>>,
    /// Every rule that treats the field for this request, with whether it is in force on the day.
    pub considered: Vec<(&'p Rule, &'p Treatment, bool)>,
}

/// Explains how `set` decides the request on `day`.
pub fn explain<'p, S: AsRef<str>>(
    set: &'p PolicySet,
    consumer: &str,
    dataset: &str,
    purpose: &str,
    fields: &[S],
    day: Date,
) -> Explanation<'p> {
    let decided = set.decide(consumer, dataset, purpose, fields, day);
    let shadow = match &decided {
        Ok(decision) => decision.shadow.clone(),
        Err(_) => set.decide_shadow(consumer, dataset, purpose, fields, day),
    };
    let (refusal, decisions) = match decided {
        Ok(decision) => (None, Some(decision.fields)),
        Err(refusal) => (Some(refusal), None),
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let field = field.as_ref();
            FieldExplanation {
                field: field.to_owned(),
                decision: decisions.as_ref().map(|d| d[i]),
                shadow: shadow.as_ref().map(|s| s[i]),
                considered: set
                    .rules_for(consumer, dataset, purpose, field)
                    .into_iter()
                    .map(|(rule, treatment)| (rule, treatment, rule.window.contains(day)))
                    .collect(),
            }
        })
        .collect();
    Explanation {
        consumer: consumer.to_owned(),
        dataset: dataset.to_owned(),
        purpose: purpose.to_owned(),
        day,
        refusal,
        fields,
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} asks {} for {} on {}",
            self.consumer, self.dataset, self.purpose, self.day
        )?;
        if let Some(refusal) = self.refusal {
            writeln!(f, "  refused as a whole: {}", refusal.code())?;
        }
        for field in &self.fields {
            match &field.decision {
                Some(decision) => writeln!(f, "  {}: {}", field.field, describe(decision))?,
                None => writeln!(f, "  {}: (refused)", field.field)?,
            }
            if let Some(FieldDecision::Release { rule, .. }) = &field.decision {
                writeln!(
                    f,
                    "      legal basis {}{}{}",
                    rule.basis
                        .as_ref()
                        .map_or("none".to_owned(), ToString::to_string),
                    if rule.consent_required {
                        "; needs the citizen's consent"
                    } else {
                        ""
                    },
                    rule.limit.map_or(String::new(), |limit| format!(
                        "; at most {limit} per consumer and subject"
                    ))
                )?;
            }
            if field.considered.is_empty() {
                writeln!(f, "      no rule names this field: default deny")?;
            }
            for (rule, treatment, in_force) in &field.considered {
                writeln!(
                    f,
                    "      {} {treatment}{} at {} ({}{})",
                    rule.id,
                    if rule.status == RuleStatus::Shadow {
                        " [shadow]"
                    } else {
                        ""
                    },
                    rule.location,
                    rule.window,
                    if *in_force {
                        ""
                    } else {
                        ": not in force that day"
                    },
                )?;
            }
            if let Some(shadow) = &field.shadow
                && Some(shadow) != field.decision.as_ref()
            {
                writeln!(f, "      with the shadow rules: {}", describe(shadow))?;
            }
        }
        Ok(())
    }
}
