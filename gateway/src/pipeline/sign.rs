//! Step 9: the provenance signature. The response names where its audit record is and when it
//! was made, and the gateway signs it over the released attributes (see
//! [`crate::provenance`] for the signed bytes).

use std::time::SystemTime;

use isnad_audit::LeafIndex;
use isnad_proto::v1::AttributesResponse;
use tonic::Code;

use super::audit::Facts;
use super::{Denial, Step};
use crate::provenance::{ProvenanceSigner, timestamp};

pub(crate) fn sign(
    signer: &ProvenanceSigner,
    response: &mut AttributesResponse,
    facts: &Facts,
    index: LeafIndex,
    at: SystemTime,
) -> Result<(), Denial> {
    if let Some(provenance) = response.provenance.as_mut() {
        provenance.audit_index = index.0;
        provenance.fetched_at = Some(timestamp(at));
        provenance.request_id = facts.request_id().to_owned();
        provenance.subject_pseudonym = facts.subject().0.to_vec();
    }
    signer
        .sign(response, facts.released_encoding())
        .map_err(|error| {
            tracing::error!(%error, "a response could not be signed");
            Denial::new(
                Step::Sign,
                Code::Internal,
                "provenance_failed",
                "the response could not be signed, so nothing is released",
            )
        })
}
