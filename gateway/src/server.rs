//! The gateway's gRPC server: `isnad.v1.Exchange`, `isnad.v1.Admin`, gRPC health and server
//! reflection, all over mutual TLS on one port; and the policy reload triggers (polling the
//! store, SIGHUP).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isnad_proto::errors;
use isnad_proto::v1::admin_server::{Admin, AdminServer};
use isnad_proto::v1::audit_server::AuditServer;
use isnad_proto::v1::exchange_server::{Exchange, ExchangeServer};
use isnad_proto::v1::{
    AttributesRequest, AttributesResponse, PolicyStatusRequest, PolicyStatusResponse,
    ReloadPolicyRequest, ReloadPolicyResponse, RevokeConsentRequest, RevokeConsentResponse,
};
use isnad_tls::server::AcceptLimits;
use isnad_tls::{LiveTls, PeerInfo};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

use crate::audit_service::AuditService;
use crate::audit_trail::AuditTrail;
use crate::config::GatewayConfig;
use crate::consent_keys::ConsentKeys;
use crate::exchange::{ExchangeLayer, FAR_TOO_LARGE, NOT_A_REQUEST};
use crate::pipeline::{AgencyLimits, HashKey, Pipeline};
use crate::policy_store::{Capabilities, PolicyStore, UpstreamSettings};
use crate::provenance::ProvenanceSigner;
use crate::secrets::{PseudonymKey, read_hex_key};
use crate::workers::Workers;
use isnad_state::{ConsentState, SharedState};

/// The `Exchange` service as tonic serves it: only the forms of `GetAttributes` that
/// [`crate::exchange`] hands on (a `grpc-encoding`, another content type) reach it; it is
/// registered also so that health and reflection name the service.
#[derive(Debug, Clone)]
pub struct ExchangeService {
    pipeline: Arc<Pipeline>,
}

