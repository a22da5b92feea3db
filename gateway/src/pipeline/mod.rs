//! The request pipeline of `GetAttributes`, one module per step, run in this order:
//!
//! ```text
//! 1 authenticate  peer certificate -> SPIFFE ID -> consumer agency           authenticate.rs
//! 2 admit         size, shape and deadline of the request                    admit.rs
//! 3 authorize     per-field decisions from the policy set                    authorize.rs
//! 4 consent       consent token, revocation, use limits                      (issue 4)
//! 5 minimize      ask the provider only for fields a decision releases       minimize.rs
//! 6 fetch         pooled mTLS channel to the provider, within the deadline   fetch.rs
//! 7 filter        re-apply the decisions to the reply: drop extras, types    filter.rs
//! 8 audit         durable audit record before anything is released           (issue 5)
//! 9 sign          provenance signature over the released attributes          (issue 5)
//! ```
//!
//! Every step either passes its output on or returns a [`Denial`]: nothing is released unless
//! every step passed (fail closed). A denial names its step and a stable reason code.

mod admit;
mod authenticate;
mod authorize;
mod denial;
mod fetch;
mod filter;
mod minimize;

use std::sync::Arc;

use arc_swap::ArcSwap;
use isnad_policy::PolicySet;
use isnad_proto::v1::{AttributesRequest, AttributesResponse, FetchRequest, Provenance};
use isnad_tls::PeerInfo;

pub use admit::Admitted;
pub use authenticate::Principal;
pub use denial::{Denial, Step};
pub use fetch::Upstreams;

use crate::config::Limits;

/// Everything a request needs, shared by all requests.
#[derive(Debug)]
pub struct Pipeline {
    /// The policy in force; replaced whole on reload, requests in flight keep theirs.
    pub policy: Arc<ArcSwap<PolicySet>>,
    /// Channels to the provider agencies.
    pub upstreams: Upstreams,
    /// Request limits.
    pub limits: Limits,
}

impl Pipeline {
    /// Runs `GetAttributes` through every step.
    pub async fn get_attributes(
        &self,
        peer: Option<&PeerInfo>,
        grpc_timeout: Option<&str>,
        request: AttributesRequest,
    ) -> Result<AttributesResponse, Denial> {
        let policy = self.policy.load_full();
        // 1 authenticate: who is calling.
        let principal = authenticate::principal(peer, policy.catalogue())?;
        // 2 admit: is the request well-formed and within limits; by when must it finish.
        let admitted = admit::admit(&self.limits, grpc_timeout, request)?;
        // 3 authorize: what the policy decides for each field.
        let decision = authorize::decide(&policy, &principal, &admitted)?;
        // 5 minimize: only fields some decision releases leave the gateway.
        let wanted = minimize::fields_to_fetch(&decision);
        // 6 fetch: from the provider, within the deadline.
        let mut fetched = if wanted.is_empty() {
            Default::default()
        } else {
            let fetch = FetchRequest {
                subject: admitted.request.subject.clone(),
                dataset: admitted.request.dataset.clone(),
                fields: wanted,
                purpose: admitted.request.purpose.clone(),
                request_id: admitted.request_id.clone(),
                consumer: principal.agency.as_str().to_owned(),
            };
            self.upstreams
                .fetch(&decision.provider.id, fetch, admitted.deadline)
                .await?
        };
        // 7 filter: release exactly what was decided, of the type the catalogue declares.
        let (attributes, withheld) = filter::release(&decision, &mut fetched);
        Ok(AttributesResponse {
            attributes,
            withheld,
            provenance: Some(Provenance {
                provider: decision.provider.id.as_str().to_owned(),
                dataset: decision.dataset.id.as_str().to_owned(),
                policy_revision: policy.revision().as_str().to_owned(),
                audit_index: 0,
                fetched_at: Some(std::time::SystemTime::now().into()),
                key_id: String::new(),
                signature: Vec::new(),
            }),
        })
    }
}
