//! The write side of the WAL engine: buffered appends, rollover, background
//! writes and group flush.
//!
//! Every record pushed is framed into the active WAL's in-memory buffer under
//! one short lock and gets its pointer at once. A full buffer becomes an
//! immutable *chunk* that a background task hands to the provider; chunks
//! stay in memory until the store has made them durable. A durability
//! request (`sync`) takes the WAL's I/O lock: whoever gets it writes every
//! pending chunk and issues one `sync` that covers every waiter queued behind
//! it (group flush).
//!
//! # A failed sync is not forgotten
//!
//! After a failed `fsync` the kernel may already have dropped the dirty
//! pages and will not report the error again, so a later successful sync
//! proves nothing about them. Chunks therefore stay in memory until a sync
//! covering them succeeds; when a sync fails, every chunk it was to cover is
//! marked unwritten, and the next sync writes them again at their offsets
//! before syncing. A WAL written without syncs keeps at most
//! [`RETAIN_LIMIT`] bytes that way: beyond it, the background writer syncs.
//!
//! # Barriers on aligned stores
//!
//! A store that seals its unit of storage at a barrier (see
//! [`NewWal::barrier_alignment`]) gets a skip record at the end of the
//! barrier, and the next record starts at the next aligned offset.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::record::{self, SKIP_RECORD_LEN, WAL_HEADER_LEN, WalKind};
use crate::root_register::WalBytes;
use crate::types::{AtomPointer, Format, WalId};
use crate::wal_resume::Continued;
use crate::wal_store::{NewWal, WalStore};

/// Bytes of unwritten chunks above which pushers wait for the writer.
const BACKLOG_BUFFERS: usize = 8;
/// Room past `buffer_size` in a fresh buffer, so that the record that
/// fills it usually fits without a reallocation.
const RECORD_SLACK: usize = 4096;
/// Written but unsynced bytes above which the background writer syncs.
pub(crate) const RETAIN_LIMIT: u64 = 8 << 20;
/// Unsynced bytes of a WAL above which commits sync it instead of
/// carrying its new bytes with the root (what [`WalWriter::carry`] keeps in
/// memory at most, per WAL).
pub(crate) const CARRY_RETAIN: u64 = 1 << 20;
/// Most idle buffers kept for reuse.
const POOL_MAX: usize = 16;

/// Buffers of synced chunks, kept for the next ones: a fresh allocation of
/// this size is fresh pages, and faulting them in costs as much as filling
/// them.
struct BufferPool {
    capacity: usize,
    spare: Mutex<Vec<BytesMut>>,
}

