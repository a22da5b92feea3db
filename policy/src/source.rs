//! The YAML documents as written, with source locations kept for validation errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::{FieldClass, FieldType, Level};

/// `catalogue.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogueDoc {
    pub(crate) federation: Spanned<String>,
    pub(crate) agencies: BTreeMap<String, Spanned<AgencyDoc>>,
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, Spanned<GroupDoc>>,
    pub(crate) datasets: BTreeMap<String, Spanned<DatasetDoc>>,
    pub(crate) purposes: BTreeMap<String, Spanned<PurposeDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgencyDoc {
    pub(crate) name: String,
    pub(crate) level: Level,
    #[serde(default)]
    pub(crate) emirate: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) endpoint: Option<Spanned<String>>,
}

/// A named set of agencies: those matching every given selector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupDoc {
    /// For people reading the catalogue.
    #[serde(default, rename = "description")]
    pub(crate) _description: String,
    #[serde(default)]
    pub(crate) level: Option<Level>,
    #[serde(default)]
    pub(crate) emirate: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) members: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatasetDoc {
    pub(crate) provider: Spanned<String>,
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) fields: BTreeMap<String, Spanned<FieldDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldDoc {
    #[serde(rename = "type")]
    pub(crate) field_type: FieldType,
    pub(crate) class: FieldClass,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurposeDoc {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) description: String,
}

/// A file under `rules/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesDoc {
    pub(crate) rules: Vec<Spanned<RuleDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDoc {
    pub(crate) id: Spanned<String>,
    /// For reviewers: why the rule exists.
    #[serde(default)]
    pub(crate) description: String,
    /// An agency id or a group id.
    pub(crate) consumer: Spanned<String>,
    pub(crate) dataset: Spanned<String>,
    pub(crate) purpose: Spanned<String>,
    /// `consent`, `statute` or `court_order`; required unless the rule only denies.
    #[serde(default)]
    pub(crate) legal_basis: Option<Spanned<String>>,
    /// The statute or court order; required unless the basis is consent.
    #[serde(default)]
    pub(crate) reference: Option<Spanned<String>>,
    /// Defaults to whether the basis is consent.
    #[serde(default)]
    pub(crate) consent_required: Option<Spanned<bool>>,
    /// `YYYY-MM-DD`, inclusive.
    #[serde(default)]
    pub(crate) valid_from: Option<Spanned<String>>,
    /// `YYYY-MM-DD`, inclusive.
    #[serde(default)]
    pub(crate) valid_until: Option<Spanned<String>>,
    /// `enforce` (the default) or `shadow`.
    #[serde(default)]
    pub(crate) status: Option<Spanned<String>>,
    /// `{ requests: N, per: minute | hour | day }`.
    #[serde(default)]
    pub(crate) limit: Option<Spanned<LimitDoc>>,
    pub(crate) fields: BTreeMap<String, Spanned<TreatmentDoc>>,
}

/// A rule's frequency limit as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitDoc {
    pub(crate) requests: Spanned<i64>,
    pub(crate) per: Spanned<String>,
}

/// A field's treatment as written: a word (`allow`, `deny`, `hash`) or a one-key map
/// (`mask: {keep_last: 4}`, `derive: age_over(18)`, `generalize: year`, ...). Read leniently
/// so that validation, not the parser, reports a wrong name, with every other error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TreatmentDoc {
    Word(String),
    Map(Vec<(String, ArgDoc)>),
}

/// The argument of a transform.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArgDoc {
    Text(String),
    Number(f64),
    Options(Vec<(String, OptionDoc)>),
    Other(&'static str),
}

/// An option's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OptionDoc {
    Number(f64),
    Numbers(Vec<f64>),
    Text(String),
    Other(&'static str),
}

mod lenient {
    //! Visitors that accept any shape and record what they saw; validation decides.

    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{ArgDoc, OptionDoc, TreatmentDoc};

    const TREATMENT: &str = "a treatment: allow, deny, hash, or a one-key map such as \
        `derive: age_over(18)`, `mask: {keep_last: 4}` or `generalize: year`";

    impl<'de> Deserialize<'de> for TreatmentDoc {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = TreatmentDoc;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(TREATMENT)
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(TreatmentDoc::Word(v.to_owned()))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        entries.push((key, map.next_value::<ArgDoc>()?));
                    }
                    Ok(TreatmentDoc::Map(entries))
                }
            }
            deserializer.deserialize_any(V)
        }
    }

    impl<'de> Deserialize<'de> for ArgDoc {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = ArgDoc;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("the transform's argument")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(ArgDoc::Text(v.to_owned()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                    Ok(ArgDoc::Number(v as f64))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                    Ok(ArgDoc::Number(v as f64))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                    Ok(ArgDoc::Number(v))
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                    Ok(ArgDoc::Other("a boolean"))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(ArgDoc::Other("nothing"))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(ArgDoc::Other("a list"))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        entries.push((key, map.next_value::<OptionDoc>()?));
                    }
                    Ok(ArgDoc::Options(entries))
                }
            }
            deserializer.deserialize_any(V)
        }
    }

    impl<'de> Deserialize<'de> for OptionDoc {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OptionDoc;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number, a list of numbers or a word")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(OptionDoc::Text(v.to_owned()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                    Ok(OptionDoc::Number(v as f64))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                    Ok(OptionDoc::Number(v as f64))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                    Ok(OptionDoc::Number(v))
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                    Ok(OptionDoc::Other("a boolean"))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(OptionDoc::Other("nothing"))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    let mut numbers = Vec::new();
                    let mut all_numbers = true;
                    while let Some(item) = seq.next_element::<OptionDoc>()? {
                        match item {
                            OptionDoc::Number(n) => numbers.push(n),
                            _ => all_numbers = false,
                        }
                    }
                    Ok(if all_numbers {
                        OptionDoc::Numbers(numbers)
                    } else {
                        OptionDoc::Other("a list with something other than numbers")
                    })
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(OptionDoc::Other("a map"))
                }
            }
            deserializer.deserialize_any(V)
        }
    }
}
