//! Step 5: the provider is asked only for fields that a decision releases.

use isnad_policy::{Decision, FieldDecision};

pub(crate) fn fields_to_fetch(decision: &Decision<'_>) -> Vec<String> {
    decision
        .fields
        .iter()
        .filter(|(_, decided)| matches!(decided, FieldDecision::Release { .. }))
        .map(|(field, _)| field.clone())
        .collect()
}
