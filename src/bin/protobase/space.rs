//! Opening what an address names: directories, store spaces (their slot
//! size read from their objects) and node descriptions, read-only or
//! writable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use protobase::backends::cloud::{CloudBlockProvider, DEFAULT_OBJECT_SIZE, Durability};
use protobase::{BlockProvider, Error, Storage, StorageBuilder, WalId};

use crate::address::{Address, Kind, bad};

/// Smallest slot size accepted.
pub(crate) const MIN_OBJECT_SIZE: u64 = 64;
/// WALs whose objects are read to work out a store space's slot size.
const EVIDENCE_WALS: usize = 16;

/// What the objects of a store space say about it.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreLayout {
    /// WAL slot objects: wal -> slot -> object size.
    pub(crate) wals: BTreeMap<WalId, BTreeMap<u64, u64>>,
    /// A root object (`space_root` or `root/…`) exists.
    pub(crate) has_root: bool,
    /// The slot size the objects prove (a short object's skip record, or a
    /// WAL's first full object), if any does.
    pub(crate) slot_size: Option<u64>,
    /// How that was found.
    pub(crate) evidence: String,
    /// The largest object: a lower bound of the slot size.
    pub(crate) largest: u64,
}

fn key(prefix: &str, rest: &str) -> Key {
    if prefix.is_empty() {
        Key::from(rest)
    } else {
        Key::from(format!("{prefix}/{rest}"))
    }
}

fn backend(what: String, e: object_store::Error) -> Error {
    let kind = protobase::backends::cloud::store_error_kind(&e);
    Error::backend_with("object store", format!("{what}: {e}"), kind, e)
}

/// Lists a store space and works out its slot size (see the module docs).
pub(crate) async fn detect_slots(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<StoreLayout, Error> {
    let mut layout = StoreLayout::default();
    let wal_prefix = key(prefix, "wal");
    let metas: Vec<object_store::ObjectMeta> = store
        .list(Some(&wal_prefix))
        .try_collect()
        .await
        .map_err(|e| backend(format!("listing {wal_prefix}"), e))?;
    let strip = format!("{wal_prefix}/");
    for m in metas {
        let Some(rest) = m.location.as_ref().strip_prefix(&strip) else {
            continue;
        };
        let Some((id, slot)) = rest.split_once('/') else {
            continue;
        };
        let (Ok(id), Ok(slot)) = (id.parse::<WalId>(), slot.parse::<u64>()) else {
            continue;
        };
        layout.largest = layout.largest.max(m.size);
        layout.wals.entry(id).or_default().insert(slot, m.size);
    }
    for root in ["space_root", "root"] {
        let k = key(prefix, root);
        let found = if root == "root" {
            store
                .list(Some(&k))
                .try_next()
                .await
                .map_err(|e| backend(format!("listing {k}"), e))?
                .is_some()
        } else {
            match store.head(&k).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(backend(format!("reading {k}"), e)),
            }
        };
        layout.has_root |= found;
    }
    // Evidence: the engine ends every slot a durability barrier sealed
    // early with a skip record whose gap reaches the slot's end, so an
    // object ending with one proves `slot = size + gap`; and the first
    // object of a WAL of several slots is full (else it would end with a
    // skip record). A few WALs suffice; they must all agree.
    let mut found: Vec<(u64, String)> = Vec::new();
    for (wal, slots) in layout.wals.iter().take(EVIDENCE_WALS) {
        let mut candidates: Vec<(u64, u64, bool)> = Vec::new();
        if let Some((&slot, &size)) = slots.iter().next() {
            candidates.push((slot, size, slots.len() > 1));
        }
        if let Some((&slot, &size)) = slots.iter().next_back()
            && slots.len() > 1
        {
            candidates.push((slot, size, false));
        }
        for (slot, size, full_if_no_skip) in candidates {
            let k = key(prefix, &format!("wal/{wal}/{slot}"));
            let skip = if size >= protobase::record::SKIP_RECORD_LEN {
                let tail = store
                    .get_range(&k, size - protobase::record::SKIP_RECORD_LEN..size)
                    .await
                    .map_err(|e| backend(format!("reading {k}"), e))?;
                protobase::record::decode_skip(&tail).ok().flatten()
            } else {
                None
            };
            match skip {
                Some(gap) => {
                    if let Some(s) = size.checked_add(gap) {
                        found.push((
                            s,
                            format!(
                                "object {k} ({size} bytes) ends with a skip record of {gap} bytes"
                            ),
                        ));
                    }
                }
                None if full_if_no_skip => {
                    found.push((size, format!("object {k} fills its slot ({size} bytes)")));
                }
                None => {}
            }
        }
    }
    if let Some((first, why)) = found.first() {
        if let Some((other, why2)) = found.iter().find(|(s, _)| s != first) {
            return Err(Error::invalid(
                "store",
                format!(
                    "inconsistent slot sizes under {wal_prefix}: {first} ({why}) and {other} \
                     ({why2})"
                ),
            ));
        }
        layout.slot_size = Some(*first);
        layout.evidence = why.clone();
    }
    Ok(layout)
}

