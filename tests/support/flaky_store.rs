//! [`Flaky`]: an `ObjectStore` wrapper that injects faults (5xx, requests
//! that never answer, slow answers) and counts GETs of WAL slots, to show
//! what reached the store.

#![allow(dead_code)]

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A store whose first `fail` puts (and, optionally, ranged gets) fail.
#[derive(Debug)]
pub struct Flaky {
    pub inner: Arc<dyn ObjectStore>,
    pub fail_puts: AtomicU64,
    pub puts: AtomicU64,
    /// PUTs of WAL slot objects (attempts, failed ones included).
    pub wal_puts: AtomicU64,
    /// GETs (not HEADs) of WAL slot objects.
    pub wal_gets: AtomicU64,
    /// GETs of WAL slot objects still to fail.
    pub fail_gets: AtomicU64,
    /// PUTs of WAL slots still to hang (never answer).
    pub hang_puts: AtomicU64,
    /// GETs of WAL slot objects still to hang.
    pub hang_gets: AtomicU64,
    /// Delay of every PUT and GET, in ms (a slow store).
    pub delay_ms: AtomicU64,
    /// Every request: PUT, GET, HEAD, LIST, DELETE, COPY.
    pub requests: AtomicU64,
    /// GETs of the root chain's floor objects (`root_floor/`).
    pub floor_gets: AtomicU64,
    /// Deletes still to answer; the ones after never do (a process that
    /// dies in the middle of removing objects). `u64::MAX`: all answer.
    pub delete_budget: Arc<AtomicU64>,
}

impl Flaky {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner,
            fail_puts: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            wal_puts: AtomicU64::new(0),
            wal_gets: AtomicU64::new(0),
            fail_gets: AtomicU64::new(0),
            hang_puts: AtomicU64::new(0),
            hang_gets: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            floor_gets: AtomicU64::new(0),
            delete_budget: Arc::new(AtomicU64::new(u64::MAX)),
        })
    }

    /// Counts a GET of a WAL slot; `Err` when it is to fail; never returns
    /// when it is to hang.
    async fn count_get(&self, location: &Path) -> object_store::Result<()> {
        self.delay().await;
        if location.as_ref().contains("root_floor/") {
            self.floor_gets.fetch_add(1, Ordering::SeqCst);
        }
        if location.as_ref().contains("/wal/") {
            self.wal_gets.fetch_add(1, Ordering::SeqCst);

            if take_one(&self.hang_gets) {
                std::future::pending::<()>().await;
            }
            let failed = self
                .fail_gets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if failed.is_ok() {
                return Err(injected());
            }
        }
        Ok(())
    }

    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Requests since the last call.
    pub fn take_requests(&self) -> u64 {
        self.requests.swap(0, Ordering::SeqCst)
    }

    fn request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    /// GETs of WAL slots since the last call.
    pub fn take_gets(&self) -> u64 {
        self.wal_gets.swap(0, Ordering::SeqCst)
    }
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

/// Decrements `n` if positive; whether it did.
pub fn take_one(n: &AtomicU64) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

pub fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "flaky",
        source: "injected 503 Slow Down".into(),
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.request();
        self.puts.fetch_add(1, Ordering::SeqCst);
        if location.as_ref().contains("/wal/") {
            self.wal_puts.fetch_add(1, Ordering::SeqCst);
        }
        self.delay().await;
        if location.as_ref().contains("/wal/") && take_one(&self.hang_puts) {
            std::future::pending::<()>().await;
        }
        let left = self.fail_puts.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_puts.store(left - 1, Ordering::SeqCst);
            return Err(injected());
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.request();
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.request();
        if !options.head {
            self.count_get(location).await?;
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.request();
        self.count_get(location).await?;
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        use futures_util::StreamExt;
        self.request();
        let budget = self.delete_budget.clone();
        let gated = locations
            .then(move |l| {
                let budget = budget.clone();
                async move {
                    if !take_one(&budget) {
                        std::future::pending::<()>().await;
                    }
                    l
                }
            })
            .boxed();
        self.inner.delete_stream(gated)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.request();
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.request();
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.request();
        self.inner.copy_opts(from, to, options).await
    }
}
