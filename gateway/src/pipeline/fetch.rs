//! Step 6: fetch from the provider agency over a pooled mTLS channel, presenting the gateway's
//! own certificate and accepting only the provider's SPIFFE ID, within the request's deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use isnad_policy::{AgencyId, Catalogue};
use isnad_proto::v1::provider_client::ProviderClient;
use isnad_proto::v1::{FetchRequest, Value};
use isnad_tls::client::ChannelSettings;
use isnad_tls::policy::ExpectedPeer;
use isnad_tls::{SpiffeId, TlsMaterial};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use super::{Denial, Step};

/// A provider's channels: several HTTP/2 connections, used in turn.
#[derive(Debug)]
struct Pool {
    clients: Vec<ProviderClient<Channel>>,
    next: AtomicUsize,
}

/// Channels to every provider agency of the catalogue.
#[derive(Debug)]
pub struct Upstreams {
    pools: HashMap<String, Pool>,
}

impl Upstreams {
    /// Prepares lazy channels (they connect on first use) to every agency with an endpoint.
    /// `overrides` replaces the catalogue's endpoint of an agency.
    pub fn new(
        catalogue: &Catalogue,
        overrides: &BTreeMap<String, String>,
        material: &TlsMaterial,
        connections: usize,
    ) -> anyhow::Result<Upstreams> {
        let mut pools = HashMap::new();
        for agency in catalogue.agencies.values() {
            let Some(endpoint) = overrides
                .get(agency.id.as_str())
                .or(agency.endpoint.as_ref())
            else {
                continue;
            };
            let id = SpiffeId::parse(&format!(
                "spiffe://{}/agency/{}",
                catalogue.federation, agency.id
            ))
            .map_err(|e| anyhow::anyhow!("agency {}: {e}", agency.id))?;
            let config = Arc::new(isnad_tls::policy::client_config(
                material,
                ExpectedPeer::Exactly(id),
            )?);
            let clients = (0..connections.max(1))
                .map(|_| {
                    isnad_tls::client::channel(endpoint, config.clone(), ChannelSettings::default())
                        .map(ProviderClient::new)
                })
                .collect::<Result<Vec<_>, _>>()?;
            pools.insert(
                agency.id.as_str().to_owned(),
                Pool {
                    clients,
                    next: AtomicUsize::new(0),
                },
            );
        }
        Ok(Upstreams { pools })
    }

    /// Asks `provider` for the fields of `request`; fails with DEADLINE_EXCEEDED at `deadline`.
    pub(crate) async fn fetch(
        &self,
        provider: &AgencyId,
        request: FetchRequest,
        deadline: Instant,
    ) -> Result<HashMap<String, Value>, Denial> {
        let deny = |code, reason, message: String| Denial::new(Step::Fetch, code, reason, message);
        let pool = self.pools.get(provider.as_str()).ok_or_else(|| {
            deny(
                Code::Unavailable,
                "provider_not_configured",
                format!("no endpoint is configured for provider {provider}"),
            )
        })?;
        let turn = pool.next.fetch_add(1, Ordering::Relaxed) % pool.clients.len();
        let mut client = pool.clients[turn].clone();
        let mut call = tonic::Request::new(request);
        call.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let reply = match tokio::time::timeout_at(deadline, client.fetch(call)).await {
            Err(_) => {
                return Err(deny(
                    Code::DeadlineExceeded,
                    "provider_timeout",
                    format!("provider {provider} did not answer within the deadline"),
                ));
            }
            Ok(reply) => reply,
        };
        match reply {
            Ok(response) => Ok(response.into_inner().attributes),
            Err(status) => {
                // The provider's message is not passed on: it is not ours to vouch for.
                tracing::info!(%provider, code = ?status.code(), "provider call failed");
                Err(match status.code() {
                    Code::NotFound => deny(
                        Code::NotFound,
                        "subject_not_found",
                        format!("provider {provider} holds no record for this subject"),
                    ),
                    Code::DeadlineExceeded | Code::Cancelled => deny(
                        Code::DeadlineExceeded,
                        "provider_timeout",
                        format!("provider {provider} did not answer within the deadline"),
                    ),
                    Code::Unavailable => deny(
                        Code::Unavailable,
                        "provider_unavailable",
                        format!("provider {provider} cannot be reached"),
                    ),
                    Code::PermissionDenied | Code::Unauthenticated => deny(
                        Code::Unavailable,
                        "provider_refused",
                        format!("provider {provider} refused the gateway"),
                    ),
                    code => deny(
                        Code::Unavailable,
                        "provider_error",
                        format!("provider {provider} failed ({code:?})"),
                    ),
                })
            }
        }
    }
}
