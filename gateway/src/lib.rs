//! The isnad gateway: consumer agencies fetch citizen attributes from provider agencies through
//! it, and it releases only what the policy allows.
//!
//! - [`pipeline`]: the steps of a `GetAttributes` request, one module each.
//! - [`server`]: the gRPC server over mutual TLS (Exchange, health, reflection).
//! - [`workers`]: the threads that serve connections, each with its own event loop.
//! - [`exchange`]: `GetAttributes` taken from the server straight to the pipeline.
//! - [`grpc_message`]: one length-prefixed gRPC message, framed and put together.
//! - [`audit_trail`]: the node's audit log; [`audit_service`]: `isnad.v1.Audit` for auditors.
//! - [`provenance`]: the signature every response carries, and how it is checked.
//! - [`config`]: the configuration file of `isnad serve`.
//! - [`consent_keys`]: the consent authorities' keys in force, reloaded when they change.
//! - [`secrets`]: the hash and pseudonym keys.
//! - [`cli`]: the `isnad` command.

pub mod audit_service;
pub mod audit_trail;
pub mod cli;
pub mod config;
pub mod consent_keys;
pub mod exchange;
pub mod grpc_message;
pub mod pipeline;
pub mod policy_store;
pub mod provenance;
pub mod secrets;
pub mod server;
pub mod workers;
