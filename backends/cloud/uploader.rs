//! The background uploader of sealed slots.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Inner, blocking, pread};
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
        if inner.stopping.load(Ordering::Acquire) && inner.backlog().slots == 0 {
            return;
        }
        let interval = inner.interval;
        // Hold the provider only for one interval, so dropping it (without
        // `close`) ends the task; its staging files are uploaded on reopen.
        let _ = tokio::time::timeout(interval, inner.wake.notified()).await;
    }
}

/// The oldest pending slot of some WAL.
fn next_job(inner: &Inner) -> Option<(WalId, Arc<std::fs::File>, u64, u64)> {
    let st = inner.staged.lock();
    st.iter().find_map(|(id, w)| {
        w.pending
            .iter()
            .next()
            .map(|(slot, len)| (*id, w.file.clone(), *slot, *len))
    })
}

/// Uploads until no sealed slot is pending, retrying every failure.
async fn upload_all(inner: &Arc<Inner>) {
    while let Some((wal, file, slot, len)) = next_job(inner) {
        let key = inner.slot_key(wal, slot);
        let offset = slot * inner.object_size;
        let mut backoff = BACKOFF_START;
        loop {
            let f = file.clone();
            let data = blocking(move || {
                pread(&f, offset, len as usize)
                    .map(Bytes::from)
                    .map_err(|e| Error::io(format!("reading staging WAL {wal} at {offset}"), e))
            })
            .await;
            let res = match data {
                Ok(bytes) => inner
                    .store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .map(|_| ())
                    .map_err(|e| super::backend("uploading", &key, e)),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => break,
                Err(e) => {
                    // Jitter: 50%..150% of the current backoff.
                    let jitter = 0.5 + fastrand::f64();
                    let wait = backoff.mul_f64(jitter);
                    tracing::warn!("upload of {key} failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        let retire = {
            let mut st = inner.staged.lock();
            match st.get_mut(&wal) {
                Some(w) => {
                    w.pending.remove(&slot);
                    if w.closed && w.pending.is_empty() {
                        st.remove(&wal).map(|w| w.path)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(path) = retire {
            let _ = blocking(move || {
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))
            })
            .await
            .map_err(|e| tracing::warn!("{e}"));
        }
        inner.progress.send_modify(|g| *g = g.wrapping_add(1));
    }
}
