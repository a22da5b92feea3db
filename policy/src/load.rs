//! Reading a policy directory: parse every file, validate everything, report every error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

use time::Date;

use crate::error::{LoadErrors, PolicyError};
use crate::model::{
    Agency, AgencyId, Catalogue, Dataset, DatasetId, Field, PolicyRevision, Purpose, PurposeId,
    RuleId,
};
use crate::rule::{LegalBasis, Limit, Period, Rule, RuleStatus, SourceLocation, Treatment, Window};
use crate::source::{CatalogueDoc, GroupDoc, RuleDoc, RulesDoc, TreatmentDoc};

/// A policy file larger than this is refused before it is parsed.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;
/// At most this many rule files.
const MAX_RULE_FILES: usize = 10_000;
const CATALOGUE_FILE: &str = "catalogue.yaml";
const RULES_DIR: &str = "rules";

/// A validated store: the catalogue, its groups, the rules, and the revision of the content.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) catalogue: Catalogue,
    /// Group or agency id -> the agencies it names.
    pub(crate) members: BTreeMap<String, Vec<AgencyId>>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) revision: PolicyRevision,
}

impl Store {
    /// The agencies a rule's consumer names.
    pub(crate) fn members(&self, consumer: &str) -> &[AgencyId] {
        self.members.get(consumer).map_or(&[], Vec::as_slice)
    }
}

/// Collects errors against one file.
pub(crate) struct Report<'a> {
    pub(crate) file: &'a Path,
    pub(crate) errors: &'a mut Vec<PolicyError>,
}

impl Report<'_> {
    pub(crate) fn at(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            line: location.line() as u32,
            column: location.column() as u32,
            message: message.into(),
        });
    }

    pub(crate) fn whole(&mut self, message: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}

/// The files of a policy store, read but not yet parsed: `catalogue.yaml` and `rules/*.yaml`
/// (also `*.yml`), by relative path. Their canonical content, which the revision hashes and a
/// signature signs, is the domain tag `isnad-policy-v1` followed, for every file in path order,
/// by the path's length (u64, big-endian), the path (UTF-8, `/`-separated), the content's
/// length and the content's exact bytes. Comments and formatting are part of it on purpose: a
/// reviewer approves the bytes in the pull request, so the revision and the signature name
/// exactly those bytes. `tests/` and `policy.sig` are not part of the content.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: BTreeMap<String, Vec<u8>>,
}

