//! The response body: empty, in memory, or streamed chunk by chunk from a bucket or a
//! proxied upstream, so a large file is never held whole.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body stream failed after the response started (the client sees a cut-off body).
#[derive(Debug, thiserror::Error)]
#[error("response body failed: {0}")]
pub struct BodyError(pub String);

/// A stream of body chunks.
pub type BodyStream = BoxStream<'static, Result<Bytes, BodyError>>;

/// The body of every origin response.
pub struct OriginBody {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream {
        stream: BodyStream,
        size: Option<u64>,
    },
}

impl OriginBody {
    /// No body.
    pub fn empty() -> Self {
        OriginBody { kind: Kind::Empty }
    }

    /// A body in memory.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            return Self::empty();
        }
        OriginBody {
            kind: Kind::Full(Some(b)),
        }
    }

    /// A streamed body of `size` bytes when known.
    pub fn stream(stream: BodyStream, size: Option<u64>) -> Self {
        OriginBody {
            kind: Kind::Stream { stream, size },
        }
    }

    /// The body, when it is in memory whole.
    pub fn as_full(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// Reads the whole body (tests and small internal uses).
    pub async fn collect(self) -> Result<Bytes, BodyError> {
        match self.kind {
            Kind::Empty => Ok(Bytes::new()),
            Kind::Full(b) => Ok(b.unwrap_or_default()),
            Kind::Stream { mut stream, .. } => {
                let mut buf = bytes::BytesMut::new();
                while let Some(c) = stream.next().await {
                    buf.extend_from_slice(&c?);
                }
                Ok(buf.freeze())
            }
        }
    }
}

impl Default for OriginBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for OriginBody {
    fn from(b: Bytes) -> Self {
        Self::full(b)
    }
}

impl From<String> for OriginBody {
    fn from(s: String) -> Self {
        Self::full(s)
    }
}

impl From<&'static str> for OriginBody {
    fn from(s: &'static str) -> Self {
        Self::full(Bytes::from_static(s.as_bytes()))
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { stream, .. } => match stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Stream { size, .. } => *size == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { size: Some(n), .. } => SizeHint::with_exact(*n),
            Kind::Stream { size: None, .. } => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for OriginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("OriginBody::Empty"),
            Kind::Full(b) => write!(
                f,
                "OriginBody::Full({} bytes)",
                b.as_ref().map_or(0, |b| b.len())
            ),
            Kind::Stream { size, .. } => write!(f, "OriginBody::Stream({size:?} bytes)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_yield_their_bytes() {
        assert_eq!(OriginBody::empty().collect().await.unwrap(), Bytes::new());
        assert_eq!(OriginBody::from("abc").collect().await.unwrap(), "abc");
        let s = futures::stream::iter(vec![Ok(Bytes::from("ab")), Ok(Bytes::from("cd"))]).boxed();
        let b = OriginBody::stream(s, Some(4));
        assert_eq!(b.size_hint().exact(), Some(4));
        assert_eq!(b.collect().await.unwrap(), "abcd");
        let failing =
            futures::stream::iter(vec![Ok(Bytes::from("ab")), Err(BodyError("cut".into()))])
                .boxed();
        assert!(OriginBody::stream(failing, None).collect().await.is_err());
        assert!(OriginBody::full(Bytes::new()).is_end_stream());
    }
}
