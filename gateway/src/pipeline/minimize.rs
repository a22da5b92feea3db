//! Step 5: the provider is asked only for fields that a verdict releases.

use super::consent::Verdict;

pub(crate) fn fields_to_fetch(fields: &[String], verdicts: &[Verdict<'_>]) -> Vec<String> {
    fields
        .iter()
        .zip(verdicts)
        .filter(|(_, verdict)| verdict.is_released())
        .map(|(field, _)| field.clone())
        .collect()
}
