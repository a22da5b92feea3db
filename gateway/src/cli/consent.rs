//! `isnad consent issue|revoke`: the development consent authority of a local federation.
//!
//! A real consent authority (the citizen's app, a national consent service) records what the
//! citizen agreed to and signs it as a consent token with its own key; the gateways trust its
//! public keys (a JWKS). `isnad up` makes such an authority for the sample federation: its key
//! in `DIR/consent/authority.pk8`, its JWKS in `DIR/consent/jwks.json`, its certificate (for
//! `Admin.RevokeConsent`) as `DIR/pki/consent-authority.pem`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use isnad_consent::{ConsentGrant, SigningAlgorithm, SigningKey};
use isnad_proto::v1::RevokeConsentRequest;
use isnad_proto::v1::admin_client::AdminClient;

/// The certificate name (in `DIR/pki`) of the development consent authority.
pub(crate) const AUTHORITY_NAME: &str = "consent-authority";

/// The key id of the development consent authority's signing key.
const KEY_ID: &str = "dev-consent-1";

/// The `iss` of the development consent authority's tokens.
pub(crate) fn dev_issuer(federation: &str) -> String {
    format!("https://consent.{federation}")
}

/// The development consent authority's files in an `isnad up` directory.
#[derive(Debug)]
pub(crate) struct DevAuthority {
    /// Its signing key.
    pub(crate) key: SigningKey,
    /// The JWKS gateways trust.
    pub(crate) jwks: PathBuf,
}

impl DevAuthority {
    /// Loads the key in `dir/consent`, making it first if missing, and (re)writes the JWKS.
    pub(crate) fn load_or_create(dir: &Path) -> anyhow::Result<DevAuthority> {
        let consent_dir = dir.join("consent");
        std::fs::create_dir_all(&consent_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", consent_dir.display()))?;
        let key_path = consent_dir.join("authority.pk8");
        if !key_path.exists() {
            let key = SigningKey::generate(KEY_ID, SigningAlgorithm::EdDSA)?;
            crate::secrets::write_private(&key_path, key.pkcs8())?;
        }
        let key = Self::load(dir)?;
        let jwks = consent_dir.join("jwks.json");
        let text = isnad_consent::jwks_json(&[&key.key]);
        if std::fs::read_to_string(&jwks).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&jwks, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", jwks.display()))?;
        }
        Ok(key)
    }

    /// Loads the key in `dir/consent`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<DevAuthority> {
        let key_path = dir.join("consent/authority.pk8");
        let pkcs8 = std::fs::read(&key_path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the consent authority's key {}: {e} (is {} the directory of \
                 `isnad up`?)",
                key_path.display(),
                dir.display()
            )
        })?;
        let key = SigningKey::from_pkcs8(KEY_ID, SigningAlgorithm::EdDSA, &pkcs8)
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        Ok(DevAuthority {
            key,
            jwks: dir.join("consent/jwks.json"),
        })
    }
}

/// What a citizen agrees to, for `isnad consent issue` and the demo.
#[derive(Debug, Clone)]
pub(crate) struct Agreement<'a> {
    pub(crate) consumer: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) dataset: &'a str,
    pub(crate) purpose: &'a str,
    pub(crate) fields: &'a [String],
    pub(crate) valid_for: Duration,
    pub(crate) max_uses: Option<u64>,
    pub(crate) bind_cert: bool,
}

/// Signs a consent token for `agreement` with the development consent authority of `dir`.
pub(crate) fn issue_token(dir: &Path, agreement: &Agreement<'_>) -> anyhow::Result<String> {
    let authority = DevAuthority::load(dir)?;
    let (_, federation) = super::query::local_federation(dir)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let cert_sha256 = if agreement.bind_cert {
        let material = isnad_tls::TlsFiles::in_dir(&dir.join("pki"), agreement.consumer).load()?;
        let leaf = material
            .chain
            .first()
            .ok_or_else(|| anyhow::anyhow!("{} has no certificate", agreement.consumer))?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, leaf.as_ref()).as_ref());
        Some(hash)
    } else {
        None
    };
    let grant = ConsentGrant {
        id: isnad_consent::new_consent_id()?,
        issuer: dev_issuer(&federation),
        audience: federation.clone(),
        subject: agreement.subject.to_owned(),
        consumer: format!("spiffe://{federation}/agency/{}", agreement.consumer),
        purpose: agreement.purpose.to_owned(),
        dataset: agreement.dataset.to_owned(),
        fields: agreement.fields.to_vec(),
        issued_at: now,
        expires_at: now + agreement.valid_for.as_secs(),
        max_uses: agreement.max_uses,
        cert_sha256,
    };
    Ok(authority.key.issue(&grant.claims())?)
}

