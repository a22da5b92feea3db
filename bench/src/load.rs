//! One load run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use isnad_proto::v1::exchange_client::ExchangeClient;
use isnad_proto::v1::provider_client::ProviderClient;
use isnad_proto::v1::{AttributesRequest, FetchRequest};
use isnad_tls::TlsFiles;
use isnad_tls::client::ChannelSettings;
use isnad_tls::policy::ExpectedPeer;
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Api {
    /// `isnad.v1.Exchange/GetAttributes` (a gateway).
    Exchange,
    /// `isnad.v1.Provider/Fetch` (a provider, directly or through a proxy).
    Provider,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// A name for this scenario in the report.
    #[arg(long)]
    name: String,
    /// `https://host:port` of the target.
    #[arg(long)]
    target: String,
    /// Which API to call.
    #[arg(long, value_enum)]
    api: Api,
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
    /// JSON Lines records whose `subject`s are requested in turn.
    #[arg(long)]
    subjects: PathBuf,
    #[arg(long, default_value = "identity.person")]
    dataset: String,
    #[arg(long, default_value = "housing-grant")]
    purpose: String,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "full_name_en,date_of_birth,nationality,emirate"
    )]
    fields: Vec<String>,
    /// TCP connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per second in total (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Server processes whose CPU time to measure, as NAME=PID[,PID...].
    #[arg(long = "process")]
    processes: Vec<String>,
    /// Send a consent token with every request, one per subject, signed with this consent
    /// authority key (Ed25519 PKCS#8 DER, as `isnad up` writes `DIR/consent/authority.pk8`)
    /// for the `--fields` of `--dataset`, issued by `https://consent.<federation>`.
    #[arg(long)]
    consent_key: Option<PathBuf>,
    /// The key id of `--consent-key` in the gateway's JWKS.
    #[arg(long, default_value = "dev-consent-1")]
    consent_kid: String,
    /// The target may refuse this client (a flood over its limits): the check of each
    /// connection before measuring accepts a refusal with a reason code as an answer.
    #[arg(long)]
    refusals_expected: bool,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct LoadResult {
    pub(crate) name: String,
    pub(crate) mode: String,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    /// Every call made, warm-up and the first check per connection included: what the server
    /// saw, for counting its work per request (e.g. Redis commands).
    #[serde(default)]
    pub(crate) calls: u64,
    pub(crate) throughput: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    /// The measured calls that failed, by why: an isnad reason code, `incomplete` (answered
    /// without every field), or `transport` (no reason code).
    #[serde(default)]
    pub(crate) failures: BTreeMap<String, u64>,
    /// CPU microseconds per successful request, by process name.
    pub(crate) cpu_us_per_request: Vec<(String, f64)>,
    /// CPU time over the measured time (cores kept busy), by process name.
    #[serde(default)]
    pub(crate) cpu_cores: Vec<(String, f64)>,
    /// Context switches (every thread's, voluntary and not) per successful request, by process.
    #[serde(default)]
    pub(crate) switches_per_request: Vec<(String, f64)>,
    /// Read and write system calls per successful request, by process.
    #[serde(default)]
    pub(crate) io_calls_per_request: Vec<(String, f64)>,
    /// The machine's cores left idle over the measured time (idle and I/O wait of every CPU):
    /// how far the scenario kept the machine busy, whatever ran on it.
    #[serde(default)]
    pub(crate) idle_cores: Option<f64>,
    /// Latency by percentile, for plots: (percentile, microseconds) from p0 to p99.99 and max.
    #[serde(default)]
    pub(crate) latency_curve: Vec<(f64, u64)>,
}

/// The percentiles of [`LoadResult::latency_curve`]: dense where tails differ.
const CURVE: [f64; 16] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.975, 99.99,
    100.0,
];

#[derive(Clone)]
enum Target {
    Exchange(ExchangeClient<Channel>),
    Provider(ProviderClient<Channel>),
}

struct Plan {
    subjects: Vec<String>,
    /// One consent token per subject, or none.
    tokens: Vec<String>,
    dataset: String,
    purpose: String,
    fields: Vec<String>,
}

/// Why a call did not count: a reason code of the target, `incomplete` or `transport`.
type Failure = String;

