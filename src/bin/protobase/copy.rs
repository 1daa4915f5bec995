//! `protobase copy <src> <dst>` (or `copy --config NODE.toml <dst>` for a
//! whole cluster): copies a space between any two addresses and reports
//! `"complete": true` only when it is.
//!
//! - **Refusals before anything is copied.** An empty or unknown source
//!   (no WALs and no root: a mistyped directory or prefix), a source whose
//!   root is not readable at the source (a cluster node's directory, whose
//!   root may live on a peer: copy the cluster with `--config`), a store
//!   source read with the wrong slot size (the size is read from the
//!   objects; `--object-size` must agree), a destination that holds another
//!   space (a WAL the source does not have, or longer than the source's, or
//!   a root the source does not lead to), a cluster as destination.
//! - **What moves.** Every WAL's bytes at their own offsets (pointers are
//!   physical), except the *gaps* behind skip records (slots a durability
//!   barrier sealed early, see `protobase::record`): they are never written
//!   and never read. A directory destination keeps them as holes of a
//!   sparse file, so a cloud WAL of 21 tiny commits takes about the size of
//!   its data on disk, and `verify`/`inspect` follow the skip records over
//!   them. A store destination gets one object per slot that holds data.
//! - **Verification.** Every source record is checked (a scan of each WAL).
//!   Every chunk written is read back and its CRC32C compared with the
//!   source's; a chunk already at the destination with the same CRC32C is
//!   left alone, so a re-run (after an interruption or a `--max-bytes` step)
//!   copies only what is missing or different. At the end the destination
//!   is opened as a reader opens it: every WAL is scanned (same records at
//!   the same offsets), the root is read back and its record read.
//! - **A live source.** The root is read first, then the WALs are listed;
//!   everything after (scan, chunks, checks) reads the WALs at the lengths
//!   listed, so a space written during the copy copies as the consistent
//!   space of that root (bytes appended later are not copied).
//! - **The root last**, with the destination's compare-and-swap, once every
//!   WAL is complete and durable: a destination never names a root whose
//!   bytes it lacks.
//!
//! Prints one JSON summary line: WAL, record and byte counts (`bytes`:
//! bytes that belong at the destination; `gap_bytes`: skipped gaps),
//! CRC32C of the source's and the destination's bytes, what was copied and
//! `complete`. Exit codes: 0 complete, 1 failure or corrupt source records,
//! 4 stopped by `--max-bytes` (re-run to continue).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protobase::backends::cloud::{CloudBlockProvider, DEFAULT_OBJECT_SIZE};
use protobase::client::ClusterSpace;
use protobase::scan::WalReport;
use protobase::{BlockProvider, Error, RootRecord, Storage, StorageBuilder, WalId, WalStore};
use serde::Serialize;

use crate::CmdResult;
use crate::address::{Address, Kind, bad};
use crate::space::{self, MIN_OBJECT_SIZE};

/// Exit code of a copy stopped by `--max-bytes`.
const INCOMPLETE: u8 = 4;
/// Piece size of a directory destination (pieces start at multiples).
const DIR_CHUNK: u64 = 4 << 20;

/// Options of one copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyOptions {
    /// Slot size of the destination store; must agree with a store source.
    pub(crate) object_size: Option<u64>,
    /// Stop after writing this many bytes (a bounded step).
    pub(crate) max_bytes: Option<u64>,
}

/// What a copy did.
#[derive(Debug, Default, Serialize)]
struct Summary {
    wals: usize,
    records: u64,
    corrupt_records: usize,
    torn_tails: usize,
    bytes: u64,
    gap_bytes: u64,
    bytes_copied: u64,
    bytes_present: u64,
    chunks_copied: u64,
    chunks_present: u64,
    source_crc32c: String,
    destination_crc32c: String,
    destination_records: u64,
    source_object_size: Option<u64>,
    destination_object_size: Option<u64>,
    config_copied: bool,
    root_sequence: Option<u64>,
    root_copied: bool,
    root_verified: bool,
    complete: bool,
}

