//! Step 4: consent. A field released by a rule that requires the citizen's consent needs a valid
//! consent token in the request. Verifying tokens arrives with issue 4 (consent tokens,
//! revocation, use limits); until then no token is accepted, so every such field is withheld
//! with reason `consent_required` (fail closed), and nothing else changes.

use isnad_policy::{FieldDecision, Rule, Transform};

/// The outcome for one field after consent: released (in some form) or withheld.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verdict<'p> {
    Release {
        rule: &'p Rule,
        transform: Option<&'p Transform>,
    },
    Withhold {
        reason: &'static str,
        rule: Option<&'p Rule>,
    },
}

impl Verdict<'_> {
    pub(crate) fn is_released(&self) -> bool {
        matches!(self, Verdict::Release { .. })
    }
}

/// The verdict for every field, in request order.
pub(crate) fn check<'p>(decisions: &[FieldDecision<'p>]) -> Vec<Verdict<'p>> {
    decisions
        .iter()
        .map(|decision| match *decision {
            FieldDecision::Release { rule, .. } if rule.consent_required => Verdict::Withhold {
                reason: "consent_required",
                rule: Some(rule),
            },
            FieldDecision::Release { rule, transform } => Verdict::Release { rule, transform },
            FieldDecision::Withhold { reason, rule } => Verdict::Withhold {
                reason: reason.code(),
                rule,
            },
        })
        .collect()
}
