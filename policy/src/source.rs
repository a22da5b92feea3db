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
    #[serde(default, rename = "description")]
    pub(crate) _description: String,
    /// An agency id or a group id.
    pub(crate) consumer: Spanned<String>,
    pub(crate) dataset: Spanned<String>,
    pub(crate) purpose: Spanned<String>,
    pub(crate) fields: BTreeMap<String, Spanned<String>>,
}
