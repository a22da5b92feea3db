//! Provider agencies that misbehave on purpose, served over the federation's real mTLS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use isnad_proto::v1::provider_server::{Provider, ProviderServer};
use isnad_proto::v1::{FetchRequest, FetchResponse, Value, value::Kind};
use isnad_tls::TlsMaterial;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// How the double answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answers after this long.
    Slow(Duration),
    /// Answers every requested field with a string value, plus fields nobody asked for.
    Rogue,
}

#[derive(Debug, Clone)]
struct Double {
    behaviour: Behaviour,
}

#[tonic::async_trait]
impl Provider for Double {
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let request = request.into_inner();
        let text = |s: &str| Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        };
        let mut attributes = HashMap::new();
        match &self.behaviour {
            Behaviour::Slow(delay) => {
                tokio::time::sleep(*delay).await;
                for field in &request.fields {
                    attributes.insert(field.clone(), text("slow"));
                }
            }
            Behaviour::Rogue => {
                for field in &request.fields {
                    attributes.insert(field.clone(), text("rogue"));
                }
                attributes.insert("mobile".into(), text("+971500000000"));
                attributes.insert("blood_type".into(), text("O+"));
            }
        }
        Ok(Response::new(FetchResponse { attributes }))
    }
}

/// A running double; stops when dropped.
#[derive(Debug)]
pub struct ProviderDouble {
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl ProviderDouble {
    /// Serves `behaviour` with the provider agency's certificate `material`.
    pub async fn start(material: &TlsMaterial, behaviour: Behaviour) -> ProviderDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = isnad_tls::policy::server_config(material).unwrap();
        let incoming = isnad_tls::server::incoming(
            listener,
            isnad_tls::server::shared(config),
            Default::default(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ProviderServer::new(Double { behaviour }))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        ProviderDouble { addr, _stop: stop }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
}