fn failure(status: &tonic::Status) -> Failure {
    isnad_proto::errors::reason(status)
        .unwrap_or_else(|| format!("transport ({:?})", status.code()))
}

impl Target {
    async fn call(&mut self, plan: &Plan, n: usize) -> Result<(), Failure> {
        let index = n % plan.subjects.len();
        let subject = plan.subjects[index].clone();
        let complete = |attributes: usize| {
            if attributes == plan.fields.len() {
                Ok(())
            } else {
                Err("incomplete".to_owned())
            }
        };
        match self {
            Target::Exchange(client) => client
                .get_attributes(AttributesRequest {
                    subject,
                    dataset: plan.dataset.clone(),
                    fields: plan.fields.clone(),
                    purpose: plan.purpose.clone(),
                    consent_token: plan.tokens.get(index).cloned().unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|status| failure(&status))
                .and_then(|r| complete(r.get_ref().attributes.len())),
            Target::Provider(client) => client
                .fetch(FetchRequest {
                    subject,
                    dataset: plan.dataset.clone(),
                    fields: plan.fields.clone(),
                    purpose: plan.purpose.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|status| failure(&status))
                .and_then(|r| complete(r.get_ref().attributes.len())),
        }
    }
}

/// What one worker measured.
struct Tally {
    histogram: Histogram<u64>,
    ok: u64,
    failures: BTreeMap<Failure, u64>,
    calls: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            histogram: new_histogram(),
            ok: 0,
            failures: BTreeMap::new(),
            calls: 0,
        }
    }

    fn count(&mut self, latency: Duration, outcome: Result<(), Failure>) {
        record(&mut self.histogram, latency);
        match outcome {
            Ok(()) => self.ok += 1,
            Err(why) => *self.failures.entry(why).or_default() += 1,
        }
    }
}

fn subjects(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let subjects: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| record["subject"].as_str().map(str::to_owned))
        .collect();
    anyhow::ensure!(!subjects.is_empty(), "no subjects in {}", path.display());
    Ok(subjects)
}

/// A consent token for each subject, valid for an hour, for the requested fields.
fn consent_tokens(
    args: &LoadArgs,
    key: &std::path::Path,
    subjects: &[String],
) -> anyhow::Result<Vec<String>> {
    let pkcs8 =
        std::fs::read(key).map_err(|e| anyhow::anyhow!("consent key {}: {e}", key.display()))?;
    let key = isnad_consent::SigningKey::from_pkcs8(
        &args.consent_kid,
        isnad_consent::SigningAlgorithm::EdDSA,
        &pkcs8,
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    subjects
        .iter()
        .map(|subject| {
            let grant = isnad_consent::ConsentGrant {
                id: isnad_consent::new_consent_id()?,
                issuer: format!("https://consent.{}", args.federation),
                audience: args.federation.clone(),
                subject: subject.clone(),
                consumer: format!("spiffe://{}/agency/{}", args.federation, args.as_name),
                purpose: args.purpose.clone(),
                dataset: args.dataset.clone(),
                fields: args.fields.clone(),
                issued_at: now - 60,
                expires_at: now + 3600,
                max_uses: None,
                cert_sha256: None,
            };
            Ok(key.issue(&grant.claims())?)
        })
        .collect()
}

/// Process CPU time (user + system) in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow::anyhow!("bad stat"))? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

pub(crate) fn parse_processes(specs: &[String]) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
    let mut processes: Vec<(String, Vec<u32>)> = specs
        .iter()
        .map(|spec| {
            let (name, pids) = spec
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--process NAME=PID[,PID...], got {spec}"))?;
            let pids = pids
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()?;
            Ok((name.to_owned(), pids))
        })
        .collect::<anyhow::Result<_>>()?;
    processes.push(("load-generator".into(), vec![std::process::id()]));
    Ok(processes)
}

pub(crate) fn total_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|pid| cpu_ticks(*pid)).sum()
}

/// What a set of processes has done so far: CPU time, context switches and read or write
/// system calls. Per request, the last two show how well each side batches its work: every
/// wake-up and every system call costs about the same whatever it carries.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    ticks: u64,
    switches: u64,
    io_calls: u64,
}

