//! The isnad gateway: consumer agencies fetch citizen attributes from provider agencies through
//! it, and it releases only what the policy allows.
//!
//! - [`pipeline`]: the steps of a `GetAttributes` request, one module each.
//! - [`server`]: the gRPC server over mutual TLS (Exchange, health, reflection).
//! - [`config`]: the configuration file of `isnad serve`.
//! - [`cli`]: the `isnad` command.

pub mod cli;
pub mod config;
pub mod pipeline;
pub mod policy_store;
pub mod server;
