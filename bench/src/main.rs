//! `isnad-bench`: the load generator of isnad's benchmarks.
//!
//! `isnad-bench load` drives one target (the gateway's `Exchange`, or a provider's `Provider`
//! directly or through a proxy) over mutual TLS, either closed-loop (N connections x M requests
//! in flight) or open-loop at a fixed rate, records latencies in an HDR histogram, reads the CPU
//! time of the named server processes from `/proc`, and prints one JSON object.
//! `isnad-bench report` turns the JSON of several runs into a Markdown table with ratios.
//! `isnad-bench fixture` and `isnad-bench startup` measure a node's start-up with a large policy
//! store and audit log (`bench/startup.sh`).
//! `bench/run.sh` runs the scenarios side by side.

mod connections;
mod disk;
mod load;
mod report;
mod startup;

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
    /// Time appends with fdatasync on a file system, as JSON.
    Fsync(disk::FsyncArgs),
    /// Write a 10,000-rule policy store and fill an audit log with realistic records.
    Fixture(startup::FixtureArgs),
    /// Time `isnad serve` from spawning to accepting a connection, as JSON.
    Startup(startup::StartupArgs),
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
        Command::Fsync(args) => println!("{}", serde_json::to_string(&disk::fsync(args)?)?),
        Command::Fixture(args) => println!("{}", serde_json::to_string(&startup::fixture(args)?)?),
        Command::Startup(args) => println!("{}", serde_json::to_string(&startup::startup(args)?)?),
    }
    Ok(())
}
