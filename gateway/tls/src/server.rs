//! The TLS accept loop.
//!
//! Handshakes run concurrently, each in its own task, bounded in number and in time, and in
//! number per source address, so a host that opens connections and stalls their handshakes
//! holds at most its own share of the handshake places and cannot hold up anyone else. The
//! connections open at once are capped too: one beyond the cap is closed as soon as it is
//! accepted. Completed connections are handed to tonic tagged with a [`PeerInfo`]; the identity
//! is read once per connection, not per request. A connection whose peer certificate is revoked
//! while it is open fails its next read or write after the revocation list is reloaded, so
//! revocation reaches connections made before it; a connection with no request in progress for
//! the idle timeout fails its next read too ([`crate::idle`]).
//!
//! A server with several runtimes (the gateway's workers) gets one stream of connections per
//! runtime from [`incoming_spread`]: each accepted connection is handed, socket and all, to the
//! runtime with the fewest connections, and its handshake and every later read and write run
//! there.
//!
//! Refused connections are logged at most once a second, with how many were refused since.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::TlsError;
use crate::coalesce::Coalesce;
use crate::identity::PeerInfo;
use crate::idle::IdleTimer;
use crate::live::{LiveTls, PeerWatch};

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// A handshake not finished in this time is dropped.
    pub handshake_timeout: Duration,
    /// At most this many handshakes run at once; further connections wait to be accepted.
    pub max_pending_handshakes: usize,
    /// At most this many of them from one source address (an IPv6 /64, which one host can
    /// easily fill); a connection beyond it is closed at once. 0: no limit.
    pub max_handshakes_per_ip: usize,
    /// At most this many connections open at once, handshaking or established; a connection
    /// beyond it is closed at once. 0: no limit.
    pub max_connections: usize,
    /// A connection with no request in progress for this long is closed. It needs
    /// [`crate::idle::TrackRequestsLayer`] in the server's stack, which marks the requests.
    pub idle_timeout: Option<Duration>,
    /// Postpone each connection's flushes until the worker has run its other ready tasks, so
    /// that the responses of many streams leave in one write ([`crate::coalesce`]).
    pub coalesce_writes: bool,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 512,
            max_handshakes_per_ip: 0,
            max_connections: 0,
            idle_timeout: None,
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
    idle: Option<IdleTimer>,
    /// Its place under `max_connections`, given back when the connection is dropped.
    _place: Option<OwnedSemaphorePermit>,
    /// It counted among its runtime's connections.
    _open: OpenCount,
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
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        let this = &mut *self;
        if let Some(idle) = &mut this.idle {
            if read.is_ready() {
                if buf.filled().len() > filled {
                    idle.read();
                }
            } else if idle.expired(&this.peer.activity, cx) {
                tracing::debug!(remote = ?this.peer.remote, "closing an idle connection");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request in progress for the idle timeout",
                )));
            }
        }
        read
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
    let mut streams = incoming_spread(listener, tls, limits, vec![Handle::current()])?;
    Ok(streams.pop().expect("one stream per runtime"))
}

