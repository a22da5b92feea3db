//! Step 9: the provenance signature. The response names where its audit record is and when it
//! was made, and the gateway signs it over the released attributes (see
//! [`crate::provenance`] for the signed bytes). The content is prepared here, before the record
//! is appended; the audit trail completes it with the record's index once durable and signs it
//! together with the other responses of the log's batch.

use std::time::SystemTime;

use isnad_proto::v1::AttributesResponse;
use tonic::Code;

use super::audit::Facts;
use super::{Denial, Step};
use crate::provenance::{Signed, Unsigned, timestamp};

/// Fills in the response's provenance (but for the audit index and signature) and returns the
/// content to sign.
pub(crate) fn prepare(
    response: &mut AttributesResponse,
    facts: &Facts,
    at: SystemTime,
) -> Result<Unsigned, Denial> {
    let provenance = response.provenance.get_or_insert_default();
    provenance.fetched_at = Some(timestamp(at));
    provenance.request_id = facts.request_id().to_owned();
    provenance.subject_pseudonym = facts.subject().0.to_vec();
    Unsigned::new(provenance, facts.released_encoding()).map_err(|error| {
        tracing::error!(%error, "a response could not be signed");
        Denial::new(
            Step::Sign,
            Code::Internal,
            "provenance_failed",
            "the response could not be signed, so nothing is released",
        )
    })
}

/// Puts the batch signature and the record's index into the response.
pub(crate) fn attach(response: &mut AttributesResponse, signed: Signed) {
    signed.attach(response.provenance.get_or_insert_default());
}
