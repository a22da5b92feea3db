//! `isnad up`: the sample federation on this machine, in one process: a development PKI, one
//! reference provider per provider agency (on ephemeral loopback ports), and a gateway node.
//! Every part runs from a configuration file written into the working directory, the same files
//! `isnad serve` and `isnad provider` take, so what runs here is what a deployment runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use isnad_policy::{FieldType, PolicySet};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AuditConfig, ConsentConfig, GatewayConfig, Limits, TlsPaths};

/// The gateway node's name in the local federation.
pub(crate) const GATEWAY_NODE: &str = "gateway";

/// A running local federation.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) dir: PathBuf,
    pub(crate) gateway: SocketAddr,
    pub(crate) federation: String,
    pub(crate) providers: BTreeMap<String, SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The policy store and records to run: the one given, else `deploy/local` of this source tree.
pub(crate) fn federation_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let candidates = [
        PathBuf::from("deploy/local"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local"),
    ];
    candidates
        .into_iter()
        .find(|dir| dir.join("catalogue.yaml").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("no sample federation found: pass --federation DIR (see deploy/local)")
        })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn type_name(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "string",
        FieldType::Int => "int",
        FieldType::Bool => "bool",
        FieldType::Date => "date",
        FieldType::Double => "double",
        FieldType::Bytes => "bytes",
        FieldType::List => "list",
    }
}

fn write_yaml<T: serde::Serialize>(path: &Path, header: &str, value: &T) -> anyhow::Result<()> {
    let body = serde_saphyr::to_string(value)?;
    std::fs::write(path, format!("{header}\n{body}"))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// `dir/<name>`: a secret made once (32 random bytes as hex, mode 0600) and kept, so hashes
/// and pseudonyms stay the same across runs.
fn secret_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    crate::secrets::ensure_hex_key(&path)?;
    Ok(path)
}

/// `dir/keys/<name>`: an Ed25519 signing key made once and kept.
fn ed25519_key(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("keys").join(name);
    crate::secrets::ensure_ed25519_key(&path)?;
    Ok(path)
}

