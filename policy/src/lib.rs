//! The policy store of isnad: the federation's catalogue (agencies, groups, datasets, purposes)
//! and the field-level sharing rules, loaded from a directory of YAML, validated with every error
//! reported at once (`file:line:column: message`), and compiled into an immutable [`PolicySet`]
//! that answers, per requested field, whether it is released and which rule decided.
//!
//! Pure library: no async, no network, no I/O beyond reading the files it is given.
//!
//! Format: see `policy/README.md`. Default deny: a field no rule grants is withheld; `deny`
//! wins over `allow`.

mod decide;
mod error;
mod load;
mod model;
mod source;

pub use decide::{Decision, FieldDecision, PolicySet, Refusal, WithheldReason};
pub use error::{LoadErrors, PolicyError};
pub use model::{
    Agency, AgencyId, Catalogue, Dataset, DatasetId, Field, FieldClass, FieldType, Level,
    PolicyRevision, Purpose, PurposeId, RuleId,
};
