//! `isnad demo`: a housing grant application through a temporary sample federation, step by
//! step. The demo checks what it shows: every requested field comes back either released or
//! withheld with a reason, nothing unrequested is released, and refusals carry reason codes.
//! Any deviation exits non-zero.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use isnad_proto::v1::AttributesRequest;
use isnad_proto::v1::exchange_client::ExchangeClient;
use tonic::transport::Channel;

use super::query::{connect, print_response};

/// One request of the scenario.
struct Ask {
    title: &'static str,
    consumer: &'static str,
    dataset: &'static str,
    purpose: &'static str,
    fields: &'static [&'static str],
    /// The consent token the request carries.
    consent: Token,
    /// The reason code the whole request is expected to be refused with, if it is.
    refused: Option<&'static str>,
}

/// What the applicant agreed to before a step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    /// No consent token.
    None,
    /// The applicant agrees (through the consent authority) to share these fields.
    Grant(&'static [&'static str]),
    /// The applicant withdraws the consent of the previous grant; the request still carries it.
    Revoke,
}

const SCENARIO: &[Ask] = &[
    Ask {
        title: "Who is the applicant? The identity register answers",
        consumer: "housing-programme",
        dataset: "identity.person",
        purpose: "housing-grant",
        fields: &[
            "full_name_en",
            "full_name_ar",
            "date_of_birth",
            "nationality",
            "emirate",
            "mobile",
            "id_card_expiry",
        ],
        consent: Token::None,
        refused: None,
    },
    Ask {
        title: "How large is the household? The family book answers",
        consumer: "housing-programme",
        dataset: "civil.family",
        purpose: "housing-grant",
        fields: &[
            "marital_status",
            "family_book_number",
            "children_count",
            "children",
            "spouse_subject",
        ],
        consent: Token::None,
        refused: None,
    },
    Ask {
        title: "What does the household earn? The labour ministry answers",
        consumer: "housing-programme",
        dataset: "labour.employment",
        purpose: "housing-grant",
        fields: &[
            "employed",
            "monthly_salary_aed",
            "employment_start",
            "employer_name",
            "occupation",
        ],
        consent: Token::None,
        refused: None,
    },
    Ask {
        title: "The applicant consents to share their occupation for the key-worker list",
        consumer: "housing-programme",
        dataset: "labour.employment",
        purpose: "housing-grant",
        fields: &["occupation", "contract_type"],
        consent: Token::Grant(&["occupation"]),
        refused: None,
    },
    Ask {
        title: "The applicant withdraws that consent; the same request is refused",
        consumer: "housing-programme",
        dataset: "labour.employment",
        purpose: "housing-grant",
        fields: &["occupation", "contract_type"],
        consent: Token::Revoke,
        refused: Some("consent_revoked"),
    },
    Ask {
        title: "The same data for another purpose is refused",
        consumer: "housing-programme",
        dataset: "civil.family",
        purpose: "newborn-registration",
        fields: &["marital_status"],
        consent: Token::None,
        refused: Some("no_rule"),
    },
    Ask {
        title: "An agency without a rule for a dataset gets nothing from it",
        consumer: "health-authority",
        dataset: "labour.employment",
        purpose: "newborn-registration",
        fields: &["monthly_salary_aed"],
        consent: Token::None,
        refused: Some("no_rule"),
    },
];

