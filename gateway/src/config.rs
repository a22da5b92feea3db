//! The gateway's configuration file (`isnad serve --config FILE`, YAML).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The gateway's configuration. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// This node's name; its certificate carries `spiffe://<federation>/gateway/<node>`.
    pub node: String,
    /// Where consumers connect, e.g. `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// The policy store: a directory with `catalogue.yaml` and `rules/`.
    pub policy: PathBuf,
    /// The security team's Ed25519 public key (a file holding `ed25519:<base64>`). When set,
    /// the policy store must carry a valid signature (`policy.sig`, made by
    /// `isnad policy sign`), at start and on every reload.
    #[serde(default)]
    pub policy_signing_key: Option<PathBuf>,
    /// How often the policy store is checked for changes, in milliseconds; 0 turns polling off
    /// (SIGHUP and `Admin.ReloadPolicy` still reload).
    #[serde(default = "default_policy_poll_ms")]
    pub policy_poll_ms: u64,
    /// The secret the `hash` transform derives each consumer's key from: a file holding at
    /// least 64 hex digits (32 bytes). Required when a rule uses `hash`; keep it the same on
    /// every node and across restarts, or consumers' hashes stop matching.
    #[serde(default)]
    pub hash_key: Option<PathBuf>,
    /// The secret that subjects' pseudonyms are keyed with (HMAC-SHA256): a file holding at
    /// least 64 hex digits. The audit log and the shared state hold pseudonyms, never IDs. The
    /// same on every node, and kept: auditors find a person's records by it.
    pub pseudonym_key: PathBuf,
    /// Verifying consent tokens; required when a rule needs consent.
    #[serde(default)]
    pub consent: Option<ConsentConfig>,
    /// Where revocations, consent use counts, frequency windows and request ids are kept:
    /// `memory` (this node only) or `redis://host:port[/db]` (every node sharing the Redis).
    #[serde(default = "default_shared_state")]
    pub shared_state: String,
    /// How long a consumer's request id is remembered, in seconds: a request that uses a
    /// consent or a frequency limit is refused (`request_replayed`) if the consumer sent the
    /// same id within this time.
    #[serde(default = "default_replay_window_s")]
    pub replay_window_s: u64,
    /// The node's audit log.
    pub audit: AuditConfig,
    /// The node's provenance signing key (Ed25519 PKCS#8, `isnad audit keygen`): every
    /// response is signed with it.
    pub provenance_key: PathBuf,
    /// The federation CA and this node's certificate and key.
    pub tls: TlsPaths,
    /// Provider endpoints that override the catalogue's, by agency id (a deployment detail:
    /// the catalogue says who provides what, this says where to reach them from this node).
    #[serde(default)]
    pub upstreams: BTreeMap<String, String>,
    /// Threads that serve connections, each with its own event loop, its own share of the
    /// client connections and its own connections to the providers; 0 (the default): one per
    /// core. See `gateway/src/workers.rs`.
    #[serde(default)]
    pub workers: usize,
    /// Limits on what callers may ask.
    #[serde(default)]
    pub limits: Limits,
    /// Per-agency limits that replace `limits.agency_*` for the agencies named (agency ids of
    /// the catalogue; an unknown name is a configuration error).
    #[serde(default)]
    pub agency_limits: BTreeMap<String, AgencyLimits>,
    /// Benchmarks only: run less than every step, to measure what the steps left out cost.
    /// Refused at start-up unless the binary was built with the cargo feature `bench-modes`,
    /// which no release build enables (see `bench/run.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench_mode: Option<BenchMode>,
}

/// What a benchmark build may leave out of the pipeline (`bench_mode`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMode {
    /// Forward every request unchecked: no limits, policy, consent, filtering, audit or
    /// signature. The proxy alone.
    PassThrough,
    /// Steps 1 to 7 (authenticate, admit, authorize, consent, minimize, fetch, filter), the
    /// checks of the foundation's speed target (issue 2); no audit record and no signature.
    Unaudited,
}