/// The source, opened read-only.
struct Source {
    storage: Storage,
    label: String,
    slot: Option<u64>,
    cluster: Option<Arc<ClusterSpace>>,
    _staging: Option<tempfile::TempDir>,
}

async fn open_cluster_source(
    config: &protobase::NodeConfig,
    label: &str,
) -> Result<Source, Box<dyn std::error::Error>> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or_else(|| bad(label, "no [cluster] section: --config names a cluster node"))?;
    let timeout = std::time::Duration::from_millis(cluster.read_timeout_ms.max(1000));
    let mut members = Vec::new();
    for m in &cluster.servers {
        members.push(
            protobase::client::Client::connect(config, Some(&m.id))
                .await
                .map_err(|e| bad(label, e))?
                .with_timeout(timeout),
        );
    }
    let space = Arc::new(ClusterSpace::new(members));
    space.list_wals().await.map_err(|e| bad(label, e))?;
    let down = space.unreachable();
    if !down.is_empty() {
        let names = down
            .iter()
            .map(|(n, e)| format!("{n} ({e})"))
            .collect::<Vec<_>>()
            .join(", ");
        space.close_links().await;
        return Err(bad(
            label,
            format!(
                "members did not answer: {names}: their WALs cannot be copied; copy when every \
                 member is up"
            ),
        ));
    }
    let storage = StorageBuilder::new()
        .with_parts(space.clone(), space.clone())
        .read_only(true)
        .page_cache_size(0)
        .build()
        .await
        .map_err(|e| bad(label, e))?;
    Ok(Source {
        storage,
        label: label.to_string(),
        slot: None,
        cluster: Some(space),
        _staging: None,
    })
}

async fn open_source(
    src: &Address,
    object_size: Option<u64>,
) -> Result<Source, Box<dyn std::error::Error>> {
    if let (Some(node), Kind::Dir(_)) = (&src.node, &src.kind)
        && node.cluster.is_some()
    {
        return open_cluster_source(node, &src.text).await;
    }
    if let Kind::Dir(dir) = &src.kind {
        let contents = space::dir_contents(src, dir)?;
        if contents.cluster_node {
            return Err(bad(
                src,
                "is a cluster node's directory: it holds that node's WALs only (the rest of the \
                 space, perhaps the root's record, is on its peers); copy the whole space with \
                 `protobase copy --config NODE.toml DST`",
            ));
        }
    }
    // A store source's slot size is read from its objects; --object-size
    // (the destination's) must then agree with it.
    let opened = space::open_read_only(src, object_size.filter(|_| !src.is_memory())).await?;
    Ok(Source {
        storage: opened.storage,
        label: src.text.clone(),
        slot: opened.slot_size,
        cluster: None,
        _staging: opened._staging,
    })
}

/// Writes WAL chunks where the matching provider will find them.
#[derive(Debug)]
enum Sink {
    /// `<dir>/<wal>` files.
    Dir(PathBuf),
    /// `<prefix>/wal/<wal>/<slot>` objects; a chunk is one slot.
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        slot: u64,
    },
}

fn backend(what: String, e: object_store::Error) -> Error {
    let kind = protobase::backends::cloud::store_error_kind(&e);
    Error::backend_with("object store", format!("{what}: {e}"), kind, e)
}

fn key(prefix: &str, rest: &str) -> Key {
    if prefix.is_empty() {
        Key::from(rest)
    } else {
        Key::from(format!("{prefix}/{rest}"))
    }
}

fn spawn_err(e: tokio::task::JoinError) -> Error {
    Error::io("the destination", std::io::Error::other(e))
}

