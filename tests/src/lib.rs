//! Test support for the end-to-end tests: a local federation run by the real `isnad` binary,
//! clients that call it as the federation's identities do, and provider agencies that misbehave
//! on purpose.
//!
//! The binary is the one cargo built next to the test executable (`target/<profile>/isnad`);
//! `cargo test --workspace` builds it because the gateway crate has integration tests of its own.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_proto::v1::exchange_client::ExchangeClient;
use isnad_proto::v1::{AttributesRequest, AttributesResponse};
use isnad_tls::client::ChannelSettings;
use isnad_tls::policy::ExpectedPeer;
use isnad_tls::{TlsFiles, TlsMaterial};
use tonic::transport::Channel;

pub mod consent;
pub mod providers;

/// The sample federation's trust domain.
pub const FEDERATION: &str = "isnad.example";

/// The first person of the sample records: a married, employed citizen of Dubai.
pub fn applicant() -> String {
    let records = repo_root().join("deploy/local/records/identity.person.jsonl");
    let text = std::fs::read_to_string(records).unwrap();
    let first = text.lines().next().unwrap();
    let start = first.find("\"subject\":\"").unwrap() + 11;
    first[start..start + 15].to_owned()
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `isnad` binary built by cargo beside this test.
pub fn isnad_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/isnad
    let bin = exe.parent().unwrap().parent().unwrap().join("isnad");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or build it with \
         `cargo build -p isnad-gateway`)",
        bin.display()
    );
    bin
}

/// A free TCP port on loopback (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped, its stderr kept in a file.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Where its stderr (the logs) goes.
    pub log: PathBuf,
}

