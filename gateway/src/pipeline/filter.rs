//! Step 7: the decisions are applied again to what the provider sent back. A field it was not
//! asked for is dropped; a value not of the catalogue's declared type is withheld.

use std::collections::HashMap;

use isnad_policy::{Decision, FieldDecision, FieldType};
use isnad_proto::v1::{FieldOutcome, Value, value::Kind};

/// The released attributes and one outcome per withheld field, in request order.
pub(crate) fn release(
    decision: &Decision<'_>,
    fetched: &mut HashMap<String, Value>,
) -> (HashMap<String, Value>, Vec<FieldOutcome>) {
    let mut released = HashMap::with_capacity(decision.fields.len());
    let mut withheld = Vec::new();
    let mut withhold = |field: &str, reason: &str, rule: &str| {
        withheld.push(FieldOutcome {
            field: field.to_owned(),
            reason: reason.to_owned(),
            rule_id: rule.to_owned(),
        });
    };
    for (field, decided) in &decision.fields {
        match decided {
            FieldDecision::Withhold { reason, rule } => withhold(
                field,
                reason.code(),
                rule.as_ref().map_or("", |rule| rule.as_str()),
            ),
            FieldDecision::Release { rule } => match fetched.remove(field) {
                None => withhold(field, "not_held", rule.as_str()),
                Some(value) => {
                    let declared = decision.dataset.fields.get(field).map(|f| f.field_type);
                    if declared.is_some_and(|declared| has_type(&value, declared)) {
                        released.insert(field.clone(), value);
                    } else {
                        withhold(field, "provider_type_mismatch", rule.as_str());
                    }
                }
            },
        }
    }
    if !fetched.is_empty() {
        // Names only: the values are citizen data.
        tracing::warn!(
            provider = %decision.provider.id,
            dataset = %decision.dataset.id,
            extra_fields = fetched.len(),
            "provider sent fields it was not asked for; dropped"
        );
        fetched.clear();
    }
    (released, withheld)
}

fn has_type(value: &Value, declared: FieldType) -> bool {
    matches!(
        (&value.kind, declared),
        (Some(Kind::StringValue(_)), FieldType::String)
            | (Some(Kind::IntValue(_)), FieldType::Int)
            | (Some(Kind::BoolValue(_)), FieldType::Bool)
            | (Some(Kind::DateValue(_)), FieldType::Date)
            | (Some(Kind::DoubleValue(_)), FieldType::Double)
            | (Some(Kind::BytesValue(_)), FieldType::Bytes)
            | (Some(Kind::ListValue(_)), FieldType::List)
    )
}
