//! Step 3: the policy decides, per requested field, whether the consumer may receive it.

use isnad_policy::{Decision, PolicySet, Refusal};
use tonic::Code;

use super::{Admitted, Denial, Principal, Step};

pub(crate) fn decide<'p>(
    policy: &'p PolicySet,
    principal: &Principal,
    admitted: &Admitted,
    today: isnad_policy::Date,
) -> Result<Decision<'p>, Denial> {
    let request = &admitted.request;
    policy
        .decide(
            principal.agency.as_str(),
            &request.dataset,
            &request.purpose,
            &request.fields,
            today,
        )
        .map_err(|refusal| {
            let (code, message) = match refusal {
                Refusal::UnknownDataset => (
                    Code::InvalidArgument,
                    format!("the catalogue has no dataset {:?}", request.dataset),
                ),
                Refusal::UnknownPurpose => (
                    Code::InvalidArgument,
                    format!("{:?} is not a purpose of the catalogue", request.purpose),
                ),
                Refusal::UnknownConsumer => (
                    Code::PermissionDenied,
                    format!("{} is not an agency of the catalogue", principal.agency),
                ),
                Refusal::NoRule => (
                    Code::PermissionDenied,
                    format!(
                        "no rule lets {} read {} for {}",
                        principal.agency, request.dataset, request.purpose
                    ),
                ),
            };
            Denial::new(Step::Authorize, code, refusal.code(), message)
        })
}
