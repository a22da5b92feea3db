//! How attribute values and outcomes are printed for people.

use isnad_proto::v1::{Value, value::Kind};

/// A value as text: strings quoted, dates as `YYYY-MM-DD`, lists in brackets.
pub(crate) fn value(value: &Value) -> String {
    match &value.kind {
        None => "(empty)".into(),
        Some(Kind::StringValue(s)) => format!("{s:?}"),
        Some(Kind::IntValue(i)) => i.to_string(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::DoubleValue(d)) => d.to_string(),
        Some(Kind::DateValue(d)) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        Some(Kind::BytesValue(b)) => format!("({} bytes)", b.len()),
        Some(Kind::ListValue(list)) => {
            let items: Vec<String> = list.values.iter().map(self::value).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A value as JSON.
pub(crate) fn json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None => serde_json::Value::Null,
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::IntValue(i)) => (*i).into(),
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::DoubleValue(d)) => (*d).into(),
        Some(Kind::DateValue(d)) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day).into(),
        Some(Kind::BytesValue(b)) => b
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
        Some(Kind::ListValue(list)) => list.values.iter().map(json).collect(),
    }
}
