//! Step 4: consent and frequency limits.
//!
//! A field released by a rule that requires the citizen's consent is released only under a
//! valid consent token that covers it:
//!
//! - no token: the field is withheld (`consent_required`), the rest of the request goes on;
//! - a token that does not verify (signature, type, time, issuer, audience, agency, subject,
//!   purpose, certificate binding, dataset): the whole request is refused with the token's
//!   reason code; a token is only verified when some field needs it;
//! - a valid token that does not name the field: the field is withheld (`consent_scope`).
//!
//! Then, in one atomic call to the shared state: the consumer's request id must be new (when
//! it chose one), the consent must not be revoked or used up, and each released rule's
//! frequency limit must have room. Only a request that uses a consent or a limit calls the
//! state, so requests under statute rules keep working while the state is unreachable, and the
//! others fail closed (UNAVAILABLE, `state_unavailable`). A use or a count is recorded when the
//! gateway commits to fetching, even if the provider then fails. When the state is shared, the
//! consumer agency's rate (step 2's agency-wide check) rides along in the same admission, so a
//! request that goes to the state pays one round trip for both.

use std::time::{Duration, SystemTime};

use isnad_consent::{ConsentError, Verifier};
use isnad_policy::{FieldDecision, Rule, Transform};
use isnad_state::{
    Admission, AgencyRate, ConsentState, ConsentUse, RateLimit, Refusal, RequestGuard, SharedState,
    StateError, Verdict as StateVerdict,
};
use tonic::Code;

use super::{Admitted, Denial, Principal, Step};
use isnad_audit::SubjectPseudonym;

/// The outcome for one field after consent: released (in some form) or withheld.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verdict<'p> {
    Release {
        rule: &'p Rule,
        transform: Option<&'p Transform>,
    },
    Withhold {
        reason: &'static str,
        rule: Option<&'p Rule>,
    },
}

impl Verdict<'_> {
    pub(crate) fn is_released(&self) -> bool {
        matches!(self, Verdict::Release { .. })
    }
}

/// The verdicts, and the consent some released field rests on.
#[derive(Debug)]
pub(crate) struct Checked<'p> {
    /// One per requested field, in request order.
    pub(crate) verdicts: Vec<Verdict<'p>>,
    /// The consent id (`jti`) of the token that released a field, if one did.
    pub(crate) consent_id: Option<String>,
    /// The agency's rate was checked in the shared state with the admission.
    pub(crate) agency_rate_checked: bool,
}

/// What the step needs from the gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The consent verifier, when the gateway verifies consent.
    pub(crate) verifier: Option<&'a Verifier>,
    /// Revocations, uses, windows and request ids.
    pub(crate) state: &'a SharedState,
    /// The subject's pseudonym (the audit step's): frequency limits count per pseudonym.
    pub(crate) subject: &'a SubjectPseudonym,
    /// How long a request id is remembered.
    pub(crate) replay_window: Duration,
    /// The consumer agency's rate, when it is checked in the shared state: a request that goes
    /// to the state anyway has it checked in the same round trip (step 2's, done here).
    pub(crate) agency_rate: Option<AgencyRate<'a>>,
}