impl Sources {
    /// Reads the store in `dir`. Fails with every file it could not read.
    pub fn read_dir(dir: &Path) -> Result<Sources, LoadErrors> {
        let mut errors = Vec::new();
        let mut sources = Sources::default();
        let mut names = vec![CATALOGUE_FILE.to_owned()];
        match std::fs::read_dir(dir.join(RULES_DIR)) {
            Ok(entries) => {
                let mut rules = Vec::new();
                for entry in entries {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(error) => {
                            errors.push(whole_file(RULES_DIR, format!("cannot list: {error}")));
                            continue;
                        }
                    };
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else {
                        errors.push(whole_file(
                            RULES_DIR,
                            format!("file name {name:?} is not UTF-8; rename it"),
                        ));
                        continue;
                    };
                    if name.ends_with(".yaml") || name.ends_with(".yml") {
                        rules.push(format!("{RULES_DIR}/{name}"));
                    }
                }
                if rules.len() > MAX_RULE_FILES {
                    errors.push(whole_file(
                        RULES_DIR,
                        format!(
                            "{} rule files; a store is limited to {MAX_RULE_FILES}",
                            rules.len()
                        ),
                    ));
                    rules.clear();
                }
                names.extend(rules);
            }
            Err(error) => errors.push(whole_file(
                RULES_DIR,
                format!("cannot read the rules directory: {error}"),
            )),
        }
        for name in names {
            let path = dir.join(&name);
            let read = std::fs::File::open(&path).and_then(|file| {
                use std::io::Read;
                let mut bytes = Vec::new();
                // One byte more than the limit tells a file over it, without reading it all.
                file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
                Ok(bytes)
            });
            match read {
                Ok(bytes) if bytes.len() as u64 > MAX_FILE_BYTES => errors.push(whole_file(
                    &name,
                    format!("larger than {MAX_FILE_BYTES} bytes, the limit for a policy file"),
                )),
                Ok(bytes) => {
                    sources.files.insert(name, bytes);
                }
                Err(error) => errors.push(whole_file(&name, format!("cannot read: {error}"))),
            }
        }
        if errors.is_empty() {
            Ok(sources)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// A store from memory: `catalogue.yaml` and files named `rules/<name>.yaml`. For tests and
    /// fuzzing; other names are ignored.
    pub fn from_files<N: Into<String>, B: Into<Vec<u8>>>(
        files: impl IntoIterator<Item = (N, B)>,
    ) -> Sources {
        let files = files
            .into_iter()
            .map(|(name, bytes)| (name.into(), bytes.into()))
            .filter(|(name, _)| {
                name == CATALOGUE_FILE
                    || name
                        .strip_prefix("rules/")
                        .is_some_and(|rest| !rest.contains('/'))
            })
            .collect();
        Sources { files }
    }

    /// The SHA-256 of the canonical content.
    pub fn revision(&self) -> PolicyRevision {
        let mut hasher = Sha256::new();
        hasher.update(b"isnad-policy-v1");
        for (name, bytes) in &self.files {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        PolicyRevision::from_digest(hasher.finalize().into())
    }

    /// The files, by relative path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }
}

fn whole_file(file: &str, message: String) -> PolicyError {
    PolicyError {
        file: PathBuf::from(file),
        line: 0,
        column: 0,
        message,
    }
}

/// Parses and validates `sources` as of `today` (windows that ended before it are errors), every
/// rule on its own; rules that contradict each other are found by [`crate::conflict::check`].
pub(crate) fn load(sources: &Sources, today: Date) -> Result<Store, LoadErrors> {
    // Hashing every file is independent of the catalogue, which the rules need first: do both
    // at once.
    let (revision, (catalogue, mut errors)) = std::thread::scope(|scope| {
        let revision = scope.spawn(|| sources.revision());
        let catalogue = read_catalogue(sources);
        let revision = revision
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (revision, catalogue)
    });

    let mut rules = Vec::new();
    let mut rule_ids: BTreeMap<String, SourceLocation> = BTreeMap::new();
    for file in read_rule_files(sources, catalogue.as_ref(), today) {
        for (id, at) in file.ids {
            match rule_ids.get(&id) {
                Some(first) => errors.push(PolicyError {
                    file: at.file.clone(),
                    line: at.line,
                    column: at.column,
                    message: format!(
                        "duplicate rule id {id:?}: already used at {first}; rule ids are stable \
                         names that decisions and audit records refer to, so each must be unique"
                    ),
                }),
                None => {
                    rule_ids.insert(id, at);
                }
            }
        }
        errors.extend(file.errors);
        rules.extend(file.rules);
    }

    let Some(built) = catalogue.filter(|_| errors.is_empty()) else {
        return Err(in_file_order(errors));
    };
    let mut members = built.groups;
    for id in built.catalogue.agencies.keys() {
        members.insert(id.as_str().to_owned(), vec![id.clone()]);
    }
    let store = Store {
        catalogue: built.catalogue,
        members,
        rules,
        revision,
    };
    Ok(store)
}

/// The catalogue, built and checked, and its errors.
fn read_catalogue(sources: &Sources) -> (Option<BuiltCatalogue>, Vec<PolicyError>) {
    let mut errors = Vec::new();
    let catalogue_path = PathBuf::from(CATALOGUE_FILE);
    let catalogue = match sources.files.get(CATALOGUE_FILE) {
        Some(bytes) => text(&catalogue_path, bytes, &mut errors)
            .and_then(|text| parse::<CatalogueDoc>(&catalogue_path, text, &mut errors))
            .map(|doc| {
                let mut report = Report {
                    file: &catalogue_path,
                    errors: &mut errors,
                };
                build_catalogue(doc, &mut report)
            }),
        None => {
            errors.push(whole_file(
                CATALOGUE_FILE,
                "missing: a store needs a catalogue".into(),
            ));
            None
        }
    };
    (catalogue, errors)
}

/// The errors by file, line and column, as a person fixes them; files are checked in parallel,
/// so they are found in no useful order.
pub(crate) fn in_file_order(mut errors: Vec<PolicyError>) -> LoadErrors {
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    LoadErrors(errors)
}

pub(crate) fn location(file: &Path, at: Location) -> SourceLocation {
    SourceLocation {
        file: file.to_owned(),
        line: at.line() as u32,
        column: at.column() as u32,
    }
}

/// One rule file, parsed and validated.
struct RuleFile {
    /// Every rule's id, with where it is written, for the duplicate check across files.
    ids: Vec<(String, SourceLocation)>,
    /// The rules without errors.
    rules: Vec<Rule>,
    errors: Vec<PolicyError>,
}

/// Every rule file parsed and, when there is a catalogue to check them against, validated, in
/// path order. Files are independent, and parsing them is most of the time a large store takes to
/// load, so they are read on up to one thread per core.
fn read_rule_files(
    sources: &Sources,
    catalogue: Option<&BuiltCatalogue>,
    today: Date,
) -> Vec<RuleFile> {
    let files: Vec<(&String, &Vec<u8>)> = sources
        .files
        .iter()
        .filter(|(name, _)| name.as_str() != CATALOGUE_FILE)
        .collect();
    let read_one = |(name, bytes): &(&String, &Vec<u8>)| {
        read_rule_file(Path::new(name.as_str()), bytes, catalogue, today)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len());
    if threads <= 1 {
        return files.iter().map(read_one).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(read_one).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn read_rule_file(
    file: &Path,
    bytes: &[u8],
    catalogue: Option<&BuiltCatalogue>,
    today: Date,
) -> RuleFile {
    let mut read = RuleFile {
        ids: Vec::new(),
        rules: Vec::new(),
        errors: Vec::new(),
    };
    let Some(doc) = text(file, bytes, &mut read.errors)
        .and_then(|text| parse::<RulesDoc>(file, text, &mut read.errors))
    else {
        return read;
    };
    let Some(catalogue) = catalogue else {
        return read;
    };
    let mut report = Report {
        file,
        errors: &mut read.errors,
    };
    for rule in doc.rules {
        let id = &rule.value.id;
        read.ids
            .push((id.value.clone(), location(file, id.referenced)));
        if let Some(rule) = build_rule(rule, catalogue, today, &mut report) {
            read.rules.push(rule);
        }
    }
    read
}

/// The file as UTF-8 text, if it is within the size limit.
fn text<'a>(file: &Path, bytes: &'a [u8], errors: &mut Vec<PolicyError>) -> Option<&'a str> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        Report { file, errors }.whole(format!(
            "larger than {MAX_FILE_BYTES} bytes, the limit for a policy file"
        ));
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(error) => {
            Report { file, errors }.whole(format!(
                "not valid UTF-8 (first bad byte at offset {}); policy files are UTF-8 text",
                error.valid_up_to()
            ));
            None
        }
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<T> {
    if text.trim().is_empty() {
        errors.push(PolicyError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: "the file is empty".into(),
        });
        return None;
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 32;
    budget.max_nodes = 2_000_000;
    budget.max_documents = 1;
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        budget: Some(budget),
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // A merge key (`<<`) could override a key written beside it, a `deny` for example,
        // and a tag (`!deny allow`) could make a reviewer read what the parser ignores: policy
        // files say everything in plain keys and values.
        merge_keys: serde_saphyr::MergeKeyPolicy::Error,
        reject_unsupported_tags: true,
        ignore_binary_tag_for_string: true,
    };
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
                message: readable(&error),
            });
            None
        }
    }
}