/// [`incoming`] for a server with several runtimes (the gateway's workers): each accepted
/// connection goes to the runtime with the fewest connections open, where its handshake runs
/// and its socket is registered, and it comes out of that runtime's stream (the stream at the
/// same index as its handle). A connection stays on its runtime for its whole life. The accept
/// loop itself runs on the runtime this is called on.
pub fn incoming_spread(
    listener: TcpListener,
    tls: Arc<LiveTls>,
    limits: AcceptLimits,
    runtimes: Vec<Handle>,
) -> Result<Vec<ReceiverStream<Result<TlsConn, io::Error>>>, TlsError> {
    assert!(!runtimes.is_empty(), "connections need a runtime to go to");
    let acceptor = TlsAcceptor::from(Arc::new(crate::policy::server_config(&tls)?));
    let mut streams = Vec::with_capacity(runtimes.len());
    let mut targets = Vec::with_capacity(runtimes.len());
    for runtime in runtimes {
        let (tx, rx) = mpsc::channel(limits.max_pending_handshakes.max(1));
        streams.push(ReceiverStream::new(rx));
        targets.push(Target {
            runtime,
            tx,
            open: Arc::new(AtomicUsize::new(0)),
        });
    }
    let handshakes = Arc::new(Semaphore::new(limits.max_pending_handshakes.max(1)));
    let connections =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let per_ip = Arc::new(PerAddress::new(limits.max_handshakes_per_ip));
    tokio::spawn(async move {
        let mut over_cap = Throttled::default();
        let mut over_per_ip = Throttled::default();
        loop {
            let Ok(handshake) = handshakes.clone().acquire_owned().await else {
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
            let Some(target) = least_loaded(&targets) else {
                // Every server has stopped.
                return;
            };
            // Refusals close the socket at once (dropping it), before any TLS.
            let place = match &connections {
                None => None,
                Some(connections) => match connections.clone().try_acquire_owned() {
                    Ok(place) => Some(place),
                    Err(_) => {
                        if let Some(refused) = over_cap.note() {
                            tracing::warn!(
                                %remote,
                                max_connections = limits.max_connections,
                                refused,
                                "connections refused: max_connections are open"
                            );
                        }
                        continue;
                    }
                },
            };
            let Some(from_ip) = per_ip.enter(remote.ip()) else {
                if let Some(refused) = over_per_ip.note() {
                    tracing::warn!(
                        address = %address_key(remote.ip()),
                        max_handshakes_per_ip = limits.max_handshakes_per_ip,
                        refused,
                        "connections refused: too many handshakes in progress from one address"
                    );
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // The socket leaves this runtime's reactor for its target's, where every readiness
            // event of the connection then arrives.
            let tcp = match tcp.into_std() {
                Ok(tcp) => tcp,
                Err(error) => {
                    tracing::debug!(%remote, %error, "cannot hand the connection over");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tls = tls.clone();
            let tx = target.tx.clone();
            let open = OpenCount::enter(&target.open);
            // A reload during the handshake makes the connection check its peer again.
            let checked = tls.generation();
            target.runtime.spawn(async move {
                let tcp = match TcpStream::from_std(tcp) {
                    Ok(tcp) => tcp,
                    Err(error) => {
                        tracing::debug!(%remote, %error, "cannot register the connection");
                        return;
                    }
                };
                let handshake_done =
                    tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
                let stream = match handshake_done.await {
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
                drop(handshake);
                drop(from_ip);
                let peer =
                    PeerInfo::from_chain(stream.get_ref().1.peer_certificates(), Some(remote));
                let _ = tx
                    .send(Ok(TlsConn {
                        stream: Coalesce::new(stream, limits.coalesce_writes),
                        watch: PeerWatch::new(tls, peer.clone(), checked),
                        peer: Arc::new(peer),
                        idle: limits.idle_timeout.map(IdleTimer::new),
                        _place: place,
                        _open: open,
                    }))
                    .await;
            });
        }
    });
    Ok(streams)
}

/// A runtime connections are handed to, with the stream its server reads them from.
struct Target {
    runtime: Handle,
    tx: mpsc::Sender<Result<TlsConn, io::Error>>,
    /// Its connections handshaking or open.
    open: Arc<AtomicUsize>,
}

/// The runtime whose server still runs with the fewest connections (the first of them on a
/// tie), or `None` when every server has stopped.
fn least_loaded(targets: &[Target]) -> Option<&Target> {
    targets
        .iter()
        .filter(|target| !target.tx.is_closed())
        .min_by_key(|target| target.open.load(Ordering::Relaxed))
}

/// One connection counted on its runtime, until dropped.
#[derive(Debug)]
struct OpenCount(Arc<AtomicUsize>);

impl OpenCount {
    fn enter(count: &Arc<AtomicUsize>) -> OpenCount {
        count.fetch_add(1, Ordering::Relaxed);
        OpenCount(count.clone())
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The address whose handshakes are counted together: an IPv4 address, or the /64 of an IPv6
/// one (a host usually has a whole /64 to pick addresses from). IPv4 addresses mapped into
/// IPv6 count as IPv4.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

/// Handshakes in progress per source address.
#[derive(Debug)]
struct PerAddress {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One handshake's place under its address's limit, given back when dropped.
#[derive(Debug)]
struct AddressPlace {
    of: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    fn new(max: usize) -> PerAddress {
        PerAddress {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map is updated in one statement at a time; a poisoned lock still guards it whole.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a handshake from `ip` (`Some(None)`: there is no limit to hold a place
    /// under), or `None` if its address has `max` in progress.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<Option<AddressPlace>> {
        if self.max == 0 {
            return Some(None);
        }
        let key = address_key(ip);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Some(AddressPlace {
            of: self.clone(),
            key,
        }))
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut counts = self.of.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Counts events and says when to log them: the first at once, then at most one line a second
/// with how many happened since the last line.
#[derive(Debug, Default)]
struct Throttled {
    logged: Option<Instant>,
    since: u64,
}

impl Throttled {
    /// Counts one; `Some(count)` when a line is due.
    fn note(&mut self) -> Option<u64> {
        self.since += 1;
        let due = self
            .logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if !due {
            return None;
        }
        self.logged = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_handshakes_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            address_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn an_address_gets_at_most_its_share_of_handshakes() {
        let per_ip = Arc::new(PerAddress::new(2));
        let host: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = per_ip.enter(host).expect("first");
        let _second = per_ip.enter(host).expect("second");
        assert!(per_ip.enter(host).is_none());
        assert!(per_ip.enter(other).is_some());
        drop(first);
        assert!(per_ip.enter(host).is_some());
        assert!(per_ip.lock().len() <= 2);
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_a_count() {
        let mut throttled = Throttled::default();
        assert_eq!(throttled.note(), Some(1));
        assert_eq!(throttled.note(), None);
        assert_eq!(throttled.note(), None);
        throttled.logged = Some(Instant::now() - Duration::from_secs(2));
        assert_eq!(throttled.note(), Some(3));
    }
}
