//! Connection benchmarks: full mTLS handshakes per second, and the memory of idle connections.
//!
//! A handshake counts once the server's first HTTP/2 bytes (its SETTINGS frame) arrive: with TLS
//! 1.3 the server checks the client's certificate after the client's last handshake message, so
//! reading the server's first application data is what proves it accepted the client. Every
//! connection is new (no session resumption: isnad's servers offer none, and the client keeps
//! no session cache), so each one is a full handshake with certificate verification on both
//! sides.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isnad_tls::TlsFiles;
use isnad_tls::policy::ExpectedPeer;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::load::{clock_ticks_per_second, parse_processes, total_ticks};

/// Who connects, and to what.
#[derive(Debug, clap::Args)]
pub(crate) struct Peer {
    /// `host:port` of the target.
    #[arg(long)]
    target: String,
    /// The PKI directory and the identity to present (`<dir>/<as>.pem`).
    #[arg(long)]
    pki: PathBuf,
    #[arg(long = "as")]
    as_name: String,
    /// The target's SPIFFE ID; any gateway node of `--federation` when absent.
    #[arg(long)]
    expect: Option<String>,
    #[arg(long, default_value = "isnad.example")]
    federation: String,
}

impl Peer {
    fn connector(&self) -> anyhow::Result<TlsConnector> {
        let material = TlsFiles::in_dir(&self.pki, &self.as_name).load()?;
        let expected = match &self.expect {
            Some(id) => ExpectedPeer::Exactly(isnad_tls::SpiffeId::parse(id)?),
            None => ExpectedPeer::AnyGateway {
                trust_domain: self.federation.clone(),
            },
        };
        let mut config = isnad_tls::policy::fixed_client_config(material, expected)?;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsConnector::from(Arc::new(config)))
    }

    /// One new connection, up to the server's first HTTP/2 bytes; the stream stays open.
    async fn connect(
        &self,
        connector: &TlsConnector,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(&self.target).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let mut tls = connector.connect(name, tcp).await?;
        // The HTTP/2 client preface and an empty SETTINGS frame, so that servers that wait for
        // the client's preface before sending theirs (nginx does) answer.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await?;
        let mut first = [0u8; 9];
        tls.read_exact(&mut first).await?;
        anyhow::ensure!(first[3] == 0x04, "the server's first frame is not SETTINGS");
        Ok(tls)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct HandshakeArgs {
    /// A name for this scenario in the report.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    peer: Peer,
    /// Connections made at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds of measurement (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Server processes whose CPU time to measure, as NAME=PID[,PID...].
    #[arg(long = "process")]
    processes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct HandshakeResult {
    name: String,
    seconds: f64,
    handshakes: u64,
    errors: u64,
    per_second: f64,
    /// CPU microseconds per handshake, by process.
    cpu_us_per_handshake: Vec<(String, f64)>,
    /// Handshakes per second per core of server CPU: 1,000,000 / (server CPU us per handshake).
    per_core_second: Vec<(String, f64)>,
}

/// Opens new connections as fast as `--concurrency` clients can for `--duration` seconds.
pub(crate) async fn handshakes(args: HandshakeArgs) -> anyhow::Result<HandshakeResult> {
    let connector = args.peer.connector()?;
    let peer = Arc::new(args.peer);
    drop(peer.connect(&connector).await?);
    let processes = parse_processes(&args.processes)?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.duration);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (peer, connector) = (peer.clone(), connector.clone());
        let (done, failed, measuring) = (done.clone(), failed.clone(), measuring.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < end {
                let made = peer.connect(&connector).await;
                if measuring.load(Ordering::Relaxed) {
                    match made {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        }));
    }
    tokio::time::sleep_until(warmup_end.into()).await;
    let before: Vec<u64> = processes
        .iter()
        .map(|(_, pids)| total_ticks(pids))
        .collect::<anyhow::Result<_>>()?;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep_until(end.into()).await;
    measuring.store(false, Ordering::Relaxed);
    let after: Vec<u64> = processes
        .iter()
        .map(|(_, pids)| total_ticks(pids))
        .collect::<anyhow::Result<_>>()?;
    for worker in workers {
        worker.await?;
    }
    let handshakes = done.load(Ordering::Relaxed);
    let ticks = clock_ticks_per_second();
    let cpu: Vec<(String, f64)> = processes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((name, _), (b, a))| {
            let us = (a - b) as f64 / ticks * 1e6;
            let per = if handshakes > 0 {
                us / handshakes as f64
            } else {
                0.0
            };
            (name.clone(), per)
        })
        .collect();
    Ok(HandshakeResult {
        name: args.name,
        seconds: args.duration as f64,
        handshakes,
        errors: failed.load(Ordering::Relaxed),
        per_second: handshakes as f64 / args.duration as f64,
        per_core_second: cpu
            .iter()
            .map(|(name, us)| (name.clone(), if *us > 0.0 { 1e6 / us } else { 0.0 }))
            .collect(),
        cpu_us_per_handshake: cpu,
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct IdleArgs {
    /// A name for this scenario in the report.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    peer: Peer,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to hold them open before measuring.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// The server processes whose resident memory to measure, as NAME=PID[,PID...].
    #[arg(long = "process")]
    processes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct IdleResult {
    name: String,
    connections: usize,
    /// Resident memory (KiB) before the connections, with them open, by process.
    rss_kib: Vec<(String, u64, u64)>,
}

/// Opens `--connections` connections, holds them idle, and reads the servers' resident memory.
pub(crate) async fn idle(args: IdleArgs) -> anyhow::Result<IdleResult> {
    let connector = args.peer.connector()?;
    let mut processes = parse_processes(&args.processes)?;
    processes.retain(|(name, _)| name != "load-generator");
    let rss = |pids: &[u32]| -> anyhow::Result<u64> {
        pids.iter()
            .map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
                let line = status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
                Ok(line
                    .split_whitespace()
                    .nth(1)
                    .ok_or_else(|| anyhow::anyhow!("bad VmRSS line"))?
                    .parse::<u64>()?)
            })
            .sum()
    };
    let before: Vec<u64> = processes
        .iter()
        .map(|(_, pids)| rss(pids))
        .collect::<anyhow::Result<_>>()?;
    let mut open = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        open.push(args.peer.connect(&connector).await?);
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let with: Vec<u64> = processes
        .iter()
        .map(|(_, pids)| rss(pids))
        .collect::<anyhow::Result<_>>()?;
    drop(open);
    Ok(IdleResult {
        name: args.name,
        connections: args.connections,
        rss_kib: processes
            .iter()
            .zip(before.iter().zip(&with))
            .map(|((name, _), (b, w))| (name.clone(), *b, *w))
            .collect(),
    })
}
