//! A space written by the reference (Python) implementation opens as is
//! (DESIGN.md §5): every record listed in the fixture's manifest reads back
//! with the right format and content, the root parses, scans agree with the
//! manifest, and a read-only open writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use protobase::record::WalKind;
use protobase::{AtomFormat, AtomPointer, Error, Format, Storage, StorageBuilder, WalId};
use serde_json::Value;
use sha2::{Digest, Sha256};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python-space");

/// One record of `manifest.json`.
#[derive(Debug, Clone)]
struct Expected {
    ptr: AtomPointer,
    format: Format,
    content: Content,
}

#[derive(Debug, Clone)]
enum Content {
    Raw {
        length: usize,
        sha256: String,
        head_hex: String,
    },
    Value(Value),
}

struct Manifest {
    root: AtomPointer,
    records: Vec<Expected>,
}

fn load_manifest() -> Manifest {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("manifest.json")).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    let ptr = |v: &Value, wal_key: &str| {
        AtomPointer::new(
            v[wal_key].as_str().unwrap().parse().unwrap(),
            v["offset"].as_u64().unwrap(),
        )
    };
    let records = m["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let format = Format::from_byte(r["format"].as_u64().unwrap() as u8).unwrap();
            let content = match format {
                Format::Raw => Content::Raw {
                    length: r["length"].as_u64().unwrap() as usize,
                    sha256: r["sha256"].as_str().unwrap().to_owned(),
                    head_hex: r["head_hex"].as_str().unwrap().to_owned(),
                },
                _ => Content::Value(r["value"].clone()),
            };
            Expected {
                ptr: ptr(r, "wal"),
                format,
                content,
            }
        })
        .collect::<Vec<_>>();
    assert_eq!(records.len(), 95, "the fixture lists 95 records");
    Manifest {
        root: ptr(&m["root"], "transaction_id"),
        records,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A copy of the fixture's space directory in a temp dir.
struct SpaceCopy {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl SpaceCopy {
    fn new(read_only: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("space");
        std::fs::create_dir(&dir).unwrap();
        for entry in std::fs::read_dir(Path::new(FIXTURE).join("space")).unwrap() {
            let entry = entry.unwrap();
            let to = dir.join(entry.file_name());
            std::fs::copy(entry.path(), &to).unwrap();
            if read_only {
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o444)).unwrap();
            }
        }
        if read_only {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        SpaceCopy { _tmp: tmp, dir }
    }

    /// Name → (size, sha256, mtime) of every file. The tests may run as root,
    /// which ignores permission bits, so "nothing was written" is proven by
    /// comparing snapshots, not only by the chmod.
    fn snapshot(&self) -> BTreeMap<String, (u64, String, SystemTime)> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                let bytes = std::fs::read(e.path()).unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    (
                        meta.len(),
                        hex(&Sha256::digest(&bytes)),
                        meta.modified().unwrap(),
                    ),
                )
            })
            .collect()
    }
}

impl Drop for SpaceCopy {
    fn drop(&mut self) {
        // Let the temp dir be removed.
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
    }
}

async fn open_read_only(
    dir: &Path,
    configure: impl FnOnce(StorageBuilder) -> StorageBuilder,
) -> Storage {
    configure(StorageBuilder::standalone(dir).read_only(true))
        .build()
        .await
        .unwrap()
}

/// Reads every manifest record and checks it against the manifest.
async fn verify_all(storage: &Storage, manifest: &Manifest) {
    for exp in &manifest.records {
        let (format, payload) = storage
            .get_record(exp.ptr)
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}", exp.ptr));
        assert_eq!(format, exp.format, "format of {}", exp.ptr);
        match &exp.content {
            Content::Raw {
                length,
                sha256,
                head_hex,
            } => {
                assert_eq!(payload.len(), *length, "length of {}", exp.ptr);
                assert_eq!(
                    &hex(&Sha256::digest(&payload)),
                    sha256,
                    "sha256 of {}",
                    exp.ptr
                );
                assert_eq!(
                    &hex(&payload[..16.min(payload.len())]),
                    head_hex,
                    "head of {}",
                    exp.ptr
                );
                assert_eq!(storage.get_bytes(exp.ptr).await.unwrap(), payload);
                let err = storage.get_atom::<Value>(exp.ptr).await.unwrap_err();
                assert!(
                    matches!(err, Error::WrongFormat { found: Format::Raw, offset, .. } if offset == exp.ptr.offset),
                    "get_atom on raw record {}: {err:?}",
                    exp.ptr
                );
            }
            Content::Value(value) => {
                let got: Value = storage
                    .get_atom(exp.ptr)
                    .await
                    .unwrap_or_else(|e| panic!("decoding {}: {e}", exp.ptr));
                assert_eq!(&got, value, "value of {}", exp.ptr);
            }
        }
    }
}

