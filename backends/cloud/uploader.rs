//! The background uploader of sealed slots.
//!
//! Every PUT goes through the provider's [`RetryPolicy`]: transient
//! failures (5xx, timeouts) are retried with backoff and jitter within a
//! bounded budget; a permanent failure (403, a missing bucket) or a spent
//! budget marks the slot *failed*. A failed slot is never dropped: it stays
//! staged and is tried again at the next round (the next interval, or at
//! once when a commit waits for it). Commits that need a failed slot
//! (`Durability::Cloud`) fail with its error instead of waiting, and the
//! provider reports itself failing ([`UploadHealth`]) until an upload of
//! that slot succeeds.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use object_store::{ObjectStoreExt, PutPayload};

use super::Inner;
use super::staging::StagingFile;
use crate::error::{Error, Result};
use crate::types::WalId;

/// Sealed slots waiting for upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadBacklog {
    /// Number of slots.
    pub slots: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The uploader's state as an operator sees it
/// ([`CloudBlockProvider::upload_health`](super::CloudBlockProvider::upload_health)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UploadHealth {
    /// What waits for upload.
    pub backlog: UploadBacklog,
    /// Slots whose last upload failed (permanently, or past the retry
    /// budget); they are tried again at the next round.
    pub failed_slots: u64,
    /// The newest failure, when a slot or the root copy is failing.
    pub last_error: Option<String>,
}

impl UploadHealth {
    /// No slot (and no root copy) is failing.
    pub fn is_ok(&self) -> bool {
        self.failed_slots == 0 && self.last_error.is_none()
    }
}

/// Uploads sealed slots every `interval` or when woken, until the provider
/// is dropped or stopped with nothing left to upload.
pub(crate) async fn run(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        upload_all(&inner).await;
        copy_root(&inner).await;
        inner.publish_gauges();
        if inner.stopping.load(Ordering::Acquire) && inner.backlog().slots == 0 {
            return;
        }
        if inner.stopping.load(Ordering::Acquire) && inner.failing() {
            // Closing with slots that cannot be uploaded: they stay staged.
            return;
        }
        let interval = inner.interval;
        // Hold the provider only for one interval, so dropping it (without
        // `close`) ends the task; its staging files are uploaded on reopen.
        let _ = tokio::time::timeout(interval, inner.wake.notified()).await;
    }
}

/// One sealed slot to upload.
struct Job {
    wal: WalId,
    file: Arc<dyn StagingFile>,
    slot: u64,
    len: u64,
}

/// How one slot's upload ended.
enum Outcome {
    Uploaded,
    /// The staging file is gone: never reported uploaded, not retried.
    Lost,
    Failed(Error),
}

/// The oldest pending slot (by WAL, then slot) not already tried this round.
fn next_job(inner: &Inner, busy: &HashSet<(WalId, u64)>) -> Option<Job> {
    let st = inner.staged.lock();
    st.iter().find_map(|(id, w)| {
        w.pending
            .iter()
            .find(|(slot, _)| !busy.contains(&(*id, **slot)) && !w.lost.contains(slot))
            .map(|(slot, len)| Job {
                wal: *id,
                file: w.file.clone(),
                slot: *slot,
                len: *len,
            })
    })
}

/// Tries every sealed slot once (each with the retry policy's budget), up
/// to `upload_concurrency` at once.
async fn upload_all(inner: &Arc<Inner>) {
    let mut running = FuturesUnordered::new();
    // Slots started this round: a failed one is not tried again until the
    // next round.
    let mut tried = HashSet::new();
    loop {
        while running.len() < inner.upload_concurrency {
            let Some(job) = next_job(inner, &tried) else {
                break;
            };
            tried.insert((job.wal, job.slot));
            running.push(upload_slot(inner, job));
        }
        let Some((wal, slot, outcome)) = running.next().await else {
            return;
        };
        match outcome {
            Outcome::Uploaded => finish(inner, wal, slot).await,
            Outcome::Lost => {
                if let Some(w) = inner.staged.lock().get_mut(&wal) {
                    w.lost.insert(slot);
                }
            }
            Outcome::Failed(e) => inner.slot_failed(wal, slot, e),
        }
    }
}

