//! Provider agencies that misbehave on purpose, served over the federation's real mTLS.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isnad_proto::v1::provider_server::{Provider, ProviderServer};
use isnad_proto::v1::{FetchRequest, FetchResponse, Value, value::Kind};
use isnad_tls::server::AcceptLimits;
use isnad_tls::{PeerInfo, TlsMaterial};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// How the double answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answers after this long.
    Slow(Duration),
    /// Answers every requested field with a string value, plus fields nobody asked for.
    Rogue,
    /// Answers every requested field with a string of this many bytes.
    Huge(usize),
}

#[derive(Debug, Clone)]
struct Double {
    behaviour: Behaviour,
    callers: Callers,
    connections: Connections,
}

/// The client address of every connection a request came on.
type Connections = Arc<Mutex<BTreeSet<SocketAddr>>>;

/// The SHA-256 of the client certificate of each request a double answered, in order.
type Callers = Arc<Mutex<Vec<[u8; 32]>>>;

#[tonic::async_trait]
impl Provider for Double {
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>();
        let caller = peer
            .and_then(|peer| peer.cert_sha256)
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        self.callers.lock().unwrap().push(caller);
        if let Some(remote) = peer.and_then(|peer| peer.remote) {
            self.connections.lock().unwrap().insert(remote);
        }
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
            Behaviour::Huge(bytes) => {
                for field in &request.fields {
                    attributes.insert(field.clone(), text(&"x".repeat(*bytes)));
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
    callers: Callers,
    connections: Connections,
    _stop: oneshot::Sender<()>,
}

impl ProviderDouble {
    /// Serves `behaviour` with the provider agency's certificate `material`.
    pub async fn start(material: &TlsMaterial, behaviour: Behaviour) -> ProviderDouble {
        Self::start_at("127.0.0.1:0".parse().unwrap(), material, behaviour).await
    }

    /// The same on `addr` (e.g. a port a gateway already points at).
    pub async fn start_at(
        addr: SocketAddr,
        material: &TlsMaterial,
        behaviour: Behaviour,
    ) -> ProviderDouble {
        Self::start_with(addr, material, behaviour, AcceptLimits::default()).await
    }

    /// The same with `limits` on its connections (e.g. an idle timeout that closes them).
    pub async fn start_with(
        addr: SocketAddr,
        material: &TlsMaterial,
        behaviour: Behaviour,
        limits: AcceptLimits,
    ) -> ProviderDouble {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = isnad_tls::LiveTls::fixed(material.clone()).unwrap();
        let incoming = isnad_tls::server::incoming(listener, tls, limits).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let callers = Callers::default();
        let connections = Connections::default();
        let double = Double {
            behaviour,
            callers: callers.clone(),
            connections: connections.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ProviderServer::new(double))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        ProviderDouble {
            addr,
            callers,
            connections,
            _stop: stop,
        }
    }

    /// The SHA-256 of the client certificate of each request it answered, in order.
    pub fn callers(&self) -> Vec<[u8; 32]> {
        self.callers.lock().unwrap().clone()
    }

    /// The client address of every connection a request it answered came on.
    pub fn connections(&self) -> BTreeSet<SocketAddr> {
        self.connections.lock().unwrap().clone()
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// A "provider" that accepts TCP connections and never speaks TLS on them.
#[derive(Debug)]
pub struct TcpOnlyProvider {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpOnlyProvider {
    /// One that resets each connection at once, before any TLS.
    pub async fn resetting() -> TcpOnlyProvider {
        Self::start(|stream| {
            // Closing with the client's TLS hello unread makes the kernel answer with a reset
            // (RST), not an orderly FIN.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(stream);
            });
        })
        .await
    }

    /// One that holds each connection open and says nothing: a TLS handshake never ends.
    pub async fn silent() -> TcpOnlyProvider {
        // The streams live in the accept task, until the provider is dropped.
        let mut held = Vec::new();
        Self::start(move |stream| held.push(stream)).await
    }

    /// Listens on a free loopback port and hands every accepted connection to `accepted`.
    async fn start(
        mut accepted: impl FnMut(tokio::net::TcpStream) + Send + 'static,
    ) -> TcpOnlyProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted(stream);
            }
        });
        TcpOnlyProvider { addr, task }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TcpOnlyProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}