impl BenchMode {
    /// The name the configuration gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            BenchMode::PassThrough => "pass-through",
            BenchMode::Unaudited => "unaudited",
        }
    }

    /// What it leaves out, for the warning at start-up.
    pub fn steps_off(self) -> &'static str {
        match self {
            BenchMode::PassThrough => {
                "policy, consent, filtering, limits, audit record and signature"
            }
            BenchMode::Unaudited => "audit record and signature",
        }
    }
}

/// One agency's limits; what is left out comes from `limits.agency_*`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgencyLimits {
    /// Its requests in the pipeline at once on this node (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// Its sustained requests per second, agency-wide (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Its requests admitted at once after a quiet spell (0: one second's worth of `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The node's audit log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log's directory (one writer: every node has its own).
    pub dir: PathBuf,
    /// The log's checkpoint signing key (Ed25519 PKCS#8, `isnad audit keygen`); its public half
    /// is written to `<dir>/log.pub` for auditors.
    pub key: PathBuf,
    /// The log's origin, the first line of its checkpoints and its key's name [default:
    /// `<federation>/audit/<node>`].
    #[serde(default)]
    pub origin: Option<String>,
    /// How often a checkpoint is signed while the log grows, in milliseconds.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Group commit delay in microseconds: while requests arrive concurrently, the log waits
    /// this long before each write, so that more records share one `fdatasync` (and one
    /// provenance signature). 0 writes at once.
    #[serde(default = "default_commit_delay_us")]
    pub commit_delay_us: u64,
}

fn default_checkpoint_interval_ms() -> u64 {
    1000
}

fn default_commit_delay_us() -> u64 {
    200
}

/// How consent tokens are verified.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// The trusted consent authorities' public keys: a JWKS file, re-read when it changes.
    pub jwks: PathBuf,
    /// The accepted `iss` values.
    pub issuers: Vec<String>,
    /// The SPIFFE IDs allowed to call `Admin.RevokeConsent` [default:
    /// `spiffe://<federation>/admin/consent-authority`].
    #[serde(default)]
    pub authorities: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// The longest a consent may be valid (`exp - iat`), in days.
    #[serde(default = "default_max_lifetime_days")]
    pub max_lifetime_days: u64,
    /// The longest token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

fn default_leeway_s() -> u64 {
    30
}

fn default_max_lifetime_days() -> u64 {
    366
}

fn default_max_token_bytes() -> usize {
    8 * 1024
}

fn default_replay_window_s() -> u64 {
    600
}

fn default_shared_state() -> String {
    "memory".to_owned()
}

/// Paths of the TLS files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The federation CA (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// The federation CA's certificate revocation lists (PEM or DER): certificates on them are
    /// refused, at the handshake and, for connections already open, at every request. The
    /// files are re-read when they change (and the certificate, key and CA), like the policy.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

impl TlsPaths {
    /// The files, for loading.
    pub fn files(&self) -> isnad_tls::TlsFiles {
        isnad_tls::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            crls: self.crls.clone(),
        }
    }
}

