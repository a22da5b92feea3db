//! Step 8: the audit record of the request, released or refused.
//!
//! [`Facts`] collects what the steps learn as they pass: who called, what was asked, who
//! provides it, what was released, how and under which rules, what was withheld and why. A
//! refusal is recorded with what was known when it happened: a request refused before it was
//! admitted has no field list, and names only what is safe to keep (a dataset or purpose that is
//! not a plain name is recorded as empty, never as the bytes sent). The subject is recorded
//! only as its keyed pseudonym.

use std::time::SystemTime;

use isnad_audit::{AuditRecord, Decision, Released as AuditReleased, SubjectPseudonym, Withheld};
use isnad_policy::PolicySet;
use isnad_proto::v1::{AttributesRequest, AttributesResponse};
use isnad_tls::PeerInfo;
use tonic::Code;

use super::filter::Released;
use super::{Admitted, Denial, Step};
use crate::secrets::PseudonymKey;

/// The longest name kept from a request that was not admitted.
const MAX_UNADMITTED_NAME: usize = 128;

/// What the audit record of one request says.
#[derive(Debug)]
pub(crate) struct Facts {
    node: String,
    pub(crate) consumer: String,
    request_id: String,
    subject: SubjectPseudonym,
    dataset: String,
    purpose: String,
    requested: Vec<String>,
    pub(crate) provider: String,
    legal_basis: String,
    basis_reference: String,
    pub(crate) consent_id: Option<String>,
    released: Vec<AuditReleased>,
    withheld: Vec<Withheld>,
    policy_revision: [u8; 32],
    released_digest: [u8; 32],
    /// The canonical encoding of the released attributes: hashed for the record (step 8),
    /// signed in step 9.
    released_encoding: Vec<u8>,
}

/// A name from an unchecked request, if it is a plain one.
fn plain(name: &str) -> String {
    let ok = name.len() <= MAX_UNADMITTED_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok { name.to_owned() } else { String::new() }
}

impl Facts {
    /// What is known before any step: the node, the policy, the names the request gives (kept
    /// only if they are plain names) and the subject's pseudonym.
    pub(crate) fn new(
        node: &str,
        policy: &PolicySet,
        request: &AttributesRequest,
        pseudonyms: &PseudonymKey,
    ) -> Facts {
        Facts {
            node: node.to_owned(),
            consumer: String::new(),
            request_id: plain(&request.request_id),
            subject: pseudonyms.of(&request.subject),
            dataset: plain(&request.dataset),
            purpose: plain(&request.purpose),
            requested: Vec::new(),
            provider: String::new(),
            legal_basis: String::new(),
            basis_reference: String::new(),
            consent_id: None,
            released: Vec::new(),
            withheld: Vec::new(),
            policy_revision: *policy.revision().digest(),
            released_digest: [0; 32],
            released_encoding: Vec::new(),
        }
    }

    /// Step 1: the caller's SPIFFE ID, until it is known to be an agency.
    pub(crate) fn caller(&mut self, peer: Option<&PeerInfo>) {
        self.consumer = match peer.map(|peer| &peer.identity) {
            Some(Ok(id)) => id.as_str().to_owned(),
            Some(Err(_)) => "(no SPIFFE ID)".to_owned(),
            None => "(no client identity)".to_owned(),
        };
    }

    /// Step 2: the admitted request, and the dataset's provider if the catalogue has it.
    pub(crate) fn admitted(&mut self, admitted: &Admitted, policy: &PolicySet) {
        let request = &admitted.request;
        self.request_id = admitted.request_id.clone();
        self.dataset = request.dataset.clone();
        self.purpose = request.purpose.clone();
        self.requested = request.fields.clone();
        if let Some(dataset) = policy.catalogue().datasets.get(request.dataset.as_str()) {
            self.provider = dataset.provider.as_str().to_owned();
        }
    }