/// The slot size to read a store space with: the one its objects prove;
/// `given` (the command line's, or a node description's) must agree with
/// it and cover every object.
pub(crate) fn slot_size_for(
    address: &Address,
    layout: &StoreLayout,
    given: Option<u64>,
) -> Result<u64, Box<dyn std::error::Error>> {
    // A node description's slot size is the one its node reads with.
    let given = address.stated_object_size().or(given);
    match (layout.slot_size, given) {
        (Some(s), Some(g)) if s != g => Err(bad(
            address,
            format!(
                "the space was written with {s}-byte slots ({}), not {g}: give --object-size {s} \
                 (or leave it out)",
                layout.evidence
            ),
        )),
        (Some(s), _) => Ok(s),
        (None, Some(g)) if g < layout.largest => Err(bad(
            address,
            format!(
                "an object holds {} bytes, more than the slot size {g}: the space was written \
                 with larger slots",
                layout.largest
            ),
        )),
        (None, Some(g)) => Ok(g),
        // No WAL spans two slots: any size that holds every object reads it.
        (None, None) => Ok(layout.largest.max(DEFAULT_OBJECT_SIZE)),
    }
}

/// What a directory holds.
#[derive(Debug, Default)]
pub(crate) struct DirContents {
    pub(crate) wals: usize,
    pub(crate) has_root: bool,
    /// It is a cluster node's directory (holds `cluster_acceptor`).
    pub(crate) cluster_node: bool,
}

