//! A validated rule: who may receive which fields of a dataset, for which purpose, on which legal
//! basis, when, and in which form.

use std::fmt;
use std::path::PathBuf;

use time::Date;

use crate::model::{DatasetId, PurposeId, RuleId};

/// Why the law lets the data be shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LegalBasis {
    /// The citizen agreed: the request must carry their consent.
    Consent,
    /// A law obliges or allows the sharing; `reference` names it (article and law).
    Statute {
        /// The provision, e.g. "Federal Decree-Law No. 45 of 2021, art. 4(2)".
        reference: String,
    },
    /// A court ordered it; `reference` names the order.
    CourtOrder {
        /// The case or order number.
        reference: String,
    },
}

impl LegalBasis {
    /// The stable code: `consent`, `statute` or `court_order`.
    pub fn code(&self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Statute { .. } => "statute",
            LegalBasis::CourtOrder { .. } => "court_order",
        }
    }

    /// The reference of a statute or court order.
    pub fn reference(&self) -> Option<&str> {
        match self {
            LegalBasis::Consent => None,
            LegalBasis::Statute { reference } | LegalBasis::CourtOrder { reference } => {
                Some(reference)
            }
        }
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reference() {
            Some(reference) => write!(f, "{} ({reference})", self.code()),
            None => f.write_str(self.code()),
        }
    }
}

/// Whether a rule decides requests or is only being tried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleStatus {
    /// The rule decides.
    Enforce,
    /// The rule is evaluated and its would-be decision reported beside the enforced one, never
    /// enforced: how a change is tried on live traffic before it is rolled out.
    Shadow,
}

impl RuleStatus {
    /// `enforce` or `shadow`.
    pub fn code(self) -> &'static str {
        match self {
            RuleStatus::Enforce => "enforce",
            RuleStatus::Shadow => "shadow",
        }
    }
}

/// The days on which a rule applies, both ends included, in UTC. Open where `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Window {
    /// The first day.
    pub from: Option<Date>,
    /// The last day.
    pub until: Option<Date>,
}

impl Window {
    /// Whether `day` is in the window.
    pub fn contains(&self, day: Date) -> bool {
        self.from.is_none_or(|from| from <= day) && self.until.is_none_or(|until| day <= until)
    }

    /// Whether some day is in both windows.
    pub fn overlaps(&self, other: &Window) -> bool {
        let starts = match (self.from, other.from) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let ends = match (self.until, other.until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (starts, ends) {
            (Some(start), Some(end)) => start <= end,
            _ => true,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.until) {
            (None, None) => f.write_str("always"),
            (Some(from), None) => write!(f, "from {from}"),
            (None, Some(until)) => write!(f, "until {until}"),
            (Some(from), Some(until)) => write!(f, "{from} to {until}"),
        }
    }
}

/// Which characters of a string `mask` keeps; the others become `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    /// Keep the last N characters.
    KeepLast(u32),
    /// Keep the first N characters.
    KeepFirst(u32),
}

/// How `generalize` coarsens a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Generalization {
    /// A date to its year, `YYYY` (a string).
    Year,
    /// A date to its month, `YYYY-MM` (a string).
    Month,
    /// A number to the band of width `step` it falls in, `"lo-hi"` (a string), e.g. with step
    /// 1000, 4250 becomes `4000-4999`.
    Step(i64),
    /// A number to the band between two consecutive bounds (ascending), `"lo-hi"`, or `"<lo"`
    /// below the first and `">=hi"` from the last.
    Bands(Vec<i64>),
}

impl Eq for Generalization {}

impl std::hash::Hash for Generalization {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Generalization::Year | Generalization::Month => {}
            Generalization::Step(step) => step.hash(state),
            Generalization::Bands(bounds) => bounds.hash(state),
        }
    }
}

/// A release in another form than the provider holds it. The gateway applies it; the policy
/// only names it. The text form (`Display`) is what `explain`, `diff`, test cases and responses
/// show, and what [`Transform::parse`] reads back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transform {
    /// Replace all characters but some with `*` (strings).
    Mask(Mask),
    /// HMAC-SHA-256 under a key of the consumer's own, as lowercase hex: the consumer can match
    /// values without learning them, and two consumers cannot link their results.
    Hash,
    /// Whether the person born on this date is at least N years old today (date -> bool).
    AgeOver(u32),
    /// The year of a date (date -> int).
    YearOf,
    /// A coarser value (see [`Generalization`]).
    Generalize(Generalization),
}

impl Transform {
    /// Whether the transform applies to values of `field_type`.
    pub fn fits(&self, field_type: crate::FieldType) -> bool {
        use crate::FieldType as T;
        match self {
            Transform::Mask(_) => field_type == T::String,
            Transform::Hash => matches!(field_type, T::String | T::Int | T::Date | T::Bytes),
            Transform::AgeOver(_) | Transform::YearOf => field_type == T::Date,
            Transform::Generalize(Generalization::Year | Generalization::Month) => {
                field_type == T::Date
            }
            Transform::Generalize(Generalization::Step(_) | Generalization::Bands(_)) => {
                matches!(field_type, T::Int | T::Double)
            }
        }
    }

