//! Start-up time of a gateway node: from `exec` to accepting connections.
//!
//! `isnad-bench fixture` writes what a large node starts from: the synthetic policy store of
//! 10,000 rules ([`crate::synthetic::policy_files`]) and an audit log of N realistic records,
//! signed with the node's audit key and origin, closed cleanly (its query index up to date, as
//! after a normal stop). `isnad-bench startup` then starts `isnad serve --config FILE` several
//! times and measures, for each start, the time from spawning the process to the first TCP
//! connection its listener accepts; the gateway binds its listener only after the policy is
//! compiled, the TLS material, keys and consent authorities are loaded and the audit log is
//! open and recovered, so a connection means it is ready. Each start is stopped with SIGTERM
//! and waited for before the next.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use isnad_audit::{AuditLog, CheckpointSigner, Options};
use serde::Serialize;

use isnad_bench::synthetic::{RULES, audit_record, policy_files};

/// `isnad-bench fixture`.
#[derive(Debug, clap::Args)]
pub(crate) struct FixtureArgs {
    /// Where to write `policy/` (the 10,000-rule store) and `audit/` (the log).
    #[arg(long)]
    dir: PathBuf,
    /// Records the audit log holds when done (records already there count).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// The node's audit log key (Ed25519 PKCS#8), as in its configuration's `audit.key`.
    #[arg(long)]
    key: PathBuf,
    /// The log's origin: `<federation>/audit/<node>`, as the gateway names it.
    #[arg(long)]
    origin: String,
}

/// What `fixture` made.
#[derive(Debug, Serialize)]
pub(crate) struct Fixture {
    rules: usize,
    records: u64,
    seconds: f64,
}

/// Writes the store and fills the log.
pub(crate) fn fixture(args: FixtureArgs) -> anyhow::Result<Fixture> {
    let started = Instant::now();
    let policy = args.dir.join("policy");
    std::fs::create_dir_all(policy.join("rules"))?;
    for (name, bytes) in policy_files() {
        std::fs::write(policy.join(&name), bytes).with_context(|| name.clone())?;
    }
    let signer = CheckpointSigner::load(&args.origin, &args.key)
        .map_err(|e| anyhow::anyhow!("audit key {}: {e}", args.key.display()))?;
    let options = Options {
        signer: Some(Arc::new(signer)),
        ..Options::default()
    };
    let (log, recovery) = AuditLog::open(args.dir.join("audit"), options)
        .map_err(|e| anyhow::anyhow!("audit log: {e}"))?;
    let from = recovery.size.0;
    // Appends are acknowledged in batches; a bounded number in flight keeps memory flat.
    let (done_tx, done_rx) = mpsc::sync_channel::<Result<(), String>>(4096);
    let mut in_flight = 0u64;
    for i in from..args.records {
        if in_flight == 4096 {
            done_rx.recv()?.map_err(|e| anyhow::anyhow!(e))?;
            in_flight -= 1;
        }
        let tx = done_tx.clone();
        log.append(audit_record(i), move |result| {
            let _ = tx.send(result.map(|_| ()).map_err(|e| e.to_string()));
        });
        in_flight += 1;
    }
    for _ in 0..in_flight {
        done_rx.recv()?.map_err(|e| anyhow::anyhow!(e))?;
    }
    let records = log.size().0;
    drop(log);
    Ok(Fixture {
        rules: RULES,
        records,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `isnad-bench startup`.
#[derive(Debug, clap::Args)]
pub(crate) struct StartupArgs {
    /// The `isnad` binary.
    #[arg(long)]
    isnad: PathBuf,
    /// The node's configuration.
    #[arg(long)]
    config: PathBuf,
    /// The address in its configuration's `listen`.
    #[arg(long)]
    listen: SocketAddr,
    /// How many starts to time.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// The starts, in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Startup {
    runs_ms: Vec<f64>,
    median_ms: f64,
    min_ms: f64,
}

/// Starts and stops the node `runs` times.
pub(crate) fn startup(args: StartupArgs) -> anyhow::Result<Startup> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let mut runs = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        ensure!(
            TcpStream::connect(args.listen).is_err(),
            "something already listens on {}",
            args.listen
        );
        let log = tempfile_path("isnad-startup.log");
        let started = Instant::now();
        let mut child = Command::new(&args.isnad)
            .args(["serve", "--config"])
            .arg(&args.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", args.isnad.display()))?;
        let ready = loop {
            if TcpStream::connect_timeout(&args.listen, Duration::from_millis(100)).is_ok() {
                break started.elapsed();
            }
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("the gateway exited ({status}) before serving:\n{text}");
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                bail!("the gateway did not accept connections within 120 s");
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        runs.push(ready.as_secs_f64() * 1e3);
        let stopped = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        ensure!(stopped.success(), "kill -TERM failed");
        let status = child.wait()?;
        ensure!(
            status.success(),
            "the gateway did not stop cleanly ({status}):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let _ = std::fs::remove_file(&log);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Startup {
        median_ms: sorted[sorted.len() / 2],
        min_ms: sorted[0],
        runs_ms: runs,
    })
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", std::process::id()))
}
