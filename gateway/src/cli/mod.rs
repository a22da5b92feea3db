//! The `isnad` command.

mod audit;
mod certs;
mod consent;
mod demo;
mod policy;
mod query;
mod show;
mod up;
mod verify_response;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// isnad: a secure inter-agency data-sharing gateway.
#[derive(Debug, Parser)]
#[command(name = "isnad", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a gateway node from a configuration file (for real deployments).
    Serve {
        /// The gateway configuration (YAML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the reference provider agency from a configuration file.
    Provider {
        /// The provider configuration (YAML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Start the sample federation locally: dev PKI, providers and a gateway, until Ctrl-C.
    Up {
        /// Working directory: PKI in DIR/pki, configuration files, logs.
        #[arg(long)]
        dir: PathBuf,
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// The federation's policy store and records [default: deploy/local of this source tree].
        #[arg(long)]
        federation: Option<PathBuf>,
        /// The gateway's shared state: `memory`, or a redis:// URL.
        #[arg(long, default_value = "memory")]
        shared_state: String,
    },
    /// Run a housing grant application through a temporary sample federation, step by step.
    Demo {
        /// The federation's policy store and records [default: deploy/local of this source tree].
        #[arg(long)]
        federation: Option<PathBuf>,
    },
    /// Ask the gateway for attributes, as one of the identities of a local federation.
    Query(query::QueryArgs),
    /// Development PKI.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// The development consent authority: issue and revoke consent tokens.
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// Policy store tools.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The auditor's tools on an audit log directory: verify, export, query, proof; keygen.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check a response's provenance signature (and, optionally, its audit record).
    VerifyResponse(verify_response::VerifyResponseArgs),
}

/// Runs the command line; the process exit code is its result.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Demo { .. }
            | Command::Query(_)
            | Command::Consent(_)
            | Command::Audit(_)
            | Command::VerifyResponse(_)
    );
    init_logging(if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ISNAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let shutdown = shutdown_signal();
            let config = crate::config::GatewayConfig::from_file(&config)?;
            let gateway = crate::server::Gateway::load(&config)?;
            let listener = bind(config.listen).await?;
            tracing::info!(listen = %listener.local_addr()?, node = %config.node, "gateway serving");
            gateway.serve(listener, shutdown).await?;
        }
        Command::Provider { config } => {
            let shutdown = shutdown_signal();
            let config = isnad_provider::ProviderConfig::from_file(&config)?;
            let listener = bind(config.listen).await?;
            tracing::info!(listen = %listener.local_addr()?, agency = %config.agency, "provider serving");
            isnad_provider::serve(&config, listener, shutdown).await?;
        }
        Command::Up {
            dir,
            listen,
            federation,
            shared_state,
        } => {
            let shutdown = shutdown_signal();
            let federation = up::federation_dir(federation)?;
            let running = up::start(&dir, &federation, listen, &shared_state).await?;
            running.print_summary();
            shutdown.await;
            tracing::info!("shutting down");
            running.stop().await;
        }
        Command::Demo { federation } => {
            let federation = up::federation_dir(federation)?;
            return demo::run(&federation).await;
        }
        Command::Query(args) => return query::run(args).await,
        Command::Certs(command) => certs::run(command)?,
        Command::Consent(command) => return consent::run(command).await,
        Command::Policy(command) => return policy::run(command),
        Command::Audit(command) => return audit::run(command),
        Command::VerifyResponse(args) => return verify_response::run(args),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when it
/// is first awaited: a stop asked for while the process starts (loading its policy, opening its
/// audit log) is not the signal's default death, it stops the process as soon as it serves.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    /// A SIGTERM that arrives after `shutdown_signal()` is called, before its future is first
    /// polled (a node still loading), completes it instead of killing the process.
    #[tokio::test]
    async fn a_stop_asked_for_before_serving_is_kept_for_when_it_serves() {
        let shutdown = super::shutdown_signal();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        // Still alive: the signal was caught, and the future completes when polled.
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("the stop was kept");
    }
}