#[tonic::async_trait]
impl Exchange for ExchangeService {
    async fn get_attributes(
        &self,
        request: Request<AttributesRequest>,
    ) -> Result<Response<AttributesResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let grpc_timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let request = request.into_inner();
        // Refusals are logged by the pipeline, which knows what may be logged of the request.
        self.pipeline
            .get_attributes(peer.as_deref(), grpc_timeout.as_deref(), request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// The `Admin` service: policy reload and status for admin identities, consent revocation for
/// the consent authorities.
#[derive(Debug, Clone)]
pub struct AdminService {
    store: Arc<PolicyStore>,
    consent: Option<Arc<ConsentKeys>>,
    state: Arc<SharedState>,
}

/// The caller's SPIFFE ID, or UNAUTHENTICATED.
fn caller<T>(request: &Request<T>) -> Result<&isnad_tls::SpiffeId, Status> {
    match request
        .extensions()
        .get::<Arc<PeerInfo>>()
        .map(|peer| &peer.identity)
    {
        Some(Ok(id)) => Ok(id),
        _ => Err(errors::status(
            Code::Unauthenticated,
            "no_spiffe_id",
            "the client certificate has no usable SPIFFE ID",
        )),
    }
}

impl AdminService {
    /// Only `spiffe://<federation>/admin/<name>` may call.
    fn authorize<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let federation = self.store.current().policy.catalogue().federation.clone();
        let peer = request.extensions().get::<Arc<PeerInfo>>();
        match peer.map(|peer| &peer.identity) {
            Some(Ok(id)) if id.trust_domain() == federation && id.path().starts_with("admin/") => {
                Ok(id.as_str().to_owned())
            }
            Some(Ok(id)) => Err(errors::status(
                Code::PermissionDenied,
                "not_admin",
                format!("{id} is not an admin identity (spiffe://{federation}/admin/<name>)"),
            )),
            _ => Err(errors::status(
                Code::Unauthenticated,
                "no_spiffe_id",
                "the client certificate has no usable SPIFFE ID",
            )),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn reload_policy(
        &self,
        request: Request<ReloadPolicyRequest>,
    ) -> Result<Response<ReloadPolicyResponse>, Status> {
        let caller = self.authorize(&request)?;
        let store = self.store.clone();
        let trigger = format!("Admin.ReloadPolicy by {caller}");
        let outcome = tokio::task::spawn_blocking(move || store.reload(&trigger))
            .await
            .map_err(|_| errors::status(Code::Internal, "internal", "the reload task failed"))?;
        match outcome {
            Ok(reloaded) => Ok(Response::new(ReloadPolicyResponse {
                revision: reloaded.revision,
                previous_revision: reloaded.previous,
                changed: reloaded.changed,
                rules: u32::try_from(reloaded.rules).unwrap_or(u32::MAX),
            })),
            Err(error) => Err(errors::status(
                Code::FailedPrecondition,
                error.reason(),
                format!("the policy store was refused; the running policy stays.\n{error}"),
            )),
        }
    }

    async fn policy_status(
        &self,
        request: Request<PolicyStatusRequest>,
    ) -> Result<Response<PolicyStatusResponse>, Status> {
        self.authorize(&request)?;
        let current = self.store.current();
        Ok(Response::new(PolicyStatusResponse {
            revision: current.policy.revision().to_string(),
            rules: u32::try_from(current.policy.rule_count()).unwrap_or(u32::MAX),
            loaded_at: Some(current.loaded_at.into()),
            last_error: self.store.last_error().unwrap_or_default(),
        }))
    }

    async fn revoke_consent(
        &self,
        request: Request<RevokeConsentRequest>,
    ) -> Result<Response<RevokeConsentResponse>, Status> {
        let caller = caller(&request)?.as_str().to_owned();
        let Some(keys) = &self.consent else {
            return Err(errors::status(
                Code::FailedPrecondition,
                "consent_not_configured",
                "this gateway does not verify consent tokens, so there is nothing to revoke",
            ));
        };
        if !keys.is_authority(&caller) {
            return Err(errors::status(
                Code::PermissionDenied,
                "not_consent_authority",
                format!("{caller} is not a consent authority of this gateway"),
            ));
        }
        let request = request.into_inner();
        let id = request.consent_id;
        if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(errors::status(
                Code::InvalidArgument,
                "invalid_consent_id",
                "consent_id must be 1 to 256 printable ASCII characters (the token's jti)",
            ));
        }
        let now = SystemTime::now();
        let latest = now + keys.max_lifetime();
        let until = match request.expires_at {
            None => latest,
            Some(at) => SystemTime::try_from(at)
                .map_err(|_| {
                    errors::status(
                        Code::InvalidArgument,
                        "invalid_expiry",
                        "expires_at is not a valid time",
                    )
                })?
                .min(latest),
        };
        self.state.revoke(&id, until, now).await.map_err(|error| {
            tracing::error!(%error, "a revocation could not be recorded");
            errors::status(
                Code::Unavailable,
                error.code(),
                "the revocation could not be recorded; it is not in force: try again",
            )
        })?;
        tracing::info!(consent = %id.escape_debug(), by = %caller, "consent revoked");
        Ok(Response::new(RevokeConsentResponse {
            consent_id: id,
            revoked_until: Some(until.into()),
        }))
    }
}

/// The `federation` of the policy store's catalogue, read alone (the store is compiled later),
/// or `None` if the catalogue cannot be read that way (the compilation will say why).
fn federation_of(policy: &std::path::Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        federation: String,
    }
    let text = std::fs::read_to_string(policy.join("catalogue.yaml")).ok()?;
    serde_saphyr::from_str::<Head>(&text)
        .ok()
        .map(|head| head.federation)
}

/// How long requests in flight get to finish after the shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A gateway ready to serve: configuration checked, policy compiled, TLS material loaded.
#[derive(Debug)]
pub struct Gateway {
    pipeline: Arc<Pipeline>,
    accept: AcceptLimits,
    max_concurrent_streams: u32,
    max_header_list_bytes: u32,
    policy_poll: Option<Duration>,
    /// Threads serving connections ([`crate::workers`]).
    workers: usize,
}

impl Gateway {
    /// Loads everything the configuration names; any error stops here, before serving.
    pub fn load(config: &GatewayConfig) -> anyhow::Result<Gateway> {
        let workers = crate::workers::count(config.workers);
        if let Some(mode) = config.bench_mode {
            anyhow::ensure!(
                cfg!(feature = "bench-modes"),
                "bench_mode: {}: this binary was built without the benchmark-only cargo feature \
                 `bench-modes`; a gateway in production always runs every step",
                mode.as_str()
            );
            tracing::warn!(
                mode = mode.as_str(),
                "BENCHMARK MODE: steps of the pipeline are off ({}); a benchmark build, never \
                 for real data",
                mode.steps_off()
            );
        }
        let tls = LiveTls::load(config.tls.files())?;
        let signing_key = match &config.policy_signing_key {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("policy signing key {}: {e}", path.display()))?;
                Some(
                    isnad_policy::VerifyingKey::parse(&text).map_err(|e| {
                        anyhow::anyhow!("policy signing key {}: {e}", path.display())
                    })?,
                )
            }
            None => None,
        };
        let hash_key = config
            .hash_key
            .as_deref()
            .map(|path| HashKey::new(&read_hex_key(path, "hash key")?))
            .transpose()?;
        let pseudonyms = PseudonymKey::from_file(&config.pseudonym_key)?;
        let open_audit = |origin: &str| {
            let provenance = ProvenanceSigner::load(&config.node, &config.provenance_key)?;
            AuditTrail::open(&config.audit, origin, provenance)
        };
        // An existing audit log opens beside the policy's compilation: its recovery reads every
        // segment and the compilation parses every rule, the two longest steps of a start. The
        // log's origin names the federation, read ahead from the catalogue alone. Only a log
        // that exists: its `log.pub` names its origin, so a read-ahead origin that is wrong
        // (the catalogue unverified yet, or changed between the two reads) fails to open it
        // before anything is written, where a new log would be created in its name. A new log
        // (nothing to recover), or a catalogue that cannot be read ahead (the compilation
        // reports every error), opens after the compilation.
        let node_origin = |federation: &str| format!("{federation}/audit/{}", config.node);
        let read_ahead = if config.audit.dir.join(isnad_audit::KEY_FILE).exists() {
            match &config.audit.origin {
                Some(origin) => Some(origin.clone()),
                None => federation_of(&config.policy).map(|f| node_origin(&f)),
            }
        } else {
            None
        };
        let (store, audit) = std::thread::scope(|scope| {
            let audit = read_ahead
                .as_deref()
                .map(|origin| scope.spawn(|| open_audit(origin)));
            let store = PolicyStore::load(
                config.policy.clone(),
                signing_key,
                Capabilities {
                    hash_key: hash_key.is_some(),
                    consent: config.consent.is_some(),
                },
                UpstreamSettings {
                    overrides: config.upstreams.clone(),
                    tls: tls.clone(),
                    limits: crate::config::Limits {
                        // 0: one connection to each provider per worker.
                        upstream_connections: match config.limits.upstream_connections {
                            0 => workers,
                            n => n,
                        },
                        ..config.limits
                    },
                },
            )
            .map_err(|error| anyhow::anyhow!("policy {}: {error}", config.policy.display()));
            let audit = audit.map(|opening| {
                opening
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("opening the audit log panicked")))
            });
            (store, audit)
        });
        let store = store?;
        let federation = store.current().policy.catalogue().federation.clone();
        let origin = config
            .audit
            .origin
            .clone()
            .unwrap_or_else(|| node_origin(&federation));
        let audit = match audit {
            Some(opened) if read_ahead.as_deref() == Some(origin.as_str()) => opened?,
            // Read ahead under another name (the catalogue changed between the two reads): closed
            // if it opened at all, and opened again under the compiled catalogue's.
            Some(opened) => {
                drop(opened);
                open_audit(&origin)?
            }
            None => open_audit(&origin)?,
        };
        let current = store.current();
        tracing::info!(
            revision = %current.policy.revision(),
            rules = current.policy.rule_count(),
            signed = config.policy_signing_key.is_some(),
            "policy loaded"
        );
        for agency in config.agency_limits.keys() {
            anyhow::ensure!(
                current
                    .policy
                    .catalogue()
                    .agencies
                    .contains_key(agency.as_str()),
                "agency_limits: {agency:?} is not an agency of the catalogue in {}",
                config.policy.display()
            );
        }
        let consent = config
            .consent
            .as_ref()
            .map(|consent| ConsentKeys::load(consent, &federation).map(Arc::new))
            .transpose()?;
        let state = SharedState::from_config(&config.shared_state)
            .map_err(|error| anyhow::anyhow!("shared_state: {error}"))?;
        tracing::info!(
            consent = consent.is_some(),
            shared_state = match &state {
                SharedState::Memory(_) => "memory",
                SharedState::Redis(_) => "redis",
            },
            "consent and shared state ready"
        );
        let agencies = AgencyLimits::new(
            config.limits,
            config.agency_limits.clone(),
            matches!(state, SharedState::Redis(_)),
        );
        Ok(Gateway {
            pipeline: Arc::new(Pipeline {
                store: Arc::new(store),
                limits: config.limits,
                hash_key,
                consent,
                state: Arc::new(state),
                pseudonyms,
                replay_window: Duration::from_secs(config.replay_window_s),
                node: config.node.clone(),
                audit,
                tls,
                agencies,
                bench_mode: config.bench_mode,
            }),
            accept: AcceptLimits {
                handshake_timeout: Duration::from_millis(config.limits.handshake_timeout_ms),
                max_pending_handshakes: config.limits.max_handshakes,
                max_handshakes_per_ip: config.limits.max_handshakes_per_ip,
                max_connections: config.limits.max_connections,
                idle_timeout: (config.limits.idle_timeout_ms > 0)
                    .then(|| Duration::from_millis(config.limits.idle_timeout_ms)),
                coalesce_writes: true,
            },
            max_concurrent_streams: config.limits.max_concurrent_streams,
            max_header_list_bytes: config.limits.max_header_list_bytes,
            policy_poll: (config.policy_poll_ms > 0)
                .then(|| Duration::from_millis(config.policy_poll_ms)),
            workers,
        })
    }

    /// Serves on `listener` until `shutdown` completes; requests in flight are finished, and
    /// connections still open after [`DRAIN_TIMEOUT`] are closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let max_request_bytes = self.pipeline.limits.max_request_bytes;
        let store = self.pipeline.store.clone();
        let consent = self.pipeline.consent.clone();
        let reloads = spawn_reload_triggers(
            store.clone(),
            consent.clone(),
            self.pipeline.tls.clone(),
            self.policy_poll,
        )?;
        // The transport refuses anything far larger outright; up to 4x the limit a request is
        // decoded so the admit step can refuse it with a precise reason code.
        let admin = AdminServer::new(AdminService {
            store,
            consent,
            state: self.pipeline.state.clone(),
        });
        let audit = AuditServer::new(AuditService::new(
            self.pipeline.audit.log().clone(),
            self.pipeline.store.clone(),
            self.pipeline.pseudonyms.clone(),
        ));
        let trail = self.pipeline.audit.clone();
        let tls = self.pipeline.tls.clone();
        let hot_path =
            ExchangeLayer::new(self.pipeline.clone(), max_request_bytes.saturating_mul(4));
        let exchange = ExchangeServer::new(ExchangeService {
            pipeline: self.pipeline,
        })
        .max_decoding_message_size(max_request_bytes.saturating_mul(4));
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ExchangeServer<ExchangeService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(isnad_proto::v1::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let workers = Workers::new(self.workers)?;
        let incoming =
            isnad_tls::server::incoming_spread(listener, tls, self.accept, workers.handles())?;
        let mut incoming = incoming.into_iter();
        // Each worker serves the connections handed to it, with its own server over the same
        // services; the signal stops them all.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut builder = tonic::transport::Server::builder()
            .layer(tower::util::MapResponseLayer::new(precise_codec_errors))
            // Requests in progress keep their connection from being closed as idle.
            .layer(isnad_tls::idle::TrackRequestsLayer)
            .layer(HeaderLimitLayer {
                max: self.max_header_list_bytes,
            })
            // GetAttributes, straight to the pipeline; the rest, and unusual forms of it, on to
            // tonic's router.
            .layer(hot_path)
            // HTTP/2 itself refuses only header lists far over the limit (an HTTP 431, or the
            // connection for the grossest); up to 4x it they are read, so that the layer above
            // can refuse them with a reason code.
            .http2_max_header_list_size(self.max_header_list_bytes.saturating_mul(4))
            .max_concurrent_streams(self.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        let router = builder
            .add_service(health)
            .add_service(reflection)
            .add_service(exchange)
            .add_service(admin)
            .add_service(audit);
        let done = workers.spawn(|worker| {
            let router = router.clone();
            let incoming = incoming
                .next()
                .expect("one stream of connections per worker");
            let mut stopped = stopped.clone();
            async move {
                let mut signal = stopped.clone();
                let served = router.serve_with_incoming_shutdown(incoming, async move {
                    let _ = signal.wait_for(|stop| *stop).await;
                });
                // After the signal, in-flight requests get DRAIN_TIMEOUT; a client that keeps an
                // idle connection open does not hold the node up beyond it.
                let drain = async move {
                    if stopped.wait_for(|stop| *stop).await.is_ok() {
                        tokio::time::sleep(DRAIN_TIMEOUT).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    served = served => served.map_err(anyhow::Error::from),
                    () = drain => {
                        tracing::warn!(
                            worker,
                            "connections still open {DRAIN_TIMEOUT:?} after the shutdown signal; \
                             closing them"
                        );
                        Ok(())
                    }
                }
            }
        });
        // The first worker to end, by the signal or by an error, ends them all.
        let mut ends = tokio::task::JoinSet::new();
        for end in done {
            ends.spawn(end);
        }
        let mut served = Ok(());
        let mut signalled = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut signalled, if !*stop.borrow() => {
                    let _ = stop.send(true);
                }
                end = ends.join_next() => match end {
                    None => break,
                    Some(end) => {
                        let _ = stop.send(true);
                        let end = match end {
                            Ok(Ok(end)) => end,
                            _ => Err(anyhow::anyhow!("a worker stopped unexpectedly")),
                        };
                        if served.is_ok() {
                            served = end;
                        }
                    }
                },
            }
        }
        // Connections still open after the drain are closed with their workers.
        drop(workers);
        for task in reloads {
            task.abort();
        }
        // Every answered request's record is durable already; sign what the last second added.
        let _ = tokio::task::spawn_blocking(move || trail.close()).await;
        served?;
        Ok(())
    }
}

