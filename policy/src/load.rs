//! Reading a policy directory: parse every file, validate everything, report every error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

use crate::error::{LoadErrors, PolicyError};
use crate::model::{
    Agency, AgencyId, Catalogue, Dataset, DatasetId, Field, PolicyRevision, Purpose, PurposeId,
    RuleId,
};
use crate::source::{CatalogueDoc, GroupDoc, RulesDoc};

/// A policy file larger than this is refused before it is parsed.
const MAX_FILE_BYTES: u64 = 4 << 20;
const CATALOGUE_FILE: &str = "catalogue.yaml";
const RULES_DIR: &str = "rules";

/// What a validated rule grants, before compilation into the decision table.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: RuleId,
    pub(crate) consumers: Vec<AgencyId>,
    pub(crate) dataset: DatasetId,
    pub(crate) purpose: PurposeId,
    pub(crate) fields: BTreeMap<String, Treatment>,
}

/// What a rule does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    Allow,
    Deny,
}

/// A validated store: the catalogue, the rules, and the revision of the content.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) catalogue: Catalogue,
    pub(crate) rules: Vec<Rule>,
    pub(crate) revision: PolicyRevision,
}

/// Collects errors against one file.
struct Report<'a> {
    file: &'a Path,
    errors: &'a mut Vec<PolicyError>,
}

impl Report<'_> {
    fn at(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            line: location.line() as u32,
            column: location.column() as u32,
            message: message.into(),
        });
    }

    fn whole(&mut self, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}

pub(crate) fn load_dir(dir: &Path) -> Result<Store, LoadErrors> {
    let mut errors = Vec::new();
    let mut hasher = Sha256::new();

    let catalogue_path = PathBuf::from(CATALOGUE_FILE);
    let catalogue = read(dir, &catalogue_path, &mut hasher, &mut errors)
        .and_then(|text| parse::<CatalogueDoc>(&catalogue_path, &text, &mut errors))
        .map(|doc| {
            let mut report = Report {
                file: &catalogue_path,
                errors: &mut errors,
            };
            build_catalogue(doc, &mut report)
        });

    let mut rule_files = Vec::new();
    match std::fs::read_dir(dir.join(RULES_DIR)) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".yaml") || name.ends_with(".yml") {
                    rule_files.push(Path::new(RULES_DIR).join(name.as_ref()));
                }
            }
        }
        Err(error) => errors.push(PolicyError {
            file: PathBuf::from(RULES_DIR),
            line: 0,
            column: 0,
            message: format!("cannot read the rules directory: {error}"),
        }),
    }
    rule_files.sort();

    let mut rules = Vec::new();
    let mut rule_ids: BTreeMap<String, (PathBuf, Location)> = BTreeMap::new();
    for file in &rule_files {
        let Some(text) = read(dir, file, &mut hasher, &mut errors) else {
            continue;
        };
        let Some(doc) = parse::<RulesDoc>(file, &text, &mut errors) else {
            continue;
        };
        let mut report = Report {
            file,
            errors: &mut errors,
        };
        let Some(catalogue) = &catalogue else {
            continue;
        };
        for rule in doc.rules {
            let id = &rule.value.id;
            if let Some((first_file, first)) = rule_ids.get(&id.value) {
                report.at(
                    id.referenced,
                    format!(
                        "duplicate rule id {:?}: already used at {}:{}:{}",
                        id.value,
                        first_file.display(),
                        first.line(),
                        first.column()
                    ),
                );
            } else {
                rule_ids.insert(id.value.clone(), (file.clone(), id.referenced));
            }
            if let Some(rule) = build_rule(rule, catalogue, &mut report) {
                rules.push(rule);
            }
        }
    }

    match catalogue {
        Some(catalogue) if errors.is_empty() => Ok(Store {
            catalogue: catalogue.catalogue,
            rules,
            revision: PolicyRevision::from_digest(&hasher.finalize()),
        }),
        _ => Err(LoadErrors(errors)),
    }
}

/// Reads a file (bounded in size, UTF-8) and feeds it, with its name, into the revision hash.
fn read(
    dir: &Path,
    file: &Path,
    hasher: &mut Sha256,
    errors: &mut Vec<PolicyError>,
) -> Option<String> {
    let mut report = Report { file, errors };
    let path = dir.join(file);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            report.whole(format!(
                "file is {} bytes; policy files are limited to {MAX_FILE_BYTES}",
                meta.len()
            ));
            return None;
        }
        Ok(_) => {}
        Err(error) => {
            report.whole(format!("cannot read: {error}"));
            return None;
        }
    }
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => {
            report.whole(format!("cannot read: {error}"));
            return None;
        }
    };
    // The revision covers every file's name and exact bytes, in name order.
    let name = file.to_string_lossy();
    hasher.update((name.len() as u64).to_be_bytes());
    hasher.update(name.as_bytes());
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(&bytes);
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(error) => {
            report.whole(format!(
                "not valid UTF-8 (first bad byte at offset {})",
                error.utf8_error().valid_up_to()
            ));
            None
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<T> {
    let options = serde_saphyr::options! { with_snippet: false };
    match serde_saphyr::from_str_with_options::<T>(text, options) {
        Ok(doc) => Some(doc),
        Err(error) => {
            let (line, column) = error
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((0, 0));
            errors.push(PolicyError {
                file: file.to_owned(),
                line,
                column,
                message: first_line(&error.to_string()),
            });
            None
        }
    }
}

/// serde-saphyr's message, without the location it also prints (we print our own).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    match line.find(" at line ") {
        Some(cut) => line[..cut].to_owned(),
        None => line.to_owned(),
    }
}