pub(crate) async fn check<'p>(
    context: Context<'_>,
    principal: &Principal,
    admitted: &Admitted,
    decisions: &[FieldDecision<'p>],
    now: SystemTime,
) -> Result<Checked<'p>, Denial> {
    let request = &admitted.request;
    let needs_consent = decisions.iter().any(
        |decision| matches!(decision, FieldDecision::Release { rule, .. } if rule.consent_required),
    );
    let consent = match (
        needs_consent,
        request.consent_token.as_str(),
        context.verifier,
    ) {
        (true, token, Some(verifier)) if !token.is_empty() => {
            let presented = isnad_consent::Request {
                caller: &principal.spiffe_id,
                subject: &request.subject,
                purpose: &request.purpose,
                dataset: &request.dataset,
                client_cert_sha256: principal.cert_sha256,
            };
            Some(
                verifier
                    .verify(token, &presented, now)
                    .map_err(token_denial)?,
            )
        }
        _ => None,
    };

    let verdicts: Vec<Verdict<'p>> = request
        .fields
        .iter()
        .zip(decisions)
        .map(|(field, decision)| match *decision {
            FieldDecision::Release { rule, transform } if rule.consent_required => match &consent {
                None => Verdict::Withhold {
                    reason: "consent_required",
                    rule: Some(rule),
                },
                Some(consent) if !consent.covers(field) => Verdict::Withhold {
                    reason: "consent_scope",
                    rule: Some(rule),
                },
                Some(_) => Verdict::Release { rule, transform },
            },
            FieldDecision::Release { rule, transform } => Verdict::Release { rule, transform },
            FieldDecision::Withhold { reason, rule } => Verdict::Withhold {
                reason: reason.code(),
                rule,
            },
        })
        .collect();

    let consent_used = verdicts
        .iter()
        .any(|verdict| matches!(verdict, Verdict::Release { rule, .. } if rule.consent_required));
    let consent = consent.filter(|_| consent_used);

    // Each rule that releases a field and has a limit counts this request once.
    let mut limited: Vec<&Rule> = Vec::new();
    for verdict in &verdicts {
        if let Verdict::Release { rule, .. } = verdict
            && rule.limit.is_some()
            && !limited.iter().any(|seen| seen.id == rule.id)
        {
            limited.push(rule);
        }
    }
    if consent.is_none() && limited.is_empty() {
        return Ok(Checked {
            verdicts,
            consent_id: None,
            agency_rate_checked: false,
        });
    }
    let pseudonym = if limited.is_empty() {
        String::new()
    } else {
        isnad_audit::hex(&context.subject.0)
    };
    let rates: Vec<RateLimit<'_>> = limited
        .iter()
        .filter_map(|rule| {
            let limit = rule.limit?;
            Some(RateLimit {
                rule: rule.id.as_str(),
                consumer: principal.agency.as_str(),
                subject: &pseudonym,
                dataset: &request.dataset,
                limit: limit.requests,
                window: Duration::from_secs(limit.per.seconds()),
            })
        })
        .collect();
    let admission = Admission {
        now,
        request: (!request.request_id.is_empty()).then(|| RequestGuard {
            consumer: principal.agency.as_str(),
            request_id: &request.request_id,
            ttl: context.replay_window,
        }),
        consent: consent.as_ref().map(|consent| ConsentUse {
            id: &consent.id,
            expires_at: consent.expires_at,
            max_uses: consent.max_uses,
        }),
        rates: &rates,
        agency: context.agency_rate,
    };
    match context.state.admit(&admission).await {
        Ok(StateVerdict::Admitted { .. }) => Ok(Checked {
            verdicts,
            consent_id: consent.map(|consent| consent.id),
            agency_rate_checked: context.agency_rate.is_some(),
        }),
        Ok(StateVerdict::Refused(Refusal::AgencyRateLimited { retry_after })) => Err(
            super::admit::agency::rate_denial(context.agency_rate.as_ref(), retry_after),
        ),
        Ok(StateVerdict::Refused(refusal)) => Err(refusal_denial(refusal)),
        Err(error) => Err(state_denial(&error)),
    }
}

/// A token that does not verify refuses the request: its code says why.
fn token_denial(error: ConsentError) -> Denial {
    let code = match error {
        ConsentError::TooLarge(_) | ConsentError::Malformed(_) | ConsentError::Claims(_) => {
            Code::InvalidArgument
        }
        _ => Code::PermissionDenied,
    };
    Denial::new(Step::Consent, code, error.code(), error.to_string())
}

fn refusal_denial(refusal: Refusal) -> Denial {
    let (code, message) = match refusal {
        Refusal::Replayed => (
            Code::AlreadyExists,
            "this request id was already used by this agency; send a new one".to_owned(),
        ),
        Refusal::Revoked => (
            Code::PermissionDenied,
            "the citizen revoked this consent".to_owned(),
        ),
        Refusal::UsesExhausted => (
            Code::PermissionDenied,
            "this consent has been used as many times as it allows".to_owned(),
        ),
        Refusal::RateLimited { retry_after } => (
            Code::ResourceExhausted,
            format!(
                "the rule's frequency limit for this subject is reached; the next window starts \
                 in {} s",
                retry_after.as_secs().max(1)
            ),
        ),
        Refusal::AgencyRateLimited { retry_after } => {
            return super::admit::agency::rate_denial(None, retry_after);
        }
    };
    Denial::new(Step::Consent, code, refusal.code(), message)
}

fn state_denial(error: &StateError) -> Denial {
    tracing::error!(%error, "shared state refused or failed; consent and limits fail closed");
    let code = match error {
        StateError::Unavailable { .. } | StateError::Full { .. } => Code::Unavailable,
        StateError::Invalid(_) => Code::Internal,
    };
    Denial::new(
        Step::Consent,
        code,
        error.code(),
        "the gateway cannot check consent or limits right now; nothing was released",
    )
}
