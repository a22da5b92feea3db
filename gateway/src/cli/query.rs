//! `isnad query`: a consumer client of a local federation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use isnad_proto::v1::exchange_client::ExchangeClient;
use isnad_proto::v1::{AttributesRequest, AttributesResponse};
use isnad_tls::TlsFiles;
use isnad_tls::client::ChannelSettings;
use isnad_tls::policy::ExpectedPeer;
use tonic::transport::Channel;

use super::show;

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The directory of `isnad up`: its PKI and gateway configuration are used.
    #[arg(long)]
    dir: PathBuf,
    /// The identity to call as: a certificate name in DIR/pki, e.g. housing-programme.
    #[arg(long = "as")]
    as_name: String,
    /// The subject (ID number).
    #[arg(long)]
    subject: String,
    /// The dataset, e.g. identity.person.
    #[arg(long)]
    dataset: String,
    /// The purpose, e.g. housing-grant.
    #[arg(long)]
    purpose: String,
    /// The fields, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// A consent token, when a rule asks for one.
    #[arg(long, default_value = "")]
    consent_token: String,
    /// The request id [default: the gateway assigns one].
    #[arg(long, default_value = "")]
    request_id: String,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// The gateway [default: the address in DIR/gateway.yaml].
    #[arg(long)]
    gateway: Option<SocketAddr>,
    /// Print the response as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the response (protobuf bytes) to this file, e.g. for `isnad verify-response`.
    #[arg(long)]
    save: Option<PathBuf>,
}

/// A client of the gateway of the local federation in `dir`, calling as `name`.
pub(crate) async fn connect(
    dir: &Path,
    name: &str,
    gateway: Option<SocketAddr>,
) -> anyhow::Result<ExchangeClient<Channel>> {
    Ok(ExchangeClient::new(channel(dir, name, gateway).await?))
}

/// The gateway configuration of the local federation in `dir` (`isnad up`), and the federation's
/// trust domain from its policy.
pub(crate) fn local_federation(
    dir: &Path,
) -> anyhow::Result<(crate::config::GatewayConfig, String)> {
    let config =
        crate::config::GatewayConfig::from_file(&dir.join("gateway.yaml")).map_err(|e| {
            anyhow::anyhow!("{e:#}\n(is {} the directory of `isnad up`?)", dir.display())
        })?;
    let federation = isnad_policy::PolicySet::load_dir(&config.policy)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?
        .catalogue()
        .federation
        .clone();
    Ok((config, federation))
}

/// A channel to the gateway of the local federation in `dir`, calling as `name`, for any of its
/// services.
pub(crate) async fn channel(
    dir: &Path,
    name: &str,
    gateway: Option<SocketAddr>,
) -> anyhow::Result<Channel> {
    let (config, federation) = local_federation(dir)?;
    let mut addr = gateway.unwrap_or(config.listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let material = TlsFiles::in_dir(&dir.join("pki"), name).load()?;
    let tls = isnad_tls::policy::fixed_client_config(
        material,
        ExpectedPeer::AnyGateway {
            trust_domain: federation,
        },
    )?;
    Ok(isnad_tls::client::channel(
        &format!("https://{addr}"),
        Arc::new(tls),
        ChannelSettings::default(),
    )?)
}

pub(crate) async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.dir, &args.as_name, args.gateway).await?;
    let mut request = tonic::Request::new(AttributesRequest {
        subject: args.subject,
        dataset: args.dataset.clone(),
        fields: args.fields,
        purpose: args.purpose.clone(),
        consent_token: args.consent_token,
        request_id: args.request_id,
    });
    request.set_timeout(Duration::from_millis(args.timeout_ms));
    match client.get_attributes(request).await {
        Ok(response) => {
            let response = response.into_inner();
            if let Some(path) = &args.save {
                std::fs::write(path, prost::Message::encode_to_vec(&response))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&response_json(&response))?
                );
            } else {
                print_response(&response);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            let reason = isnad_proto::errors::reason(&status).unwrap_or_default();
            // A refusal below gRPC (a TLS alert, a reset) has no reason code: its cause chain
            // says what happened, e.g. "received fatal alert: CertificateRevoked".
            let mut message = status.message().to_owned();
            let mut cause = std::error::Error::source(&status);
            while let Some(error) = cause {
                message = format!("{message}: {error}");
                cause = error.source();
            }
            if args.json {
                let error = serde_json::json!({
                    "error": { "code": format!("{:?}", status.code()), "reason": reason, "message": message }
                });
                println!("{}", serde_json::to_string_pretty(&error)?);
            } else {
                eprintln!("refused: {:?} {reason}: {message}", status.code());
            }
            Ok(ExitCode::from(2))
        }
    }
}

pub(crate) fn print_response(response: &AttributesResponse) {
    let released: BTreeMap<_, _> = response.attributes.iter().collect();
    if released.is_empty() {
        println!("  released: nothing");
    } else {
        println!("  released:");
        for (field, value) in released {
            match response.transformed.iter().find(|t| &t.field == field) {
                Some(t) => println!(
                    "    {field:<20} {}   ({} by rule {})",
                    show::value(value),
                    t.transform,
                    t.rule_id
                ),
                None => println!("    {field:<20} {}", show::value(value)),
            }
        }
    }
    if !response.withheld.is_empty() {
        println!("  withheld:");
        for outcome in &response.withheld {
            let rule = if outcome.rule_id.is_empty() {
                "no rule grants it".to_owned()
            } else {
                format!("rule {}", outcome.rule_id)
            };
            println!("    {:<20} {:<16} ({rule})", outcome.field, outcome.reason);
        }
    }
    if let Some(provenance) = &response.provenance {
        println!(
            "  from {} ({}), policy {}",
            provenance.provider, provenance.dataset, provenance.policy_revision
        );
        println!(
            "  audit record {}, signed by {}",
            provenance.audit_index, provenance.key_id
        );
    }
}

fn response_json(response: &AttributesResponse) -> serde_json::Value {
    let attributes: serde_json::Map<_, _> = response
        .attributes
        .iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(field, value)| (field.clone(), show::json(value)))
        .collect();
    let withheld: Vec<_> = response
        .withheld
        .iter()
        .map(|o| serde_json::json!({"field": o.field, "reason": o.reason, "rule_id": o.rule_id}))
        .collect();
    let transformed: Vec<_> = response
        .transformed
        .iter()
        .map(|t| serde_json::json!({"field": t.field, "transform": t.transform, "rule_id": t.rule_id}))
        .collect();
    let provenance = response.provenance.as_ref().map(|p| {
        let fetched_at = p
            .fetched_at
            .and_then(|t| std::time::SystemTime::try_from(t).ok())
            .and_then(|t| {
                time::OffsetDateTime::from(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        serde_json::json!({
            "provider": p.provider,
            "dataset": p.dataset,
            "policy_revision": p.policy_revision,
            "audit_index": p.audit_index,
            "fetched_at": fetched_at,
            "request_id": p.request_id,
            "subject_pseudonym": isnad_audit::hex(&p.subject_pseudonym),
            "key_id": p.key_id,
            "signature": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &p.signature),
        })
    });
    serde_json::json!({
        "attributes": attributes,
        "withheld": withheld,
        "transformed": transformed,
        "provenance": provenance,
    })
}