/// The catalogue and its groups, which rules may name instead of an agency.
struct BuiltCatalogue {
    catalogue: Catalogue,
    groups: BTreeMap<String, Vec<AgencyId>>,
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

const EMIRATES: &[&str] = &[
    "abu-dhabi",
    "dubai",
    "sharjah",
    "ajman",
    "umm-al-quwain",
    "ras-al-khaimah",
    "fujairah",
];

fn build_catalogue(doc: CatalogueDoc, report: &mut Report<'_>) -> BuiltCatalogue {
    use crate::model::Level;

    let federation = doc.federation.value.clone();
    if !is_name(&federation) {
        report.at(
            doc.federation.referenced,
            "federation must be a trust domain of lowercase letters, digits, '.', '-', '_'",
        );
    }
    let mut agencies = BTreeMap::new();
    for (id, agency) in doc.agencies {
        let at = agency.referenced;
        let agency = agency.value;
        if !is_name(&id) {
            report.at(
                at,
                format!("agency id {id:?}: use lowercase letters, digits, '-', '.', '_'"),
            );
        }
        match (agency.level, &agency.emirate) {
            (Level::Local, None) => {
                report.at(at, format!("agency {id:?} is local: name its emirate"))
            }
            (Level::Federal, Some(emirate)) => report.at(
                emirate.referenced,
                format!("agency {id:?} is federal: it has no emirate"),
            ),
            _ => {}
        }
        if let Some(emirate) = &agency.emirate
            && !EMIRATES.contains(&emirate.value.as_str())
        {
            report.at(
                emirate.referenced,
                format!("unknown emirate {:?}; one of {EMIRATES:?}", emirate.value),
            );
        }
        if let Some(endpoint) = &agency.endpoint
            && !endpoint.value.starts_with("https://")
        {
            report.at(endpoint.referenced, "an endpoint must be an https:// URL");
        }
        let id = AgencyId::new(id);
        agencies.insert(
            id.clone(),
            Agency {
                id,
                name: agency.name,
                level: agency.level,
                emirate: agency.emirate.map(|e| e.value),
                endpoint: agency.endpoint.map(|e| e.value),
            },
        );
    }

    let mut groups = BTreeMap::new();
    for (id, group) in doc.groups {
        if agencies.contains_key(id.as_str()) {
            report.at(
                group.referenced,
                format!("group {id:?} has the name of an agency; rules could not tell them apart"),
            );
        }
        let members = group_members(&group, &agencies, report);
        if members.is_empty() {
            report.at(group.referenced, format!("group {id:?} has no members"));
        }
        groups.insert(id, members);
    }

    let mut datasets = BTreeMap::new();
    for (id, dataset) in doc.datasets {
        let at = dataset.referenced;
        let dataset = dataset.value;
        if !is_name(&id) {
            report.at(
                at,
                format!("dataset name {id:?}: use lowercase letters, digits, '-', '.', '_'"),
            );
        }
        let provider = &dataset.provider;
        match agencies.get(provider.value.as_str()) {
            None => report.at(
                provider.referenced,
                format!(
                    "dataset {id:?}: unknown provider agency {:?}",
                    provider.value
                ),
            ),
            Some(agency) if agency.endpoint.is_none() => report.at(
                provider.referenced,
                format!(
                    "dataset {id:?}: provider {:?} has no endpoint in the catalogue",
                    provider.value
                ),
            ),
            Some(_) => {}
        }
        if dataset.fields.is_empty() {
            report.at(at, format!("dataset {id:?} has no fields"));
        }
        let mut fields = BTreeMap::new();
        for (name, field) in dataset.fields {
            if !is_name(&name) || name == "subject" {
                report.at(
                    field.referenced,
                    format!("field name {name:?}: use lowercase letters, digits, '-', '.', '_' (and not \"subject\")"),
                );
            }
            fields.insert(
                name,
                Field {
                    field_type: field.value.field_type,
                    class: field.value.class,
                },
            );
        }
        let id = DatasetId::new(id);
        datasets.insert(
            id.clone(),
            Dataset {
                id,
                provider: AgencyId::new(dataset.provider.value),
                description: dataset.description,
                fields,
            },
        );
    }

    let mut purposes = BTreeMap::new();
    for (id, purpose) in doc.purposes {
        if !is_name(&id) {
            report.at(
                purpose.referenced,
                format!("purpose {id:?}: use lowercase letters, digits, '-', '.', '_'"),
            );
        }
        let id = PurposeId::new(id);
        purposes.insert(
            id.clone(),
            Purpose {
                id,
                code: purpose.value.code,
                description: purpose.value.description,
            },
        );
    }

    BuiltCatalogue {
        catalogue: Catalogue {
            federation,
            agencies,
            datasets,
            purposes,
        },
        groups,
    }
}

/// The agencies a group selects: those matching every selector it gives.
fn group_members(
    group: &Spanned<GroupDoc>,
    agencies: &BTreeMap<AgencyId, Agency>,
    report: &mut Report<'_>,
) -> Vec<AgencyId> {
    let doc = &group.value;
    if doc.level.is_none() && doc.emirate.is_none() && doc.members.is_none() {
        report.at(
            group.referenced,
            "a group selects agencies by `level`, `emirate` or `members`; it gives none",
        );
        return Vec::new();
    }
    let listed: Option<BTreeSet<&str>> = doc.members.as_ref().map(|members| {
        for member in members {
            if !agencies.contains_key(member.value.as_str()) {
                report.at(
                    member.referenced,
                    format!("unknown agency {:?}", member.value),
                );
            }
        }
        members.iter().map(|m| m.value.as_str()).collect()
    });
    agencies
        .values()
        .filter(|agency| doc.level.is_none_or(|level| agency.level == level))
        .filter(|agency| {
            doc.emirate
                .as_ref()
                .is_none_or(|e| agency.emirate.as_deref() == Some(e.value.as_str()))
        })
        .filter(|agency| {
            listed
                .as_ref()
                .is_none_or(|listed| listed.contains(agency.id.as_str()))
        })
        .map(|agency| agency.id.clone())
        .collect()
}

fn build_rule(
    rule: Spanned<crate::source::RuleDoc>,
    built: &BuiltCatalogue,
    report: &mut Report<'_>,
) -> Option<Rule> {
    let doc = rule.value;
    let catalogue = &built.catalogue;
    let errors_before = report.errors.len();
    let id = &doc.id;
    if !is_name(&id.value) {
        report.at(
            id.referenced,
            "rule id: use lowercase letters, digits, '-', '.', '_'",
        );
    }
    let consumers = if let Some(agency) = catalogue.agencies.get(doc.consumer.value.as_str()) {
        vec![agency.id.clone()]
    } else if let Some(members) = built.groups.get(&doc.consumer.value) {
        members.clone()
    } else {
        report.at(
            doc.consumer.referenced,
            format!(
                "unknown consumer {:?}: name an agency or a group of the catalogue",
                doc.consumer.value
            ),
        );
        Vec::new()
    };
    let dataset = catalogue.datasets.get(doc.dataset.value.as_str());
    if dataset.is_none() {
        report.at(
            doc.dataset.referenced,
            format!("unknown dataset {:?}", doc.dataset.value),
        );
    }
    if !catalogue.purposes.contains_key(doc.purpose.value.as_str()) {
        report.at(
            doc.purpose.referenced,
            format!(
                "unknown purpose {:?}: add it to the catalogue's purposes first",
                doc.purpose.value
            ),
        );
    }
    if doc.fields.is_empty() {
        report.at(rule.referenced, "the rule lists no fields");
    }
    let mut fields = BTreeMap::new();
    for (name, treatment) in doc.fields {
        if let Some(dataset) = dataset
            && !dataset.fields.contains_key(&name)
        {
            report.at(
                treatment.referenced,
                format!("dataset {:?} has no field {name:?}", dataset.id.as_str()),
            );
        }
        let treatment = match treatment.value.as_str() {
            "allow" => Treatment::Allow,
            "deny" => Treatment::Deny,
            other @ ("mask" | "hash" | "derive" | "generalize") => {
                report.at(
                    treatment.referenced,
                    format!("transform {other:?} is not implemented yet; use allow or deny"),
                );
                continue;
            }
            other => {
                report.at(
                    treatment.referenced,
                    format!("unknown treatment {other:?}; use allow or deny"),
                );
                continue;
            }
        };
        fields.insert(name, treatment);
    }
    if report.errors.len() > errors_before {
        return None;
    }
    Some(Rule {
        id: RuleId::new(doc.id.value),
        consumers,
        dataset: DatasetId::new(doc.dataset.value),
        purpose: PurposeId::new(doc.purpose.value),
        fields,
    })
}