impl Sink {
    /// The bytes stored for a chunk (`None`: absent). A directory returns
    /// at most `len` bytes at `start`; a store the whole slot object.
    async fn read_chunk(&self, wal: WalId, start: u64, len: u64) -> Result<Option<Bytes>, Error> {
        match self {
            Sink::Dir(dir) => {
                let path = dir.join(wal.to_string());
                tokio::task::spawn_blocking(move || {
                    let file = match std::fs::File::open(&path) {
                        Ok(f) => f,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
                    };
                    let size = file
                        .metadata()
                        .map_err(|e| Error::io(format!("reading size of {}", path.display()), e))?
                        .len();
                    if size <= start {
                        return Ok(None);
                    }
                    let n = usize::try_from(len.min(size - start)).unwrap_or(usize::MAX);
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, start)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    Ok(Some(Bytes::from(buf)))
                })
                .await
                .map_err(spawn_err)?
            }
            Sink::Store {
                store,
                prefix,
                slot,
            } => {
                let k = key(prefix, &format!("wal/{wal}/{}", start / slot));
                match store.get(&k).await {
                    Ok(r) => Ok(Some(
                        r.bytes()
                            .await
                            .map_err(|e| backend(format!("reading {k}"), e))?,
                    )),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(backend(format!("reading {k}"), e)),
                }
            }
        }
    }

    /// Stores a chunk (bytes `[start, start + data.len())`).
    async fn write_chunk(&self, wal: WalId, start: u64, data: Bytes) -> Result<(), Error> {
        match self {
            Sink::Dir(dir) => {
                let path = dir.join(wal.to_string());
                tokio::task::spawn_blocking(move || {
                    let file = OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&path)
                        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                    file.write_all_at(&data, start)
                        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
                })
                .await
                .map_err(spawn_err)?
            }
            Sink::Store {
                store,
                prefix,
                slot,
            } => {
                let k = key(prefix, &format!("wal/{wal}/{}", start / slot));
                store
                    .put(&k, PutPayload::from(data))
                    .await
                    .map(|_| ())
                    .map_err(|e| backend(format!("writing {k}"), e))
            }
        }
    }

    /// Makes a directory WAL of `len` bytes durable (its length, fsync).
    async fn finish_wal(&self, wal: WalId, len: u64) -> Result<(), Error> {
        let Sink::Dir(dir) = self else {
            return Ok(());
        };
        let path = dir.join(wal.to_string());
        tokio::task::spawn_blocking(move || {
            let ctx = |e| Error::io(format!("finishing {}", path.display()), e);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(ctx)?;
            // Gaps at the end stay holes: the file gets its length only.
            if file.metadata().map_err(ctx)?.len() != len {
                file.set_len(len).map_err(ctx)?;
            }
            file.sync_all().map_err(ctx)
        })
        .await
        .map_err(spawn_err)?
    }

    /// Makes the directory entries durable (directories only).
    async fn sync(&self) -> Result<(), Error> {
        let Sink::Dir(dir) = self else {
            return Ok(());
        };
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
        })
        .await
        .map_err(spawn_err)?
    }

    /// Stores the space configuration (`space.config`) unless identical.
    async fn write_config(&self, data: Bytes) -> Result<bool, Error> {
        match self {
            Sink::Dir(dir) => {
                let path = dir.join("space.config");
                if std::fs::read(&path).is_ok_and(|old| old == data) {
                    return Ok(false);
                }
                std::fs::write(&path, &data)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                Ok(true)
            }
            Sink::Store { store, prefix, .. } => {
                let k = key(prefix, "space.config");
                if let Ok(r) = store.get(&k).await
                    && r.bytes().await.is_ok_and(|old| old == data)
                {
                    return Ok(false);
                }
                store
                    .put(&k, PutPayload::from(data))
                    .await
                    .map_err(|e| backend(format!("writing {k}"), e))?;
                Ok(true)
            }
        }
    }

    /// A provider reading (and, for the root, writing) the destination.
    async fn provider(
        &self,
        staging: &Path,
        writable: bool,
    ) -> Result<Arc<dyn BlockProvider>, Error> {
        Ok(match self {
            Sink::Dir(dir) => {
                use protobase::backends::fs::FileBlockProvider;
                let dir = dir.clone();
                let p = tokio::task::spawn_blocking(move || {
                    if writable {
                        FileBlockProvider::open(dir)
                    } else {
                        FileBlockProvider::open_read_only(dir)
                    }
                })
                .await
                .map_err(spawn_err)??;
                Arc::new(p)
            }
            Sink::Store {
                store,
                prefix,
                slot,
            } => Arc::new(
                CloudBlockProvider::builder(store.clone(), staging)
                    .prefix(prefix.clone())
                    .object_size(*slot)
                    .no_cache()
                    .build()
                    .await?,
            ),
        })
    }
}