impl Process {
    /// Starts `isnad ARGS`, logging to `log`.
    pub fn start(args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> Process {
        Self::start_with_stdout(args, log, Stdio::null(), env)
    }

    /// Starts `isnad ARGS`, logging to `log`, its standard output to `stdout`.
    pub fn start_with_stdout(
        args: &[&str],
        log: PathBuf,
        stdout: impl Into<Stdio>,
        env: &[(&str, &str)],
    ) -> Process {
        let stderr = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(isnad_bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        Process {
            child: command.spawn().unwrap(),
            log,
        }
    }

    /// Its process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it at once (SIGKILL: no shutdown, no final writes) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for it to exit (after a signal); kills it if it does not.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    /// Sends SIGTERM (a clean stop, as systemd does) and waits up to `limit` for the exit,
    /// without blocking the async runtime the test's clients run on; kills it after `limit`.
    pub async fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9();
        None
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("isnad exited with {status}; its log:\n{}", self.logs());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, process: &mut Process) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        process.assert_running();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {addr}; log:\n{}",
            process.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sample federation, run by `isnad up` in a temporary directory.
#[derive(Debug)]
pub struct Federation {
    /// The working directory (PKI in `pki/`).
    pub dir: tempfile::TempDir,
    /// The gateway's address.
    pub gateway: SocketAddr,
    /// The `isnad up` process.
    pub process: Process,
}

impl Federation {
    /// Starts `isnad up` and waits until the gateway accepts connections.
    pub fn start() -> Federation {
        Self::start_with_env(&[])
    }

    /// Starts `isnad up` with extra environment (e.g. `ISNAD_LOG`). The gateway listens on a
    /// port the system picks (no race with other tests for a "free" port); `isnad up` prints
    /// it once everything is up.
    pub fn start_with_env(env: &[(&str, &str)]) -> Federation {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("isnad-up.out");
        let mut process = Process::start_with_stdout(
            &[
                "up",
                "--dir",
                dir.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--federation",
                repo_root().join("deploy/local").to_str().unwrap(),
            ],
            dir.path().join("isnad-up.log"),
            std::fs::File::create(&out).unwrap(),
            env,
        );
        let start = Instant::now();
        let gateway: SocketAddr = loop {
            let printed = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(addr) = printed
                .lines()
                .find_map(|line| line.trim().strip_prefix("gateway"))
                .and_then(|rest| rest.trim().strip_prefix("https://"))
                .and_then(|addr| addr.parse().ok())
            {
                break addr;
            }
            process.assert_running();
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "isnad up did not come up; log:\n{}",
                process.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        wait_for_port(gateway, &mut process);
        Federation {
            dir,
            gateway,
            process,
        }
    }

    /// The sample providers `isnad up` started: agency id and `https://` endpoint.
    pub fn providers(&self) -> Vec<(String, String)> {
        let dir = self.dir.path().join("providers");
        let mut providers = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let listen = text
                .lines()
                .find_map(|line| line.strip_prefix("listen: "))
                .unwrap()
                .trim()
                .trim_matches('"')
                .trim_matches('\'');
            let agency = path.file_stem().unwrap().to_string_lossy().into_owned();
            providers.push((agency, format!("https://{listen}")));
        }
        providers.sort();
        providers
    }

    /// The working directory of `isnad up`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PKI directory.
    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// TLS material of a sample identity.
    pub fn material(&self, name: &str) -> TlsMaterial {
        TlsFiles::in_dir(&self.pki(), name).load().unwrap()
    }

    /// A client calling the gateway as `name`.
    pub fn client(&self, name: &str) -> ExchangeClient<Channel> {
        client_with(self.gateway, &self.material(name))
    }

    /// The federation's CA, able to issue more certificates.
    pub fn ca(&self) -> isnad_certs::CertificateAuthority {
        let read = |file: &str| std::fs::read_to_string(self.pki().join(file)).unwrap();
        isnad_certs::CertificateAuthority::load(&read("ca.pem"), &read("ca.key")).unwrap()
    }

    /// Starts a second gateway node (`isnad serve`) with this federation's PKI and policy, the
    /// providers of `upstreams` replacing the sample ones, and `limits` (YAML lines).
    pub fn serve_gateway(&self, upstreams: &[(&str, String)], limits: &str) -> Gateway {
        self.serve_gateway_with(&repo_root().join("deploy/local"), upstreams, limits, "")
    }

    /// Starts a gateway node with the policy store in `policy`, and `extra` top-level
    /// configuration lines (YAML), e.g. `policy_signing_key: ...`. The node uses the hash and
    /// pseudonym keys and the consent authority `isnad up` made, so its hashes match the
    /// federation's and it accepts the federation's consent tokens.
    pub fn serve_gateway_with(
        &self,
        policy: &Path,
        upstreams: &[(&str, String)],
        limits: &str,
        extra: &str,
    ) -> Gateway {
        let config = self.gateway_config(policy, upstreams, limits, extra);
        self.start_gateway(&config)
    }

    /// The configuration of another gateway node of the sample federation: the sample policy,
    /// the providers `isnad up` started, `extra` top-level lines (YAML).
    pub fn sample_gateway_config(&self, limits: &str, extra: &str) -> GatewayConfig {
        let providers = self.providers();
        let upstreams: Vec<(&str, String)> = providers
            .iter()
            .map(|(agency, endpoint)| (agency.as_str(), endpoint.clone()))
            .collect();
        self.gateway_config(&repo_root().join("deploy/local"), &upstreams, limits, extra)
    }

    /// Writes the configuration of a gateway node on a free port (see
    /// [`Federation::serve_gateway_with`]), with its own audit log directory, without starting
    /// it.
    pub fn gateway_config(
        &self,
        policy: &Path,
        upstreams: &[(&str, String)],
        limits: &str,
        extra: &str,
    ) -> GatewayConfig {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let pki = self.pki();
        let mut upstream_lines = String::new();
        for (agency, endpoint) in upstreams {
            upstream_lines.push_str(&format!("\n  {agency}: {endpoint}"));
        }
        if upstreams.is_empty() {
            upstream_lines.push_str(" {}");
        }
        let limits = if limits.is_empty() {
            " {}".to_owned()
        } else {
            format!("\n{}", limits.trim_end_matches('\n'))
        };
        let dir = self.dir.path().display();
        let audit = self.dir.path().join(format!("audit-{}", addr.port()));
        let config = format!(
            "node: gateway\nlisten: {addr}\npolicy: {policy}\nhash_key: {dir}/hash.key\n\
             pseudonym_key: {dir}/pseudonym.key\n\
             audit:\n  dir: {audit}\n  key: {dir}/keys/audit-log.pk8\n\
             provenance_key: {dir}/keys/provenance.pk8\n\
             consent:\n  jwks: {dir}/consent/jwks.json\n  issuers: [\"https://consent.{FEDERATION}\"]\n\
             tls:\n  ca: {pki}/ca.pem\n  cert: {pki}/gateway.pem\n  key: {pki}/gateway.key\n\
             upstreams:{upstream_lines}\nlimits:{limits}\n{extra}",
            policy = policy.display(),
            pki = pki.display(),
            audit = audit.display(),
        );
        let path = self
            .dir
            .path()
            .join(format!("gateway-{}.yaml", addr.port()));
        std::fs::write(&path, config).unwrap();
        GatewayConfig { addr, path, audit }
    }

    /// Starts `isnad serve` with `config` and waits until it accepts connections.
    pub fn start_gateway(&self, config: &GatewayConfig) -> Gateway {
        let log = self.dir.path().join(format!(
            "gateway-{}-{}.log",
            config.addr.port(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut process = Process::start(
            &["serve", "--config", config.path.to_str().unwrap()],
            log,
            &[],
        );
        wait_for_port(config.addr, &mut process);
        // The port may have been taken by another test's process since it was found free:
        // only this process saying it serves counts.
        let start = Instant::now();
        while !process.logs().contains("gateway serving") {
            process.assert_running();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the gateway did not come up; log:\n{}",
                process.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Gateway {
            addr: config.addr,
            audit: config.audit.clone(),
            process,
        }
    }
}

/// A gateway node's configuration file, written by [`Federation::gateway_config`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The configuration file.
    pub path: PathBuf,
    /// Its audit log directory.
    pub audit: PathBuf,
}

/// A gateway node started by [`Federation::serve_gateway`].
#[derive(Debug)]
pub struct Gateway {
    /// Its address.
    pub addr: SocketAddr,
    /// Its audit log directory.
    pub audit: PathBuf,
    /// Its process.
    pub process: Process,
}

/// Runs `isnad serve --config config`, which must refuse to start; returns what it printed on
/// standard error.
pub fn serve_refused(config: &Path) -> String {
    let output = Command::new(isnad_bin())
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .expect("isnad runs");
    assert!(!output.status.success(), "the gateway started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A client of the gateway at `addr` presenting `material`.
pub fn client_with(addr: SocketAddr, material: &TlsMaterial) -> ExchangeClient<Channel> {
    ExchangeClient::new(channel_with(addr, material))
}

/// A channel to the gateway at `addr` presenting `material`, for any of its services.
pub fn channel_with(addr: SocketAddr, material: &TlsMaterial) -> Channel {
    let tls = isnad_tls::policy::fixed_client_config(
        material.clone(),
        ExpectedPeer::AnyGateway {
            trust_domain: FEDERATION.into(),
        },
    )
    .unwrap();
    isnad_tls::client::channel(
        &format!("https://{addr}"),
        Arc::new(tls),
        ChannelSettings::default(),
    )
    .unwrap()
}

/// A client of the gateway at `addr` with any TLS configuration.
pub fn client_with_config(addr: SocketAddr, tls: rustls::ClientConfig) -> ExchangeClient<Channel> {
    let channel = isnad_tls::client::channel(
        &format!("https://{addr}"),
        Arc::new(tls),
        ChannelSettings::default(),
    )
    .unwrap();
    ExchangeClient::new(channel)
}

/// Writes an issued certificate to `dir/<name>.pem|key` beside a copy of `ca.pem`, and loads it.
pub fn material_from(
    dir: &Path,
    ca_pem: &str,
    name: &str,
    cert: &isnad_certs::IssuedCert,
) -> TlsMaterial {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    isnad_certs::write_pair(dir, name, cert).unwrap();
    TlsFiles::in_dir(dir, name).load().unwrap()
}

/// A request for `fields` of the applicant.
pub fn request(dataset: &str, purpose: &str, fields: &[&str]) -> AttributesRequest {
    AttributesRequest {
        subject: applicant(),
        dataset: dataset.into(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        purpose: purpose.into(),
        ..Default::default()
    }
}

/// Calls `GetAttributes`.
pub async fn get(
    client: &mut ExchangeClient<Channel>,
    request: AttributesRequest,
) -> Result<AttributesResponse, tonic::Status> {
    client
        .get_attributes(request)
        .await
        .map(tonic::Response::into_inner)
}

/// The gRPC code and isnad reason code of a refusal.
pub fn refusal(result: Result<AttributesResponse, tonic::Status>) -> (tonic::Code, String) {
    match result {
        Ok(response) => panic!("expected a refusal, got {response:?}"),
        Err(status) => (
            status.code(),
            isnad_proto::errors::reason(&status).unwrap_or_default(),
        ),
    }
}

/// Replaces `path` atomically (a temporary file renamed over it), as deployment tools do.
pub fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("replacing");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Copies the sample policy store (`deploy/local`) to `to`, with the consent rule's daily limit
/// per subject raised to `limit`, so that a test under load does not reach it.
pub fn copy_sample_policy(to: &Path, limit: u32) {
    let from = repo_root().join("deploy/local");
    for sub in ["", "rules", "tests"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap().replace(
                    "limit: { requests: 10, per: day }",
                    &format!("limit: {{ requests: {limit}, per: day }}"),
                );
                replace(
                    &to.join(sub).join(path.file_name().unwrap()),
                    text.as_bytes(),
                );
            }
        }
    }
}