/// Gives the errors tonic's codec answers before a handler runs (a message over the decoding
/// limit, bytes that are not a protobuf message of the method's type, invalid UTF-8 in a string)
/// the same form as every other refusal: INVALID_ARGUMENT with a reason code. Statuses of ours
/// always carry details and are left alone. Such requests never reach the pipeline, so they are
/// not audited: nothing about them (not even a subject) can be read.
fn precise_codec_errors(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers();
    if headers.contains_key("grpc-status-details-bin") {
        return response;
    }
    let code = match headers.get("grpc-status") {
        // Not a trailers-only response: the status comes after a message.
        None => return response,
        Some(value) => Code::from_bytes(value.as_bytes()),
    };
    // grpc-message is percent-encoded; the prefixes matched below are plain ASCII words.
    let message = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .replace("%20", " ");
    let (reason, text) = match code {
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            FAR_TOO_LARGE
        }
        Code::Internal
            if message.starts_with("failed to decode Protobuf message")
                || message.starts_with("protocol error")
                || message.starts_with("Unexpected EOF") =>
        {
            NOT_A_REQUEST
        }
        _ => return response,
    };
    tracing::info!(reason, "request refused by the codec");
    errors::status(Code::InvalidArgument, reason, text).into_http()
}

/// Refuses requests whose HTTP/2 header list is over `limits.max_header_list_bytes`, as
/// HTTP/2 counts it (each field's name and value and 32 bytes, the pseudo-headers included), with
/// INVALID_ARGUMENT `headers_too_large`. Like the codec's refusals, such requests are refused
/// before anything of them is read, so they are not audited.
#[derive(Debug, Clone, Copy)]
struct HeaderLimitLayer {
    max: u32,
}

