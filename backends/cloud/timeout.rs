//! A deadline on every object-store request the provider makes.
//!
//! HTTP stores have client timeouts of their own, but a provider must not
//! depend on the store it was given: a request that never answers would
//! stall the uploader (and with it every `Durability::Cloud` commit) or a
//! read forever. [`TimeoutStore`] wraps any [`ObjectStore`] and fails a
//! request that has not *completed* — response and body — within the
//! deadline with a retryable error; the uploader then retries it like a 5xx.
//! A PUT that timed out may still land later: slot uploads are idempotent
//! (same key, same bytes), and a root create that landed is found by the
//! next reader (the outcome of a failed commit is documented as unknown).
//!
//! GET bodies and listings are read whole inside the deadline, so the
//! provider never holds a half-read stream; its objects are at most one slot.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Default deadline of one request: 30 s (as `object_store`'s HTTP clients).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `op` label of a request.
fn op_label(what: &str) -> &'static str {
    match what {
        "PUT" => "put",
        "multipart PUT" => "put_multipart",
        "GET" => "get",
        "LIST" => "list",
        "COPY" => "copy",
        _ => "other",
    }
}

/// An [`ObjectStore`] whose every request fails after `timeout`.
#[derive(Debug)]
pub(crate) struct TimeoutStore {
    inner: Arc<dyn ObjectStore>,
    timeout: Duration,
}

impl TimeoutStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, timeout: Duration) -> Self {
        TimeoutStore { inner, timeout }
    }

    /// Runs one request under the deadline, recording its latency
    /// (`protobase_object_store_request_seconds{op, outcome}`) and, when it
    /// fails, its kind (`protobase_object_store_errors_total{op, kind}`).
    async fn run<T>(
        &self,
        what: &'static str,
        path: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let start = std::time::Instant::now();
        let r = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(object_store::Error::Generic {
                store: "timeout",
                source: format!(
                    "{what} {path}: no answer within {:?} (request timeout)",
                    self.timeout
                )
                .into(),
            }),
        };
        let op = op_label(what);
        let outcome = match &r {
            Ok(_) => "ok",
            Err(e) => {
                let kind = super::store_error_kind(e);
                ::metrics::counter!(crate::metrics::STORE_ERRORS, "op" => op, "kind" => kind.as_str())
                    .increment(1);
                "error"
            }
        };
        ::metrics::histogram!(crate::metrics::STORE_REQUEST_SECONDS, "op" => op, "outcome" => outcome)
            .record(crate::metrics::since(start));
        r
    }
}

impl fmt::Display for TimeoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (timeout {:?})", self.inner, self.timeout)
    }
}

#[async_trait]
impl ObjectStore for TimeoutStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let fut = self.inner.put_opts(location, payload, opts);
        self.run("PUT", location.as_ref(), fut).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let fut = self.inner.put_multipart_opts(location, opts);
        self.run("multipart PUT", location.as_ref(), fut).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let fut = async {
            let mut r = self.inner.get_opts(location, options).await?;
            if let GetResultPayload::Stream(s) = r.payload {
                let body: Vec<Bytes> = s.try_collect().await?;
                r.payload =
                    GetResultPayload::Stream(stream::iter(body.into_iter().map(Ok)).boxed());
            }
            Ok(r)
        };
        self.run("GET", location.as_ref(), fut).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let fut = self.inner.get_ranges(location, ranges);
        self.run("GET", location.as_ref(), fut).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (inner, timeout) = (self.inner.clone(), self.timeout);
        let prefix = prefix.cloned();
        stream::once(async move {
            let me = TimeoutStore { inner, timeout };
            let name = prefix.as_ref().map_or("", |p| p.as_ref()).to_string();
            let all: object_store::Result<Vec<ObjectMeta>> = me
                .run("LIST", &name, me.inner.list(prefix.as_ref()).try_collect())
                .await;
            all.map(|v| stream::iter(v.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let name = prefix.map_or("", |p| p.as_ref());
        let fut = self.inner.list_with_delimiter(prefix);
        self.run("LIST", name, fut).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let fut = self.inner.copy_opts(from, to, options);
        self.run("COPY", from.as_ref(), fut).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// A store whose GETs and PUTs never answer.
    #[derive(Debug)]
    struct Hung;

    impl fmt::Display for Hung {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Hung")
        }
    }

    #[async_trait]
    impl ObjectStore for Hung {
        async fn put_opts(
            &self,
            _: &Path,
            _: PutPayload,
            _: PutOptions,
        ) -> object_store::Result<PutResult> {
            std::future::pending().await
        }
        async fn put_multipart_opts(
            &self,
            _: &Path,
            _: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            std::future::pending().await
        }
        async fn get_opts(&self, _: &Path, _: GetOptions) -> object_store::Result<GetResult> {
            std::future::pending().await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            l
        }
        fn list(&self, _: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            stream::pending().boxed()
        }
        async fn list_with_delimiter(&self, _: Option<&Path>) -> object_store::Result<ListResult> {
            std::future::pending().await
        }
        async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hung_requests_fail_with_the_key_and_the_deadline() {
        let s = TimeoutStore::new(Arc::new(Hung), Duration::from_secs(2));
        let key = Path::from("wal/x/3");
        let err = s
            .put(&key, Bytes::from_static(b"a").into())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("PUT wal/x/3") && msg.contains("2s"), "{msg}");
        assert!(s.get(&key).await.is_err());
        assert!(s.get_range(&key, 0..1).await.is_err());
        let listed: object_store::Result<Vec<_>> = s.list(Some(&key)).try_collect().await;
        assert!(listed.unwrap_err().to_string().contains("LIST"));
    }

    #[tokio::test]
    async fn answers_in_time_pass_through() {
        let s = TimeoutStore::new(Arc::new(InMemory::new()), Duration::from_secs(5));
        let key = Path::from("a/b");
        s.put(&key, Bytes::from_static(b"hello").into())
            .await
            .unwrap();
        let got = s.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hello");
        assert_eq!(&s.get_range(&key, 1..3).await.unwrap()[..], b"el");
        let listed: Vec<_> = s.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(matches!(
            s.get(&Path::from("nope")).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
