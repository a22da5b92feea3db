//! Why a request was refused: the step, the gRPC code, a stable reason code, and a message for
//! the caller that never contains citizen data.

use std::fmt;

use tonic::{Code, Status};

/// The pipeline step that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 1: the caller's identity.
    Authenticate,
    /// 2: the request's shape, size and deadline.
    Admit,
    /// 3: the policy.
    Authorize,
    /// 4: the consent token, revocations, use counts and frequency limits.
    Consent,
    /// 6: the provider.
    Fetch,
    /// 8: the audit record.
    Audit,
    /// 9: the provenance signature.
    Sign,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Authenticate => "authenticate",
            Step::Admit => "admit",
            Step::Authorize => "authorize",
            Step::Consent => "consent",
            Step::Fetch => "fetch",
            Step::Audit => "audit",
            Step::Sign => "sign",
        })
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The step that refused it.
    pub step: Step,
    /// The gRPC status code.
    pub code: Code,
    /// The stable reason code (see the README).
    pub reason: &'static str,
    /// For the caller; never citizen data.
    pub message: String,
}

impl Denial {
    pub(crate) fn new(
        step: Step,
        code: Code,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Denial {
            step,
            code,
            reason,
            message: message.into(),
        }
    }
}

impl From<Denial> for Status {
    fn from(denial: Denial) -> Status {
        isnad_proto::errors::status(
            denial.code,
            denial.reason,
            format!("{}: {}", denial.step, denial.message),
        )
    }
}