/// PUTs one slot through the retry policy.
#[tracing::instrument(level = "debug", skip_all, fields(wal = %job.wal, slot = job.slot, len = job.len))]
async fn upload_slot(inner: &Inner, job: Job) -> (WalId, u64, Outcome) {
    let Job {
        wal,
        file,
        slot,
        len,
    } = job;
    let key = inner.slot_key(wal, slot);
    let offset = slot * inner.object_size;
    let read = inner
        .retry
        .run("read_staging", &inner.rng, || {
            file.read_at(offset, len as usize)
        })
        .await;
    let bytes = match read {
        Ok(b) => b,
        // The staging file is gone (another provider finished it): no
        // bytes left to upload from here.
        Err(Error::WalNotFound { .. }) => {
            tracing::warn!("staging file of {wal} vanished before slot {slot} was uploaded");
            return (wal, slot, Outcome::Lost);
        }
        Err(Error::Closed) => return (wal, slot, Outcome::Lost),
        Err(e) => return (wal, slot, Outcome::Failed(e)),
    };
    match put(inner, &key, bytes.clone()).await {
        Ok(()) => {
            inner.metrics.uploads.increment(1);
            inner.metrics.upload_bytes.increment(bytes.len() as u64);
            (wal, slot, Outcome::Uploaded)
        }
        Err(e) => (wal, slot, Outcome::Failed(e)),
    }
}

/// PUTs `bytes` at `key`, retrying transient failures within the budget.
async fn put(inner: &Inner, key: &object_store::path::Path, bytes: Bytes) -> Result<()> {
    inner
        .retry
        .run("upload", &inner.rng, || async {
            inner
                .store
                .put(key, PutPayload::from(bytes.clone()))
                .await
                .map(|_| ())
                .map_err(|e| super::backend("uploading", key, e))
        })
        .await
}

/// Writes the newest committed root to `space_root`, the readable copy
/// (the reference's JSON shape), if it changed since the last copy.
async fn copy_root(inner: &Inner) {
    let Some(json) = inner.root_copy.lock().clone() else {
        return;
    };
    match put(inner, &inner.key("space_root"), json.clone()).await {
        Ok(()) => {
            *inner.root_copy_failure.lock() = None;
            // Done unless a newer root arrived meanwhile (copied next round).
            let mut pending = inner.root_copy.lock();
            if pending.as_ref() == Some(&json) {
                *pending = None;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "copying the root to space_root failed; retried next round");
            let generation = inner.failure_gen.fetch_add(1, Ordering::AcqRel) + 1;
            *inner.root_copy_failure.lock() = Some((generation, Arc::new(e)));
        }
    }
    inner.progress.bump();
}

/// Marks a slot uploaded; after a closed WAL's last slot, deletes its
/// staging file first, so an empty backlog means nothing is left staged.
async fn finish(inner: &Inner, wal: WalId, slot: u64) {
    let retire = {
        let mut st = inner.staged.lock();
        match st.get_mut(&wal) {
            Some(w) if w.closed && w.pending.len() == 1 && w.pending.contains_key(&slot) => {
                w.failed.remove(&slot);
                Some(())
            }
            Some(w) => {
                w.pending.remove(&slot);
                w.failed.remove(&slot);
                None
            }
            None => None,
        }
    };
    if retire.is_some() {
        if let Err(e) = inner.staging.remove(wal).await {
            tracing::warn!("{e}");
        }
        // Reads that still find the entry use its open (unlinked) file.
        inner.staged.lock().remove(&wal);
        inner.remote.lock().remove(&wal);
    }
    inner.publish_gauges();
    inner.progress.bump();
}
