//! The gateway's one outgoing call, `isnad.v1.Provider/Fetch`, made straight on HTTP/2.
//!
//! A unary gRPC call is one HTTP/2 stream: a HEADERS frame, one DATA frame with the
//! length-prefixed request, and a reply of HEADERS, DATA and trailers. tonic's channel does the
//! same through a tower buffer (a queue and a worker task between the caller and the
//! connection), hyper's client dispatch and a task per request body to stream it; in the
//! gateway's profile those layers took about a quarter of its workers' time for what is one
//! fixed message each way. Here a call takes a connection of the provider's pool, sends the
//! whole request with the end of the stream, and reads the reply in place, with the size limit
//! checked against the length the provider declares before any of it is buffered.
//!
//! Connections are made on first use and replaced after they fail: a connection whose stream
//! fails for a reason other than that stream's own reset is forgotten, and a request that could
//! not even be sent on a reused connection (it was closed in between, by the provider's idle
//! timeout for instance) is tried once more on a new one. While one request connects a slot,
//! the others wait for it rather than each opening a connection; if it fails they fail with it
//! at once, instead of each waiting out its own connect timeout against a provider that is down.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use isnad_proto::v1::{FetchRequest, FetchResponse};
use isnad_tls::client::{ChannelSettings, Target};
use prost::Message;
use rustls::ClientConfig;
use tonic::Code;

use crate::grpc_message::{self, Gathered, MessageError};

/// The method's path.
const FETCH_PATH: &str = "/isnad.v1.Provider/Fetch";
/// The header that tells the provider the call's deadline.
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The header, or trailer, of a reply's gRPC status.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// Receive window of each stream: a reply of up to this size arrives without waiting for the
/// gateway to acknowledge any of it.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Receive window of each connection, shared by its streams.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Largest header list accepted from a provider.
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// Why a call has no reply message.
#[derive(Debug)]
pub(super) enum CallError {
    /// No connection to the provider, or it failed under the call.
    Unreachable(String),
    /// The provider answered with this status, or reset the stream with a reason that gRPC maps
    /// to it.
    Status(Code),
    /// The reply is larger than the gateway accepts.
    TooLarge,
    /// The reply is not a well-formed gRPC reply to a unary call.
    Malformed(&'static str),
}

impl From<MessageError> for CallError {
    fn from(error: MessageError) -> CallError {
        match error {
            MessageError::TooLarge => CallError::TooLarge,
            MessageError::Malformed(what) => CallError::Malformed(what),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(cause) => write!(f, "unreachable: {cause}"),
            CallError::Status(code) => write!(f, "status {code:?}"),
            CallError::TooLarge => f.write_str("reply over the size limit"),
            CallError::Malformed(what) => write!(f, "malformed reply: {what}"),
        }
    }
}

/// The connection slot a request takes. On a worker, one of the worker's own (slots `index`,
/// `index + count`, ..., in turn), whose connection that worker made and serves, so the request
/// stays on its thread; a worker with no slot of its own (fewer slots than workers) shares slot
/// `index % slots`. Off the workers, every slot in turn. `turn` counts the pool's requests; it
/// is asked only when there is a choice (a counter every worker updates costs a cache line
/// moving between cores).
fn slot_for(
    worker: Option<crate::workers::Worker>,
    slots: usize,
    turn: impl FnOnce() -> usize,
) -> usize {
    match worker {
        Some(worker) if worker.index < slots => {
            let own = (slots - worker.index).div_ceil(worker.count);
            if own == 1 {
                worker.index
            } else {
                worker.index + worker.count * (turn() % own)
            }
        }
        Some(worker) => worker.index % slots,
        None => turn() % slots,
    }
}

/// Connections to one provider and how to make them.
#[derive(Debug)]
pub(super) struct Upstream {
    target: Target,
    /// `https://host:port/isnad.v1.Provider/Fetch`.
    uri: Uri,
    config: Arc<ClientConfig>,
    settings: ChannelSettings,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    max_reply: usize,
}

/// One connection of the pool, made on first use.
#[derive(Debug, Default)]
struct Slot {
    /// The connection and its generation (which connection of this slot it is).
    ready: Mutex<Option<(u64, SendRequest<Bytes>)>>,
    /// Held by the request that is connecting the slot.
    connecting: tokio::sync::Mutex<()>,
    /// Connection attempts made.
    attempts: AtomicU64,
    /// Why the last attempt failed, if it did.
    last_failure: Mutex<Option<String>>,
}

impl Slot {
    fn current(&self) -> Option<(u64, SendRequest<Bytes>)> {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops connection `generation` if it is still the slot's.
    fn forget(&self, generation: u64) {
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        if ready
            .as_ref()
            .is_some_and(|(current, _)| *current == generation)
        {
            *ready = None;
        }
    }
}

impl Upstream {
    /// A pool of `connections` connections to `target`, none opened yet; replies over
    /// `max_reply` bytes are refused.
    pub(super) fn new(
        target: Target,
        config: Arc<ClientConfig>,
        settings: ChannelSettings,
        connections: usize,
        max_reply: usize,
    ) -> Result<Upstream, http::Error> {
        let uri = Uri::builder()
            .scheme("https")
            .authority(target.uri.authority().map_or("", |a| a.as_str()))
            .path_and_query(FETCH_PATH)
            .build()?;
        Ok(Upstream {
            target,
            uri,
            config,
            settings,
            slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            max_reply,
        })
    }