#[tokio::test]
async fn every_manifest_record_reads_back_read_only_and_nothing_is_written() {
    let manifest = load_manifest();
    let space = SpaceCopy::new(true);
    let before = space.snapshot();
    assert_eq!(before.len(), 5, "4 WALs and space_root: {before:?}");

    let storage = open_read_only(&space.dir, |b| b).await;
    verify_all(&storage, &manifest).await;

    // The root is the reference's `space_root`, with the defaults for the
    // fields the reference does not write.
    let root = storage
        .read_current_root()
        .await
        .unwrap()
        .expect("fixture has a root");
    assert_eq!(root.pointer, manifest.root);
    assert_eq!((root.sequence, root.term, root.checksum), (0, 0, None));
    // The root names a JSON atom of the manifest.
    let root_rec = manifest
        .records
        .iter()
        .find(|r| r.ptr == manifest.root)
        .unwrap();
    let Content::Value(root_value) = &root_rec.content else {
        panic!("root is not an atom")
    };
    assert_eq!(
        &storage.get_atom::<Value>(root.pointer).await.unwrap(),
        root_value
    );

    // Reads again, now from the page cache: same answers.
    let hits_before = storage.cache_stats().hits;
    verify_all(&storage, &manifest).await;
    assert!(
        storage.cache_stats().hits > hits_before,
        "{:?}",
        storage.cache_stats()
    );

    storage.close().await.unwrap();
    storage.close().await.unwrap();
    assert_eq!(
        space.snapshot(),
        before,
        "a read-only open changed the space"
    );
}

#[tokio::test]
async fn the_record_larger_than_a_page_reads_back() {
    let manifest = load_manifest();
    let big: Vec<&Expected> = manifest
        .records
        .iter()
        .filter(|r| matches!(r.content, Content::Raw { length, .. } if length > 1 << 20))
        .collect();
    assert_eq!(big.len(), 1, "the fixture has one record over 1 MiB");
    let big = big[0];
    let Content::Raw { length, sha256, .. } = &big.content else {
        unreachable!()
    };
    let space = SpaceCopy::new(true);
    for page_size in [1u64 << 20, 64 << 10, 4096] {
        let storage = open_read_only(&space.dir, |b| b.page_size(page_size)).await;
        let bytes = storage.get_bytes(big.ptr).await.unwrap();
        assert_eq!(bytes.len(), *length);
        assert!(
            big.ptr.offset % page_size + *length as u64 > page_size,
            "spans pages"
        );
        assert_eq!(
            &hex(&Sha256::digest(&bytes)),
            sha256,
            "page size {page_size}"
        );
        storage.close().await.unwrap();
    }
}

