//! The background uploader of sealed slots.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use object_store::{ObjectStoreExt, PutPayload};

use super::Inner;
use super::staging::StagingFile;
use crate::error::Error;
use crate::types::WalId;

/// Sealed slots waiting for upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadBacklog {
    /// Number of slots.
    pub slots: u64,
    /// Their bytes.
    pub bytes: u64,
}

const BACKOFF_START: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Uploads sealed slots every `interval` or when woken, until the provider
/// is dropped or stopped with nothing left to upload.
pub(crate) async fn run(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        upload_all(&inner).await;
        copy_root(&inner).await;
        if inner.stopping.load(Ordering::Acquire) && inner.backlog().slots == 0 {
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

/// The oldest pending slot (by WAL, then slot) not already being uploaded.
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

/// Uploads until no sealed slot is pending, up to `upload_concurrency` at
/// once, retrying every failure.
async fn upload_all(inner: &Arc<Inner>) {
    let mut running = FuturesUnordered::new();
    let mut busy = HashSet::new();
    loop {
        while running.len() < inner.upload_concurrency {
            let Some(job) = next_job(inner, &busy) else {
                break;
            };
            busy.insert((job.wal, job.slot));
            running.push(upload_slot(inner, job));
        }
        let Some((wal, slot, uploaded)) = running.next().await else {
            return;
        };
        busy.remove(&(wal, slot));
        if uploaded {
            finish(inner, wal, slot).await;
        } else if let Some(w) = inner.staged.lock().get_mut(&wal) {
            w.lost.insert(slot);
        }
    }
}

/// PUTs one slot, retrying with backoff and jitter until it is stored;
/// `false` when its staging file is gone (it is never reported uploaded).
async fn upload_slot(inner: &Inner, job: Job) -> (WalId, u64, bool) {
    let Job {
        wal,
        file,
        slot,
        len,
    } = job;
    let key = inner.slot_key(wal, slot);
    let offset = slot * inner.object_size;
    let mut backoff = Backoff::new();
    let bytes = loop {
        match file.read_at(offset, len as usize).await {
            Ok(b) => break b,
            // The staging file is gone (another provider finished it): no
            // bytes left to upload from here.
            Err(Error::WalNotFound { .. }) => {
                tracing::warn!("staging file of {wal} vanished before slot {slot} was uploaded");
                return (wal, slot, false);
            }
            Err(Error::Closed) => return (wal, slot, false),
            Err(e) => backoff.wait(inner, &key, &e).await,
        }
    };
    put_retrying(inner, &key, bytes).await;
    (wal, slot, true)
}

/// PUTs `bytes` at `key` until it succeeds.
async fn put_retrying(inner: &Inner, key: &object_store::path::Path, bytes: Bytes) {
    let mut backoff = Backoff::new();
    loop {
        match inner.store.put(key, PutPayload::from(bytes.clone())).await {
            Ok(_) => return,
            Err(e) => {
                backoff
                    .wait(inner, key, &super::backend("uploading", key, e))
                    .await
            }
        }
    }
}

/// Exponential backoff with jitter between retries of one request.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_START)
    }

    async fn wait(&mut self, inner: &Inner, key: &object_store::path::Path, e: &Error) {
        // Jitter: 50%..150% of the current backoff.
        let wait = self.0.mul_f64(0.5 + inner.rng.f64());
        tracing::warn!("upload of {key} failed, retrying in {wait:?}: {e}");
        tokio::time::sleep(wait).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}

/// Writes the newest committed root to `space_root`, the readable copy
/// (the reference's JSON shape), if it changed since the last copy.
async fn copy_root(inner: &Inner) {
    let Some(json) = inner.root_copy.lock().clone() else {
        return;
    };
    put_retrying(inner, &inner.key("space_root"), json.clone()).await;
    {
        // Done unless a newer root arrived meanwhile (copied next round).
        let mut pending = inner.root_copy.lock();
        if pending.as_ref() == Some(&json) {
            *pending = None;
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
                Some(())
            }
            Some(w) => {
                w.pending.remove(&slot);
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
    }
    inner.progress.bump();
}
