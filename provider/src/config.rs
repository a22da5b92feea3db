//! The provider's configuration file (YAML).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `isnad provider --config FILE`. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider agency's id, for logs.
    pub agency: String,
    /// Where to listen, e.g. `127.0.0.1:7601`.
    pub listen: SocketAddr,
    /// The federation CA and this agency's certificate and key.
    pub tls: TlsPaths,
    /// The SPIFFE IDs allowed to call: the federation's gateway nodes.
    pub allowed_callers: Vec<String>,
    /// The datasets served, by name.
    pub datasets: BTreeMap<String, DatasetConfig>,
}

/// Paths of the TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The federation CA certificate (PEM).
    pub ca: PathBuf,
    /// This agency's certificate (PEM).
    pub cert: PathBuf,
    /// This agency's private key (PEM).
    pub key: PathBuf,
}

/// One dataset: its record file and the type of each field served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// A JSON Lines file, one object per subject, the subject's ID under `subject`.
    pub records: PathBuf,
    /// Field name to type: `string`, `int`, `bool`, `date` (`YYYY-MM-DD`), `double`, `list`.
    pub fields: BTreeMap<String, String>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line and column.
        message: String,
    },
}

impl ProviderConfig {
    /// Reads a configuration file and resolves its relative paths.
    pub fn from_file(path: &Path) -> Result<ProviderConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: ProviderConfig =
            serde_saphyr::from_str(&text).map_err(|error| ConfigError::Invalid {
                path: path.to_owned(),
                message: error.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.tls.ca,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            *file = base.join(&*file);
        }
        for dataset in config.datasets.values_mut() {
            dataset.records = base.join(&dataset.records);
        }
        Ok(config)
    }
}
