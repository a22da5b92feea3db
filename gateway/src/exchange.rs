//! `isnad.v1.Exchange/GetAttributes`, the gateway's one hot method, served straight from
//! hyper's HTTP/2 request to the pipeline and back, beside tonic's router for every other
//! method.
//!
//! A unary call is one request message and one reply. tonic serves it through its router, the
//! generated service, a streaming decoder, a streaming encoder and several boxes per request;
//! in the gateway's profile those layers cost about a tenth of the process. Here the request's
//! DATA frames are put together (usually one frame, kept as it came) within the size limit,
//! decoded, run through the pipeline, and the reply leaves as one DATA frame and its trailers.
//!
//! The layer sits inside the server's other layers (idle tracking, the header limit), so those
//! apply to this method as to every other. Requests it does not serve exactly as the gRPC
//! spec's plain case go on to tonic unchanged: another method, a content type other than
//! `application/grpc` or `application/grpc+proto`, a `grpc-encoding` other than `identity`.
//! Its refusals are tonic's in form (a trailers-only response) and the same as the pipeline's
//! in content: INVALID_ARGUMENT with `request_too_large` or `malformed_request`; like tonic's,
//! they come before anything of the request can be read, so they are not audited.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use isnad_proto::errors;
use isnad_proto::v1::AttributesRequest;
use isnad_tls::PeerInfo;
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};

use crate::grpc_message::{self, Gathered, MessageError};
use crate::pipeline::Pipeline;

/// The method's path.
pub const GET_ATTRIBUTES: &str = "/isnad.v1.Exchange/GetAttributes";

/// Refusals of a request that could not be read, as (reason code, message): the same whether
/// this layer or tonic's codec (for the forms handed on) met the request.
pub(crate) const FAR_TOO_LARGE: (&str, &str) = (
    "request_too_large",
    "admit: the request is far over the gateway's size limit",
);
pub(crate) const NOT_A_REQUEST: (&str, &str) = (
    "malformed_request",
    "admit: the request is not a well-formed message of this method's type",
);

/// Serves [`GET_ATTRIBUTES`] itself and hands everything else to the service it wraps.
#[derive(Debug, Clone)]
pub struct ExchangeLayer {
    pipeline: Arc<Pipeline>,
    /// Requests larger than this are refused before they are decoded; between the pipeline's
    /// limit and this one they are decoded, so that the admit step refuses them with the
    /// request's facts in the audit log.
    max_message: usize,
}

impl ExchangeLayer {
    /// Serves the method with `pipeline`; refuses messages over `max_message` bytes unread.
    pub fn new(pipeline: Arc<Pipeline>, max_message: usize) -> ExchangeLayer {
        ExchangeLayer {
            pipeline,
            max_message,
        }
    }
}

impl<S> tower::Layer<S> for ExchangeLayer {
    type Service = Exchange<S>;

    fn layer(&self, inner: S) -> Exchange<S> {
        Exchange {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ExchangeLayer`].
#[derive(Debug, Clone)]
pub struct Exchange<S> {
    inner: S,
    layer: ExchangeLayer,
}

/// An answer, of this method or of the wrapped service (boxed too: it is the rare case).
pub type Answer<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> tower::Service<Request<Body>> for Exchange<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !served_here(&request) {
            return Box::pin(self.inner.call(request));
        }
        let layer = self.layer.clone();
        Box::pin(async move { Ok(layer.get_attributes(request).await) })
    }
}

/// Whether `request` is this method's, in the form served here.
fn served_here<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.uri().path() == GET_ATTRIBUTES
        && request.method() == Method::POST
        && headers.get(CONTENT_TYPE).is_some_and(|value| {
            matches!(
                value.as_bytes(),
                b"application/grpc" | b"application/grpc+proto"
            )
        })
        && headers
            .get("grpc-encoding")
            .is_none_or(|value| value.as_bytes() == b"identity")
}

impl ExchangeLayer {
    async fn get_attributes(self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let message = match read_message(body, self.max_message).await {
            Ok(message) => message,
            Err(refusal) => return refusal,
        };
        let Ok(message) = AttributesRequest::decode(message) else {
            return refuse_unread(NOT_A_REQUEST);
        };
        let peer = parts.extensions.get::<Arc<PeerInfo>>();
        let grpc_timeout = parts
            .headers
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok());
        // Refusals are logged by the pipeline, which knows what may be logged of the request.
        match self
            .pipeline
            .get_attributes(peer.map(Arc::as_ref), grpc_timeout, message)
            .await
        {
            Ok(response) => reply(grpc_message::encode(&response)),
            Err(denial) => Status::from(denial).into_http(),
        }
    }
}

/// The request's one message, without its prefix, or the refusal to answer.
async fn read_message(mut body: Body, max: usize) -> Result<Bytes, Response<Body>> {
    let mut message = Gathered::default();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let refused = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(piece) => message.push(piece, max).err(),
                // Trailers of a request mean nothing to this method.
                Err(_) => None,
            },
            Some(Err(_)) => Some(MessageError::Malformed("the request's stream failed")),
        };
        if let Some(error) = refused {
            return Err(refusal(error));
        }
    }
    message.complete().map_err(refusal)
}

fn refusal(error: MessageError) -> Response<Body> {
    match error {
        MessageError::TooLarge => refuse_unread(FAR_TOO_LARGE),
        MessageError::Malformed(_) => refuse_unread((
            NOT_A_REQUEST.0,
            "admit: the request is not one whole, uncompressed message of this method's type",
        )),
    }
}

/// A refusal of a request that was not read: logged by its reason alone.
fn refuse_unread((reason, text): (&str, &str)) -> Response<Body> {
    tracing::info!(reason, "request refused before decoding");
    errors::status(Code::InvalidArgument, reason, text).into_http()
}

/// A successful answer: `message` in one DATA frame, then `grpc-status: 0`.
fn reply(message: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(Unary {
        message: Some(message),
        trailers_sent: false,
    }));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The body of a successful answer.
#[derive(Debug)]
struct Unary {
    message: Option<Bytes>,
    trailers_sent: bool,
}

impl http_body::Body for Unary {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if self.trailers_sent {
            return Poll::Ready(None);
        }
        self.trailers_sent = true;
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert(Status::GRPC_STATUS, HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.trailers_sent
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.message.as_ref().map_or(0, |m| m.len() as u64))
    }
}