/// Creates (or reuses) the PKI in `dir/pki`, writes the configurations, and starts everything.
pub(crate) async fn start(
    dir: &Path,
    federation: &Path,
    listen: SocketAddr,
    shared_state: &str,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let dir = absolute(dir)?;
    let federation_dir = absolute(federation)?;
    let policy = PolicySet::load_dir(&federation_dir)
        .map_err(|errors| anyhow::anyhow!("policy {}: {errors}", federation_dir.display()))?;
    let catalogue = policy.catalogue();
    let trust_domain = catalogue.federation.clone();

    let pki = dir.join("pki");
    let agencies: Vec<&str> = catalogue.agencies.keys().map(|id| id.as_str()).collect();
    let identities = super::certs::sample_identities(&trust_domain, &agencies);
    let ca = isnad_certs::init_dir(&pki, &trust_domain, &identities, 90)?;
    // The CA's revocation list, empty to begin with: `isnad certs revoke --dir DIR/pki NAME`
    // adds to it, and the gateway picks it up without a restart.
    let crl = pki.join(super::certs::CRL_FILE);
    if !crl.exists() {
        let list = isnad_certs::RevocationList {
            number: 1,
            revoked: Vec::new(),
        };
        isnad_certs::write_public_file(&crl, &ca.revocation_list(&list, 7)?)?;
    }
    let tls_of = |name: &str| TlsPaths {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{name}.pem")),
        key: pki.join(format!("{name}.key")),
        crls: Vec::new(),
    };
    let gateway_id = format!("spiffe://{trust_domain}/gateway/{GATEWAY_NODE}");

    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut providers = BTreeMap::new();
    let provider_dir = dir.join("providers");
    std::fs::create_dir_all(&provider_dir)?;

    // One reference provider per agency that provides a dataset.
    let mut by_provider: BTreeMap<&str, Vec<&isnad_policy::Dataset>> = BTreeMap::new();
    for dataset in catalogue.datasets.values() {
        by_provider
            .entry(dataset.provider.as_str())
            .or_default()
            .push(dataset);
    }
    for (agency, datasets) in by_provider {
        let listener = super::bind("127.0.0.1:0".parse()?).await?;
        let addr = listener.local_addr()?;
        let tls = tls_of(agency);
        let config = serde_json::json!({
            "agency": agency,
            "listen": addr.to_string(),
            "tls": { "ca": tls.ca, "cert": tls.cert, "key": tls.key },
            "allowed_callers": [gateway_id],
            "datasets": datasets.iter().map(|dataset| {
                let fields: BTreeMap<&str, &str> = dataset.fields.iter()
                    .map(|(name, field)| (name.as_str(), type_name(field.field_type)))
                    .collect();
                (dataset.id.as_str().to_owned(), serde_json::json!({
                    "records": federation_dir.join("records").join(format!("{}.jsonl", dataset.id)),
                    "fields": fields,
                }))
            }).collect::<serde_json::Map<_, _>>(),
        });
        let path = provider_dir.join(format!("{agency}.yaml"));
        write_yaml(
            &path,
            "# Written by `isnad up` for this run: the reference provider's configuration.",
            &config,
        )?;
        let config = isnad_provider::ProviderConfig::from_file(&path)?;
        // Load before serving, so a bad record file fails `isnad up` itself.
        isnad_provider::ProviderService::load(&config)?;
        let token = stop.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) =
                isnad_provider::serve(&config, listener, token.cancelled_owned()).await
            {
                tracing::error!(agency = %config.agency, %error, "provider stopped");
            }
        }));
        providers.insert(agency.to_owned(), addr);
    }

    let authority = super::consent::DevAuthority::load_or_create(&dir)?;
    let listener = super::bind(listen).await?;
    let gateway_addr = listener.local_addr()?;
    let config = GatewayConfig {
        node: GATEWAY_NODE.to_owned(),
        listen: gateway_addr,
        policy: federation_dir.clone(),
        policy_signing_key: None,
        policy_poll_ms: 1000,
        hash_key: Some(secret_file(&dir, "hash.key")?),
        pseudonym_key: secret_file(&dir, "pseudonym.key")?,
        audit: AuditConfig {
            dir: dir.join("audit"),
            key: ed25519_key(&dir, "audit-log.pk8")?,
            origin: None,
            checkpoint_interval_ms: 1000,
            commit_delay_us: 200,
        },
        provenance_key: ed25519_key(&dir, "provenance.pk8")?,
        consent: Some(ConsentConfig {
            jwks: authority.jwks.clone(),
            issuers: vec![super::consent::dev_issuer(&trust_domain)],
            authorities: vec![format!(
                "spiffe://{trust_domain}/admin/{}",
                super::consent::AUTHORITY_NAME
            )],
            leeway_s: 30,
            max_lifetime_days: 366,
            max_token_bytes: 8 * 1024,
        }),
        shared_state: shared_state.to_owned(),
        replay_window_s: 600,
        tls: TlsPaths {
            crls: vec![crl.clone()],
            ..tls_of(GATEWAY_NODE)
        },
        upstreams: providers
            .iter()
            .map(|(agency, addr)| (agency.clone(), format!("https://{addr}")))
            .collect(),
        workers: 0,
        limits: Limits::default(),
        agency_limits: Default::default(),
        bench_mode: None,
    };
    let path = dir.join("gateway.yaml");
    write_yaml(
        &path,
        "# Written by `isnad up` for this run: the gateway's configuration (`isnad serve --config`).",
        &config,
    )?;
    let config = GatewayConfig::from_file(&path)?;
    // Consumers check responses' signatures with the node's public provenance key.
    let provenance =
        crate::provenance::ProvenanceSigner::load(&config.node, &config.provenance_key)?;
    std::fs::write(
        dir.join("provenance.pub"),
        format!("{}\n", provenance.public()),
    )?;
    let gateway = crate::server::Gateway::load(&config)?;
    let token = stop.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = gateway.serve(listener, token.cancelled_owned()).await {
            tracing::error!(%error, "gateway stopped");
        }
    }));

    Ok(Running {
        dir,
        gateway: gateway_addr,
        federation: trust_domain,
        providers,
        stop,
        tasks,
    })
}

impl Running {
    pub(crate) fn print_summary(&self) {
        println!("isnad: local federation {} is up", self.federation);
        println!("  gateway            https://{}", self.gateway);
        for (agency, addr) in &self.providers {
            println!("  provider {agency:<18} https://{addr}");
        }
        println!("  PKI                {}", self.dir.join("pki").display());
        println!(
            "  configuration      {}",
            self.dir.join("gateway.yaml").display()
        );
        println!(
            "  audit log          {} (key {})",
            self.dir.join("audit").display(),
            self.dir.join("audit/log.pub").display()
        );
        println!(
            "  provenance key     {}",
            self.dir.join("provenance.pub").display()
        );
        println!();
        println!("Try:");
        println!(
            "  cargo run -- query --dir {} --as housing-programme --dataset identity.person \\\n      --purpose housing-grant --subject SUBJECT --fields full_name_en,date_of_birth,mobile",
            self.dir.display()
        );
        println!("Ctrl-C stops it.");
    }

    /// Stops every part and waits for requests in flight to finish.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