/// The source's WALs at the lengths first listed (a live source grows
/// while it is copied; the copy, its scan and its checks are of this
/// prefix). Read-only.
#[derive(Debug)]
struct Frozen {
    inner: Arc<dyn WalStore>,
    lens: std::collections::HashMap<WalId, u64>,
}

#[async_trait::async_trait]
impl WalStore for Frozen {
    async fn create_wal(&self) -> protobase::Result<protobase::NewWal> {
        Err(Error::ReadOnly)
    }
    async fn append(&self, _: WalId, _: u64, _: Bytes) -> protobase::Result<()> {
        Err(Error::ReadOnly)
    }
    async fn sync(&self, _: WalId, _: u64) -> protobase::Result<()> {
        Err(Error::ReadOnly)
    }
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> protobase::Result<Bytes> {
        let total = *self.lens.get(&wal).ok_or(Error::WalNotFound { wal })?;
        if offset >= total {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: total,
            });
        }
        let mut b = self
            .inner
            .read(wal, offset, len.min(total - offset))
            .await?;
        b.truncate(usize::try_from(total - offset).unwrap_or(usize::MAX));
        Ok(b)
    }
    async fn list_wals(&self) -> protobase::Result<Vec<protobase::WalInfo>> {
        let mut v: Vec<_> = self
            .lens
            .iter()
            .map(|(id, len)| protobase::WalInfo { id: *id, len: *len })
            .collect();
        v.sort_by_key(|w| w.id);
        Ok(v)
    }
    async fn close_wal(&self, _: WalId) -> protobase::Result<()> {
        Ok(())
    }
    async fn read_config(&self) -> protobase::Result<Option<Bytes>> {
        self.inner.read_config().await
    }
    async fn close(&self) -> protobase::Result<()> {
        Ok(())
    }
}