    /// The types it applies to, for error messages.
    pub(crate) fn fitting_types(&self) -> &'static str {
        match self {
            Transform::Mask(_) => "string",
            Transform::Hash => "string, int, date or bytes",
            Transform::AgeOver(_) | Transform::YearOf => "date",
            Transform::Generalize(Generalization::Year | Generalization::Month) => "date",
            Transform::Generalize(_) => "int or double",
        }
    }

    /// Reads the text form, e.g. `mask(keep_last=4)` or `age_over(18)`.
    pub fn parse(text: &str) -> Option<Transform> {
        let text = text.trim();
        let (name, args) = match text.split_once('(') {
            Some((name, rest)) => (name.trim(), Some(rest.strip_suffix(')')?.trim())),
            None => (text, None),
        };
        let number = |s: &str| canonical::<u32>(s.trim());
        match (name, args) {
            ("hash", None) => Some(Transform::Hash),
            ("year_of", None) => Some(Transform::YearOf),
            ("age_over", Some(n)) => number(n).map(Transform::AgeOver),
            ("mask", Some(args)) => {
                let (key, n) = args.split_once('=')?;
                match key.trim() {
                    "keep_last" => Some(Transform::Mask(Mask::KeepLast(number(n)?))),
                    "keep_first" => Some(Transform::Mask(Mask::KeepFirst(number(n)?))),
                    _ => None,
                }
            }
            ("generalize", Some("year")) => Some(Transform::Generalize(Generalization::Year)),
            ("generalize", Some("month")) => Some(Transform::Generalize(Generalization::Month)),
            ("generalize", Some(args)) => {
                let (key, value) = args.split_once('=')?;
                match key.trim() {
                    "step" => canonical(value.trim())
                        .map(|step| Transform::Generalize(Generalization::Step(step))),
                    "bands" => {
                        let list = value.trim().strip_prefix('[')?.strip_suffix(']')?;
                        let bounds = list
                            .split(',')
                            .map(|b| canonical(b.trim()))
                            .collect::<Option<Vec<i64>>>()?;
                        Some(Transform::Generalize(Generalization::Bands(bounds)))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// `text` as a number, only in the one form the number prints as: no sign of a positive
/// number, no leading zero, so that a transform is written one way (`age_over(18)`, never
/// `age_over(+18)` or `age_over(018)`).
fn canonical<N: std::str::FromStr + fmt::Display>(text: &str) -> Option<N> {
    let number: N = text.parse().ok()?;
    (number.to_string() == text).then_some(number)
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Mask(Mask::KeepLast(n)) => write!(f, "mask(keep_last={n})"),
            Transform::Mask(Mask::KeepFirst(n)) => write!(f, "mask(keep_first={n})"),
            Transform::Hash => f.write_str("hash"),
            Transform::AgeOver(n) => write!(f, "age_over({n})"),
            Transform::YearOf => f.write_str("year_of"),
            Transform::Generalize(Generalization::Year) => f.write_str("generalize(year)"),
            Transform::Generalize(Generalization::Month) => f.write_str("generalize(month)"),
            Transform::Generalize(Generalization::Step(step)) => {
                write!(f, "generalize(step={step})")
            }
            Transform::Generalize(Generalization::Bands(bounds)) => {
                f.write_str("generalize(bands=[")?;
                for (i, bound) in bounds.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{bound}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// What a rule does with a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Treatment {
    /// Release as held.
    Allow,
    /// Withhold, whatever other rules say.
    Deny,
    /// Release in another form.
    Transform(Transform),
}

impl Treatment {
    /// Reads the text form: `allow`, `deny` or a transform.
    pub fn parse(text: &str) -> Option<Treatment> {
        match text.trim() {
            "allow" => Some(Treatment::Allow),
            "deny" => Some(Treatment::Deny),
            other => Transform::parse(other).map(Treatment::Transform),
        }
    }
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Treatment::Allow => f.write_str("allow"),
            Treatment::Deny => f.write_str("deny"),
            Treatment::Transform(transform) => transform.fmt(f),
        }
    }
}

/// A frequency limit: at most `requests` requests per `per` from one consumer about one subject
/// for one dataset, counted by the gateways' shared state in fixed windows aligned to the Unix
/// epoch (a day window starts at 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Requests allowed per window (at least 1).
    pub requests: u32,
    /// The window.
    pub per: Period,
}

/// The window of a [`Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// 60 seconds.
    Minute,
    /// 3,600 seconds.
    Hour,
    /// 86,400 seconds (a UTC day).
    Day,
}

impl Period {
    /// The word policies write: `minute`, `hour` or `day`.
    pub fn code(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }

    /// The window's length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Period::Minute => 60,
            Period::Hour => 3_600,
            Period::Day => 86_400,
        }
    }

    /// The period a word names.
    pub fn parse(word: &str) -> Option<Period> {
        [Period::Minute, Period::Hour, Period::Day]
            .into_iter()
            .find(|period| period.code() == word)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}", self.requests, self.per.code())
    }
}

/// Where something is written in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// The file, relative to the store's directory.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A validated rule, as written (its consumer may be a group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its stable id.
    pub id: RuleId,
    /// Why it exists, for reviewers.
    pub description: String,
    /// The agency or group it names.
    pub consumer: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// The purpose.
    pub purpose: PurposeId,
    /// The legal basis; `None` only for a rule that releases nothing (every field `deny`).
    pub basis: Option<LegalBasis>,
    /// Whether a released field needs the citizen's consent in the request.
    pub consent_required: bool,
    /// When it applies.
    pub window: Window,
    /// How often one consumer may ask about one subject under this rule, if it is limited.
    pub limit: Option<Limit>,
    /// Enforced or shadow.
    pub status: RuleStatus,
    /// Field -> treatment, in name order.
    pub fields: Vec<(String, Treatment)>,
    /// Where it is written.
    pub location: SourceLocation,
}
