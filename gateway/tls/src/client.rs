//! gRPC channels over mutual TLS.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use crate::TlsError;
use crate::coalesce::Coalesce;
use crate::identity::PeerInfo;
use crate::live::{LiveTls, PeerWatch};

/// HTTP/2 and connection settings of a channel.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Time allowed for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Postpone flushes until the worker has run its other ready tasks, so that the requests of
    /// many calls leave in one write ([`crate::coalesce`]).
    pub coalesce_writes: bool,
    /// Close a connection when the server's certificate is revoked by a reload of this
    /// material (the configuration's verifier refuses it on new connections).
    pub revocation: Option<Arc<LiveTls>>,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            connect_timeout: Duration::from_secs(3),
            coalesce_writes: false,
            revocation: None,
        }
    }
}

/// A channel to `endpoint` (`https://host:port`) that connects lazily, on first use, and
/// reconnects after a failure. Calls on it fail with UNAVAILABLE while the peer is unreachable.
pub fn channel(
    endpoint: &str,
    config: Arc<ClientConfig>,
    settings: ChannelSettings,
) -> Result<Channel, TlsError> {
    let invalid = |reason: &str| TlsError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = endpoint.parse().map_err(|_| invalid("not a URI"))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("the scheme must be https"));
    }
    if uri.host().is_none() || uri.port_u16().is_none() {
        return Err(invalid("host and port are required"));
    }
    let endpoint = Endpoint::from(uri)
        .connect_timeout(settings.connect_timeout)
        .http2_adaptive_window(true);
    Ok(endpoint.connect_with_connector_lazy(MtlsConnector {
        tls: TlsConnector::from(config),
        timeout: settings.connect_timeout,
        coalesce_writes: settings.coalesce_writes,
        revocation: settings.revocation,
    }))
}

/// Opens TCP connections and runs the client side of the TLS handshake.
#[derive(Clone)]
struct MtlsConnector {
    tls: TlsConnector,
    timeout: Duration,
    coalesce_writes: bool,
    revocation: Option<Arc<LiveTls>>,
}

impl tower::Service<Uri> for MtlsConnector {
    type Response = TokioIo<Coalesce<Watched<TlsStream<TcpStream>>>>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let timeout = self.timeout;
        let coalesce_writes = self.coalesce_writes;
        let revocation = self.revocation.clone();
        Box::pin(async move {
            let invalid = |what| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            // Bracketed IPv6 literals come back from `Uri::host` with their brackets.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = ServerName::try_from(host.clone()).map_err(|_| invalid("bad host"))?;
            // A reload during the handshake makes the connection check its peer again.
            let checked = revocation.as_ref().map(|tls| tls.generation());
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tls.connect(name, tcp).await
            };
            let stream = tokio::time::timeout(timeout, connect).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
            let watch = revocation.zip(checked).map(|(tls, checked)| {
                let peer = PeerInfo::from_chain(stream.get_ref().1.peer_certificates(), None);
                PeerWatch::new(tls, peer, checked)
            });
            let stream = Watched {
                inner: stream,
                watch,
            };
            Ok(TokioIo::new(Coalesce::new(stream, coalesce_writes)))
        })
    }
}

/// A client connection whose server certificate is watched for revocation.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    watch: Option<PeerWatch>,
}

impl<T> Watched<T> {
    fn check(&mut self) -> std::io::Result<()> {
        self.watch.as_mut().map_or(Ok(()), PeerWatch::check)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