impl Usage {
    fn of(pids: &[u32]) -> anyhow::Result<Usage> {
        let mut usage = Usage::default();
        for &pid in pids {
            usage.ticks += cpu_ticks(pid)?;
            usage.switches += context_switches(pid)?;
            usage.io_calls += io_calls(pid)?;
        }
        Ok(usage)
    }

    fn of_all(processes: &[(String, Vec<u32>)]) -> anyhow::Result<Vec<Usage>> {
        processes.iter().map(|(_, pids)| Usage::of(pids)).collect()
    }
}

/// The measured processes' usage and the machine's idle time (clock ticks) at one moment.
#[derive(Debug, Clone)]
struct Sample {
    processes: Vec<Usage>,
    idle_ticks: u64,
}

impl Sample {
    fn now(processes: &[(String, Vec<u32>)]) -> anyhow::Result<Sample> {
        Ok(Sample {
            processes: Usage::of_all(processes)?,
            idle_ticks: idle_ticks()?,
        })
    }
}

/// Idle and I/O wait time of every CPU, in clock ticks (the `cpu` line of `/proc/stat`).
fn idle_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .ok_or_else(|| anyhow::anyhow!("/proc/stat has no cpu line"))?;
    // user nice system idle iowait ...
    line.split_whitespace()
        .skip(3)
        .take(2)
        .map(|n| Ok(n.parse::<u64>()?))
        .sum()
}

/// Voluntary and involuntary context switches of every thread of `pid` now alive (threads
/// that ended took theirs with them; the servers measured here keep theirs).
fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue; // the thread ended since the listing
        };
        total += sum_of(
            &status,
            &["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"],
        )?;
    }
    Ok(total)
}

/// Read and write system calls of `pid` (`syscr` + `syscw` of `/proc/<pid>/io`: reads, writes
/// and their vector and socket forms; not epoll, futex or sleeps).
fn io_calls(pid: u32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    sum_of(&io, &["syscr:", "syscw:"])
}

/// The sum of the numbers on the lines of a `/proc` file that start with one of `keys`.
fn sum_of(text: &str, keys: &[&str]) -> anyhow::Result<u64> {
    let mut total = 0;
    for line in text.lines() {
        if let Some(n) = keys.iter().find_map(|key| line.strip_prefix(key)) {
            total += n.trim().parse::<u64>()?;
        }
    }
    Ok(total)
}

