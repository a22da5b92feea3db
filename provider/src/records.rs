//! Record files: JSON Lines, one object per subject, converted once at start-up into typed values.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use isnad_proto::v1::{Date, Value, ValueList, value::Kind};

use crate::config::DatasetConfig;

/// A dataset held in memory: subject -> field -> value.
#[derive(Debug)]
pub struct Dataset {
    records: HashMap<String, HashMap<String, Value>>,
}

/// Why a record file could not be loaded. Messages name the line, never a record's content.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A field's type is not one the reference provider serves.
    #[error(
        "field {field:?}: unsupported type {kind:?} (use string, int, bool, date, double or list)"
    )]
    UnsupportedType {
        /// The field.
        field: String,
        /// The type given.
        kind: String,
    },
    /// A line is not a valid record.
    #[error("{path}:{line}: {problem}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum FieldType {
    String,
    Int,
    Bool,
    Date,
    Double,
    List,
}

impl Dataset {
    /// Loads the record file of a dataset, typing each configured field.
    pub fn load(config: &DatasetConfig) -> Result<Dataset, RecordError> {
        let types = config
            .fields
            .iter()
            .map(|(field, kind)| {
                let typed = match kind.as_str() {
                    "string" => FieldType::String,
                    "int" => FieldType::Int,
                    "bool" => FieldType::Bool,
                    "date" => FieldType::Date,
                    "double" => FieldType::Double,
                    "list" => FieldType::List,
                    _ => {
                        return Err(RecordError::UnsupportedType {
                            field: field.clone(),
                            kind: kind.clone(),
                        });
                    }
                };
                Ok((field.clone(), typed))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let path = &config.records;
        let file = std::fs::File::open(path).map_err(|source| RecordError::Read {
            path: path.clone(),
            source,
        })?;
        let mut records = HashMap::new();
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let bad = |problem: String| RecordError::BadRecord {
                path: path.clone(),
                line: index + 1,
                problem,
            };
            let line = line.map_err(|e| bad(format!("unreadable ({e})")))?;
            if line.trim().is_empty() {
                continue;
            }
            let (subject, record) = parse_record(&line, &types).map_err(bad)?;
            if records.insert(subject, record).is_some() {
                return Err(bad("a second record for the same subject".into()));
            }
        }
        Ok(Dataset { records })
    }

    /// The values held for `fields` of `subject`, or `None` if the subject is unknown. Fields
    /// without a value (null or absent in the record) are left out.
    pub fn lookup<'a>(
        &'a self,
        subject: &str,
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Option<HashMap<String, Value>> {
        let record = self.records.get(subject)?;
        Some(
            fields
                .into_iter()
                .filter_map(|field| Some((field.to_owned(), record.get(field)?.clone())))
                .collect(),
        )
    }

    /// How many subjects the dataset holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the dataset holds no subject.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn parse_record(
    line: &str,
    types: &[(String, FieldType)],
) -> Result<(String, HashMap<String, Value>), String> {
    let serde_json::Value::Object(mut object) =
        serde_json::from_str(line).map_err(|e| format!("not JSON (column {})", e.column()))?
    else {
        return Err("not a JSON object".into());
    };
    let subject = match object.remove("subject") {
        Some(serde_json::Value::String(subject)) if !subject.is_empty() => subject,
        _ => return Err("no string `subject`".into()),
    };
    let mut record = HashMap::with_capacity(types.len());
    for (field, kind) in types {
        match object.remove(field) {
            None | Some(serde_json::Value::Null) => {}
            Some(json) => {
                let value = typed(&json, *kind)
                    .ok_or_else(|| format!("field {field:?} is not of type {kind:?}"))?;
                record.insert(field.clone(), value);
            }
        }
    }
    Ok((subject, record))
}

fn typed(json: &serde_json::Value, kind: FieldType) -> Option<Value> {
    let kind = match (kind, json) {
        (FieldType::String, serde_json::Value::String(s)) => Kind::StringValue(s.clone()),
        (FieldType::Int, serde_json::Value::Number(n)) => Kind::IntValue(n.as_i64()?),
        (FieldType::Bool, serde_json::Value::Bool(b)) => Kind::BoolValue(*b),
        (FieldType::Double, serde_json::Value::Number(n)) => Kind::DoubleValue(n.as_f64()?),
        (FieldType::Date, serde_json::Value::String(s)) => Kind::DateValue(parse_date(s)?),
        (FieldType::List, serde_json::Value::Array(items)) => Kind::ListValue(ValueList {
            values: items.iter().map(scalar).collect::<Option<_>>()?,
        }),
        _ => return None,
    };
    Some(Value { kind: Some(kind) })
}

/// A list element: its type is what JSON says it is.
fn scalar(json: &serde_json::Value) -> Option<Value> {
    let kind = match json {
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntValue(i),
            None => Kind::DoubleValue(n.as_f64()?),
        },
        _ => return None,
    };
    Some(Value { kind: Some(kind) })
}

/// `YYYY-MM-DD`, checked to be a real calendar date.
pub(crate) fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i32 = text[0..4].parse().ok()?;
    let month: u32 = text[5..7].parse().ok()?;
    let day: u32 = text[8..10].parse().ok()?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&day)
        .then_some(Date { year, month, day })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_dates_only() {
        assert_eq!(
            parse_date("2024-02-29"),
            Some(Date {
                year: 2024,
                month: 2,
                day: 29
            })
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-4-01",
            "20240401",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn types_values_by_the_schema_and_skips_nulls() {
        let types = vec![
            ("name".to_owned(), FieldType::String),
            ("born".to_owned(), FieldType::Date),
            ("kids".to_owned(), FieldType::List),
            ("spouse".to_owned(), FieldType::String),
        ];
        let (subject, record) = parse_record(
            r#"{"subject":"784","name":"A","born":"2000-01-31","kids":["1","2"],"spouse":null,"extra":1}"#,
            &types,
        )
        .expect("valid record");
        assert_eq!(subject, "784");
        assert_eq!(record.len(), 3);
        assert!(matches!(
            record["born"].kind,
            Some(Kind::DateValue(Date {
                year: 2000,
                month: 1,
                day: 31
            }))
        ));
        assert!(parse_record(r#"{"subject":"1","name":5}"#, &types).is_err());
        assert!(parse_record(r#"{"name":"x"}"#, &types).is_err());
    }
}