impl BufferPool {
    fn new(capacity: usize) -> Self {
        BufferPool {
            capacity,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// An empty buffer of `capacity` bytes.
    fn take(&self) -> BytesMut {
        match self.spare.lock().pop() {
            Some(mut b) => {
                // Reclaims the whole allocation (the buffer is unique).
                b.reserve(self.capacity);
                b
            }
            None => BytesMut::with_capacity(self.capacity),
        }
    }

    /// Keeps `chunk`'s allocation if nothing else refers to it.
    fn give(&self, chunk: Bytes) {
        if let Ok(mut b) = chunk.try_into_mut() {
            b.clear();
            let mut spare = self.spare.lock();
            if spare.len() < POOL_MAX {
                spare.push(b);
            }
        }
    }
}

struct OwnWal {
    /// Next record offset.
    tail: u64,
    /// End of the bytes pushed (the tail, except after an aligned barrier,
    /// where the tail jumped past a gap).
    end: u64,
    /// Offset of `buf[0]`.
    buf_start: u64,
    buf: BytesMut,
    /// Sealed chunks not yet durable, in offset order.
    chunks: VecDeque<(u64, Bytes)>,
    /// Everything below is stored by the provider (maybe not durable).
    written: u64,
    /// Everything below is durable.
    synced: u64,
    /// Everything below is durable, or carried by a durable root (see
    /// [`WalWriter::carry`]) until a sync makes it durable here.
    carried: u64,
    /// No more pushes (rolled over or closing).
    sealed: bool,
    /// Serialises provider writes and syncs of this WAL.
    io: Arc<tokio::sync::Mutex<()>>,
    /// Where writing resumes after a barrier (multiples of this).
    alignment: u64,
    /// Where fresh buffers come from and synced chunks go.
    pool: Arc<BufferPool>,
}

impl OwnWal {
    fn seal_buffer(&mut self) {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.chunks.push_back((self.buf_start, chunk));
            self.buf_start = self.tail;
            // The rest of the allocation serves small chunks (barriers); a
            // nearly used-up one is replaced at full size at once, not
            // grown by doubling, which would copy every byte again.
            if self.buf.capacity() < self.pool.capacity / 2 {
                self.buf = self.pool.take();
            }
        }
    }

    /// Everything below is durable: synced, or carried by a durable root.
    fn durable(&self) -> u64 {
        self.synced.max(self.carried)
    }

    /// Bytes of sealed chunks the store does not have yet.
    fn pending_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|(start, c)| {
                let end = start + c.len() as u64;
                end.saturating_sub(self.written.max(*start)) as usize
            })
            .sum()
    }

    /// Ends a barrier at the current tail: on an aligned store, a skip
    /// record and a jump to the next aligned offset. Returns the end of the
    /// bytes the barrier covers.
    fn barrier(&mut self) -> u64 {
        self.seal_buffer();
        let end = self.tail;
        let a = self.alignment;
        if a <= 1 || end.is_multiple_of(a) {
            return end;
        }
        let Some(next) = end
            .checked_add(SKIP_RECORD_LEN)
            .and_then(|e| e.checked_next_multiple_of(a))
        else {
            return end;
        };
        self.skip_to(next)
    }

    /// Writes a skip record at the tail whose gap ends at `next` (at least
    /// [`SKIP_RECORD_LEN`] past the tail), seals it into a chunk and moves
    /// the tail to `next`. Returns the end of the bytes pushed (the skip
    /// record's end).
    fn skip_to(&mut self, next: u64) -> u64 {
        let at = self.tail;
        record::encode_skip(&mut self.buf, next - at - SKIP_RECORD_LEN);
        self.tail = at + SKIP_RECORD_LEN;
        self.seal_buffer();
        self.end = self.tail;
        self.tail = next;
        self.buf_start = next;
        self.end
    }

    /// Drops the chunks that end at or below `synced`.
    fn drop_synced(&mut self) {
        while let Some((start, c)) = self.chunks.front() {
            if start + c.len() as u64 <= self.synced {
                if let Some((_, c)) = self.chunks.pop_front() {
                    self.pool.give(c);
                }
            } else {
                break;
            }
        }
    }
}

#[derive(Default)]
struct State {
    active: Option<WalId>,
    /// Ordered by id, so syncs of several WALs happen in a stable order
    /// (simulations replay exactly).
    wals: BTreeMap<WalId, OwnWal>,
    closed: bool,
}

/// What `try_push` did.
enum Pushed {
    /// Buffered.
    Done(AtomPointer),
    /// Buffered; the buffer is full and should be written.
    SpawnWrite(AtomPointer),
    /// Buffered; too much is unwritten, write before returning.
    Backlog(AtomPointer),
    /// No active WAL (the sealed one, if any, should be written).
    NeedWal(Option<WalId>),
}

/// A push that has to wait (a backlog to write, or no active WAL); the
/// record is buffered already unless a WAL must be opened first.
pub(crate) enum PushWait {
    /// Buffered; too much is unwritten: write it before returning.
    Backlog(AtomPointer),
    /// No active WAL (the sealed one, if any, should be written).
    NeedWal(Option<WalId>),
}

/// Outcome of looking for a record in the writer's memory.
pub(crate) enum MemoryRead {
    /// The record's bytes (from its start; may hold more after it).
    Found(Bytes),
    /// Not one of ours, or already stored by the provider.
    NotHere,
}

/// What [`WalWriter::carry`] hands to a root register.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    /// The bytes not yet durable, per WAL in offset order.
    pub(crate) bytes: Vec<WalBytes>,
    /// How far each WAL's bytes go.
    ends: Vec<(WalId, u64)>,
}

pub(crate) struct WalWriter {
    provider: Arc<dyn WalStore>,
    buffer_size: usize,
    max_wal_size: u64,
    state: Mutex<State>,
    create: tokio::sync::Mutex<()>,
    pool: Arc<BufferPool>,
}