    /// Calls `Fetch`, telling the provider it has `timeout` to answer. The caller bounds the
    /// whole call with its deadline; dropping the call resets its stream.
    pub(super) async fn fetch(
        &self,
        request: &FetchRequest,
        timeout: Duration,
    ) -> Result<FetchResponse, CallError> {
        let slot =
            &self.slots[slot_for(crate::workers::Worker::current(), self.slots.len(), || {
                self.next.fetch_add(1, Ordering::Relaxed)
            })];
        let body = grpc_message::encode(request);
        let mut retried = false;
        loop {
            let (generation, sender, fresh) = self.connection(slot).await?;
            match self.send(sender, body.clone(), timeout).await {
                Ok(response) => {
                    return self.reply(response).await.inspect_err(|error| {
                        if let CallError::Unreachable(cause) = error {
                            tracing::debug!(%cause, "provider connection failed");
                            slot.forget(generation);
                        }
                    });
                }
                Err(e) => {
                    // Nothing reached the provider: the connection was already unusable.
                    slot.forget(generation);
                    if fresh || retried {
                        return Err(CallError::Unreachable(e.to_string()));
                    }
                    retried = true;
                }
            }
        }
    }

    /// The slot's connection, made now if it has none: with whether it is new.
    async fn connection(&self, slot: &Slot) -> Result<(u64, SendRequest<Bytes>, bool), CallError> {
        if let Some((generation, sender)) = slot.current() {
            return Ok((generation, sender, false));
        }
        let attempts_seen = slot.attempts.load(Ordering::Acquire);
        let _connecting = slot.connecting.lock().await;
        if let Some((generation, sender)) = slot.current() {
            return Ok((generation, sender, false));
        }
        let last_failure = || {
            slot.last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if slot.attempts.load(Ordering::Acquire) != attempts_seen
            && let Some(cause) = last_failure().clone()
        {
            // The attempt this request waited for failed.
            return Err(CallError::Unreachable(cause));
        }
        let made = self.handshake().await;
        let generation = slot.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match made {
            Ok(sender) => {
                *last_failure() = None;
                *slot.ready.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((generation, sender.clone()));
                Ok((generation, sender, true))
            }
            Err(cause) => {
                *last_failure() = Some(cause.clone());
                Err(CallError::Unreachable(cause))
            }
        }
    }

    /// Connects, runs the TLS and HTTP/2 handshakes and spawns the connection's task.
    async fn handshake(&self) -> Result<SendRequest<Bytes>, String> {
        let io = isnad_tls::client::connect(&self.target, &self.config, &self.settings)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "provider connection closed");
            }
        });
        Ok(sender)
    }

    /// Opens the stream and sends the whole request on it.
    async fn send(
        &self,
        sender: SendRequest<Bytes>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<ResponseFuture, h2::Error> {
        let mut sender = sender.ready().await?;
        let millis = timeout.as_millis().clamp(1, 99_999_999);
        // Built in place: the builder would parse the header names and check every part.
        let mut head = Request::new(());
        *head.method_mut() = Method::POST;
        *head.uri_mut() = self.uri.clone();
        let headers = head.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            GRPC_TIMEOUT,
            HeaderValue::try_from(format!("{millis}m")).expect("digits and a unit"),
        );
        let (response, mut stream) = sender.send_request(head, false)?;
        stream.send_data(body, true)?;
        Ok(response)
    }

    /// Reads the reply: its status, its one message (within the size limit) and its trailers.
    async fn reply(&self, response: ResponseFuture) -> Result<FetchResponse, CallError> {
        let response = response.await.map_err(stream_error)?;
        if response.status() != StatusCode::OK {
            return Err(CallError::Status(http_status_code(response.status())));
        }
        if let Some(code) = grpc_status(response.headers()) {
            // Trailers-only: a status and no message.
            return Err(match code {
                Code::Ok => CallError::Malformed("no message"),
                code => CallError::Status(code),
            });
        }
        let mut body = response.into_body();
        let mut message = Gathered::default();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(stream_error)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message.push(chunk, self.max_reply)?;
        }
        let trailers = body.trailers().await.map_err(stream_error)?;
        match trailers.as_ref().and_then(grpc_status) {
            Some(Code::Ok) => {}
            Some(code) => return Err(CallError::Status(code)),
            None => return Err(CallError::Status(Code::Unknown)),
        }
        let bytes = message.complete()?;
        FetchResponse::decode(bytes).map_err(|_| CallError::Malformed("not a FetchResponse"))
    }
}