#[tokio::test]
async fn direct_reads_without_page_cache_match() {
    let manifest = load_manifest();
    let space = SpaceCopy::new(true);
    let storage = open_read_only(&space.dir, |b| b.page_cache_size(0)).await;
    verify_all(&storage, &manifest).await;
    let stats = storage.cache_stats();
    assert_eq!(
        (stats.inserts, stats.hits, stats.bytes),
        (0, 0, 0),
        "{stats:?}"
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn small_pages_and_a_tiny_cache_match() {
    let manifest = load_manifest();
    let space = SpaceCopy::new(true);
    // Records straddle page boundaries everywhere; the cache evicts constantly.
    for (page, cache) in [(64u64, 64 << 10), (4096, 8192), (4096, 64 << 20)] {
        let storage =
            open_read_only(&space.dir, |b| b.page_size(page).page_cache_size(cache)).await;
        verify_all(&storage, &manifest).await;
        storage.close().await.unwrap();
    }
}

#[tokio::test]
async fn read_only_storage_rejects_every_write() {
    let space = SpaceCopy::new(true);
    let before = space.snapshot();
    let storage = open_read_only(&space.dir, |b| b).await;
    let root = storage.read_current_root().await.unwrap().unwrap();

    assert!(matches!(
        storage.push_bytes(b"x").await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        storage
            .push_atom(&serde_json::json!({"a": 1}), AtomFormat::Json)
            .await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        storage.push_atom(&1u32, AtomFormat::MessagePack).await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        storage.begin_root_update().await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        storage.set_root(root.pointer).await,
        Err(Error::ReadOnly)
    ));
    let called = std::sync::atomic::AtomicBool::new(false);
    let r = storage
        .update_root(|_| {
            called.store(true, std::sync::atomic::Ordering::SeqCst);
            async move { Ok(root.pointer) }
        })
        .await;
    assert!(matches!(r, Err(Error::ReadOnly)), "{r:?}");
    assert!(!called.into_inner(), "closure ran on a read-only storage");
    assert!(matches!(storage.flush_wal().await, Err(Error::ReadOnly)));
    // Reads still work after the rejected writes.
    assert_eq!(
        storage.read_current_root().await.unwrap(),
        Some(root.clone())
    );
    assert!(!storage.get_bytes(root.pointer).await.unwrap().is_empty());
    storage.close().await.unwrap();
    assert_eq!(space.snapshot(), before);
    assert!(!space.dir.join("space_root.lock").exists());
}

#[tokio::test]
async fn read_only_open_of_a_missing_directory_fails_without_creating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = StorageBuilder::standalone(&missing)
        .read_only(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(!missing.exists());
}

#[tokio::test]
async fn scans_agree_with_the_manifest() {
    let manifest = load_manifest();
    let mut expected: HashMap<WalId, Vec<u64>> = HashMap::new();
    for r in &manifest.records {
        expected.entry(r.ptr.wal_id).or_default().push(r.ptr.offset);
    }
    let space = SpaceCopy::new(true);
    let storage = open_read_only(&space.dir, |b| b).await;
    let wals = storage.list_wals().await.unwrap();
    assert_eq!(wals.len(), 4, "{wals:?}");
    let mut empty = 0;
    for info in &wals {
        let mut last_progress = 0;
        let report = storage
            .scan_wal(info.id, |p| {
                assert!(p > last_progress, "progress goes forward");
                last_progress = p;
            })
            .await
            .unwrap();
        assert_eq!(report.wal, info.id);
        assert_eq!(report.len, info.len);
        assert!(report.is_clean(true), "{report:?}");
        assert!(report.corrupt.is_empty() && report.torn_tail.is_none());
        match expected.get(&info.id) {
            None => {
                empty += 1;
                assert_eq!(info.len, 0);
                assert_eq!(report.kind, None);
                assert_eq!(report.records, 0);
                assert!(report.offsets.is_empty());
                // An empty WAL has no record to read.
                for offset in [0, 5] {
                    let err = storage
                        .get_bytes(AtomPointer::new(info.id, offset))
                        .await
                        .unwrap_err();
                    assert!(
                        matches!(err, Error::OffsetOutOfRange { wal, offset: o, len: 0 } if wal == info.id && o == offset),
                        "{err:?}"
                    );
                }
            }
            Some(offsets) => {
                assert_eq!(report.kind, Some(WalKind::Reference));
                assert_eq!(
                    report.records,
                    offsets.len() as u64,
                    "records of {}",
                    info.id
                );
                let mut sorted = offsets.clone();
                sorted.sort_unstable();
                assert_eq!(report.offsets, sorted, "offsets of {}", info.id);
                assert_eq!(last_progress, info.len, "scan reached the end");
                let mut payload = 0;
                for off in &report.offsets {
                    payload += storage
                        .get_bytes(AtomPointer::new(info.id, *off))
                        .await
                        .unwrap()
                        .len() as u64;
                }
                assert_eq!(report.payload_bytes, payload);
            }
        }
    }
    assert_eq!(empty, 2, "the fixture has two empty WALs");
    let missing = WalId::new_random();
    assert!(matches!(
        storage.scan_wal(missing, |_| {}).await,
        Err(Error::WalNotFound { wal }) if wal == missing
    ));
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_writable_copy_continues_from_the_reference_root() {
    let manifest = load_manifest();
    let space = SpaceCopy::new(false);
    let storage = StorageBuilder::standalone(&space.dir)
        .build()
        .await
        .unwrap();
    let ptr = storage
        .push_atom(
            &serde_json::json!({"after": "reference", "text": "ñandú €"}),
            AtomFormat::Json,
        )
        .await
        .unwrap();
    assert!(
        manifest.records.iter().all(|r| r.ptr.wal_id != ptr.wal_id),
        "a new WAL"
    );
    let root = storage.set_root(ptr).await.unwrap();
    assert_eq!(root.sequence, 1, "the reference root counts as sequence 0");
    storage.close().await.unwrap();

    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(space.dir.join("space_root")).unwrap()).unwrap();
    assert_eq!(
        on_disk["transaction_id"],
        Value::String(ptr.wal_id.to_string())
    );
    assert_eq!(on_disk["offset"], Value::from(ptr.offset));

    let storage = open_read_only(&space.dir, |b| b).await;
    assert_eq!(storage.read_current_root().await.unwrap(), Some(root));
    let v: Value = storage.get_atom(ptr).await.unwrap();
    assert_eq!(v["text"], "ñandú €");
    verify_all(&storage, &manifest).await;
    let report = storage.scan_wal(ptr.wal_id, |_| {}).await.unwrap();
    assert_eq!(report.kind, Some(WalKind::Native));
    assert_eq!(
        (report.records, report.offsets.clone()),
        (1, vec![ptr.offset])
    );
    storage.close().await.unwrap();
}
