//! Client connections over mutual TLS: [`connect`] for a bare connection, [`channel`] for a
//! tonic channel.

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

/// Where a client connects: an `https://host:port` endpoint, checked once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint as given.
    pub uri: Uri,
    /// The host, without the brackets of an IPv6 literal.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The name the server's certificate is checked against by the TLS layer.
    pub name: ServerName<'static>,
}

impl Target {
    /// Parses `endpoint`: an https URI with a host and a port.
    pub fn parse(endpoint: &str) -> Result<Target, TlsError> {
        let invalid = |reason: &str| TlsError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = endpoint.parse().map_err(|_| invalid("not a URI"))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("the scheme must be https"));
        }
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            return Err(invalid("host and port are required"));
        };
        // Bracketed IPv6 literals come back from `Uri::host` with their brackets.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = ServerName::try_from(host.clone()).map_err(|_| invalid("bad host"))?;
        Ok(Target {
            uri,
            host,
            port,
            name,
        })
    }
}

/// A client connection as [`connect`] returns it.
pub type ClientIo = Coalesce<Watched<TlsStream<TcpStream>>>;

/// Opens a TCP connection to `target` and runs the client side of the TLS handshake, both
/// within `settings.connect_timeout`; the result is watched for revocation and coalesces its
/// writes as `settings` ask.
pub async fn connect(
    target: &Target,
    config: &Arc<ClientConfig>,
    settings: &ChannelSettings,
) -> std::io::Result<ClientIo> {
    // A reload during the handshake makes the connection check its peer again.
    let checked = settings.revocation.as_ref().map(|tls| tls.generation());
    let connect = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(config.clone())
            .connect(target.name.clone(), tcp)
            .await
    };
    let stream = tokio::time::timeout(settings.connect_timeout, connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let watch = settings
        .revocation
        .clone()
        .zip(checked)
        .map(|(tls, checked)| {
            let peer = PeerInfo::from_chain(stream.get_ref().1.peer_certificates(), None);
            PeerWatch::new(tls, peer, checked)
        });
    let stream = Watched {
        inner: stream,
        watch,
    };
    Ok(Coalesce::new(stream, settings.coalesce_writes))
}

/// A tonic channel to `endpoint` (`https://host:port`) that connects lazily, on first use, and
/// reconnects after a failure. Calls on it fail with UNAVAILABLE while the peer is unreachable.
pub fn channel(
    endpoint: &str,
    config: Arc<ClientConfig>,
    settings: ChannelSettings,
) -> Result<Channel, TlsError> {
    let target = Target::parse(endpoint)?;
    let endpoint = Endpoint::from(target.uri.clone())
        .connect_timeout(settings.connect_timeout)
        .http2_adaptive_window(true);
    Ok(endpoint.connect_with_connector_lazy(MtlsConnector {
        target: Arc::new(target),
        config,
        settings,
    }))
}

/// Connects to one target whatever URI tonic passes (it is always the target's).
#[derive(Clone)]
struct MtlsConnector {
    target: Arc<Target>,
    config: Arc<ClientConfig>,
    settings: ChannelSettings,
}

impl tower::Service<Uri> for MtlsConnector {
    type Response = TokioIo<ClientIo>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            connect(&connector.target, &connector.config, &connector.settings)
                .await
                .map(TokioIo::new)
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