impl WalWriter {
    pub(crate) fn new(provider: Arc<dyn WalStore>, buffer_size: usize, max_wal_size: u64) -> Self {
        WalWriter {
            provider,
            buffer_size,
            max_wal_size,
            state: Mutex::default(),
            create: tokio::sync::Mutex::new(()),
            pool: Arc::new(BufferPool::new(buffer_size.saturating_add(RECORD_SLACK))),
        }
    }

    /// Frames `payload` into the active WAL and returns its pointer, if
    /// that needs no waiting; otherwise what the push must wait for (finish
    /// it with [`push_wait`](Self::push_wait)). The record is readable at
    /// once; it is durable after a later `sync`.
    pub(crate) fn push_now(
        self: &Arc<Self>,
        format: Format,
        payload: &[u8],
    ) -> Result<std::result::Result<AtomPointer, PushWait>> {
        Ok(match self.try_push(format, payload)? {
            Pushed::Done(ptr) => Ok(ptr),
            Pushed::SpawnWrite(ptr) => {
                self.spawn_write(ptr.wal_id);
                Ok(ptr)
            }
            Pushed::Backlog(ptr) => Err(PushWait::Backlog(ptr)),
            Pushed::NeedWal(sealed) => Err(PushWait::NeedWal(sealed)),
        })
    }

    /// The part of a push that waits: a backlog to write or a WAL to open.
    pub(crate) async fn push_wait(
        self: &Arc<Self>,
        format: Format,
        payload: &[u8],
        mut wait: PushWait,
    ) -> Result<AtomPointer> {
        loop {
            match wait {
                PushWait::Backlog(ptr) => {
                    // Too much unwritten: write it before acknowledging more.
                    self.write_pending(ptr.wal_id).await?;
                    return Ok(ptr);
                }
                PushWait::NeedWal(sealed) => {
                    if let Some(id) = sealed {
                        self.spawn_write(id);
                    }
                    self.open_wal().await?;
                }
            }
            match self.push_now(format, payload)? {
                Ok(ptr) => return Ok(ptr),
                Err(next) => wait = next,
            }
        }
    }

    /// The synchronous part of `push`, under the state lock.
    fn try_push(&self, format: Format, payload: &[u8]) -> Result<Pushed> {
        let rec_len = WalKind::Native.record_len(payload.len() as u64);
        let mut st = self.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        let Some(id) = st.active else {
            return Ok(Pushed::NeedWal(None));
        };
        let w = st.wals.get_mut(&id).ok_or(Error::Closed)?;
        let fits = w.tail + rec_len <= self.max_wal_size || w.tail == WAL_HEADER_LEN;
        if !fits {
            // Roll over: seal this WAL; it is written in the background.
            w.sealed = true;
            w.seal_buffer();
            st.active = None;
            debug!(wal = %id, "WAL reached max size, rolling over");
            return Ok(Pushed::NeedWal(Some(id)));
        }
        let ptr = AtomPointer::new(id, w.tail);
        record::encode_record(&mut w.buf, format, payload);
        w.tail += rec_len;
        w.end = w.tail;
        if w.buf.len() < self.buffer_size {
            return Ok(Pushed::Done(ptr));
        }
        w.seal_buffer();
        if w.pending_bytes() > BACKLOG_BUFFERS * self.buffer_size {
            Ok(Pushed::Backlog(ptr))
        } else {
            Ok(Pushed::SpawnWrite(ptr))
        }
    }

    async fn open_wal(&self) -> Result<()> {
        let _g = self.create.lock().await;
        if self.state.lock().active.is_some() {
            return Ok(());
        }
        let NewWal {
            id,
            barrier_alignment,
        } = self.provider.create_wal().await?;
        let mut buf = self.pool.take();
        // A store that holds its WALs for their writer lets a later process
        // continue them (see `crate::wal_resume`).
        let flags = if self.provider.continues_wals() {
            record::HEADER_FLAG_CONTINUABLE
        } else {
            0
        };
        buf.extend_from_slice(&record::encode_header_with_flags(id, flags));
        let mut st = self.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        st.wals.insert(
            id,
            OwnWal {
                tail: WAL_HEADER_LEN,
                end: WAL_HEADER_LEN,
                buf_start: 0,
                buf,
                chunks: VecDeque::new(),
                written: 0,
                synced: 0,
                carried: 0,
                sealed: false,
                io: Arc::new(tokio::sync::Mutex::new(())),
                alignment: barrier_alignment.max(1),
                pool: self.pool.clone(),
            },
        );
        st.active = Some(id);
        debug!(wal = %id, "opened WAL");
        Ok(())
    }

