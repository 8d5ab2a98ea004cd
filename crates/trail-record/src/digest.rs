//! The SHA-256 of a request body, computed as the handler reads it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use sha2::{Digest, Sha256};

/// A request body that feeds what passes through it to SHA-256.
pub struct DigestingBody {
    inner: Body,
    state: Arc<Mutex<State>>,
}

struct State {
    hasher: Sha256,
    finished: bool,
}

/// The digest of a wrapped body, once the handler has read it all.
pub struct BodyDigest(Arc<Mutex<State>>);

impl DigestingBody {
    pub fn wrap(inner: Body) -> (Body, BodyDigest) {
        let state = Arc::new(Mutex::new(State {
            hasher: Sha256::new(),
            // An empty body is complete before anyone reads it.
            finished: inner.is_end_stream(),
        }));
        let digest = BodyDigest(state.clone());
        (Body::new(DigestingBody { inner, state }), digest)
    }
}

impl BodyDigest {
    /// The SHA-256 of the whole body, or `None` if the handler did not read all of it (it
    /// refused the call first, or the body was over its limit).
    pub fn finish(&self) -> Option<[u8; 32]> {
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state
            .finished
            .then(|| state.hasher.clone().finalize().into())
    }
}

impl HttpBody for DigestingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    state.hasher.update(data);
                }
            }
            Poll::Ready(None) => state.finished = true,
            _ => {}
        }
        drop(state);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn digests_what_is_read_and_only_when_complete() {
        let (body, digest) = DigestingBody::wrap(Body::from("hello"));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!(
            hex::encode(digest.finish().unwrap()),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let (_unread, digest) = DigestingBody::wrap(Body::from("hello"));
        assert_eq!(digest.finish(), None);
        let (_empty, digest) = DigestingBody::wrap(Body::empty());
        assert_eq!(
            hex::encode(digest.finish().unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
