//! The TLS accept loop.
//!
//! Handshakes run concurrently, each in its own task, bounded in number and in time, so a client
//! that opens a connection and stalls the handshake cannot hold up anyone else. Completed
//! connections are handed to tonic tagged with a [`PeerInfo`]; the identity is read once per
//! connection, not per request. A connection whose peer certificate is revoked while it is open
//! fails its next read or write after the revocation list is reloaded, so revocation reaches
//! connections made before it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::TlsError;
use crate::coalesce::Coalesce;
use crate::identity::PeerInfo;
use crate::live::{LiveTls, PeerWatch};

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// A handshake not finished in this time is dropped.
    pub handshake_timeout: Duration,
    /// At most this many handshakes run at once; further connections wait to be accepted.
    pub max_pending_handshakes: usize,
    /// Postpone each connection's flushes until the worker has run its other ready tasks, so
    /// that the responses of many streams leave in one write ([`crate::coalesce`]).
    pub coalesce_writes: bool,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 512,
            coalesce_writes: false,
        }
    }
}

/// A TLS connection with the peer's identity, as tonic consumes it.
#[derive(Debug)]
pub struct TlsConn {
    stream: Coalesce<TlsStream<TcpStream>>,
    peer: Arc<PeerInfo>,
    watch: PeerWatch,
}

impl Connected for TlsConn {
    type ConnectInfo = Arc<PeerInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.watch.check()?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.watch.check()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.watch.check()?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts TCP connections on `listener`, runs the TLS handshakes with the server policy
/// ([`crate::policy::server_config`]) over `tls`, and yields the established connections for
/// `tonic::transport::Server::serve_with_incoming`.
///
/// A failed or timed-out handshake is logged at debug level and dropped; it never ends the loop.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<LiveTls>,
    limits: AcceptLimits,
) -> Result<ReceiverStream<Result<TlsConn, io::Error>>, TlsError> {
    let acceptor = TlsAcceptor::from(Arc::new(crate::policy::server_config(&tls)?));
    let (tx, rx) = mpsc::channel(limits.max_pending_handshakes.max(1));
    let permits = Arc::new(Semaphore::new(limits.max_pending_handshakes.max(1)));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tls = tls.clone();
            let tx = tx.clone();
            // A reload during the handshake makes the connection check its peer again.
            let checked = tls.generation();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
                let stream = match handshake.await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%remote, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                drop(permit);
                let peer =
                    PeerInfo::from_chain(stream.get_ref().1.peer_certificates(), Some(remote));
                let _ = tx
                    .send(Ok(TlsConn {
                        stream: Coalesce::new(stream, limits.coalesce_writes),
                        watch: PeerWatch::new(tls, peer.clone(), checked),
                        peer: Arc::new(peer),
                    }))
                    .await;
            });
        }
    });
    Ok(ReceiverStream::new(rx))
}
