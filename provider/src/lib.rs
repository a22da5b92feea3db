//! The reference provider agency: serves datasets from JSON Lines record files over mutual TLS,
//! answering only the gateway. It is what the demo and the tests run, and a template for an
//! agency writing its own `isnad.v1.Provider` service.

mod config;
mod records;
mod service;
pub mod synth;

pub use config::{DatasetConfig, ProviderConfig};
pub use records::{Dataset, RecordError};
pub use service::{ProviderService, ServeError, serve};