/// Request and connection limits.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request message, in bytes.
    pub max_request_bytes: usize,
    /// Most fields one request may name.
    pub max_fields: usize,
    /// Deadline when the caller sets none, in milliseconds.
    pub default_deadline_ms: u64,
    /// Longest deadline honoured, in milliseconds; longer ones are cut to this.
    pub max_deadline_ms: u64,
    /// Time allowed for a client's TLS handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 connections kept to each provider; requests are spread over them. 0 (the
    /// default): one per worker, each used by its own worker only.
    pub upstream_connections: usize,
    /// Largest reply accepted from a provider, in bytes; a larger one is refused
    /// (`provider_reply_too_large`) and nothing of it is released.
    pub max_provider_reply_bytes: usize,
    /// Consecutive failures of a provider (unreachable, timed out, refusing, failing) after
    /// which its circuit opens: requests to it fail at once (`provider_circuit_open`) instead of
    /// waiting for their deadline. 0 turns the breaker off.
    pub circuit_failures: u32,
    /// How long an open circuit stays open before one trial request may go through, in
    /// milliseconds.
    pub circuit_open_ms: u64,
    /// Requests of one consumer agency in the pipeline at once on this node; beyond it a
    /// request is refused at once (`agency_busy`), never queued. 0: no limit.
    pub agency_in_flight: u32,
    /// Requests per second one consumer agency may send, sustained; agency-wide when
    /// `shared_state` is Redis. Beyond it a request is refused (`agency_rate_limited`). 0: no
    /// limit.
    pub agency_rate: u32,
    /// Requests of one agency admitted at once after a quiet spell. 0: one second's worth of
    /// `agency_rate`.
    pub agency_burst: u32,
    /// Client connections open at once (handshaking or established); beyond it a new
    /// connection is closed at once. 0: no limit.
    pub max_connections: usize,
    /// TLS handshakes in progress at once; further connections wait to be accepted.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one IP address (an IPv6 /64); beyond it a new
    /// connection from there is closed at once. 0: no limit.
    pub max_handshakes_per_ip: usize,
    /// Largest HTTP/2 header list of a request (names, values and 32 bytes each, as HTTP/2
    /// counts them); a larger one is refused (`headers_too_large`).
    pub max_header_list_bytes: u32,
    /// A client connection with no request in progress for this long is closed, in
    /// milliseconds. 0: never.
    pub idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 * 1024,
            max_fields: 64,
            default_deadline_ms: 5_000,
            max_deadline_ms: 30_000,
            handshake_timeout_ms: 5_000,
            max_concurrent_streams: 256,
            upstream_connections: 0,
            max_provider_reply_bytes: 4 * 1024 * 1024,
            circuit_failures: 5,
            circuit_open_ms: 5_000,
            agency_in_flight: 256,
            agency_rate: 0,
            agency_burst: 0,
            max_connections: 4096,
            max_handshakes: 512,
            max_handshakes_per_ip: 64,
            max_header_list_bytes: 16 * 1024,
            idle_timeout_ms: 300_000,
        }
    }
}

impl Limits {
    /// The deadline used when the caller sets none.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms)
    }

    /// The longest deadline honoured.
    pub fn max_deadline(&self) -> Duration {
        Duration::from_millis(self.max_deadline_ms)
    }

    /// Values that cannot work, named.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.agency_rate <= MAX_AGENCY_RATE,
            "limits.agency_rate: at most {MAX_AGENCY_RATE} requests per second"
        );
        anyhow::ensure!(self.max_handshakes > 0, "limits.max_handshakes: at least 1");
        anyhow::ensure!(
            self.max_header_list_bytes >= MIN_HEADER_LIST_BYTES,
            "limits.max_header_list_bytes: at least {MIN_HEADER_LIST_BYTES} (a gRPC request's \
             own headers take a few hundred bytes)"
        );
        Ok(())
    }
}

/// The highest agency rate: the rate's clock counts microseconds.
pub const MAX_AGENCY_RATE: u32 = 1_000_000;

/// The smallest header list limit accepted.
const MIN_HEADER_LIST_BYTES: u32 = 1024;

fn default_policy_poll_ms() -> u64 {
    1000
}

impl GatewayConfig {
    /// Reads a configuration file and resolves its relative paths.
    pub fn from_file(path: &Path) -> anyhow::Result<GatewayConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mut config: GatewayConfig = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.policy,
            &mut config.pseudonym_key,
            &mut config.audit.dir,
            &mut config.audit.key,
            &mut config.provenance_key,
            &mut config.tls.ca,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            *file = base.join(&*file);
        }
        for file in [&mut config.policy_signing_key, &mut config.hash_key]
            .into_iter()
            .flatten()
            .chain(&mut config.tls.crls)
        {
            *file = base.join(&*file);
        }
        if let Some(consent) = &mut config.consent {
            consent.jwks = base.join(&consent.jwks);
        }
        config
            .limits
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (agency, limits) in &config.agency_limits {
            anyhow::ensure!(
                limits.rate.unwrap_or(0) <= MAX_AGENCY_RATE,
                "{}: agency_limits.{agency}.rate: at most {MAX_AGENCY_RATE} requests per second",
                path.display()
            );
        }
        Ok(config)
    }
}
