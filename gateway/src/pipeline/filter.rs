//! Step 7: the verdicts are applied again to what the provider sent back. A field it was not
//! asked for is dropped; a value not of the catalogue's declared type is withheld; a field the
//! policy releases in another form is transformed, and withheld if it cannot be.

use std::collections::HashMap;

use isnad_policy::{Dataset, FieldType, Rule, Transform};
use isnad_proto::v1::{FieldOutcome, FieldTransform, Value, value::Kind};

use super::consent::Verdict;
use super::transform::{self, HashKey};

/// What is released, and how every other field ended.
#[derive(Debug, Default)]
pub(crate) struct Released<'p> {
    pub(crate) attributes: HashMap<String, Value>,
    pub(crate) withheld: Vec<FieldOutcome>,
    pub(crate) transformed: Vec<FieldTransform>,
    /// For the audit record: each released field, the treatment applied and its rule.
    pub(crate) released: Vec<(String, String, &'p Rule)>,
}

/// What the transforms need besides the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransformContext<'a> {
    pub(crate) consumer: &'a str,
    pub(crate) hash_key: Option<&'a HashKey>,
    pub(crate) today: time::Date,
}

pub(crate) fn release<'p>(
    dataset: &Dataset,
    fields: &[String],
    verdicts: &[Verdict<'p>],
    fetched: &mut HashMap<String, Value>,
    context: TransformContext<'_>,
) -> Released<'p> {
    let mut out = Released {
        attributes: HashMap::with_capacity(fields.len()),
        ..Released::default()
    };
    let mut consumer_key = None;
    for (field, verdict) in fields.iter().zip(verdicts) {
        let mut withhold = |reason: &str, rule: &str| {
            out.withheld.push(FieldOutcome {
                field: field.clone(),
                reason: reason.to_owned(),
                rule_id: rule.to_owned(),
            });
        };
        match *verdict {
            Verdict::Withhold { reason, rule } => {
                withhold(reason, rule.map_or("", |rule| rule.id.as_str()))
            }
            Verdict::Release { rule, transform } => {
                let rule_id = rule.id.as_str();
                // The provider's key is reused for the released value.
                let Some((name, value)) = fetched.remove_entry(field) else {
                    withhold("not_held", rule_id);
                    continue;
                };
                let declared = dataset.fields.get(field).map(|f| f.field_type);
                if !declared.is_some_and(|declared| has_type(&value, declared)) {
                    withhold("provider_type_mismatch", rule_id);
                    continue;
                }
                let Some(transform) = transform else {
                    out.attributes.insert(name, value);
                    out.released.push((field.clone(), "allow".to_owned(), rule));
                    continue;
                };
                // Derived once per request, and only for the transform that needs it.
                if consumer_key.is_none() && matches!(transform, Transform::Hash) {
                    consumer_key = context
                        .hash_key
                        .map(|key| key.for_consumer(context.consumer));
                }
                match transform::apply(transform, &value, consumer_key.as_ref(), context.today) {
                    Ok(value) => {
                        out.attributes.insert(name, value);
                        let text = transform.to_string();
                        out.transformed.push(FieldTransform {
                            field: field.clone(),
                            transform: text.clone(),
                            rule_id: rule_id.to_owned(),
                        });
                        out.released.push((field.clone(), text, rule));
                    }
                    Err(transform::NotApplicable) => withhold("transform_failed", rule_id),
                }
            }
        }
    }
    if !fetched.is_empty() {
        // Names only: the values are citizen data.
        tracing::warn!(
            dataset = %dataset.id,
            extra_fields = fetched.len(),
            "provider sent fields it was not asked for; dropped"
        );
        fetched.clear();
    }
    out
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
