//! Write coalescing: fewer, larger writes on a busy HTTP/2 connection.
//!
//! An HTTP/2 connection task flushes whenever a stream hands it a frame, so under load a
//! connection carrying dozens of requests makes one TLS record and one `writev` per response.
//! On loopback and in a data centre the system call (with the peer's receive path it runs in
//! the same call on loopback) costs more than the rest of the request together: it was 40% of
//! the gateway's worker time. [`Coalesce`] gathers what the connection writes and postpones a
//! flush until the worker thread has run the other tasks that are ready (the frames of other
//! streams), using Tokio's [`yield_now`](tokio::task::yield_now) deferral: a deferred task runs
//! again once its worker has no ready task left, or at its next maintenance tick (every 61 task
//! polls). Then one record and one system call carry everything gathered.
//!
//! An idle connection is not delayed beyond that one pass of the scheduler; a connection whose
//! streams keep adding data flushes after [`MAX_DEFERRALS`] passes or [`FLUSH_AT`] bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Gathered bytes are written out once this many are waiting, flush or not.
pub const FLUSH_AT: usize = 64 * 1024;
/// A flush is postponed at most this many times while new data keeps arriving.
pub const MAX_DEFERRALS: u8 = 8;

/// The capacity a drained buffer may keep: an idle connection holds no more than this.
const KEEP_CAPACITY: usize = 16 * 1024;

/// An I/O object whose writes are gathered and flushed once the worker has run the other ready
/// tasks (see the module's documentation). With deferral off, writes are still gathered until
/// each flush, but a flush is never postponed.
#[derive(Debug)]
pub struct Coalesce<T> {
    inner: T,
    defer: bool,
    buf: Vec<u8>,
    /// How much of `buf` the inner writer has taken.
    written: usize,
    /// `buf.len()` when the flush was last postponed.
    len_at_deferral: usize,
    deferrals: u8,
}

impl<T> Coalesce<T> {
    /// Wraps `inner`; `defer` postpones flushes as the module's documentation describes.
    pub fn new(inner: T, defer: bool) -> Coalesce<T> {
        Coalesce {
            inner,
            defer,
            buf: Vec::new(),
            written: 0,
            len_at_deferral: 0,
            deferrals: 0,
        }
    }

    /// The wrapped I/O object.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Hands every gathered byte to the inner writer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.written = 0;
        self.len_at_deferral = 0;
        self.deferrals = 0;
        Poll::Ready(Ok(()))
    }

    /// Whether to postpone this flush for one more pass of the scheduler.
    fn postpone(&mut self, cx: &mut Context<'_>) -> bool {
        let gathered = self.buf.len() - self.written;
        let grew = self.buf.len() > self.len_at_deferral;
        if !self.defer
            || gathered == 0
            || !grew
            || self.deferrals >= MAX_DEFERRALS
            || gathered >= FLUSH_AT
        {
            return false;
        }
        self.deferrals += 1;
        self.len_at_deferral = self.buf.len();
        // Polled once, `yield_now` hands this task's waker to the scheduler's deferred list and
        // returns Pending; dropping the future afterwards leaves the waker registered.
        let mut yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = yielded.as_mut().poll(cx);
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() >= FLUSH_AT {
            ready!(self.poll_drain(cx))?;
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() >= FLUSH_AT {
            ready!(self.poll_drain(cx))?;
        }
        let mut taken = 0;
        for data in bufs {
            self.buf.extend_from_slice(data);
            taken += data.len();
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.postpone(cx) {
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn everything_written_arrives_in_order_once_flushed() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(near, true);
        let mut expected = Vec::new();
        for n in 0..1000u32 {
            let chunk = n.to_be_bytes().repeat(1 + (n as usize % 50));
            writer.write_all(&chunk).await.expect("write");
            expected.extend_from_slice(&chunk);
            if n % 97 == 0 {
                writer.flush().await.expect("flush");
            }
        }
        writer.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn nothing_reaches_the_peer_before_a_flush_and_everything_after_it() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(near, true);
        writer.write_all(b"frame one").await.expect("write");
        writer.write_all(b", frame two").await.expect("write");
        let mut got = [0u8; 64];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), far.read(&mut got)).await;
        assert!(early.is_err(), "bytes were sent before any flush");
        writer.flush().await.expect("flush");
        let n = far.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"frame one, frame two");
    }

    #[tokio::test]
    async fn a_large_backlog_is_written_out_without_a_flush() {
        let (near, mut far) = tokio::io::duplex(4 * FLUSH_AT);
        let mut writer = Coalesce::new(near, true);
        let chunk = vec![7u8; 1024];
        for _ in 0..(FLUSH_AT / 1024 + 1) {
            writer.write_all(&chunk).await.expect("write");
        }
        writer.write_all(&chunk).await.expect("write");
        let mut got = vec![0u8; FLUSH_AT];
        far.read_exact(&mut got).await.expect("the backlog arrives");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flush_waits_for_the_other_ready_tasks_then_writes_once() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(near, true);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let other = {
            let order = order.clone();
            tokio::spawn(async move { order.lock().expect("lock").push("other task") })
        };
        writer.write_all(b"x").await.expect("write");
        writer.flush().await.expect("flush");
        order.lock().expect("lock").push("flushed");
        other.await.expect("task");
        assert_eq!(*order.lock().expect("lock"), ["other task", "flushed"]);
        let mut got = [0u8; 1];
        far.read_exact(&mut got).await.expect("read");
    }
}