pub(crate) async fn run(args: LoadArgs) -> anyhow::Result<LoadResult> {
    let material = TlsFiles::in_dir(&args.pki, &args.as_name).load()?;
    let expected = match &args.expect {
        Some(id) => ExpectedPeer::Exactly(isnad_tls::SpiffeId::parse(id)?),
        None => ExpectedPeer::AnyGateway {
            trust_domain: args.federation.clone(),
        },
    };
    let tls = Arc::new(isnad_tls::policy::fixed_client_config(material, expected)?);
    let targets: Vec<Target> = (0..args.connections.max(1))
        .map(|_| {
            let channel =
                isnad_tls::client::channel(&args.target, tls.clone(), ChannelSettings::default())?;
            Ok(match args.api {
                Api::Exchange => Target::Exchange(ExchangeClient::new(channel)),
                Api::Provider => Target::Provider(ProviderClient::new(channel)),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let subjects = subjects(&args.subjects)?;
    let tokens = match &args.consent_key {
        Some(key) => consent_tokens(&args, key, &subjects)?,
        None => Vec::new(),
    };
    let plan = Arc::new(Plan {
        subjects,
        tokens,
        dataset: args.dataset.clone(),
        purpose: args.purpose.clone(),
        fields: args.fields.clone(),
    });
    // Connect and check every connection once before measuring.
    for (n, target) in targets.iter().enumerate() {
        let outcome = target.clone().call(&plan, n).await;
        let answered = match &outcome {
            Ok(()) => true,
            Err(why) if why == "incomplete" || why.starts_with("transport") => false,
            Err(_) => args.refusals_expected,
        };
        anyhow::ensure!(
            answered,
            "the target does not answer a valid request correctly ({}): {outcome:?}",
            args.target
        );
    }
    let processes = parse_processes(&args.processes)?;

    let warmup = Duration::from_secs(args.warmup);
    let measure = Duration::from_secs(args.duration);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;

    // CPU is sampled when measurement begins, by a task that sleeps through the warm-up.
    let sampler = {
        let processes = processes.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            Sample::now(&processes)
        })
    };

    let mut workers = Vec::new();
    let mode;
    match args.rate {
        None => {
            mode = format!(
                "closed loop, {} connections x {} in flight",
                args.connections, args.concurrency
            );
            for (c, target) in targets.iter().enumerate() {
                for k in 0..args.concurrency.max(1) {
                    let mut target = target.clone();
                    let plan = plan.clone();
                    workers.push(tokio::spawn(async move {
                        let mut tally = Tally::new();
                        let mut n = c * 7919 + k * 104_729;
                        loop {
                            let sent = Instant::now();
                            if sent >= end {
                                break;
                            }
                            let outcome = target.call(&plan, n).await;
                            n += 1;
                            tally.calls += 1;
                            if sent >= measure_from {
                                tally.count(sent.elapsed(), outcome);
                            }
                        }
                        tally
                    }));
                }
            }
        }
        Some(rate) => {
            mode = format!(
                "open loop, {rate} requests/s over {} connections",
                args.connections
            );
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let pacer = {
                let targets = targets.clone();
                let plan = plan.clone();
                tokio::spawn(async move {
                    let mut n = 0usize;
                    loop {
                        // Latency counts from when the request was due, not when it was sent,
                        // so a stalled server cannot hide its queueing (coordinated omission).
                        let due = start + interval.mul_f64(n as f64);
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        let mut target = targets[n % targets.len()].clone();
                        let plan = plan.clone();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let outcome = target.call(&plan, n).await;
                            if due >= measure_from {
                                let _ = tx.send((due.elapsed(), outcome));
                            }
                        });
                        n += 1;
                    }
                    n as u64
                })
            };
            workers.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                tally.calls = pacer.await.unwrap_or(0);
                let mut rx = rx;
                while let Some((latency, outcome)) = rx.recv().await {
                    tally.count(latency, outcome);
                }
                tally
            }));
        }
    }

    let before = sampler.await??;
    let mut histogram = new_histogram();
    let mut ok = 0u64;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    // The check call made on each connection before measuring.
    let mut calls = targets.len() as u64;
    let mut after = None;
    for worker in workers {
        let tally = worker.await?;
        calls += tally.calls;
        if after.is_none() {
            // The first worker ends right at `end`: sample CPU before stragglers add to it.
            after = Some(Sample::now(&processes)?);
        }
        histogram.add(&tally.histogram)?;
        ok += tally.ok;
        for (why, count) in tally.failures {
            *failures.entry(why).or_default() += count;
        }
    }
    let errors = failures.values().sum();
    let after = after.unwrap_or_else(|| before.clone());
    let seconds = measure.as_secs_f64();
    let ticks = clock_ticks_per_second();
    let per_process = |f: &dyn Fn(&Usage, &Usage) -> f64| -> Vec<(String, f64)> {
        processes
            .iter()
            .zip(before.processes.iter().zip(&after.processes))
            .map(|((name, _), (b, a))| (name.clone(), f(b, a)))
            .collect()
    };
    let per_request = |n: u64| if ok > 0 { n as f64 / ok as f64 } else { 0.0 };
    let cpu_us_per_request = per_process(&|b, a| per_request(a.ticks - b.ticks) / ticks * 1e6);
    let cpu_cores = per_process(&|b, a| (a.ticks - b.ticks) as f64 / ticks / seconds);
    let switches_per_request = per_process(&|b, a| per_request(a.switches - b.switches));
    let io_calls_per_request = per_process(&|b, a| per_request(a.io_calls - b.io_calls));
    // iowait may step back on tickless kernels: the sum with idle can too, by a little.
    let idle = after.idle_ticks.saturating_sub(before.idle_ticks);
    let idle_cores = Some(idle as f64 / ticks / seconds);
    Ok(LoadResult {
        name: args.name,
        mode,
        seconds,
        requests: ok,
        errors,
        calls,
        throughput: ok as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        failures,
        cpu_us_per_request,
        cpu_cores,
        switches_per_request,
        io_calls_per_request,
        idle_cores,
        latency_curve: CURVE
            .iter()
            .map(|&p| (p, histogram.value_at_percentile(p)))
            .collect(),
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 us to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let _ = histogram.record((latency.as_micros() as u64).clamp(1, 60_000_000));
}
