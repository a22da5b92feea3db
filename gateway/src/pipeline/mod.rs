//! The request pipeline of `GetAttributes`, one module per step, run in this order:
//!
//! ```text
//! 1 authenticate  peer certificate -> SPIFFE ID -> consumer agency           authenticate.rs
//! 2 admit         the agency's requests in flight and rate; size, shape and   admit.rs,
//!                 deadline of the request                                    admit/agency.rs
//! 3 authorize     per-field decisions from the policy set                    authorize.rs
//! 4 consent       consent token, revocation, use and frequency limits        consent.rs
//! 5 minimize      ask the provider only for fields a decision releases       minimize.rs
//! 6 fetch         pooled mTLS channel to the provider, within the deadline   fetch.rs
//! 7 filter        re-apply the decisions to the reply: drop extras, types,   filter.rs
//!                 apply the policy's transforms                              transform.rs
//! 8 audit         the record of the request, released or refused, durable    audit.rs
//!                 before anything is answered
//! 9 sign          provenance signature over the released attributes and the  sign.rs
//!                 audit index, one per batch of durable records
//! ```
//!
//! Every step either passes its output on or returns a [`Denial`]: nothing is released unless
//! every step passed (fail closed). A denial names its step and a stable reason code. Refusals
//! are audited too: step 8 runs for every request, with what the steps before learned
//! ([`audit::Facts`]); a request whose record cannot be written is refused (`audit_unavailable`)
//! whatever else it would have been.
//!
//! A benchmark build (cargo feature `bench-modes`) can leave steps out, to measure what they
//! cost: `bench_mode: unaudited` stops after step 7 (no record, no signature), `pass-through`
//! keeps only step 1 and the forwarding ([`pass_through`]). Every other build refuses both
//! settings at start-up.

mod admit;
mod audit;
mod authenticate;
mod authorize;
mod consent;
mod denial;
mod fetch;
mod filter;
mod minimize;
#[cfg(feature = "bench-modes")]
mod pass_through;
mod sign;
mod transform;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isnad_policy::FieldDecision;
use isnad_proto::v1::{AttributesRequest, AttributesResponse, FetchRequest, Provenance};
use isnad_tls::{LiveTls, PeerInfo};

pub(crate) use admit::agency::AgencyLimits;
pub use admit::{Admitted, decode_and_admit};
pub use authenticate::Principal;
pub use denial::{Denial, Step};
pub use fetch::Upstreams;
pub use transform::HashKey;

use crate::audit_trail::AuditTrail;
use crate::config::{BenchMode, Limits};
use crate::consent_keys::ConsentKeys;
use crate::policy_store::PolicyStore;
use crate::secrets::PseudonymKey;

/// Everything a request needs, shared by all requests.
#[derive(Debug)]
pub struct Pipeline {
    /// The policy in force and its provider channels; replaced whole on reload, requests in
    /// flight keep theirs.
    pub store: Arc<PolicyStore>,
    /// Request limits.
    pub limits: Limits,
    /// The secret `hash` transforms derive each consumer's key from.
    pub hash_key: Option<HashKey>,
    /// The consent authorities' keys, when the gateway verifies consent.
    pub consent: Option<Arc<ConsentKeys>>,
    /// Revocations, consent uses, frequency windows and request ids.
    pub state: Arc<isnad_state::SharedState>,
    /// The key of subjects' pseudonyms (the audit log and the shared state hold only those).
    pub pseudonyms: PseudonymKey,
    /// How long a consumer's request id is remembered.
    pub replay_window: Duration,
    /// This node's name, in its audit records.
    pub node: String,
    /// The node's audit log, and the signer of the responses it records.
    pub audit: AuditTrail,
    /// The node's TLS material in force, with the revocation lists.
    pub tls: Arc<LiveTls>,
    /// Each consumer agency's requests in flight and rate.
    pub(crate) agencies: AgencyLimits,
    /// Benchmarks only (feature `bench-modes`): steps left out.
    pub bench_mode: Option<BenchMode>,
}

impl Pipeline {
    /// Runs `GetAttributes` through every step.
    pub async fn get_attributes(
        &self,
        peer: Option<&PeerInfo>,
        grpc_timeout: Option<&str>,
        request: AttributesRequest,
    ) -> Result<AttributesResponse, Denial> {
        #[cfg(feature = "bench-modes")]
        if self.bench_mode == Some(BenchMode::PassThrough) {
            return self.pass_through(peer, request).await;
        }
        let current = self.store.current();
        let mut facts = audit::Facts::new(&self.node, &current.policy, &request, &self.pseudonyms);
        // The agency's place in the pipeline (step 2), held until the request is answered.
        let mut place = None;
        let answer = self
            .decide_and_fetch(
                &current,
                &mut facts,
                &mut place,
                peer,
                grpc_timeout,
                request,
            )
            .await;
        if let Err(denial) = &answer {
            log_refusal(peer, &facts, denial);
        }
        #[cfg(feature = "bench-modes")]
        if self.bench_mode == Some(BenchMode::Unaudited) {
            return answer;
        }
        // 8 audit: the record is durable before the caller hears anything.
        let at = SystemTime::now();
        let record = audit::record(&mut facts, &answer, at)?;
        match answer {
            Err(denial) => {
                self.audit.append(record).await?;
                Err(denial)
            }
            Ok(mut response) => {
                // 9 sign: provenance over what is released, where it is recorded, and when;
                // signed with the other responses whose records were made durable together.
                let unsigned = sign::prepare(&mut response, &facts, at)?;
                let signed = self.audit.append_and_sign(record, unsigned).await?;
                sign::attach(&mut response, signed);
                Ok(response)
            }
        }
    }

