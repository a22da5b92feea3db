//! The `isnad.v1.Provider` service over mutual TLS.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use isnad_proto::errors::status;
use isnad_proto::v1::provider_server::{Provider, ProviderServer};
use isnad_proto::v1::{FetchRequest, FetchResponse};
use isnad_tls::{PeerInfo, TlsFiles};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

use crate::config::ProviderConfig;
use crate::records::{Dataset, RecordError};

/// Serves the configured datasets to the allowed callers.
#[derive(Debug, Clone)]
pub struct ProviderService {
    datasets: Arc<BTreeMap<String, Dataset>>,
    allowed_callers: Arc<HashSet<String>>,
}

/// Why the provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A dataset could not be loaded.
    #[error("dataset {dataset}: {source}")]
    Records {
        /// The dataset.
        dataset: String,
        /// The cause.
        source: RecordError,
    },
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] isnad_tls::TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("server: {0}")]
    Server(#[from] tonic::transport::Error),
}

impl ProviderService {
    /// Loads every dataset of the configuration.
    pub fn load(config: &ProviderConfig) -> Result<ProviderService, ServeError> {
        let mut datasets = BTreeMap::new();
        for (name, dataset) in &config.datasets {
            let loaded = Dataset::load(dataset).map_err(|source| ServeError::Records {
                dataset: name.clone(),
                source,
            })?;
            datasets.insert(name.clone(), loaded);
        }
        Ok(ProviderService {
            datasets: Arc::new(datasets),
            allowed_callers: Arc::new(config.allowed_callers.iter().cloned().collect()),
        })
    }

    /// How many subjects each dataset holds.
    pub fn sizes(&self) -> impl Iterator<Item = (&str, usize)> {
        self.datasets
            .iter()
            .map(|(name, d)| (name.as_str(), d.len()))
    }

    fn check_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let peer = request
            .extensions()
            .get::<Arc<PeerInfo>>()
            .ok_or_else(|| status(Code::Unauthenticated, "no_client_identity", "no TLS peer"))?;
        match &peer.identity {
            Ok(id) if self.allowed_callers.contains(id.as_str()) => Ok(()),
            Ok(id) => Err(status(
                Code::PermissionDenied,
                "caller_not_allowed",
                format!("{id} may not call this provider; only the federation's gateway may"),
            )),
            Err(error) => Err(status(
                Code::Unauthenticated,
                "no_spiffe_id",
                format!("client certificate rejected: {error}"),
            )),
        }
    }
}

#[tonic::async_trait]
impl Provider for ProviderService {
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        self.check_caller(&request)?;
        let request = request.into_inner();
        let dataset = self.datasets.get(&request.dataset).ok_or_else(|| {
            status(
                Code::InvalidArgument,
                "unknown_dataset",
                format!("this provider does not serve {:?}", request.dataset),
            )
        })?;
        if request.fields.is_empty() {
            return Err(status(
                Code::InvalidArgument,
                "no_fields",
                "no field requested",
            ));
        }
        let attributes = dataset
            .lookup(&request.subject, request.fields.iter().map(String::as_str))
            .ok_or_else(|| {
                status(
                    Code::NotFound,
                    "subject_not_found",
                    "the dataset holds no record for this subject",
                )
            })?;
        Ok(Response::new(FetchResponse { attributes }))
    }
}

/// Loads the datasets and serves them on `listener` until `shutdown` completes.
pub async fn serve(
    config: &ProviderConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let service = ProviderService::load(config)?;
    for (name, size) in service.sizes() {
        tracing::info!(agency = %config.agency, dataset = name, subjects = size, "dataset loaded");
    }
    let tls = isnad_tls::LiveTls::load(TlsFiles {
        ca: config.tls.ca.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        crls: Vec::new(),
    })?;
    let incoming = isnad_tls::server::incoming(listener, tls, Default::default())?;
    tonic::transport::Server::builder()
        .add_service(ProviderServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
