//! The policy store of isnad: the federation's catalogue (agencies, groups, datasets, purposes)
//! and the field-level sharing rules, loaded from a directory of YAML, validated with every error
//! reported at once (`file:line:column: message`), and compiled into an immutable [`PolicySet`]
//! that answers, per requested field, whether it is released, in which form, and which rule
//! decided; plus what security teams need around it: test cases, explanations, diffs between
//! two stores and signatures.
//!
//! Pure library: no async, no network, no I/O beyond reading the files it is given.
//!
//! Format: see `policy/README.md`. Default deny: a field no rule grants is withheld; `deny`
//! wins over every release.

mod cases;
mod conflict;
mod decide;
mod diff;
mod error;
mod explain;
mod load;
mod model;
mod rule;
mod signature;
mod source;
mod treatment;

pub use cases::{CaseOutcome, CaseReport, Expectation, run_cases};
pub use decide::{Decision, FieldDecision, PolicySet, Refusal, WithheldReason, today_utc};
pub use diff::{Change, GrantChange, GrantKey, diff};
pub use error::{LoadErrors, PolicyError};
pub use explain::{Explanation, FieldExplanation, explain};
pub use load::Sources;
pub use model::{
    Agency, AgencyId, Catalogue, Dataset, DatasetId, Field, FieldClass, FieldType, Level,
    PolicyRevision, Purpose, PurposeId, RuleId,
};
pub use rule::{
    Generalization, LegalBasis, Limit, Mask, Period, Rule, RuleStatus, SourceLocation, Transform,
    Treatment, Window,
};
pub use signature::{SIGNATURE_FILE, SignatureError, SigningKey, VerifyingKey};
pub use time::{Date, Month};