/// The `grpc-status` of a header block.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get(GRPC_STATUS)
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The gRPC code of a non-200 HTTP status, as gRPC's HTTP/2 mapping gives it.
fn http_status_code(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A failure of the call's stream: a reset of the stream (by the provider, or by the gateway
/// for the provider's breach of the protocol) maps to the gRPC code of its reason; anything else
/// means the connection failed.
fn stream_error(error: h2::Error) -> CallError {
    match error.reason() {
        Some(reason) if error.is_reset() => CallError::Status(match reason {
            h2::Reason::REFUSED_STREAM => Code::Unavailable,
            h2::Reason::CANCEL => Code::Cancelled,
            h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
            h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
            _ => Code::Internal,
        }),
        _ => CallError::Unreachable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_reset_failures_map_to_grpc_codes() {
        assert_eq!(
            http_status_code(StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(
            http_status_code(StatusCode::FORBIDDEN),
            Code::PermissionDenied
        );
        assert_eq!(http_status_code(StatusCode::IM_A_TEAPOT), Code::Unknown);
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "5".parse().expect("value"));
        assert_eq!(grpc_status(&headers), Some(Code::NotFound));
    }

    #[test]
    fn a_worker_takes_only_its_own_connections_when_it_has_any() {
        use crate::workers::Worker;
        let on = |index, count| Some(Worker { index, count });
        let picks = |worker, slots| -> Vec<usize> {
            let mut turn = 0;
            (0..6)
                .map(|_| {
                    slot_for(worker, slots, || {
                        turn += 1;
                        turn - 1
                    })
                })
                .collect()
        };
        // One per worker: each its own, and no shared counter touched.
        assert_eq!(slot_for(on(1, 2), 2, || panic!("no choice to make")), 1);
        assert_eq!(picks(on(0, 2), 2), [0; 6]);
        // More than one each: its own in turn (worker 1 of 2 owns 1, 3 and 5 of 6).
        assert_eq!(picks(on(1, 2), 6), [1, 3, 5, 1, 3, 5]);
        // Uneven: worker 0 of 2 owns 0 and 2 of 3, worker 1 owns 1.
        assert_eq!(picks(on(0, 2), 3), [0, 2, 0, 2, 0, 2]);
        assert_eq!(picks(on(1, 2), 3), [1; 6]);
        // Fewer slots than workers: shared.
        assert_eq!(picks(on(3, 4), 2), [1; 6]);
        // Off the workers: all in turn.
        assert_eq!(picks(None, 3), [0, 1, 2, 0, 1, 2]);
    }
}