/// Revokes the consent `id` through the gateway of `dir`, as the development consent authority.
pub(crate) async fn revoke(
    dir: &Path,
    id: &str,
    expires_at: Option<SystemTime>,
    gateway: Option<std::net::SocketAddr>,
) -> Result<SystemTime, tonic::Status> {
    let channel = super::query::channel(dir, AUTHORITY_NAME, gateway)
        .await
        .map_err(|error| tonic::Status::unavailable(format!("{error:#}")))?;
    let response = AdminClient::new(channel)
        .revoke_consent(RevokeConsentRequest {
            consent_id: id.to_owned(),
            expires_at: expires_at.map(Into::into),
        })
        .await?
        .into_inner();
    Ok(response
        .revoked_until
        .and_then(|at| SystemTime::try_from(at).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Make a development consent authority key in DIR/consent (kept if it exists) and write
    /// its JWKS beside it, for gateways to trust (`consent.jwks`).
    Keygen {
        /// The directory (`isnad up` uses its own).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Sign a consent token with the development consent authority of a local federation, as if
    /// the citizen had agreed; prints the token.
    Issue {
        /// The directory of `isnad up`.
        #[arg(long)]
        dir: PathBuf,
        /// The consumer agency the citizen agrees to share with, e.g. housing-programme.
        #[arg(long = "for")]
        consumer: String,
        /// The citizen (the subject requests name).
        #[arg(long)]
        subject: String,
        /// The dataset.
        #[arg(long)]
        dataset: String,
        /// The purpose.
        #[arg(long)]
        purpose: String,
        /// The fields the citizen agrees to share, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
        /// How long the consent is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        valid_s: u64,
        /// How many requests it allows [default: no limit].
        #[arg(long)]
        max_uses: Option<u64>,
        /// Bind the token to the consumer's certificate (cnf.x5t#S256), so it is useless to
        /// anyone else.
        #[arg(long)]
        bind_cert: bool,
    },
    /// Revoke a consent through the gateway, as the development consent authority.
    Revoke {
        /// The directory of `isnad up`.
        #[arg(long)]
        dir: PathBuf,
        /// The consent id (the token's `jti`).
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        id: Option<String>,
        /// The token itself: its `jti` and `exp` are read from it.
        #[arg(long)]
        token: Option<String>,
        /// The gateway [default: the address in DIR/gateway.yaml].
        #[arg(long)]
        gateway: Option<std::net::SocketAddr>,
    },
}

pub(crate) async fn run(command: ConsentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConsentCommand::Keygen { dir } => {
            let authority = DevAuthority::load_or_create(&dir)?;
            println!(
                "consent authority key {} (kid {KEY_ID}); JWKS {}",
                dir.join("consent/authority.pk8").display(),
                authority.jwks.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ConsentCommand::Issue {
            dir,
            consumer,
            subject,
            dataset,
            purpose,
            fields,
            valid_s,
            max_uses,
            bind_cert,
        } => {
            let token = issue_token(
                &dir,
                &Agreement {
                    consumer: &consumer,
                    subject: &subject,
                    dataset: &dataset,
                    purpose: &purpose,
                    fields: &fields,
                    valid_for: Duration::from_secs(valid_s),
                    max_uses,
                    bind_cert,
                },
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        ConsentCommand::Revoke {
            dir,
            id,
            token,
            gateway,
        } => {
            let (id, expires_at) = match (id, token) {
                (Some(id), _) => (id, None),
                (None, Some(token)) => {
                    let (id, exp) = isnad_consent::peek_id(token.trim())?;
                    (id, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp)))
                }
                (None, None) => anyhow::bail!("give --id or --token"),
            };
            match revoke(&dir, &id, expires_at, gateway).await {
                Ok(until) => {
                    let until = time::OffsetDateTime::from(until)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    println!("consent {id} revoked (kept until {until})");
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => {
                    let reason = isnad_proto::errors::reason(&status).unwrap_or_default();
                    eprintln!(
                        "refused: {:?} {reason}: {}",
                        status.code(),
                        status.message()
                    );
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
