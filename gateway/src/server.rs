//! The gateway's gRPC server: `isnad.v1.Exchange`, gRPC health and server reflection, all over
//! mutual TLS on one port.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use isnad_policy::PolicySet;
use isnad_proto::v1::exchange_server::{Exchange, ExchangeServer};
use isnad_proto::v1::{AttributesRequest, AttributesResponse};
use isnad_tls::server::AcceptLimits;
use isnad_tls::{PeerInfo, TlsFiles};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::config::GatewayConfig;
use crate::pipeline::{Pipeline, Upstreams};

/// The `Exchange` service: hands each request to the pipeline.
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
        let dataset = request.dataset.clone();
        let purpose = request.purpose.clone();
        match self
            .pipeline
            .get_attributes(peer.as_deref(), grpc_timeout.as_deref(), request)
            .await
        {
            Ok(response) => Ok(Response::new(response)),
            Err(denial) => {
                // No subject, no values: only what was asked of whom, and why it was refused.
                tracing::info!(
                    peer = peer.as_ref().and_then(|p| p.identity.as_ref().ok()).map(|id| id.as_str()),
                    dataset = %dataset.escape_debug(),
                    purpose = %purpose.escape_debug(),
                    step = %denial.step,
                    reason = denial.reason,
                    "request refused"
                );
                Err(denial.into())
            }
        }
    }
}

/// A gateway ready to serve: configuration checked, policy compiled, TLS material loaded.
#[derive(Debug)]
pub struct Gateway {
    pipeline: Arc<Pipeline>,
    tls: rustls::ServerConfig,
    accept: AcceptLimits,
    max_concurrent_streams: u32,
}

impl Gateway {
    /// Loads everything the configuration names; any error stops here, before serving.
    pub fn load(config: &GatewayConfig) -> anyhow::Result<Gateway> {
        let policy = PolicySet::load_dir(&config.policy)
            .map_err(|errors| anyhow::anyhow!("policy {}: {errors}", config.policy.display()))?;
        let material = TlsFiles {
            ca: config.tls.ca.clone(),
            cert: config.tls.cert.clone(),
            key: config.tls.key.clone(),
        }
        .load()?;
        let upstreams = Upstreams::new(
            policy.catalogue(),
            &config.upstreams,
            &material,
            config.limits.upstream_connections,
        )?;
        tracing::info!(
            revision = %policy.revision(),
            rules = policy.rule_count(),
            "policy loaded"
        );
        Ok(Gateway {
            pipeline: Arc::new(Pipeline {
                policy: Arc::new(ArcSwap::from_pointee(policy)),
                upstreams,
                limits: config.limits,
            }),
            tls: isnad_tls::policy::server_config(&material)?,
            accept: AcceptLimits {
                handshake_timeout: Duration::from_millis(config.limits.handshake_timeout_ms),
                ..AcceptLimits::default()
            },
            max_concurrent_streams: config.limits.max_concurrent_streams,
        })
    }

    /// Serves on `listener` until `shutdown` completes; requests in flight are finished.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let max_request_bytes = self.pipeline.limits.max_request_bytes;
        // The transport refuses anything far larger outright; up to 4x the limit a request is
        // decoded so the admit step can refuse it with a precise reason code.
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
        let incoming =
            isnad_tls::server::incoming(listener, isnad_tls::server::shared(self.tls), self.accept);
        tonic::transport::Server::builder()
            .max_concurrent_streams(self.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(health)
            .add_service(reflection)
            .add_service(exchange)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}
