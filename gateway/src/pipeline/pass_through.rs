//! Pass-through: the benchmark's measure of the proxy alone (issue 7), every check off.
//!
//! Compiled only with the cargo feature `bench-modes`, which no release build, `isnad up` or
//! `isnad demo` enables: a binary built without it refuses `bench_mode: pass-through` at
//! start-up.
//! What remains is what any mTLS gRPC proxy does: the caller's certificate is verified by TLS
//! and its SPIFFE ID must name an agency of the catalogue (step 1), the dataset names the
//! provider, and the request goes to it over the pooled mTLS channel (step 6) with the default
//! deadline; its reply comes back as it is. No limits, no policy, no consent, no filtering, no
//! audit record, no signature.

use tokio::time::Instant;

use isnad_proto::v1::{AttributesRequest, AttributesResponse, FetchRequest};
use isnad_tls::PeerInfo;
use tonic::Code;

use super::{Denial, Pipeline, Step, authenticate};

impl Pipeline {
    /// Forwards `request` to the dataset's provider, unchecked.
    pub(super) async fn pass_through(
        &self,
        peer: Option<&PeerInfo>,
        request: AttributesRequest,
    ) -> Result<AttributesResponse, Denial> {
        let current = self.store.current();
        let catalogue = current.policy.catalogue();
        let principal = authenticate::principal(peer, &self.tls, catalogue)?;
        let dataset = catalogue
            .datasets
            .get(request.dataset.as_str())
            .ok_or_else(|| {
                Denial::new(
                    Step::Authorize,
                    Code::InvalidArgument,
                    "unknown_dataset",
                    "no such dataset in the catalogue",
                )
            })?;
        let fetch = FetchRequest {
            subject: request.subject,
            dataset: request.dataset,
            fields: request.fields,
            purpose: request.purpose,
            request_id: request.request_id,
            consumer: principal.agency.as_str().to_owned(),
        };
        let attributes = current
            .upstreams
            .fetch(
                &dataset.provider,
                fetch,
                Instant::now() + self.limits.default_deadline(),
            )
            .await?;
        Ok(AttributesResponse {
            attributes,
            ..AttributesResponse::default()
        })
    }
}