pub(crate) async fn run(federation: &Path) -> anyhow::Result<ExitCode> {
    let dir = tempfile_dir()?;
    let running = super::up::start(&dir, federation, "127.0.0.1:0".parse()?, "memory").await?;
    let applicant = first_subject(&federation.join("records/identity.person.jsonl"))?;

    println!("isnad demo: a housing grant application, where the citizen is asked once");
    println!("=========================================================================");
    println!(
        "A sample federation is running in {}:",
        running.dir.display()
    );
    println!("  gateway https://{}", running.gateway);
    for (agency, addr) in &running.providers {
        println!("  {agency} https://{addr}");
    }
    println!();
    println!("Applicant {applicant} applies to the housing programme for a housing grant.");
    println!("Instead of asking for documents, the programme asks isnad for what the rules let it");
    println!("see. isnad asks each provider only for the fields the policy releases, and releases");
    println!("some of them in a form that tells no more than the programme needs: an age check");
    println!("instead of a birth date, a salary band instead of a salary.");

    let mut problems = Vec::new();
    let provenance_key = crate::provenance::ProvenanceKey::parse(&std::fs::read_to_string(
        running.dir.join("provenance.pub"),
    )?)?;
    let (mut released, mut transformed, mut withheld, mut refused) = (0, 0, 0, 0);
    let mut token = String::new();
    for (step, ask) in SCENARIO.iter().enumerate() {
        println!();
        println!("Step {}. {}", step + 1, ask.title);
        match ask.consent {
            Token::None => token.clear(),
            Token::Grant(fields) => {
                let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
                token = super::consent::issue_token(
                    &running.dir,
                    &super::consent::Agreement {
                        consumer: ask.consumer,
                        subject: &applicant,
                        dataset: ask.dataset,
                        purpose: ask.purpose,
                        fields: &fields,
                        valid_for: std::time::Duration::from_secs(3600),
                        max_uses: Some(5),
                        bind_cert: true,
                    },
                )?;
                let (id, _) = isnad_consent::peek_id(&token)?;
                println!(
                    "  The applicant agrees, in the consent authority's app, to share {} with {} \
                     for {} (at most 5 times, within the hour). The authority signs consent {id} \
                     ({} bytes, bound to {}'s certificate).",
                    fields.join(", "),
                    ask.consumer,
                    ask.purpose,
                    token.len(),
                    ask.consumer,
                );
            }
            Token::Revoke => {
                let (id, exp) = isnad_consent::peek_id(&token)?;
                let expires =
                    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(exp);
                match super::consent::revoke(&running.dir, &id, Some(expires), None).await {
                    Ok(_) => println!(
                        "  The applicant withdraws consent {id}; the consent authority revokes it \
                         at the gateway (Admin.RevokeConsent)."
                    ),
                    Err(status) => problems.push(format!(
                        "step {}: the revocation failed: {}",
                        step + 1,
                        status.message()
                    )),
                }
            }
        }
        println!(
            "  {} asks {} for {}: {}{}",
            ask.consumer,
            ask.dataset,
            ask.purpose,
            ask.fields.join(", "),
            if token.is_empty() {
                ""
            } else {
                ", with the consent token"
            }
        );
        let mut client: ExchangeClient<Channel> = connect(&running.dir, ask.consumer, None).await?;
        let request = AttributesRequest {
            subject: applicant.clone(),
            dataset: ask.dataset.into(),
            fields: ask.fields.iter().map(|f| (*f).to_owned()).collect(),
            purpose: ask.purpose.into(),
            consent_token: token.clone(),
            request_id: format!("demo-{}", step + 1),
        };
        match client.get_attributes(request).await {
            Ok(response) => {
                let response = response.into_inner();
                print_response(&response);
                if let Err(error) = provenance_key.verify(&response) {
                    problems.push(format!(
                        "step {}: the response's signature does not verify: {error}",
                        step + 1
                    ));
                }
                released += response.attributes.len();
                transformed += response.transformed.len();
                if response
                    .transformed
                    .iter()
                    .any(|t| !response.attributes.contains_key(&t.field) || t.rule_id.is_empty())
                {
                    problems.push(format!(
                        "step {}: a transform is reported for a field not released, or without its rule",
                        step + 1
                    ));
                }
                withheld += response.withheld.len();
                if let Some(expected) = ask.refused {
                    problems.push(format!(
                        "step {}: expected a refusal ({expected}), got an answer",
                        step + 1
                    ));
                }
                if let Token::Grant(granted) = ask.consent {
                    for field in ask.fields {
                        let released = response.attributes.contains_key(*field);
                        let scoped = response
                            .withheld
                            .iter()
                            .any(|o| o.field == *field && o.reason == "consent_scope");
                        if granted.contains(field) != released
                            || (!granted.contains(field) && !scoped)
                        {
                            problems.push(format!(
                                "step {}: {field} should be {} under the consent",
                                step + 1,
                                if granted.contains(field) {
                                    "released"
                                } else {
                                    "withheld as consent_scope"
                                }
                            ));
                        }
                    }
                }
                let asked: HashSet<&str> = ask.fields.iter().copied().collect();
                let mut seen = HashSet::new();
                for field in response
                    .attributes
                    .keys()
                    .map(String::as_str)
                    .chain(response.withheld.iter().map(|o| o.field.as_str()))
                {
                    if !asked.contains(field) {
                        problems.push(format!("step {}: {field} was not asked for", step + 1));
                    }
                    if !seen.insert(field) {
                        problems.push(format!("step {}: {field} reported twice", step + 1));
                    }
                }
                if seen.len() != asked.len() {
                    problems.push(format!("step {}: a field is unaccounted for", step + 1));
                }
                if response.withheld.iter().any(|o| o.reason.is_empty()) {
                    problems.push(format!("step {}: a withheld field has no reason", step + 1));
                }
            }
            Err(status) => {
                let reason = isnad_proto::errors::reason(&status).unwrap_or_default();
                println!("  refused: {:?} {reason}", status.code());
                println!("    {}", status.message());
                refused += 1;
                if ask.refused != Some(reason.as_str()) {
                    problems.push(format!(
                        "step {}: refused with {reason}, expected {}",
                        step + 1,
                        ask.refused.unwrap_or("an answer")
                    ));
                }
                if reason.is_empty() {
                    problems.push(format!("step {}: the refusal has no reason code", step + 1));
                }
            }
        }
    }

    println!();
    println!(
        "Summary: {released} fields released ({transformed} of them masked, hashed, derived or \
         generalized by the policy), {withheld} withheld with a reason, {refused} requests refused."
    );
    if let Err(error) = audit_view(&running.dir, &applicant, &mut problems).await {
        problems.push(format!("the auditor's view failed: {error:#}"));
    }
    let log = running.dir.join("audit");
    running.stop().await;
    // The gateway is stopped: the auditor recomputes the whole log from its files.
    println!();
    println!(
        "Step {}. The auditor verifies the whole log offline (isnad audit verify)",
        SCENARIO.len() + 2
    );
    let verified = isnad_audit::load_key(&log)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|key| {
            isnad_audit::verify_dir(&log, &key, |_, _| {})
                .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))
        });
    match verified {
        Ok(report) => println!(
            "  ok: {} records, {} checkpoints verified, root {}",
            report.records,
            report.checkpoints,
            isnad_audit::hex(&report.root)
        ),
        Err(error) => problems.push(format!("the log does not verify: {error:#}")),
    }
    std::fs::remove_dir_all(&dir).ok();
    if problems.is_empty() {
        println!("Every requested field was accounted for.");
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            eprintln!("demo check failed: {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// What the auditor sees: the applicant's subject report from the running gateway, and one of
/// its inclusion proofs checked against the signed checkpoint with the log's key.
async fn audit_view(dir: &Path, applicant: &str, problems: &mut Vec<String>) -> anyhow::Result<()> {
    use isnad_proto::v1::SubjectReportRequest;
    use isnad_proto::v1::audit_client::AuditClient;

    println!();
    println!(
        "Step {}. The auditor asks the gateway who read the applicant's data (Audit.SubjectReport)",
        SCENARIO.len() + 1
    );
    let mut audit = AuditClient::new(super::query::channel(dir, "auditor", None).await?);
    let report = audit
        .subject_report(SubjectReportRequest {
            subject: applicant.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "  {} accesses: {} released, {} answered with nothing released, {} refused",
        report.accesses.len(),
        report.released,
        report.withheld,
        report.refused
    );
    for access in &report.accesses {
        let time = access
            .time
            .and_then(|t| std::time::SystemTime::try_from(t).ok())
            .and_then(|t| {
                time::OffsetDateTime::from(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let what = if access.decision == "refused" {
            let reason = access
                .entry
                .as_ref()
                .and_then(|e| e.record.as_ref())
                .map(|r| r.refused_reason.clone())
                .unwrap_or_default();
            format!("refused ({reason})")
        } else {
            access
                .released
                .iter()
                .map(|r| {
                    if r.treatment == "allow" {
                        r.field.clone()
                    } else {
                        format!("{} as {}", r.field, r.treatment)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "    {time}  {} {} {} from {} for {} [{}]: {what}",
            access.consumer,
            if access.decision == "released" {
                "read"
            } else {
                "asked for"
            },
            access.dataset,
            access.provider,
            access.purpose,
            if access.legal_basis.is_empty() {
                "-"
            } else {
                &access.legal_basis
            },
        );
    }
    if report.accesses.len() != SCENARIO.len() {
        problems.push(format!(
            "the subject report lists {} accesses, the scenario made {}",
            report.accesses.len(),
            SCENARIO.len()
        ));
    }
    // One proof, checked with the key the auditor holds (here: the log's own log.pub).
    let key = isnad_audit::load_key(&dir.join("audit")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signed = report
        .checkpoint
        .ok_or_else(|| anyhow::anyhow!("the report has no checkpoint"))?;
    let checkpoint = isnad_audit::Checkpoint::verify(&signed.note, &key)
        .map_err(|e| anyhow::anyhow!("the checkpoint does not verify: {e}"))?;
    let entry = report
        .accesses
        .first()
        .and_then(|access| access.entry.clone())
        .ok_or_else(|| anyhow::anyhow!("the report has no entry"))?;
    let proof: Vec<isnad_audit::Hash> = entry
        .inclusion_proof
        .iter()
        .map(|hash| hash.as_slice().try_into())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))?;
    let leaf = isnad_audit::leaf_hash(&entry.leaf);
    let proven = isnad_audit::verify_inclusion(
        isnad_audit::LeafIndex(entry.index),
        checkpoint.size,
        &leaf,
        &proof,
        &checkpoint.root,
    );
    println!(
        "  Inclusion proof of record {} in the signed tree of {} records:",
        entry.index, checkpoint.size.0
    );
    println!("    leaf hash  {}", isnad_audit::hex(&leaf));
    for (n, hash) in proof.iter().enumerate() {
        println!("    path {n:<5} {}", isnad_audit::hex(hash));
    }
    println!("    root       {}", isnad_audit::hex(&checkpoint.root));
    match proven {
        Ok(()) => println!(
            "  The proof leads to the root that {} signed: the record is in the log.",
            key.name()
        ),
        Err(error) => problems.push(format!("the inclusion proof does not verify: {error}")),
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("isnad-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The applicant: the first person of the identity register.
fn first_subject(records: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(records)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", records.display()))?;
    let line = std::io::BufReader::new(file)
        .lines()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} is empty", records.display()))??;
    let record: serde_json::Value = serde_json::from_str(&line)?;
    record["subject"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{}: the first record has no subject", records.display()))
}