    /// Step 7: what is released and withheld, and the legal bases it rests on. Takes the
    /// release list (its strings move into the record); the rest stays for the response.
    pub(crate) fn released(&mut self, released: &mut Released<'_>) {
        let mut bases: Vec<&str> = Vec::new();
        let mut references: Vec<&str> = Vec::new();
        for (_, _, rule) in &released.released {
            if let Some(basis) = &rule.basis {
                if !bases.contains(&basis.code()) {
                    bases.push(basis.code());
                }
                if let Some(reference) = basis.reference()
                    && !references.contains(&reference)
                {
                    references.push(reference);
                }
            }
        }
        bases.sort_unstable();
        self.legal_basis = bases.join(",");
        self.basis_reference = references.join("; ");
        self.released = std::mem::take(&mut released.released)
            .into_iter()
            .map(|(field, treatment, rule)| AuditReleased {
                field,
                treatment,
                rule_id: rule.id.as_str().to_owned(),
            })
            .collect();
        self.withheld = released
            .withheld
            .iter()
            .map(|outcome| Withheld {
                field: outcome.field.clone(),
                reason: outcome.reason.clone(),
                rule_id: outcome.rule_id.clone(),
            })
            .collect();
    }

    /// The subject's pseudonym.
    pub(crate) fn subject(&self) -> &SubjectPseudonym {
        &self.subject
    }

    /// The canonical encoding of the released attributes.
    pub(crate) fn released_encoding(&self) -> &[u8] {
        &self.released_encoding
    }

    /// The request id recorded.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The dataset recorded (empty for a name that was not admitted and is not plain).
    pub(crate) fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The purpose recorded (as the dataset).
    pub(crate) fn purpose(&self) -> &str {
        &self.purpose
    }
}

/// The encoded record of a request that ended in `answer` at `at`. What the record holds is
/// moved out of `facts`; the request id, the subject's pseudonym and the released attributes'
/// encoding stay, for the provenance signature.
pub(crate) fn record(
    facts: &mut Facts,
    answer: &Result<AttributesResponse, Denial>,
    at: SystemTime,
) -> Result<Vec<u8>, Denial> {
    if let Ok(response) = answer {
        facts.released_encoding = crate::provenance::encode_attributes(&response.attributes);
        facts.released_digest = crate::provenance::digest_of_encoding(
            &facts.released_encoding,
            response.attributes.is_empty(),
        );
    }
    let (decision, status) = match answer {
        Ok(response) if response.attributes.is_empty() => (Decision::Withheld, "ok".to_owned()),
        Ok(_) => (Decision::Released, "ok".to_owned()),
        Err(denial) => (
            Decision::Refused {
                step: denial.step.to_string(),
                reason: denial.reason.to_owned(),
            },
            denial.reason.to_owned(),
        ),
    };
    let time = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        });
    let refused = answer.is_err();
    let take = std::mem::take::<String>;
    AuditRecord {
        time,
        node: take(&mut facts.node),
        request_id: facts.request_id.clone(),
        consumer: take(&mut facts.consumer),
        provider: take(&mut facts.provider),
        dataset: take(&mut facts.dataset),
        purpose: take(&mut facts.purpose),
        legal_basis: if refused {
            String::new()
        } else {
            take(&mut facts.legal_basis)
        },
        basis_reference: if refused {
            String::new()
        } else {
            take(&mut facts.basis_reference)
        },
        consent_id: facts.consent_id.take().filter(|_| !refused),
        subject: facts.subject,
        requested: std::mem::take(&mut facts.requested),
        released: if refused {
            Vec::new()
        } else {
            std::mem::take(&mut facts.released)
        },
        withheld: if refused {
            Vec::new()
        } else {
            std::mem::take(&mut facts.withheld)
        },
        decision,
        policy_revision: facts.policy_revision,
        released_digest: if refused {
            [0; 32]
        } else {
            facts.released_digest
        },
        status,
    }
    .encode()
    .map_err(|error| {
        tracing::error!(code = error.code(), %error, "an audit record could not be encoded");
        Denial::new(
            Step::Audit,
            Code::Internal,
            "audit_record_invalid",
            "the access could not be recorded in the audit log, so nothing is released",
        )
    })
}