impl<S> tower::Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> HeaderLimit<S> {
        HeaderLimit {
            inner,
            max: self.max as usize,
        }
    }
}

#[derive(Debug, Clone)]
struct HeaderLimit<S> {
    inner: S,
    max: usize,
}

/// The refusal [`HeaderLimit`] answers with, as a service of its own so that both answers are
/// one future type (`tower::util::Either`) without a box.
#[derive(Debug)]
struct Refuse<E>(
    Option<http::Response<tonic::body::Body>>,
    std::marker::PhantomData<fn() -> E>,
);

impl<B, E> tower::Service<http::Request<B>> for Refuse<E> {
    type Response = http::Response<tonic::body::Body>;
    type Error = E;
    type Future = std::future::Ready<Result<Self::Response, E>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), E>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(self.0.take().unwrap_or_default()))
    }
}

/// The size of a request's header list as HTTP/2 counts it (RFC 9113, 6.5.2).
fn header_list_size<B>(request: &http::Request<B>) -> usize {
    const PER_FIELD: usize = 32;
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ]
    .iter()
    .map(|(name, value)| name.len() + value + PER_FIELD)
    .sum::<usize>();
    pseudo
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + PER_FIELD)
            .sum::<usize>()
}

impl<S, B> tower::Service<http::Request<B>> for HeaderLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tower::util::future::EitherResponseFuture<
        std::future::Ready<Result<S::Response, S::Error>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let size = header_list_size(&request);
        if size > self.max {
            // Only the size: header values are the caller's and may carry anything.
            tracing::info!(size, limit = self.max, "request refused: headers_too_large");
            let refusal = errors::status(
                Code::InvalidArgument,
                "headers_too_large",
                format!(
                    "admit: the request's headers take {size} bytes; the limit is {}",
                    self.max
                ),
            )
            .into_http();
            return tower::util::Either::<Refuse<S::Error>, &mut S>::Left(Refuse(
                Some(refusal),
                std::marker::PhantomData,
            ))
            .call(request);
        }
        tower::util::Either::<Refuse<S::Error>, &mut S>::Right(&mut self.inner).call(request)
    }
}

/// Starts the reload triggers: polling the policy store, the consent keys and the TLS files
/// every `poll` (if set), and SIGHUP.
fn spawn_reload_triggers(
    store: Arc<PolicyStore>,
    consent: Option<Arc<ConsentKeys>>,
    tls: Arc<LiveTls>,
    poll: Option<Duration>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if let Some(every) = poll {
        let store = store.clone();
        let consent = consent.clone();
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let store = store.clone();
                let consent = consent.clone();
                let tls = tls.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    store.poll();
                    if let Some(consent) = consent {
                        consent.poll("file change");
                    }
                    let _ = tls.poll();
                })
                .await;
            }
        }));
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))?;
        tasks.push(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let store = store.clone();
                let consent = consent.clone();
                let tls = tls.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = store.reload("SIGHUP");
                    if let Some(consent) = consent {
                        consent.poll("SIGHUP");
                    }
                    let _ = tls.reload("SIGHUP");
                })
                .await;
            }
        }));
    }
    Ok(tasks)
}