    /// Steps 1 to 7. `facts` learns, step by step, what the audit record says.
    async fn decide_and_fetch(
        &self,
        current: &crate::policy_store::Current,
        facts: &mut audit::Facts,
        place: &mut Option<admit::agency::Place>,
        peer: Option<&PeerInfo>,
        grpc_timeout: Option<&str>,
        request: AttributesRequest,
    ) -> Result<AttributesResponse, Denial> {
        let policy = &current.policy;
        // 1 authenticate: who is calling.
        facts.caller(peer);
        let principal = authenticate::principal(peer, &self.tls, policy.catalogue())?;
        facts.consumer = principal.agency.as_str().to_owned();
        // 2 admit: a place among the agency's requests in flight, within its rate on this node;
        // is the request well-formed and within limits; by when must it finish.
        let place = &*place.insert(self.agencies.enter(principal.agency.as_str())?);
        let mut admitted = admit::admit(&self.limits, grpc_timeout, request)?;
        facts.admitted(&admitted, policy);
        // 3 authorize: what the policy decides for each field, today.
        let today = isnad_policy::today_utc();
        let decision = authorize::decide(policy, &principal, &admitted, today)?;
        facts.provider = decision.provider.id.as_str().to_owned();
        if let Some(shadow) = &decision.shadow {
            report_shadow(&admitted, &principal, &decision.fields, shadow);
        }
        // 4 consent: a valid token for fields that need one; revocation, uses and limits.
        let verifier = self.consent.as_ref().map(|keys| keys.verifier());
        let checked = consent::check(
            consent::Context {
                verifier: verifier.as_deref(),
                state: &self.state,
                subject: facts.subject(),
                replay_window: self.replay_window,
                agency_rate: place.shared_rate(&self.agencies),
            },
            &principal,
            &admitted,
            &decision.fields,
            SystemTime::now(),
        )
        .await?;
        facts.consent_id = checked.consent_id;
        let verdicts = checked.verdicts;
        // 2 admit, agency-wide: the agency's rate in the shared state (when the state is shared),
        // unless step 4's admission just checked it in the same round trip.
        if checked.agency_rate_checked {
            self.agencies.shared_answered();
        } else {
            self.agencies.check_shared(&self.state, place).await?;
        }
        // 5 minimize: only fields some verdict releases leave the gateway.
        let fields = &admitted.request.fields;
        let wanted = minimize::fields_to_fetch(fields, &verdicts);
        // 6 fetch: from the provider, within the deadline.
        let mut fetched = if wanted.is_empty() {
            Default::default()
        } else {
            // The subject, dataset and purpose are not needed past this step (the facts hold
            // what the record needs): moved, not copied.
            let fetch = FetchRequest {
                subject: std::mem::take(&mut admitted.request.subject),
                dataset: std::mem::take(&mut admitted.request.dataset),
                fields: wanted,
                purpose: std::mem::take(&mut admitted.request.purpose),
                request_id: admitted.request_id.clone(),
                consumer: principal.agency.as_str().to_owned(),
            };
            current
                .upstreams
                .fetch(&decision.provider.id, fetch, admitted.deadline)
                .await?
        };
        // 7 filter: release exactly what was decided, of the declared type, in the decided form.
        let mut released = filter::release(
            decision.dataset,
            fields,
            &verdicts,
            &mut fetched,
            filter::TransformContext {
                consumer: principal.agency.as_str(),
                hash_key: self.hash_key.as_ref(),
                today,
            },
        );
        facts.released(&mut released);
        Ok(AttributesResponse {
            attributes: released.attributes,
            withheld: released.withheld,
            transformed: released.transformed,
            provenance: Some(Provenance {
                provider: decision.provider.id.as_str().to_owned(),
                dataset: decision.dataset.id.as_str().to_owned(),
                policy_revision: policy.revision().as_str().to_owned(),
                request_id: admitted.request_id.clone(),
                ..Provenance::default()
            }),
        })
    }
}

/// Logs a refusal: who asked what of whom and why, never the subject or a value. The dataset and
/// purpose are the ones the facts keep (a name that was not admitted is kept only if it is a
/// plain name).
fn log_refusal(peer: Option<&PeerInfo>, facts: &audit::Facts, denial: &Denial) {
    // A flood's refusals are logged by the agency limits, once a second with a count.
    if matches!(denial.reason, "agency_busy" | "agency_rate_limited") {
        return;
    }
    tracing::info!(
        peer = peer.and_then(|p| p.identity.as_ref().ok()).map(|id| id.as_str()),
        dataset = facts.dataset(),
        purpose = facts.purpose(),
        step = %denial.step,
        reason = denial.reason,
        "request refused"
    );
}

/// Logs where the shadow rules would decide otherwise: field names and treatments, never values.
fn report_shadow(
    admitted: &Admitted,
    principal: &Principal,
    enforced: &[FieldDecision<'_>],
    shadow: &[FieldDecision<'_>],
) {
    let differences: Vec<String> = admitted
        .request
        .fields
        .iter()
        .zip(enforced.iter().zip(shadow))
        .filter(|(_, (enforced, shadow))| enforced != shadow)
        .map(|(field, (enforced, shadow))| {
            format!(
                "{}: {} -> {} ({})",
                field.escape_debug(),
                enforced.treatment_text(),
                shadow.treatment_text(),
                shadow.rule().map_or("no rule", |rule| rule.id.as_str())
            )
        })
        .collect();
    if !differences.is_empty() {
        tracing::info!(
            request_id = %admitted.request_id,
            consumer = %principal.agency,
            dataset = %admitted.request.dataset,
            purpose = %admitted.request.purpose,
            differences = %differences.join("; "),
            "shadow rules would decide differently"
        );
    }
}