/// Reads exactly `len` bytes (providers may return less per call).
async fn read_exact(
    provider: &dyn WalStore,
    wal: WalId,
    start: u64,
    len: u64,
) -> Result<Bytes, Error> {
    let first = provider.read(wal, start, len).await?;
    if first.len() as u64 >= len {
        return Ok(first);
    }
    let mut buf = BytesMut::from(&first[..]);
    while (buf.len() as u64) < len {
        let at = start + buf.len() as u64;
        let more = provider.read(wal, at, len - buf.len() as u64).await?;
        if more.is_empty() {
            return Err(Error::io(
                format!("reading WAL {wal} at {at}"),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "source ended early"),
            ));
        }
        buf.extend_from_slice(&more);
    }
    Ok(buf.freeze())
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} copying [{bar:40}] {bytes}/{total_bytes} ({eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The byte ranges of a WAL that hold data: all of it but the gaps.
fn data_ranges(len: u64, gaps: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &(a, b) in gaps {
        let (a, b) = (a.min(len), b.min(len));
        if a > pos {
            out.push((pos, a));
        }
        pos = pos.max(b);
    }
    if pos < len {
        out.push((pos, len));
    }
    out
}

/// The chunks of a WAL at the destination: `(start, len)`. A directory
/// gets the data ranges in pieces that start at multiples of `DIR_CHUNK`;
/// a store one object per slot that holds data, from the slot's start to
/// the end of its last data byte.
fn chunks(sink: &Sink, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let piece = match sink {
        Sink::Dir(_) => DIR_CHUNK,
        Sink::Store { slot, .. } => *slot,
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(a, b) in ranges {
        let mut pos = a;
        while pos < b {
            let unit = pos / piece * piece;
            let end = b.min(unit + piece);
            match sink {
                Sink::Dir(_) => out.push((pos, end - pos)),
                Sink::Store { .. } => match out.last_mut() {
                    // Another data range of the same slot: the object grows.
                    Some((s, l)) if *s == unit => *l = end - unit,
                    _ => out.push((unit, end - unit)),
                },
            }
            pos = end;
        }
    }
    out
}

/// Extends `crc` with the bytes of `chunk` (which starts at `start`) that
/// lie in the data `ranges` (gaps excluded), in order.
fn crc_of_data(mut crc: u32, start: u64, chunk: &[u8], ranges: &[(u64, u64)]) -> u32 {
    let end = start + chunk.len() as u64;
    for &(a, b) in ranges {
        let (a, b) = (a.max(start), b.min(end));
        if a < b {
            let (i, j) = ((a - start) as usize, (b - start) as usize);
            crc = crc32c::crc32c_append(crc, &chunk[i..j]);
        }
    }
    crc
}

/// Copies one chunk unless the destination has it; returns whether it was
/// written and the CRC32C of the source's and the destination's bytes.
async fn copy_chunk(
    source: &dyn WalStore,
    sink: &Sink,
    wal: WalId,
    start: u64,
    len: u64,
) -> Result<(bool, Bytes), Box<dyn std::error::Error>> {
    let data = read_exact(source, wal, start, len).await?;
    let crc = crc32c::crc32c(&data);
    let same = |b: &Bytes| b.len() == data.len() && crc32c::crc32c(b) == crc;
    if let Some(present) = sink.read_chunk(wal, start, len).await?
        && same(&present)
    {
        return Ok((false, present));
    }
    sink.write_chunk(wal, start, data.clone()).await?;
    match sink.read_chunk(wal, start, len).await? {
        Some(back) if same(&back) => Ok((true, back)),
        _ => Err(format!(
            "verification failed: WAL {wal} bytes {start}..{} read back differently",
            start + len
        )
        .into()),
    }
}

/// The destination: where chunks go, and what it already holds.
/// The slot size the gaps of a directory source's WALs were written for
/// (their ends are slot boundaries, each skip record lies in the slot its
/// gap ends), if there are gaps.
fn gap_alignment(reports: &[WalReport]) -> Option<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut g = 0u64;
    let mut reach = 0u64;
    for rep in reports {
        for &(start, end) in &rep.gaps {
            g = gcd(g, end);
            let skip_at = start.saturating_sub(protobase::record::SKIP_RECORD_LEN);
            reach = reach.max(end - skip_at);
        }
    }
    (g > 0).then_some(g.max(reach))
}

async fn open_destination(
    dst: &Address,
    source: &Source,
    opts: &CopyOptions,
    aligned: Option<u64>,
) -> Result<Sink, Box<dyn std::error::Error>> {
    if dst.cluster().is_some() {
        return Err(bad(
            dst,
            "a cluster is not a copy destination: copy into a directory (or store) and start \
             the nodes from it, or write with put --connect",
        ));
    }
    match &dst.kind {
        Kind::Dir(d) => {
            if d.exists() && !d.is_dir() {
                return Err(bad(dst, "not a directory"));
            }
            std::fs::create_dir_all(d).map_err(|e| bad(dst, e))?;
            Ok(Sink::Dir(d.clone()))
        }
        Kind::Store { .. } => {
            let (store, prefix) = dst.open_store().map_err(|e| bad(dst, e))?;
            let layout = space::detect_slots(&store, &prefix)
                .await
                .map_err(|e| bad(dst, e))?;
            let wanted = dst
                .stated_object_size()
                .or(opts.object_size)
                .or(layout.slot_size)
                .or(aligned)
                .or(source.slot)
                .unwrap_or(DEFAULT_OBJECT_SIZE);
            // WALs with slot gaps keep them only in slots of the size they
            // were written with (a skip record's gap ends a slot).
            if let Some(a) = aligned
                && wanted != a
            {
                return Err(bad(
                    dst,
                    format!(
                        "the source's WALs were written in {a}-byte slots (their slot gaps end \
                         on those boundaries): a store destination needs the same slot size, \
                         not {wanted}"
                    ),
                ));
            }
            if wanted < MIN_OBJECT_SIZE {
                return Err(bad(
                    dst,
                    format!("slot size {wanted} is below {MIN_OBJECT_SIZE} bytes"),
                ));
            }
            let slot = if layout.wals.is_empty() {
                wanted
            } else {
                space::slot_size_for(dst, &layout, Some(wanted))?
            };
            Ok(Sink::Store {
                store,
                prefix,
                slot,
            })
        }
    }
}

/// Refuses a destination holding another space: every WAL there must be a
/// (possibly partial) copy of a source WAL, and its root one the source
/// leads to.
async fn check_destination(
    dst: &Address,
    sink: &Sink,
    source_wals: &std::collections::HashMap<WalId, u64>,
    source_root: Option<&RootRecord>,
    staging: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let empty_dir = match sink {
        Sink::Dir(d) => {
            let c = space::dir_contents(dst, d)?;
            if c.cluster_node {
                return Err(bad(
                    dst,
                    "is a cluster node's directory: not a copy destination",
                ));
            }
            c.wals == 0 && !c.has_root
        }
        Sink::Store { .. } => false,
    };
    if empty_dir {
        return Ok(());
    }
    let provider = sink
        .provider(staging, false)
        .await
        .map_err(|e| bad(dst, e))?;
    let another = |why: String| {
        bad(
            dst,
            format!("holds another space ({why}): refusing before copying anything"),
        )
    };
    let outcome = async {
        for w in provider.list_wals().await? {
            match source_wals.get(&w.id) {
                None => return Ok(Err(format!("WAL {} is not in the source", w.id))),
                Some(len) if w.len > *len => {
                    return Ok(Err(format!(
                        "WAL {} has {} bytes there, {len} in the source",
                        w.id, w.len
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(cur) = provider.read_root().await? {
            let ok = match source_root {
                Some(src) => {
                    cur.root == *src
                        || (src.is_newer_than(&cur.root)
                            && source_wals.contains_key(&cur.root.pointer.wal_id))
                }
                None => false,
            };
            if !ok {
                return Ok(Err(format!(
                    "its root {} (sequence {}) is not one the source leads to",
                    cur.root.pointer, cur.root.sequence
                )));
            }
        }
        Ok::<_, Error>(Ok(()))
    }
    .await;
    let _ = provider.close().await;
    outcome.map_err(|e| bad(dst, e))?.map_err(another)
}

pub(crate) async fn run(
    locations: &[String],
    config: Option<&Path>,
    opts: CopyOptions,
) -> CmdResult {
    if opts.object_size.is_some_and(|s| s < MIN_OBJECT_SIZE) {
        return Err(format!("--object-size must be at least {MIN_OBJECT_SIZE} bytes").into());
    }
    let (source, dst) = match (config, locations) {
        (Some(path), [dst]) => {
            let node = protobase::NodeConfig::load(path)?;
            let label = path.display().to_string();
            let source = if node.backend.is_object_store() {
                // A cloud cluster's space is in its store.
                open_source(&Address::parse(&label)?, opts.object_size).await?
            } else {
                open_cluster_source(&node, &label).await?
            };
            (source, Address::parse(dst)?)
        }
        (Some(_), _) => {
            return Err(crate::out::usage(
                "with --config, give the destination only",
            ));
        }
        (None, [src, dst]) => {
            let src = Address::parse(src)?;
            let dst = Address::parse(dst)?;
            if let (Some(a), Some(b)) = (src.dir(), dst.dir())
                && a.canonicalize()
                    .ok()
                    .is_some_and(|a| b.canonicalize().ok() == Some(a))
            {
                return Err("source and destination are the same directory".into());
            }
            (open_source(&src, opts.object_size).await?, dst)
        }
        (None, _) => {
            return Err(crate::out::usage(
                "give a source and a destination (or --config NODE DST)",
            ));
        }
    };
    let result = copy(&source, &dst, &opts).await;
    let _ = source.storage.close().await;
    if let Some(space) = &source.cluster {
        space.close_links().await;
    }
    result
}

async fn copy(source: &Source, dst: &Address, opts: &CopyOptions) -> CmdResult {
    let staging = tempfile::tempdir()?;
    let src = &source.storage;
    // The root first: its bytes were durable before it was published, so
    // WAL lengths listed afterwards cover them even while the source is
    // being written.
    let root = src
        .read_current_root()
        .await
        .map_err(|e| bad(&source.label, e))?;
    let wals = src.list_wals().await.map_err(|e| bad(&source.label, e))?;
    if let Some(r) = &root {
        src.get_record(r.pointer).await.map_err(|e| {
            bad(
                &source.label,
                format!(
                    "its root {} is not readable there ({e}): refusing to copy a space whose \
                     root points nowhere",
                    r.pointer
                ),
            )
        })?;
    }
    let source_wals: std::collections::HashMap<WalId, u64> =
        wals.iter().map(|w| (w.id, w.len)).collect();
    // A source being written grows: the copy is of the WALs as listed.
    let frozen = Frozen {
        inner: src.wal_store().clone(),
        lens: source_wals.clone(),
    };
    // Scan every source WAL first (nothing is written yet): records, gaps,
    // problems.
    let mut reports: Vec<WalReport> = Vec::new();
    for w in &wals {
        reports.push(
            protobase::scan::scan_wal(&frozen, w.id, src.config().blob_max_size, |_| {})
                .await
                .map_err(|e| bad(&source.label, e))?,
        );
    }
    // Only WALs with slot gaps tie the destination's slot size.
    let aligned = gap_alignment(&reports).map(|g| source.slot.unwrap_or(g));
    let sink = open_destination(dst, source, opts, aligned).await?;
    // A store destination gets a WAL's data without the close mark a file
    // writer leaves (a skip record ending an object would be read as the
    // end of a slot); a directory gets it as it is.
    let wals: Vec<protobase::WalInfo> = wals
        .iter()
        .zip(&reports)
        .map(|(w, rep)| {
            let mut w = *w;
            if matches!(sink, Sink::Store { .. }) {
                w.len = rep.close_mark.unwrap_or(w.len);
            }
            w
        })
        .collect();
    check_destination(
        dst,
        &sink,
        &source_wals,
        root.as_ref(),
        &staging.path().join("check"),
    )
    .await?;
    let mut sum = Summary {
        wals: wals.len(),
        source_object_size: source.slot,
        destination_object_size: match &sink {
            Sink::Store { slot, .. } => Some(*slot),
            Sink::Dir(_) => None,
        },
        ..Summary::default()
    };
    let mut plans = Vec::new();
    let mut corrupt = Vec::new();
    for (w, rep) in wals.iter().zip(&reports) {
        sum.records += rep.records;
        sum.torn_tails += usize::from(rep.torn_tail.is_some());
        for p in &rep.corrupt {
            corrupt.push(format!("{}:{}: {}", w.id, p.offset, p.error));
        }
        let ranges = data_ranges(w.len, &rep.gaps);
        let data: u64 = ranges.iter().map(|(a, b)| b - a).sum();
        sum.gap_bytes += w.len - data;
        let planned = chunks(&sink, &ranges);
        sum.bytes += planned.iter().map(|(_, l)| l).sum::<u64>();
        plans.push((ranges, planned));
    }
    let bar = progress_bar(sum.bytes);
    let mut src_crc = 0u32;
    let mut stopped = false;
    'wals: for (w, (ranges, planned)) in wals.iter().zip(&plans) {
        bar.set_message(w.id.to_string());
        for &(start, len) in planned {
            let (written, back) = copy_chunk(&frozen, &sink, w.id, start, len)
                .await
                .map_err(|e| bad(dst, e))?;
            // `back` is the source's bytes (compared by CRC32C); the data
            // ranges of it make the source's checksum.
            src_crc = crc_of_data(src_crc, start, &back, ranges);
            if written {
                sum.bytes_copied += len;
                sum.chunks_copied += 1;
            } else {
                sum.bytes_present += len;
                sum.chunks_present += 1;
            }
            bar.inc(len);
            if opts.max_bytes.is_some_and(|m| sum.bytes_copied >= m)
                && sum.bytes_present + sum.bytes_copied < sum.bytes
            {
                stopped = true;
                break 'wals;
            }
        }
        sink.finish_wal(w.id, w.len)
            .await
            .map_err(|e| bad(dst, e))?;
    }
    bar.finish_and_clear();
    for c in &corrupt {
        eprintln!("CORRUPT {c}");
    }
    sum.corrupt_records = corrupt.len();
    sum.source_crc32c = format!("{src_crc:08x}");
    if stopped {
        crate::out::line(serde_json::to_string(&sum)?)?;
        eprintln!("protobase: stopped after --max-bytes; re-run to continue");
        return Ok(ExitCode::from(INCOMPLETE));
    }
    sink.sync().await.map_err(|e| bad(dst, e))?;
    if let Some(config) = src.read_config().await? {
        sum.config_copied = sink.write_config(config).await.map_err(|e| bad(dst, e))?;
    }
    sum.root_sequence = root.as_ref().map(|r| r.sequence);
    if let Some(root) = &root {
        sum.root_copied = write_root(&sink, root, &staging.path().join("root"))
            .await
            .map_err(|e| {
                bad(
                    dst,
                    format!("destination root not replaced (it is newer or another space's): {e}"),
                )
            })?;
    }
    // Open the destination as a reader does and check it.
    let verified = verify_destination(&sink, &wals, &reports, root.as_ref(), staging.path())
        .await
        .map_err(|e| bad(dst, format!("verification failed: {e}")))?;
    sum.destination_records = verified.records;
    sum.destination_crc32c = format!("{:08x}", verified.crc);
    sum.root_verified = root.is_none() || verified.root_ok;
    sum.complete = corrupt.is_empty()
        && sum.destination_records == sum.records
        && sum.destination_crc32c == sum.source_crc32c
        && sum.root_verified;
    crate::out::line(serde_json::to_string(&sum)?)?;
    Ok(if sum.complete {
        ExitCode::SUCCESS
    } else {
        if corrupt.is_empty() {
            eprintln!("protobase: the destination does not match the source");
        }
        ExitCode::FAILURE
    })
}

async fn write_root(sink: &Sink, root: &RootRecord, staging: &Path) -> Result<bool, Error> {
    let target = sink.provider(staging, true).await?;
    let outcome = async {
        let _lock = target.lock_root().await?;
        match target.read_root().await? {
            Some(cur) if cur.root == *root => Ok(false),
            Some(cur) if !root.is_newer_than(&cur.root) => Err(Error::RootConflict {
                expected: Some(root.sequence),
                found: Some(cur.root.sequence),
            }),
            cur => target
                .write_root(root, cur.map(|c| c.version))
                .await
                .map(|_| true),
        }
    }
    .await;
    target.close().await?;
    outcome
}

/// What the destination holds, read back as a reader reads it.
struct Verified {
    records: u64,
    crc: u32,
    root_ok: bool,
}

async fn verify_destination(
    sink: &Sink,
    wals: &[protobase::WalInfo],
    reports: &[WalReport],
    root: Option<&RootRecord>,
    staging: &Path,
) -> Result<Verified, Box<dyn std::error::Error>> {
    let provider = sink.provider(&staging.join("verify"), false).await?;
    let storage = StorageBuilder::new()
        .with_block_provider(provider)
        .read_only(true)
        .page_cache_size(0)
        .build()
        .await?;
    let outcome = async {
        let mut records = 0;
        let mut crc = 0u32;
        for (w, src) in wals.iter().zip(reports) {
            let rep = storage.scan_wal(w.id, |_| {}).await?;
            if rep.offsets != src.offsets || rep.gaps != src.gaps {
                return Err(format!(
                    "WAL {}: {} records at the destination, {} in the source",
                    w.id, rep.records, src.records
                )
                .into());
            }
            records += rep.records;
            for (a, b) in data_ranges(w.len, &rep.gaps) {
                let mut pos = a;
                while pos < b {
                    let n = (b - pos).min(DIR_CHUNK);
                    let bytes = read_exact(&**storage.wal_store(), w.id, pos, n).await?;
                    crc = crc32c::crc32c_append(crc, &bytes);
                    pos += n;
                }
            }
        }
        let root_ok = match root {
            Some(r) => {
                storage.read_current_root().await?.as_ref() == Some(r)
                    && storage.get_record(r.pointer).await.is_ok()
            }
            None => true,
        };
        Ok::<_, Box<dyn std::error::Error>>(Verified {
            records,
            crc,
            root_ok,
        })
    }
    .await;
    let _ = storage.close().await;
    outcome
}