    /// Makes `wal`, taken over at its valid end (see `crate::wal_resume`),
    /// the active WAL: everything below `end` is durable already; a torn
    /// tail behind it is fenced with a skip record.
    pub(crate) fn adopt(&self, wal: Continued) -> Result<()> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        if st.active.is_some() || st.wals.contains_key(&wal.id) {
            return Err(Error::invalid(
                "wal",
                format!("cannot continue WAL {}: a WAL is active already", wal.id),
            ));
        }
        let end = wal.end;
        let alignment = wal.alignment.max(1);
        let mut own = OwnWal {
            tail: end,
            end,
            buf_start: end,
            buf: self.pool.take(),
            chunks: VecDeque::new(),
            written: end,
            synced: end,
            carried: end,
            sealed: false,
            io: Arc::new(tokio::sync::Mutex::new(())),
            alignment,
            pool: self.pool.clone(),
        };
        if let Some(old_len) = wal.fence_to {
            // A skip record over the torn tail; records resume past it.
            let fenced = end
                .checked_add(SKIP_RECORD_LEN)
                .map(|e| e.max(old_len))
                .and_then(|e| e.checked_next_multiple_of(alignment))
                .ok_or_else(|| {
                    Error::invalid("wal", format!("WAL {} has no room to fence", wal.id))
                })?;
            own.skip_to(fenced);
        }
        st.wals.insert(wal.id, own);
        st.active = Some(wal.id);
        debug!(wal = %wal.id, end = wal.end, "continuing WAL");
        Ok(())
    }

    fn spawn_write(self: &Arc<Self>, id: WalId) {
        let this = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = this.write_pending(id).await {
                    // Data stays in memory; the next flush retries and reports.
                    warn!(wal = %id, error = %e, "background WAL write failed");
                    return;
                }
                // A WAL that rolled over with everything in it durable
                // already (its last sync ended it) gets no further sync to
                // retire it: retire it here, so the store releases it (a
                // cloud provider empties its staging file once uploaded).
                if let Err(e) = this.retire_if_done(id).await {
                    warn!(wal = %id, error = %e, "closing a full WAL failed");
                }
            });
        }
    }

    /// Hands every sealed chunk of `id` to the provider, in order.
    async fn write_pending(&self, id: WalId) -> Result<()> {
        let Some(io) = self.state.lock().wals.get(&id).map(|w| w.io.clone()) else {
            return Ok(());
        };
        {
            let _g = io.lock().await;
            self.write_chunks_locked(id).await?;
        }
        // Bound the bytes kept for a rewrite: make them durable.
        let retained = {
            let st = self.state.lock();
            st.wals
                .get(&id)
                .map_or(0, |w| w.written.saturating_sub(w.synced))
        };
        if retained > RETAIN_LIMIT {
            self.sync(id).await?;
        }
        Ok(())
    }

    /// Hands every chunk the store does not have to it, in order.
    async fn write_chunks_locked(&self, id: WalId) -> Result<()> {
        loop {
            let next = {
                let st = self.state.lock();
                st.wals.get(&id).and_then(|w| {
                    w.chunks
                        .iter()
                        .find(|(start, c)| start + c.len() as u64 > w.written)
                        .map(|(start, c)| {
                            // A chunk partly written: the rest of it.
                            let skip = w.written.saturating_sub(*start) as usize;
                            (start + skip as u64, c.slice(skip..))
                        })
                })
            };
            let Some((offset, chunk)) = next else {
                return Ok(());
            };
            let end = offset + chunk.len() as u64;
            self.provider.append(id, offset, chunk).await?;
            let mut st = self.state.lock();
            if let Some(w) = st.wals.get_mut(&id) {
                w.written = w.written.max(end);
            }
        }
    }

    /// Syncs `id` up to `end` (everything below is written); on failure,
    /// marks everything not durable as unwritten so it is written again.
    async fn sync_locked(&self, id: WalId, end: u64) -> Result<()> {
        match self.provider.sync(id, end).await {
            Ok(()) => {
                let mut st = self.state.lock();
                if let Some(w) = st.wals.get_mut(&id) {
                    w.synced = w.synced.max(end);
                    w.drop_synced();
                }
                Ok(())
            }
            Err(e) => {
                let mut st = self.state.lock();
                if let Some(w) = st.wals.get_mut(&id) {
                    warn!(wal = %id, error = %e, synced = w.synced, "sync failed: unsynced bytes will be written again");
                    w.written = w.synced;
                }
                Err(e)
            }
        }
    }

    /// Makes every record of `id` pushed so far durable (group flush).
    pub(crate) async fn sync(&self, id: WalId) -> Result<()> {
        let (io, target) = {
            let st = self.state.lock();
            match st.wals.get(&id) {
                Some(w) if w.synced < w.end => (w.io.clone(), w.end),
                _ => return Ok(()),
            }
        };
        let _g = io.lock().await;
        let end = {
            let mut st = self.state.lock();
            let Some(w) = st.wals.get_mut(&id) else {
                return Ok(());
            };
            if w.synced >= target {
                return Ok(()); // someone else's flush covered us
            }
            w.barrier()
        };
        self.write_chunks_locked(id).await?;
        self.sync_locked(id, end).await?;
        self.retire_if_done(id).await
    }

    /// Retires `id` (forgets it and closes it in the store) when it is
    /// sealed and everything in it is durable. Records pushed after a sync
    /// began (before a rollover sealed the WAL) are written but not yet
    /// durable: the WAL is kept until a sync covers its tail.
    async fn retire_if_done(&self, id: WalId) -> Result<()> {
        let retire = {
            let mut st = self.state.lock();
            let done = st.wals.get(&id).is_some_and(|w| {
                w.sealed && w.chunks.is_empty() && w.buf.is_empty() && w.synced >= w.end
            });
            if done {
                st.wals.remove(&id);
            }
            done
        };
        if retire {
            self.provider.close_wal(id).await?;
        }
        Ok(())
    }

    /// Makes everything pushed so far, in every WAL, durable.
    pub(crate) async fn sync_all(&self) -> Result<()> {
        let (ids, sealed): (Vec<WalId>, Vec<WalId>) = {
            let st = self.state.lock();
            (
                st.wals
                    .iter()
                    .filter(|(_, w)| w.synced < w.end)
                    .map(|(id, _)| *id)
                    .collect(),
                st.wals
                    .iter()
                    .filter(|(_, w)| w.sealed && w.synced >= w.end)
                    .map(|(id, _)| *id)
                    .collect(),
            )
        };
        for id in ids {
            self.sync(id).await?;
        }
        // Full WALs whose background retirement has not run yet: once this
        // returns, every WAL the writer is done with is closed in the store.
        for id in sealed {
            self.retire_if_done(id).await?;
        }
        Ok(())
    }

    /// Hands every chunk pushed so far to the store, without a sync, and
    /// returns the bytes not yet durable (neither synced nor carried by a
    /// durable root), for a root register to make durable with the root
    /// ([`RootRegister::write_root_carrying`]). `None` when that is not the
    /// way: more than `limit` bytes, more than [`CARRY_RETAIN`] kept
    /// unsynced in a WAL, or a full WAL that a sync must retire; the
    /// caller then syncs ([`sync_all`](Self::sync_all)). After the root
    /// is stored, [`carried`](Self::carried) records it.
    ///
    /// [`RootRegister::write_root_carrying`]: crate::RootRegister::write_root_carrying
    pub(crate) async fn carry(&self, limit: usize) -> Result<Option<Carried>> {
        let ids: Vec<WalId> = {
            let st = self.state.lock();
            if st.wals.values().any(|w| w.sealed) {
                return Ok(None);
            }
            st.wals
                .iter()
                .filter(|(_, w)| w.durable() < w.end)
                .map(|(id, _)| *id)
                .collect()
        };
        let mut out = Carried::default();
        let mut total = 0usize;
        for id in ids {
            let Some(io) = self.state.lock().wals.get(&id).map(|w| w.io.clone()) else {
                continue;
            };
            let _g = io.lock().await;
            let end = {
                let mut st = self.state.lock();
                let Some(w) = st.wals.get_mut(&id) else {
                    continue;
                };
                if w.sealed {
                    return Ok(None);
                }
                w.barrier()
            };
            self.write_chunks_locked(id).await?;
            let st = self.state.lock();
            let Some(w) = st.wals.get(&id) else {
                continue;
            };
            if w.written.saturating_sub(w.synced) > CARRY_RETAIN {
                return Ok(None);
            }
            let from = w.durable();
            for (start, chunk) in &w.chunks {
                let chunk_end = start + chunk.len() as u64;
                let (lo, hi) = ((*start).max(from), chunk_end.min(end));
                if lo >= hi {
                    continue;
                }
                total += (hi - lo) as usize;
                if total > limit {
                    return Ok(None);
                }
                out.bytes.push(WalBytes {
                    wal: id,
                    offset: lo,
                    data: chunk.slice((lo - start) as usize..(hi - start) as usize),
                });
            }
            out.ends.push((id, end));
        }
        Ok(Some(out))
    }

    /// Records that a durable root carries `carried` (see
    /// [`carry`](Self::carry)).
    pub(crate) fn carried(&self, carried: &Carried) {
        let mut st = self.state.lock();
        for (id, end) in &carried.ends {
            if let Some(w) = st.wals.get_mut(id) {
                w.carried = w.carried.max(*end);
            }
        }
    }

    /// Looks for the record at `ptr` in memory (unwritten data).
    pub(crate) fn read_memory(&self, ptr: AtomPointer) -> Result<MemoryRead> {
        let st = self.state.lock();
        let Some(w) = st.wals.get(&ptr.wal_id) else {
            return Ok(MemoryRead::NotHere);
        };
        let off = ptr.offset;
        if off < WAL_HEADER_LEN {
            return Err(Error::Corrupt {
                wal: ptr.wal_id,
                offset: off,
                source: crate::error::FormatError::InsideHeader,
            });
        }
        if off >= w.buf_start && off < w.buf_start + w.buf.len() as u64 {
            let start = (off - w.buf_start) as usize;
            return Ok(MemoryRead::Found(Bytes::copy_from_slice(&w.buf[start..])));
        }
        for (start, chunk) in &w.chunks {
            if off >= *start && off < start + chunk.len() as u64 {
                return Ok(MemoryRead::Found(chunk.slice((off - start) as usize..)));
            }
        }
        if off >= w.tail {
            return Err(Error::OffsetOutOfRange {
                wal: ptr.wal_id,
                offset: off,
                len: w.tail,
            });
        }
        Ok(MemoryRead::NotHere)
    }

    /// Whether `id` is a WAL this writer created (native format).
    pub(crate) fn owns(&self, id: WalId) -> bool {
        self.state.lock().wals.contains_key(&id)
    }

    /// Stops accepting pushes, then makes everything durable.
    pub(crate) async fn close(&self) -> Result<()> {
        {
            let mut st = self.state.lock();
            let first_close = !st.closed;
            st.closed = true;
            st.active = None;
            // A WAL a later writer may continue gets a close mark (see
            // `crate::wal_resume`): synced with the rest, it tells that
            // writer every byte before it was synced.
            let mark = first_close && self.provider.continues_wals();
            for w in st.wals.values_mut() {
                w.sealed = true;
                if mark {
                    w.skip_to(w.tail + SKIP_RECORD_LEN);
                }
            }
        }
        self.sync_all().await?;
        let rest: Vec<WalId> = std::mem::take(&mut self.state.lock().wals)
            .into_keys()
            .collect();
        for id in rest {
            self.provider.close_wal(id).await?;
        }
        Ok(())
    }

    /// Bytes pushed but not yet durable.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        let st = self.state.lock();
        st.wals
            .values()
            .map(|w| w.end.saturating_sub(w.durable()))
            .sum()
    }
}