/// Looks into a directory (which must exist).
pub(crate) fn dir_contents(
    address: &Address,
    dir: &Path,
) -> Result<DirContents, Box<dyn std::error::Error>> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(address, "no such directory"));
        }
        Err(e) => return Err(bad(address, e)),
    };
    if !meta.is_dir() {
        return Err(bad(address, "not a directory (a space is a directory)"));
    }
    let mut out = DirContents::default();
    for entry in std::fs::read_dir(dir).map_err(|e| bad(address, e))? {
        let entry = entry.map_err(|e| bad(address, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.parse::<WalId>().is_ok() {
            out.wals += 1;
        } else if name == "space_root" || name == "space_root.log" {
            out.has_root |= std::fs::metadata(entry.path()).is_ok_and(|m| m.len() > 0);
        } else if name == "cluster_acceptor" {
            out.cluster_node = true;
        }
    }
    Ok(out)
}

/// A read-only view of a space: its provider and what it is.
pub(crate) struct Opened {
    /// The storage (read-only, no page cache).
    pub(crate) storage: Storage,
    /// The slot size of a store space.
    pub(crate) slot_size: Option<u64>,
    /// The directory holds a cluster node's state.
    pub(crate) cluster_node: bool,
    /// Kept until the storage is closed.
    pub(crate) _staging: Option<tempfile::TempDir>,
}

/// Opens an existing space read-only: a directory must exist and hold a
/// space; a store prefix must hold WALs or a root.
pub(crate) async fn open_read_only(
    address: &Address,
    object_size: Option<u64>,
) -> Result<Opened, Box<dyn std::error::Error>> {
    open_existing(address, object_size, false).await
}

/// [`open_read_only`], but an existing empty directory opens as a space
/// without root or WALs (for `root`, whose exit code 3 says so).
pub(crate) async fn open_existing(
    address: &Address,
    object_size: Option<u64>,
    allow_empty_dir: bool,
) -> Result<Opened, Box<dyn std::error::Error>> {
    match &address.kind {
        Kind::Dir(dir) => {
            let contents = dir_contents(address, dir)?;
            if contents.wals == 0 && !contents.has_root && !allow_empty_dir {
                return Err(bad(
                    address,
                    "holds no space (no WAL files and no space_root): is the path right?",
                ));
            }
            let storage = StorageBuilder::standalone(dir)
                .read_only(true)
                .page_cache_size(0)
                .build()
                .await
                .map_err(|e| bad(address, e))?;
            Ok(Opened {
                storage,
                slot_size: None,
                cluster_node: contents.cluster_node,
                _staging: None,
            })
        }
        Kind::Store { .. } => {
            if address.is_memory() {
                return Err(bad(
                    address,
                    "a fresh in-memory store holds nothing to read (memory:// is a copy \
                     destination for a dry run)",
                ));
            }
            let (store, prefix) = address.open_store().map_err(|e| bad(address, e))?;
            let layout = detect_slots(&store, &prefix)
                .await
                .map_err(|e| bad(address, e))?;
            if layout.wals.is_empty() && !layout.has_root {
                return Err(bad(
                    address,
                    format!(
                        "holds no space: no WAL objects and no root under prefix {prefix:?} \
                         (is the prefix right?)"
                    ),
                ));
            }
            let slot = slot_size_for(address, &layout, object_size)?;
            let staging = tempfile::tempdir()?;
            let provider = CloudBlockProvider::builder(store, staging.path().join("staging"))
                .prefix(prefix)
                .object_size(slot)
                .no_cache()
                .build()
                .await
                .map_err(|e| bad(address, e))?;
            let provider: Arc<dyn BlockProvider> = Arc::new(provider);
            let storage = StorageBuilder::new()
                .with_block_provider(provider)
                .read_only(true)
                .page_cache_size(0)
                .build()
                .await
                .map_err(|e| bad(address, e))?;
            Ok(Opened {
                storage,
                slot_size: Some(slot),
                cluster_node: false,
                _staging: Some(staging),
            })
        }
    }
}

/// [`open_writable`] on a space that must exist already (as
/// [`open_read_only`] requires).
pub(crate) async fn open_writable_existing(
    address: &Address,
    object_size: Option<u64>,
) -> Result<(Storage, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    let probe = open_read_only(address, object_size).await?;
    probe.storage.close().await?;
    open_writable(address, object_size).await
}

/// A writable storage on a space (created if missing): a directory as
/// standalone storage; a store with a provider staging in a temporary
/// directory and `Durability::Cloud` (a root is durable in the store when
/// it is acknowledged); a node description of a standalone or cloud node
/// as that node (it must not be running).
pub(crate) async fn open_writable(
    address: &Address,
    object_size: Option<u64>,
) -> Result<(Storage, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    if let Some(cluster) = address.cluster() {
        return Err(bad(
            address,
            format!(
                "describes cluster node {:?}: write through the running node with --connect {}",
                cluster.server_id, address
            ),
        ));
    }
    if let Some(node) = &address.node {
        return Ok((node.build().await?, None));
    }
    match &address.kind {
        Kind::Dir(dir) => Ok((
            StorageBuilder::standalone(dir)
                .build()
                .await
                .map_err(|e| bad(address, e))?,
            None,
        )),
        Kind::Store { .. } => {
            if address.is_memory() {
                return Err(bad(
                    address,
                    "nothing written to a fresh in-memory store outlives this command",
                ));
            }
            let (store, prefix) = address.open_store().map_err(|e| bad(address, e))?;
            let layout = detect_slots(&store, &prefix)
                .await
                .map_err(|e| bad(address, e))?;
            let slot = if layout.wals.is_empty() {
                object_size.unwrap_or(DEFAULT_OBJECT_SIZE)
            } else {
                slot_size_for(address, &layout, object_size)?
            };
            let staging = tempfile::tempdir()?;
            let provider = CloudBlockProvider::builder(store, staging.path().join("staging"))
                .prefix(prefix)
                .object_size(slot)
                .durability(Durability::Cloud)
                .no_cache()
                .build()
                .await
                .map_err(|e| bad(address, e))?;
            let storage = StorageBuilder::cloud(Arc::new(provider))
                .page_cache_size(0)
                .build()
                .await
                .map_err(|e| bad(address, e))?;
            Ok((storage, Some(staging)))
        }
    }
}
