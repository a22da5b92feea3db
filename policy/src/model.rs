//! The compiled catalogue and the typed names used across the crate boundary.

use std::collections::BTreeMap;
use std::fmt;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name (not validated: names are validated when the store is loaded).
            pub fn new(name: impl Into<String>) -> Self {
                $name(name.into())
            }

            /// The name as written in the policy files.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// An agency's id, e.g. `housing-programme`; its SPIFFE ID is
    /// `spiffe://<federation>/agency/<id>`.
    AgencyId
);
name_type!(
    /// A dataset's name, e.g. `identity.person`.
    DatasetId
);
name_type!(
    /// A purpose from the catalogue's vocabulary, e.g. `housing-grant`.
    PurposeId
);
name_type!(
    /// A rule's stable id.
    RuleId
);

/// SHA-256 of the policy store's canonical content, as `sha256:<hex>`: which policy decided a
/// response. See [`crate::Sources`] for what the content is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PolicyRevision {
    text: String,
    digest: [u8; 32],
}

impl PolicyRevision {
    pub(crate) fn from_digest(digest: [u8; 32]) -> Self {
        use fmt::Write;
        let mut text = String::with_capacity(7 + 2 * digest.len());
        text.push_str("sha256:");
        for byte in digest {
            let _ = write!(text, "{byte:02x}");
        }
        PolicyRevision { text, digest }
    }

    /// The 32 bytes of the digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The revision as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PolicyRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for PolicyRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyRevision({})", self.text)
    }
}

/// Federal or local government.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A federal agency.
    Federal,
    /// A local agency of one emirate.
    Local,
}

/// A member of the federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agency {
    /// Its id.
    pub id: AgencyId,
    /// Its name, for people.
    pub name: String,
    /// Federal or local.
    pub level: Level,
    /// The emirate of a local agency.
    pub emirate: Option<String>,
    /// Where its provider service listens, if it provides datasets (`https://host:port`).
    pub endpoint: Option<String>,
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    String,
    /// A 64-bit integer.
    Int,
    /// True or false.
    Bool,
    /// A calendar date.
    Date,
    /// A floating-point number.
    Double,
    /// Raw bytes.
    Bytes,
    /// A list of values.
    List,
}

impl FieldType {
    /// The name used in `catalogue.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Bool => "bool",
            FieldType::Date => "date",
            FieldType::Double => "double",
            FieldType::Bytes => "bytes",
            FieldType::List => "list",
        }
    }
}

/// How sensitive a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldClass {
    /// Published anyway.
    Public,
    /// Internal to government.
    Internal,
    /// Personal data.
    Personal,
    /// Special-category personal data (health, biometrics...).
    Sensitive,
}

/// A field of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its type.
    pub field_type: FieldType,
    /// Its classification.
    pub class: FieldClass,
}

/// A dataset and who provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Its name.
    pub id: DatasetId,
    /// The provider agency.
    pub provider: AgencyId,
    /// What it holds, for people.
    pub description: String,
    /// Its fields by name.
    pub fields: BTreeMap<String, Field>,
}

/// A purpose of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    /// Its id.
    pub id: PurposeId,
    /// Its code in the government's purpose register.
    pub code: String,
    /// What it is, for people.
    pub description: String,
}

/// The federation: its members, datasets and purposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    /// The SPIFFE trust domain of the federation, e.g. `isnad.example`.
    pub federation: String,
    /// The agencies by id.
    pub agencies: BTreeMap<AgencyId, Agency>,
    /// The datasets by name.
    pub datasets: BTreeMap<DatasetId, Dataset>,
    /// The purposes by id.
    pub purposes: BTreeMap<PurposeId, Purpose>,
}

impl Catalogue {
    /// The agency whose SPIFFE ID path is `agency/<id>` in this federation, if any.
    pub fn agency_of_path(&self, path: &str) -> Option<&Agency> {
        self.agencies.get(path.strip_prefix("agency/")?)
    }
}
