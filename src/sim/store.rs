//! [`SimObjectStore`]: an object store with latency, 5xx errors and PUTs
//! that succeed but answer with a timeout — over `object_store`'s in-memory
//! store, with every random choice from one seed (feature `cloud`).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

use crate::clock::SeededRng;

/// Fault settings of a [`SimObjectStore`]; the default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StoreFaults {
    /// Shortest latency of a request.
    pub min_latency: Duration,
    /// Longest latency of a request.
    pub max_latency: Duration,
    /// Probability that a request fails with a 5xx (nothing done).
    pub error: f64,
    /// Probability that a PUT is stored but its answer is lost (the caller
    /// sees a timeout).
    pub lost_answer: f64,
}

/// An in-memory object store with seeded faults; clones share the objects.
#[derive(Clone)]
pub struct SimObjectStore {
    inner: Arc<InMemory>,
    rng: SeededRng,
    faults: Arc<Mutex<StoreFaults>>,
}

impl fmt::Debug for SimObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimObjectStore")
            .field("faults", &*self.faults.lock())
            .finish()
    }
}

impl fmt::Display for SimObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimObjectStore")
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "sim",
        source: format!("injected 503 on {what}").into(),
    }
}

impl SimObjectStore {
    /// An empty store whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        SimObjectStore {
            inner: Arc::new(InMemory::new()),
            rng: SeededRng::new(seed),
            faults: Arc::default(),
        }
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: StoreFaults) {
        *self.faults.lock() = faults;
    }

    /// Waits a request's latency; `Err` when it is to fail.
    async fn request(&self, what: &str) -> object_store::Result<StoreFaults> {
        let f = *self.faults.lock();
        let span = f.max_latency.saturating_sub(f.min_latency);
        let latency = f.min_latency + self.rng.duration_upto(span);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.rng.f64() < f.error {
            return Err(injected(what));
        }
        Ok(f)
    }
}

#[async_trait]
impl ObjectStore for SimObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let f = self.request("put").await?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if self.rng.f64() < f.lost_answer {
            return Err(object_store::Error::Generic {
                store: "sim",
                source: "request timed out (the object was stored)".into(),
            });
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.request("multipart").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.request("get").await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.request("get").await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.request("list").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.request("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}
