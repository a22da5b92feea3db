//! Idle client connections: a connection with no request in progress for a configured time is
//! closed, so that abandoned connections (and clients that connect and never ask anything) do
//! not hold memory, file descriptors and places under `max_connections` forever.
//!
//! "Idle" means no request, not no bytes: the server's own HTTP/2 keepalive pings (and the
//! client's answers) keep flowing on a connection nobody uses, and tonic's `max_connection_age`
//! closes busy connections as readily as idle ones. So each connection carries an [`Activity`]
//! (in its [`PeerInfo`](crate::PeerInfo), which every request on it sees), the server's request
//! stack marks each request in progress with [`TrackRequestsLayer`], and the connection's reads
//! ([`crate::server`]) end with an error once no request has been in progress for the timeout.
//!
//! The connection is closed without an HTTP/2 GOAWAY (tonic gives no handle on a connection's
//! graceful shutdown): a request a client sends at that very moment fails as a dropped
//! connection would. To keep that window small, a connection that received any bytes in the
//! last [`READ_GRACE`] is not closed yet (the bytes may be a request that is not yet in
//! progress).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::identity::PeerInfo;

/// A connection that received bytes this recently is not closed as idle yet.
pub const READ_GRACE: Duration = Duration::from_secs(1);

/// The requests in progress on one connection, and when the last one ended. Clones share it.
#[derive(Debug, Clone)]
pub struct Activity(Arc<Counters>);

#[derive(Debug)]
struct Counters {
    since: Instant,
    in_progress: AtomicU32,
    /// When the last request ended (or the connection was made), microseconds after `since`.
    last_end_us: AtomicU64,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity(Arc::new(Counters {
            since: Instant::now(),
            in_progress: AtomicU32::new(0),
            last_end_us: AtomicU64::new(0),
        }))
    }
}

/// A request in progress; it ends when this is dropped.
#[derive(Debug)]
pub struct InProgress(Activity);

impl Drop for InProgress {
    fn drop(&mut self) {
        let counters = &self.0.0;
        counters
            .last_end_us
            .store(micros(counters.since.elapsed()), Ordering::Relaxed);
        counters.in_progress.fetch_sub(1, Ordering::Release);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Activity {
    /// Marks a request in progress until the returned guard is dropped.
    pub fn begin(&self) -> InProgress {
        self.0.in_progress.fetch_add(1, Ordering::Acquire);
        InProgress(self.clone())
    }

    /// How long the connection has had no request in progress; `None` while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.0.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last_end = Duration::from_micros(self.0.last_end_us.load(Ordering::Relaxed));
        Some(self.0.since.elapsed().saturating_sub(last_end))
    }
}

/// The idle timer of one connection, polled by its reads.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    last_read: Instant,
}

impl IdleTimer {
    pub(crate) fn new(timeout: Duration) -> IdleTimer {
        IdleTimer {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            last_read: Instant::now(),
        }
    }

    /// The connection received bytes.
    pub(crate) fn read(&mut self) {
        self.last_read = Instant::now();
    }

    /// Whether the connection has been idle for the timeout; otherwise the timer is set for
    /// when it could be, and wakes `cx` then.
    pub(crate) fn expired(&mut self, activity: &Activity, cx: &mut Context<'_>) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let wait = match activity.idle_for() {
                // A request is in progress: look again a whole timeout later.
                None => self.timeout,
                Some(idle) if idle < self.timeout => self.timeout - idle,
                Some(_) if self.last_read.elapsed() < READ_GRACE => {
                    READ_GRACE - self.last_read.elapsed()
                }
                Some(_) => return true,
            };
            let at = tokio::time::Instant::now() + wait;
            self.sleep.as_mut().reset(at);
        }
        false
    }
}

/// Marks every request in progress on its connection's [`Activity`] (found in the request's
/// `Arc<PeerInfo>` extension, which the TLS accept loop's connections give tonic), until its
/// response future completes. The idle timeout of [`crate::server::AcceptLimits`] needs it in
/// the server's stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackRequestsLayer;

impl<S> tower::Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;

    fn layer(&self, inner: S) -> TrackRequests<S> {
        TrackRequests { inner }
    }
}

/// The service of [`TrackRequestsLayer`].
#[derive(Debug, Clone)]
pub struct TrackRequests<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TrackRequests<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let in_progress = request
            .extensions()
            .get::<Arc<PeerInfo>>()
            .map(|peer| peer.activity.begin());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_progress);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_not_idle_while_a_request_is_in_progress() {
        let activity = Activity::default();
        assert!(activity.idle_for().is_some());
        let request = activity.begin();
        let other = activity.begin();
        assert_eq!(activity.idle_for(), None);
        drop(request);
        assert_eq!(activity.idle_for(), None);
        drop(other);
        let idle = activity.idle_for().expect("idle again");
        assert!(idle < Duration::from_secs(1), "{idle:?}");
    }
}
