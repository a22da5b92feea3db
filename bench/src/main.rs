//! `isnad-bench`: the load generator of isnad's benchmarks.
//!
//! `isnad-bench load` drives one target (the gateway's `Exchange`, or a provider's `Provider`
//! directly or through a proxy) over mutual TLS, either closed-loop (N connections x M requests
//! in flight) or open-loop at a fixed rate, records latencies in an HDR histogram, reads the CPU
//! time of the named server processes from `/proc`, and prints one JSON object.
//! `isnad-bench report` turns the JSON of several runs into a Markdown table with ratios.
//! `bench/run.sh` runs the scenarios side by side.

mod connections;
mod load;
mod report;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "isnad-bench", about = "Load generator for isnad benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive load against one target and print the result as JSON.
    Load(Box<load::LoadArgs>),
    /// Combine JSON results into a Markdown report.
    Report(report::ReportArgs),
    /// Open new mTLS connections as fast as possible: handshakes per second and server CPU per
    /// handshake, as JSON.
    Handshakes(Box<connections::HandshakeArgs>),
    /// Hold many idle mTLS connections open and report the servers' resident memory, as JSON.
    Idle(Box<connections::IdleArgs>),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(load::run(*args))?;
            println!("{}", serde_json::to_string(&result)?);
        }
        Command::Report(args) => report::run(args)?,
        Command::Handshakes(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(connections::handshakes(*args))?;
            println!("{}", serde_json::to_string(&result)?);
        }
        Command::Idle(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(connections::idle(*args))?;
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}