/// The parser's message for a policy author: its limit messages in words, and no advice
/// meant for the parser's own user (its duplicate key message suggests a parser option).
fn readable(error: &serde_saphyr::Error) -> String {
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = error {
        return match key {
            Some(key) => format!("duplicate mapping key: {key} (a key is written once)"),
            None => "duplicate mapping key (a key is written once)".to_owned(),
        };
    }
    let message = first_line(&error.to_string());
    if !message.contains("budget breached") {
        return message;
    }
    let limit = if message.contains("Depth") {
        "nesting deeper than 32 levels"
    } else if message.contains("Documents") {
        "more than one YAML document (`---`) in a file"
    } else {
        "too many YAML nodes, aliases or anchors"
    };
    format!("the file exceeds a parser limit: {limit} ({message})")
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
pub(crate) struct BuiltCatalogue {
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

/// The most requests a `limit:` may allow per window: beyond it a limit protects nothing.
const MAX_LIMIT_REQUESTS: u32 = 1_000_000;

fn build_rule(
    rule: Spanned<RuleDoc>,
    built: &BuiltCatalogue,
    today: Date,
    report: &mut Report<'_>,
) -> Option<Rule> {
    let at = rule.referenced;
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
    if !catalogue.agencies.contains_key(doc.consumer.value.as_str())
        && !built.groups.contains_key(&doc.consumer.value)
    {
        report.at(
            doc.consumer.referenced,
            format!(
                "unknown consumer {:?}: name an agency or a group of the catalogue",
                doc.consumer.value
            ),
        );
    }
    let dataset = catalogue.datasets.get(doc.dataset.value.as_str());
    if dataset.is_none() {
        report.at(
            doc.dataset.referenced,
            format!(
                "unknown dataset {:?}; the catalogue has {}",
                doc.dataset.value,
                list(catalogue.datasets.keys().map(|d| d.as_str()))
            ),
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

    let reference = doc
        .reference
        .as_ref()
        .map(|r| r.value.trim().to_owned())
        .filter(|r| !r.is_empty());
    let releases = doc
        .fields
        .values()
        .any(|t| !matches!(&t.value, TreatmentDoc::Word(w) if w == "deny"));
    let basis = match (&doc.legal_basis, reference) {
        (None, _) => {
            if releases {
                report.at(
                    at,
                    "the rule releases fields, so it needs a `legal_basis:` \
                     (consent, statute or court_order)",
                );
            }
            None
        }
        (Some(basis), reference) => match (basis.value.as_str(), reference) {
            ("consent", _) => Some(LegalBasis::Consent),
            ("statute", Some(reference)) => Some(LegalBasis::Statute { reference }),
            ("court_order", Some(reference)) => Some(LegalBasis::CourtOrder { reference }),
            (name @ ("statute" | "court_order"), None) => {
                report.at(
                    basis.referenced,
                    format!(
                        "legal basis {name} needs a `reference:` naming the {}",
                        if name == "statute" {
                            "law and article"
                        } else {
                            "court order"
                        }
                    ),
                );
                None
            }
            (other, _) => {
                report.at(
                    basis.referenced,
                    format!("unknown legal basis {other:?}; use consent, statute or court_order"),
                );
                None
            }
        },
    };
    let consent_required = match (&basis, &doc.consent_required) {
        (Some(LegalBasis::Consent), Some(required)) if !required.value => {
            report.at(
                required.referenced,
                "a rule whose legal basis is consent always requires consent; \
                 remove `consent_required: false` or name the statute that allows the sharing",
            );
            true
        }
        (_, Some(required)) => required.value,
        (basis, None) => matches!(basis, Some(LegalBasis::Consent)),
    };

    let mut day = |field: &Option<Spanned<String>>, key: &str| -> Option<Date> {
        let spanned = field.as_ref()?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match Date::parse(spanned.value.trim(), &format) {
            Ok(day) => Some(day),
            Err(_) => {
                report.at(
                    spanned.referenced,
                    format!("{key} {:?} is not a date; write YYYY-MM-DD", spanned.value),
                );
                None
            }
        }
    };
    let window = Window {
        from: day(&doc.valid_from, "valid_from"),
        until: day(&doc.valid_until, "valid_until"),
    };
    if let (Some(from), Some(until)) = (window.from, window.until)
        && until < from
    {
        let at = doc.valid_until.as_ref().map_or(at, |u| u.referenced);
        report.at(
            at,
            format!("valid_until {until} is before valid_from {from}: the rule would never apply"),
        );
    }
    if let Some(until) = window.until
        && until < today
    {
        let at = doc.valid_until.as_ref().map_or(at, |u| u.referenced);
        report.at(
            at,
            format!(
                "the rule expired on {until} (today is {today}); remove it, \
                 or extend valid_until if its legal basis still holds"
            ),
        );
    }

    let status = match doc.status.as_ref().map(|s| s.value.as_str()) {
        None | Some("enforce") => RuleStatus::Enforce,
        Some("shadow") => RuleStatus::Shadow,
        Some(other) => {
            let at = doc.status.as_ref().map_or(at, |s| s.referenced);
            report.at(
                at,
                format!("unknown status {other:?}; use enforce or shadow"),
            );
            RuleStatus::Enforce
        }
    };

    let limit = doc.limit.as_ref().and_then(|limit| {
        if !releases {
            report.at(
                limit.referenced,
                "the rule releases nothing, so a `limit:` would never apply; remove it",
            );
        }
        let requests = &limit.value.requests;
        let count = u32::try_from(requests.value)
            .ok()
            .filter(|count| (1..=MAX_LIMIT_REQUESTS).contains(count));
        if count.is_none() {
            report.at(
                requests.referenced,
                format!(
                    "limit requests {} is out of range: allow from 1 to {MAX_LIMIT_REQUESTS} \
                     requests per window",
                    requests.value
                ),
            );
        }
        let per = &limit.value.per;
        let period = Period::parse(per.value.trim());
        if period.is_none() {
            report.at(
                per.referenced,
                format!(
                    "unknown limit period {:?}; use minute, hour or day",
                    per.value
                ),
            );
        }
        Some(Limit {
            requests: count?,
            per: period?,
        })
    });

    if doc.fields.is_empty() {
        report.at(at, "the rule lists no fields");
    }
    let rule_location = location(report.file, id.referenced);
    let mut fields = Vec::with_capacity(doc.fields.len());
    for (name, treatment) in doc.fields {
        let field = dataset.and_then(|dataset| {
            let field = dataset.fields.get(&name);
            if field.is_none() {
                report.at(
                    treatment.referenced,
                    format!(
                        "dataset {:?} has no field {name:?}; it has {}",
                        dataset.id.as_str(),
                        list(dataset.fields.keys().map(String::as_str))
                    ),
                );
            }
            field
        });
        match crate::treatment::from_doc(&treatment.value) {
            Ok(parsed) => {
                if let (Treatment::Transform(transform), Some(field)) = (&parsed, field)
                    && !transform.fits(field.field_type)
                {
                    report.at(
                        treatment.referenced,
                        format!(
                            "{transform} does not fit field {name:?}, of type {}; \
                             it applies to {} fields",
                            field.field_type.name(),
                            transform.fitting_types()
                        ),
                    );
                }
                fields.push((name, parsed));
            }
            Err(message) => report.at(treatment.referenced, format!("field {name:?}: {message}")),
        }
    }

    if report.errors.len() > errors_before {
        return None;
    }
    Some(Rule {
        id: RuleId::new(doc.id.value),
        description: doc.description.trim().to_owned(),
        consumer: doc.consumer.value,
        dataset: DatasetId::new(doc.dataset.value),
        purpose: PurposeId::new(doc.purpose.value),
        basis,
        consent_required,
        window,
        limit,
        status,
        fields,
        location: rule_location,
    })
}

/// `a, b, c` for error messages, shortened when long.
fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "none".to_owned();
    }
    let shown = names
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 12 {
        format!("{shown}, ... ({} in all)", names.len())
    } else {
        shown
    }
}
