//! The storage API of DESIGN.md §4 and the bad-input behaviour of §8, on
//! real files in a temp dir and on the in-memory provider.
//!
//! Most checks are written once as `async fn check(backend)` and run on both
//! backends by `on_both!`, which makes one test per backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use protobase::WalStore;
use protobase::backends::memory::MemoryBlockProvider;
use protobase::record::{WAL_HEADER_LEN, WalKind};
use protobase::{
    AtomFormat, AtomPointer, Error, Format, FormatError, RootRecord, Storage, StorageBuilder,
    StorageConfig, WalId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Helpers

/// Which provider a check runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    File,
    Memory,
}

/// A space that can be opened any number of times (like reopening a
/// directory; memory spaces share their bytes between provider clones).
enum Space {
    File(tempfile::TempDir),
    Memory(MemoryBlockProvider),
}

impl Backend {
    fn space(self) -> Space {
        match self {
            Backend::File => Space::File(tempfile::tempdir().unwrap()),
            Backend::Memory => Space::Memory(MemoryBlockProvider::new()),
        }
    }
}

impl Space {
    fn dir(&self) -> Option<PathBuf> {
        match self {
            Space::File(d) => Some(d.path().join("space")),
            Space::Memory(_) => None,
        }
    }

    fn builder(&self) -> StorageBuilder {
        match self {
            Space::File(d) => StorageBuilder::standalone(d.path().join("space")),
            Space::Memory(p) => StorageBuilder::new().with_block_provider(Arc::new(p.clone())),
        }
    }

    async fn open(&self) -> Storage {
        self.builder().build().await.unwrap()
    }

    /// Overwrites bytes of a WAL behind the storage's back.
    async fn overwrite(&self, wal: WalId, offset: u64, bytes: &[u8]) {
        match self {
            Space::File(_) => {
                let path = self.dir().unwrap().join(wal.to_string());
                let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                f.write_all_at(bytes, offset).unwrap();
                f.sync_all().unwrap();
            }
            Space::Memory(p) => p
                .append(wal, offset, Bytes::copy_from_slice(bytes))
                .await
                .unwrap(),
        }
    }

    /// Every byte of a WAL as stored.
    async fn raw(&self, wal: WalId) -> Vec<u8> {
        match self {
            Space::File(_) => std::fs::read(self.dir().unwrap().join(wal.to_string())).unwrap(),
            Space::Memory(p) => p.read(wal, 0, u64::MAX).await.unwrap().to_vec(),
        }
    }
}

/// Runs `async fn $name(Backend)` once per backend, as `$name::file` and
/// `$name::memory`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$name(super::Backend::File).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::Backend::Memory).await
            }
        }
    )*};
}

/// Asserts that `$e` is `Err` matching the pattern, printing what it was.
macro_rules! assert_err {
    ($e:expr, $p:pat $(if $g:expr)?) => {
        match $e {
            Err($p) $(if $g)? => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                stringify!($e),
                stringify!($p $(if $g)?),
                other
            ),
        }
    };
}

/// Records (pointer and payload) shared between tasks.
type Shared = Arc<Mutex<Vec<(AtomPointer, Vec<u8>)>>>;

/// Bytes a native record with `payload` bytes occupies.
fn rec_len(payload: usize) -> u64 {
    WalKind::Native.record_len(payload as u64)
}

fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fastrand::Rng::with_seed(seed).fill(&mut v);
    v
}

fn seed() -> u64 {
    let s = std::env::var("PROTOBASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {s} (PROTOBASE_TEST_SEED={s} to replay)");
    s
}

async fn stored_len(storage: &Storage, wal: WalId) -> u64 {
    storage
        .list_wals()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.id == wal)
        .map(|w| w.len)
        .unwrap_or_else(|| panic!("WAL {wal} not listed"))
}

async fn assert_reads(storage: &Storage, expected: &[(AtomPointer, Vec<u8>)], when: &str) {
    for (ptr, data) in expected {
        let got = storage
            .get_bytes(*ptr)
            .await
            .unwrap_or_else(|e| panic!("{when}: reading {ptr}: {e}"));
        assert!(
            got == data[..],
            "{when}: {ptr} read {} bytes, wrong content",
            got.len()
        );
    }
}

// ---------------------------------------------------------------------------
// Bytes and atoms

on_both!(bytes_readable_before_flush_after_flush_and_after_reopen);
async fn bytes_readable_before_flush_after_flush_and_after_reopen(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let payloads: Vec<Vec<u8>> = [1usize, 2, 100, 4095, 70_000]
        .iter()
        .enumerate()
        .map(|(i, n)| pseudo_random_bytes(i as u64, *n))
        .collect();
    let mut written = Vec::new();
    for p in &payloads {
        let ptr = storage.push_bytes(p).await.unwrap();
        // Readable at once.
        assert_eq!(storage.get_bytes(ptr).await.unwrap(), p[..]);
        written.push((ptr, p.clone()));
    }
    // Layout: one WAL, the first record right after the header, the next
    // ones back to back.
    let wal = written[0].0.wal_id;
    assert_eq!(written[0].0.offset, WAL_HEADER_LEN);
    for pair in written.windows(2) {
        assert_eq!(pair[1].0.wal_id, wal);
        assert_eq!(
            pair[1].0.offset,
            pair[0].0.offset + rec_len(pair[0].1.len())
        );
    }
    let end = written.last().unwrap().0.offset + rec_len(payloads.last().unwrap().len());
    assert_eq!(
        storage.unsynced_bytes(),
        end,
        "everything is unsynced before a flush"
    );
    // Nothing reached the provider yet (1 MiB buffer): served from memory.
    assert_eq!(stored_len(&storage, wal).await, 0);
    assert_reads(&storage, &written, "before flush").await;

    storage.flush_wal().await.unwrap();
    assert_eq!(storage.unsynced_bytes(), 0);
    assert_eq!(stored_len(&storage, wal).await, end);
    assert_reads(&storage, &written, "after flush").await;
    // The stored bytes are the documented layout.
    let raw = space.raw(wal).await;
    for (ptr, data) in &written {
        let at = ptr.offset as usize;
        assert_eq!(
            u64::from_le_bytes(raw[at..at + 8].try_into().unwrap()),
            data.len() as u64
        );
        assert_eq!(raw[at + 8], 0, "raw format byte");
        assert_eq!(&raw[at + 9..at + 9 + data.len()], &data[..]);
        let crc = crc32c::crc32c(&raw[at + 8..at + 9 + data.len()]);
        let stored = u32::from_le_bytes(
            raw[at + 9 + data.len()..at + 13 + data.len()]
                .try_into()
                .unwrap(),
        );
        assert_eq!(stored, crc);
    }
    assert_eq!(&raw[..8], b"PROTOWAL");

    // Pushed after a flush, in the same WAL, readable before the next one.
    let late = storage.push_bytes(b"late").await.unwrap();
    assert_eq!(late, AtomPointer::new(wal, end));
    assert_eq!(&storage.get_bytes(late).await.unwrap()[..], b"late");
    written.push((late, b"late".to_vec()));
    storage.close().await.unwrap();

    // close flushed the unflushed record.
    let storage = space.open().await;
    assert_reads(&storage, &written, "after reopen").await;
    storage.close().await.unwrap();
    if let Space::Memory(p) = &space {
        // And it was made durable, not only handed over.
        let crashed = StorageBuilder::new()
            .with_block_provider(Arc::new(p.simulate_crash()))
            .build()
            .await
            .unwrap();
        assert_reads(&crashed, &written, "after a simulated crash").await;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    id: u64,
    name: String,
    tags: Vec<String>,
    nested: Nested,
    scores: BTreeMap<String, Vec<Option<i64>>>,
    kind: Kind,
    ratio: f64,
    child: Option<Box<Doc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    ok: bool,
    depth: u8,
    text: String,
    blob: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Leaf,
    Branch { children: Vec<u32> },
    Named(String),
}

fn sample_doc(id: u64) -> Doc {
    let child = Doc {
        id: id + 1000,
        name: "enfant — 子供 🦀".into(),
        tags: vec![],
        nested: Nested {
            ok: false,
            depth: 2,
            text: String::new(),
            blob: vec![],
        },
        scores: BTreeMap::new(),
        kind: Kind::Leaf,
        ratio: -0.0,
        child: None,
    };
    Doc {
        id,
        name: format!("ñandú € Ωμέγα 日本語 #{id}"),
        tags: vec!["ä".into(), "\"quoted\"\n\ttab".into(), "\u{0}nul".into()],
        nested: Nested {
            ok: true,
            depth: 1,
            text: "ß".repeat(50),
            blob: (0..=255u8).collect(),
        },
        scores: BTreeMap::from([
            ("α".to_string(), vec![Some(-1), None, Some(i64::MAX)]),
            ("b".to_string(), vec![]),
        ]),
        kind: if id.is_multiple_of(2) {
            Kind::Branch {
                children: vec![1, 2, u32::MAX],
            }
        } else {
            Kind::Named("ünïcødé".into())
        },
        ratio: 1.25e-3,
        child: Some(Box::new(child)),
    }
}

async fn check_atom<T>(storage: &Storage, ptr: AtomPointer, value: &T, format: AtomFormat)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let got: T = storage.get_atom(ptr).await.unwrap();
    assert_eq!(&got, value);
    let (fmt, payload) = storage.get_record(ptr).await.unwrap();
    match format {
        AtomFormat::Json => {
            assert_eq!(fmt, Format::Json);
            assert_eq!(payload, serde_json::to_vec(value).unwrap());
            assert!(std::str::from_utf8(&payload).is_ok());
        }
        AtomFormat::MessagePack => {
            assert_eq!(fmt, Format::MessagePack);
            assert_eq!(payload, rmp_serde::to_vec_named(value).unwrap());
        }
    }
    // Any atom decodes as a generic JSON value too.
    let generic: serde_json::Value = storage.get_atom(ptr).await.unwrap();
    assert_eq!(generic, serde_json::to_value(value).unwrap());
}

on_both!(json_and_messagepack_atoms_round_trip);
async fn json_and_messagepack_atoms_round_trip(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let docs: Vec<Doc> = (0..4).map(sample_doc).collect();
    let mut pushed = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let format = if i % 2 == 0 {
            AtomFormat::Json
        } else {
            AtomFormat::MessagePack
        };
        let ptr = storage.push_atom(doc, format).await.unwrap();
        check_atom(&storage, ptr, doc, format).await;
        pushed.push((ptr, doc.clone(), format));
    }
    // Unsized values and plain JSON values.
    let s = storage
        .push_atom("ñandú €", AtomFormat::Json)
        .await
        .unwrap();
    assert_eq!(storage.get_atom::<String>(s).await.unwrap(), "ñandú €");
    let v = serde_json::json!({"a": [1, {"b": null}], "ü": "€", "f": 0.1});
    let vp = storage
        .push_atom(&v, AtomFormat::MessagePack)
        .await
        .unwrap();
    assert_eq!(storage.get_atom::<serde_json::Value>(vp).await.unwrap(), v);

    storage.flush_wal().await.unwrap();
    for (ptr, doc, format) in &pushed {
        check_atom(&storage, *ptr, doc, *format).await;
    }
    storage.close().await.unwrap();

    let storage = space.open().await;
    for (ptr, doc, format) in &pushed {
        check_atom(&storage, *ptr, doc, *format).await;
    }
    assert_eq!(storage.get_atom::<serde_json::Value>(vp).await.unwrap(), v);
    assert_eq!(storage.get_atom::<String>(s).await.unwrap(), "ñandú €");
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Validation errors

on_both!(empty_and_oversized_data_are_rejected_and_write_nothing);
async fn empty_and_oversized_data_are_rejected_and_write_nothing(backend: Backend) {
    let space = backend.space();
    let storage = space.builder().blob_max_size(100).build().await.unwrap();
    let first = storage.push_bytes(b"x").await.unwrap();

    assert_err!(storage.push_bytes(b"").await, Error::EmptyData);
    assert_err!(
        storage.push_record(Format::Json, b"").await,
        Error::EmptyData
    );
    assert_err!(
        storage.push_bytes(&[7u8; 101]).await,
        Error::BlobTooLarge {
            size: 101,
            max: 100
        }
    );
    let big = "z".repeat(200);
    assert_err!(
        storage.push_atom(&big, AtomFormat::Json).await,
        Error::BlobTooLarge {
            size: 202,
            max: 100
        }
    );
    // Encoding failures are typed too: JSON maps need string keys.
    let bad = HashMap::from([((1u8, 2u8), 3u8)]);
    assert_err!(
        storage.push_atom(&bad, AtomFormat::Json).await,
        Error::Encoding {
            action: "encode",
            at: None,
            ..
        }
    );
    // Exactly the limit is fine, and the rejected pushes took no space.
    let limit = storage.push_bytes(&[9u8; 100]).await.unwrap();
    assert_eq!(
        limit,
        AtomPointer::new(first.wal_id, first.offset + rec_len(1))
    );
    assert_eq!(storage.get_bytes(limit).await.unwrap(), vec![9u8; 100]);
    storage.close().await.unwrap();
}

on_both!(use_after_close_is_an_error_and_close_is_idempotent);
async fn use_after_close_is_an_error_and_close_is_idempotent(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let ptr = storage.push_atom(&1u32, AtomFormat::Json).await.unwrap();
    let root = storage.set_root(ptr).await.unwrap();
    let clone = storage.clone();
    storage.close().await.unwrap();
    storage.close().await.unwrap();
    clone.close().await.unwrap();

    for s in [&storage, &clone] {
        assert_err!(s.push_bytes(b"x").await, Error::Closed);
        assert_err!(
            s.push_atom(&1u8, AtomFormat::MessagePack).await,
            Error::Closed
        );
        assert_err!(s.get_bytes(ptr).await, Error::Closed);
        assert_err!(s.get_record(ptr).await, Error::Closed);
        assert_err!(s.get_atom::<u32>(ptr).await, Error::Closed);
        assert_err!(s.flush_wal().await, Error::Closed);
        assert_err!(s.read_current_root().await, Error::Closed);
        assert_err!(s.begin_root_update().await, Error::Closed);
        assert_err!(s.set_root(ptr).await, Error::Closed);
        assert_err!(
            s.update_root(|_| async move { Ok(ptr) }).await,
            Error::Closed
        );
        assert_err!(s.list_wals().await, Error::Closed);
        assert_err!(s.scan_wal(ptr.wal_id, |_| {}).await, Error::Closed);
        assert_eq!(Error::Closed.kind(), protobase::ErrorKind::Closed);
    }

    // Nothing was lost by closing.
    let storage = space.open().await;
    assert_eq!(storage.read_current_root().await.unwrap(), Some(root));
    assert_eq!(storage.get_atom::<u32>(ptr).await.unwrap(), 1);
    storage.close().await.unwrap();
}

on_both!(wrong_format_and_wrong_type_are_typed_errors);
async fn wrong_format_and_wrong_type_are_typed_errors(backend: Backend) {
    async fn check(storage: &Storage, raw: AtomPointer, json: AtomPointer, mp: AtomPointer) {
        assert_err!(
            storage.get_atom::<serde_json::Value>(raw).await,
            Error::WrongFormat { found: Format::Raw, wal, offset, .. }
                if wal == raw.wal_id && offset == raw.offset
        );
        assert_err!(
            storage.get_atom::<Doc>(raw).await,
            Error::WrongFormat {
                found: Format::Raw,
                ..
            }
        );
        // get_bytes gives any record's payload.
        assert_eq!(
            &storage.get_bytes(raw).await.unwrap()[..],
            br#"{"looks": "like json"}"#
        );
        for (ptr, id) in [(json, 1), (mp, 2)] {
            assert_err!(
                storage.get_atom::<Vec<u32>>(ptr).await,
                Error::Encoding { action: "decode", at: Some(at), .. } if at == (ptr.wal_id, ptr.offset)
            );
            assert_err!(
                storage.get_atom::<u64>(ptr).await,
                Error::Encoding {
                    action: "decode",
                    ..
                }
            );
            assert_eq!(storage.get_atom::<Doc>(ptr).await.unwrap(), sample_doc(id));
        }
    }
    let space = backend.space();
    let storage = space.open().await;
    let raw = storage
        .push_bytes(br#"{"looks": "like json"}"#)
        .await
        .unwrap();
    let json = storage
        .push_atom(&sample_doc(1), AtomFormat::Json)
        .await
        .unwrap();
    let mp = storage
        .push_atom(&sample_doc(2), AtomFormat::MessagePack)
        .await
        .unwrap();
    check(&storage, raw, json, mp).await;
    storage.close().await.unwrap();
    let storage = space.open().await;
    check(&storage, raw, json, mp).await;
    storage.close().await.unwrap();
}

on_both!(bad_pointers_are_typed_errors);
async fn bad_pointers_are_typed_errors(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let a = storage.push_bytes(b"first").await.unwrap();
    let b = storage.push_bytes(b"second").await.unwrap();
    let end = b.offset + rec_len(6);
    let wal = a.wal_id;
    let missing = WalId::new_random();

    // `check` runs in three states: records in memory, flushed, reopened.
    async fn check(storage: &Storage, wal: WalId, end: u64, missing: WalId, when: &str) {
        eprintln!("checking bad pointers {when}");
        assert_err!(
            storage.get_bytes(AtomPointer::new(missing, 32)).await,
            Error::WalNotFound { wal } if wal == missing
        );
        assert_err!(
            storage.get_atom::<u8>(AtomPointer::new(missing, 0)).await,
            Error::WalNotFound { .. }
        );
        for offset in [end, end + 10, (1 << 40) + 7] {
            assert_err!(
                storage.get_bytes(AtomPointer::new(wal, offset)).await,
                Error::OffsetOutOfRange { wal: w, offset: o, len } if w == wal && o == offset && len == end
            );
        }
        for offset in [0, 1, 8, 31] {
            assert_err!(
                storage.get_bytes(AtomPointer::new(wal, offset)).await,
                Error::Corrupt { wal: w, offset: o, source: FormatError::InsideHeader } if w == wal && o == offset
            );
        }
        assert!(Error::WalNotFound { wal: missing }.is_not_found());
    }
    check(&storage, wal, end, missing, "in memory").await;
    storage.flush_wal().await.unwrap();
    check(&storage, wal, end, missing, "after flush").await;
    storage.close().await.unwrap();
    for cache in [256 << 20, 0] {
        let storage = space
            .builder()
            .page_cache_size(cache)
            .build()
            .await
            .unwrap();
        check(
            &storage,
            wal,
            end,
            missing,
            &format!("after reopen, cache {cache}"),
        )
        .await;
        assert_eq!(&storage.get_bytes(a).await.unwrap()[..], b"first");
        assert_eq!(&storage.get_bytes(b).await.unwrap()[..], b"second");
        storage.close().await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// Corrupt data on the medium

const PAYLOADS: [&[u8]; 3] = [b"first record", &[0xAB; 5000], b"third record, the last"];

/// A closed space holding the three `PAYLOADS` records in one WAL.
async fn three_records(backend: Backend) -> (Space, Vec<AtomPointer>) {
    let space = backend.space();
    let storage = space.open().await;
    let mut ptrs = Vec::new();
    for p in PAYLOADS {
        ptrs.push(storage.push_bytes(p).await.unwrap());
    }
    storage.close().await.unwrap();
    (space, ptrs)
}

/// Reopens with and without the page cache, read-only and for writing,
/// and checks that `ptrs[bad]` fails as `expect` says while the other
/// records still read. (A damaged WAL that was closed cleanly is left as
/// it is by a writer: see `protobase::wal_resume`.)
async fn check_corrupt(
    space: &Space,
    ptrs: &[AtomPointer],
    bad: usize,
    expect: impl Fn(&FormatError) -> bool,
) {
    check_corrupt_opened(space, ptrs, bad, expect, &[true, false]).await
}

/// [`check_corrupt`] with the given `read_only` modes.
async fn check_corrupt_opened(
    space: &Space,
    ptrs: &[AtomPointer],
    bad: usize,
    expect: impl Fn(&FormatError) -> bool,
    modes: &[bool],
) {
    for (cache, read_only) in [256 << 20, 0]
        .into_iter()
        .flat_map(|c| modes.iter().map(move |m| (c, *m)))
    {
        let storage = space
            .builder()
            .page_cache_size(cache)
            .read_only(read_only)
            .build()
            .await
            .unwrap();
        // Twice: the second read may come from the page cache.
        for _ in 0..2 {
            match storage.get_bytes(ptrs[bad]).await {
                Err(Error::Corrupt {
                    wal,
                    offset,
                    source,
                }) if wal == ptrs[bad].wal_id && offset == ptrs[bad].offset && expect(&source) => {
                    assert_eq!(
                        Error::Corrupt {
                            wal,
                            offset,
                            source
                        }
                        .kind(),
                        protobase::ErrorKind::Data
                    );
                }
                other => {
                    panic!("cache {cache}, read-only {read_only}: record {bad}: got {other:?}")
                }
            }
        }
        for (i, ptr) in ptrs.iter().enumerate() {
            if i != bad {
                assert_eq!(
                    storage.get_bytes(*ptr).await.unwrap(),
                    PAYLOADS[i],
                    "record {i}"
                );
            }
        }
        storage.close().await.unwrap();
    }
}

/// Scans `wal` through a read-only storage (a writer would fence a torn
/// tail it finds).
async fn scan(space: &Space, wal: WalId) -> protobase::scan::WalReport {
    let storage = space.builder().read_only(true).build().await.unwrap();
    let report = storage.scan_wal(wal, |_| {}).await.unwrap();
    storage.close().await.unwrap();
    report
}

on_both!(flipped_payload_byte_is_a_bad_crc);
async fn flipped_payload_byte_is_a_bad_crc(backend: Backend) {
    let (space, ptrs) = three_records(backend).await;
    let wal = ptrs[1].wal_id;
    let at = ptrs[1].offset + 9 + 1234;
    let byte = space.raw(wal).await[at as usize];
    space.overwrite(wal, at, &[byte ^ 0x01]).await;
    check_corrupt(
        &space,
        &ptrs,
        1,
        |e| matches!(e, FormatError::BadCrc { stored, computed } if stored != computed),
    )
    .await;
    let report = scan(&space, wal).await;
    assert_eq!(report.offsets, vec![ptrs[0].offset, ptrs[2].offset]);
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].offset, ptrs[1].offset);
    assert!(matches!(
        report.corrupt[0].error,
        FormatError::BadCrc { .. }
    ));
    assert!(!report.is_clean(false));
}

on_both!(unknown_format_byte_with_a_valid_crc);
async fn unknown_format_byte_with_a_valid_crc(backend: Backend) {
    let (space, ptrs) = three_records(backend).await;
    let wal = ptrs[1].wal_id;
    let start = ptrs[1].offset as usize;
    let len = PAYLOADS[1].len();
    let mut rec = space.raw(wal).await[start..start + 13 + len].to_vec();
    rec[8] = 7;
    // Only the format is wrong: fix the CRC up.
    let crc = crc32c::crc32c(&rec[8..9 + len]);
    rec[9 + len..].copy_from_slice(&crc.to_le_bytes());
    space.overwrite(wal, start as u64, &rec).await;
    check_corrupt(&space, &ptrs, 1, |e| *e == FormatError::UnknownFormat(7)).await;
    let report = scan(&space, wal).await;
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].error, FormatError::UnknownFormat(7));
    assert_eq!(report.records, 2);
}

on_both!(oversized_length_prefix_is_rejected_before_allocating);
async fn oversized_length_prefix_is_rejected_before_allocating(backend: Backend) {
    let (space, ptrs) = three_records(backend).await;
    let wal = ptrs[1].wal_id;
    space
        .overwrite(wal, ptrs[1].offset, &(1u64 << 62).to_le_bytes())
        .await;
    let limit = StorageConfig::default().blob_max_size;
    check_corrupt(&space, &ptrs, 1, |e| {
        *e == FormatError::LengthTooLarge {
            length: 1 << 62,
            limit,
        }
    })
    .await;
    // The scanner cannot step over it: everything from there on is invalid,
    // and since non-zero bytes follow, it is corruption, not a torn tail.
    let report = scan(&space, wal).await;
    assert_eq!(report.records, 1);
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert!(!report.is_clean(false), "{report:?}");
}

on_both!(corrupt_wal_header);
async fn corrupt_wal_header(backend: Backend) {
    let (space, ptrs) = three_records(backend).await;
    let wal = ptrs[0].wal_id;
    let byte = space.raw(wal).await[20];
    space.overwrite(wal, 20, &[byte ^ 0x80]).await;
    for cache in [256 << 20, 0] {
        let storage = space
            .builder()
            .page_cache_size(cache)
            .build()
            .await
            .unwrap();
        for ptr in &ptrs {
            assert_err!(
                storage.get_bytes(*ptr).await,
                Error::Corrupt { wal: w, source: FormatError::BadCrc { .. }, .. } if w == wal
            );
        }
        storage.close().await.unwrap();
    }
    // Three records sit behind the bad header: that is corruption, not a
    // torn tail left by a crash.
    let report = scan(&space, wal).await;
    assert!(!report.is_clean(false), "{report:?}");
    assert_eq!(report.records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_record_file() {
    for cut in [13, 4, 9 + 22] {
        let (space, ptrs) = three_records(Backend::File).await;
        let wal = ptrs[2].wal_id;
        let path = space.dir().unwrap().join(wal.to_string());
        let new_len = ptrs[2].offset + cut;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(new_len)
            .unwrap();
        check_corrupt_opened(
            &space,
            &ptrs,
            2,
            |e| matches!(e, FormatError::Truncated { available, .. } if *available == cut),
            &[true],
        )
        .await;
        // Reading the truncated record changed nothing on disk.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), new_len);
        let report = scan(&space, wal).await;
        assert!(report.corrupt.is_empty(), "{report:?}");
        assert_eq!(
            report.torn_tail.as_ref().map(|t| t.offset),
            Some(ptrs[2].offset)
        );
        assert!(report.is_clean(false) && !report.is_clean(true));
        assert_eq!(report.records, 2);

        // Without its close mark the WAL looks like a crashed writer's: a
        // writer continues it behind a fence over the torn record, never
        // reusing its offset, so the old pointer reads an error, not the
        // new record.
        let storage = space.open().await;
        let next = storage.push_bytes(b"after the fence").await.unwrap();
        assert_eq!(next.wal_id, wal, "cut {cut}: the WAL was not continued");
        assert!(next.offset >= new_len, "cut {cut}: offset {next} reused");
        storage.close().await.unwrap();
        let storage = space.builder().read_only(true).build().await.unwrap();
        assert_err!(
            storage.get_bytes(ptrs[2]).await,
            Error::Corrupt { wal: w, .. } if w == wal
        );
        for i in 0..2 {
            assert_eq!(storage.get_bytes(ptrs[i]).await.unwrap(), PAYLOADS[i]);
        }
        assert_eq!(
            storage.get_bytes(next).await.unwrap(),
            &b"after the fence"[..]
        );
        storage.close().await.unwrap();
        let report = scan(&space, wal).await;
        assert!(report.is_clean(true), "cut {cut}: {report:?}");
        assert_eq!(report.records, 3, "cut {cut}: {report:?}");
    }
}

// ---------------------------------------------------------------------------
// Builder

#[tokio::test]
async fn builder_rejects_invalid_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never-created");
    let cases: [(&str, StorageBuilder); 5] = [
        (
            "buffer_size",
            StorageBuilder::standalone(&dir).buffer_size(0),
        ),
        ("page_size", StorageBuilder::standalone(&dir).page_size(63)),
        (
            "blob_max_size",
            StorageBuilder::standalone(&dir).blob_max_size(0),
        ),
        (
            "max_wal_size",
            StorageBuilder::standalone(&dir).max_wal_size(WAL_HEADER_LEN),
        ),
        ("buffer_size", StorageBuilder::in_memory().buffer_size(0)),
    ];
    for (field, builder) in cases {
        let err = builder.build().await.unwrap_err();
        assert!(
            matches!(err, Error::Invalid { what, .. } if what == field),
            "{field}: {err:?}"
        );
        assert_eq!(err.kind(), protobase::ErrorKind::Invalid);
    }
    let err = StorageBuilder::new().build().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                what: "builder",
                ..
            }
        ),
        "{err:?}"
    );
    let config = StorageConfig::default().with_page_size(0);
    let err = StorageBuilder::in_memory()
        .with_config(config)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                what: "page_size",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!dir.exists(), "an invalid configuration created the space");
    // The smallest valid values work.
    let s = StorageBuilder::standalone(&dir)
        .buffer_size(1)
        .page_size(64)
        .blob_max_size(1)
        .max_wal_size(WAL_HEADER_LEN + 1)
        .build()
        .await
        .unwrap();
    let p = s.push_bytes(b"a").await.unwrap();
    let q = s.push_bytes(b"b").await.unwrap();
    assert_ne!(p.wal_id, q.wal_id, "every record overflows a 33-byte WAL");
    assert_eq!(&s.get_bytes(p).await.unwrap()[..], b"a");
    assert_eq!(&s.get_bytes(q).await.unwrap()[..], b"b");
    s.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// WAL rollover and background writes

on_both!(wal_rollover);
async fn wal_rollover(backend: Backend) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let space = backend.space();
    let max = 4096;
    let storage = space.builder().max_wal_size(max).build().await.unwrap();
    let mut written = Vec::new();
    for i in 0..300u64 {
        // One record larger than a whole WAL: it gets a WAL of its own.
        let len = if i == 150 { 10_000 } else { rng.usize(1..300) };
        let data = pseudo_random_bytes(seed ^ i, len);
        let ptr = storage.push_bytes(&data).await.unwrap();
        assert_eq!(storage.get_bytes(ptr).await.unwrap(), data);
        written.push((ptr, data));
    }
    assert_reads(&storage, &written, "before flush").await;
    let big_wal = written[150].0.wal_id;
    assert_eq!(written[150].0.offset, WAL_HEADER_LEN);
    assert_ne!(written[149].0.wal_id, big_wal);
    assert_ne!(written[151].0.wal_id, big_wal);
    storage.flush_wal().await.unwrap();
    assert_reads(&storage, &written, "after flush").await;
    let wals = storage.list_wals().await.unwrap();
    assert!(wals.len() >= 10, "{} WALs", wals.len());
    let used: HashSet<WalId> = written.iter().map(|(p, _)| p.wal_id).collect();
    assert_eq!(used, wals.iter().map(|w| w.id).collect::<HashSet<_>>());
    for w in &wals {
        if w.id == big_wal {
            assert_eq!(w.len, WAL_HEADER_LEN + rec_len(10_000));
        } else {
            assert!(w.len <= max, "{w:?}");
        }
    }
    storage.close().await.unwrap();

    let storage = space.open().await;
    assert_reads(&storage, &written, "after reopen").await;
    let mut total = 0;
    for w in storage.list_wals().await.unwrap() {
        let report = storage.scan_wal(w.id, |_| {}).await.unwrap();
        assert!(report.is_clean(true), "{report:?}");
        assert_eq!(report.kind, Some(WalKind::Native));
        let mut expected: Vec<u64> = written
            .iter()
            .filter(|(p, _)| p.wal_id == w.id)
            .map(|(p, _)| p.offset)
            .collect();
        expected.sort_unstable();
        assert_eq!(report.offsets, expected);
        total += report.records;
    }
    assert_eq!(total, written.len() as u64);
    storage.close().await.unwrap();
}

on_both!(small_buffer_background_writes_with_concurrent_reader);
async fn small_buffer_background_writes_with_concurrent_reader(backend: Backend) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let space = backend.space();
    let buffer = 256;
    let storage = space
        .builder()
        .buffer_size(buffer)
        .page_size(1024)
        .max_wal_size(256 << 10)
        .build()
        .await
        .unwrap();
    let written: Shared = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    // A reader re-reads random records while they move from memory to the
    // provider.
    let reader = {
        let (storage, written, done, reads) = (
            storage.clone(),
            written.clone(),
            done.clone(),
            reads.clone(),
        );
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1));
            while !done.load(Ordering::Acquire) {
                let pick = {
                    let w = written.lock().unwrap();
                    (!w.is_empty()).then(|| w[rng.usize(..w.len())].clone())
                };
                if let Some((ptr, data)) = pick {
                    let got = storage.get_bytes(ptr).await.unwrap();
                    assert!(got == data[..], "concurrent read of {ptr}");
                    reads.fetch_add(1, Ordering::AcqRel);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for i in 0..600u64 {
        let len = if i % 50 == 7 {
            rng.usize(300..3000)
        } else {
            rng.usize(1..200)
        };
        let data = pseudo_random_bytes(seed ^ (i << 20), len);
        let ptr = storage.push_bytes(&data).await.unwrap();
        assert_eq!(storage.get_bytes(ptr).await.unwrap(), data);
        written.lock().unwrap().push((ptr, data));
        if i % 50 == 0 {
            // Let the reader catch up a little so reads really interleave
            // with the writes.
            let target = reads.load(Ordering::Acquire) + 5;
            while reads.load(Ordering::Acquire) < target && !reader.is_finished() {
                tokio::task::yield_now().await;
            }
        }
    }
    done.store(true, Ordering::Release);
    reader.await.unwrap();
    assert!(reads.load(Ordering::Acquire) >= 60);
    let written = std::mem::take(&mut *written.lock().unwrap());
    // Without any flush, most bytes already reached the provider: full
    // buffers are written in the background and memory use stays bounded.
    let tail = written.last().unwrap().0;
    let stored = stored_len(&storage, tail.wal_id).await;
    let tail_end = tail.offset + rec_len(written.last().unwrap().1.len());
    assert!(stored > 0, "no background write happened");
    assert!(
        storage.unsynced_bytes() > 0 && tail_end - stored < 64 * buffer as u64 + 3000,
        "stored {stored} of {tail_end}"
    );
    assert_reads(&storage, &written, "before flush").await;
    storage.flush_wal().await.unwrap();
    assert_eq!(storage.unsynced_bytes(), 0);
    assert_reads(&storage, &written, "after flush").await;
    storage.close().await.unwrap();
    let storage = space.builder().page_size(1024).build().await.unwrap();
    assert_reads(&storage, &written, "after reopen").await;
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Roots

on_both!(root_lifecycle);
async fn root_lifecycle(backend: Backend) {
    let space = backend.space();
    let storage = space.builder().node_id("node-a").build().await.unwrap();
    assert_eq!(storage.read_current_root().await.unwrap(), None);

    let p1 = storage.push_atom(&"one", AtomFormat::Json).await.unwrap();
    let r1 = storage.set_root(p1).await.unwrap();
    assert_eq!(
        (r1.sequence, r1.pointer, r1.writer.as_deref()),
        (1, p1, Some("node-a"))
    );
    assert_eq!(storage.read_current_root().await.unwrap(), Some(r1.clone()));

    let r2 = storage
        .update_root(|current| {
            let storage = storage.clone();
            let r1 = r1.clone();
            async move {
                assert_eq!(current, Some(r1));
                storage.push_atom(&"two", AtomFormat::MessagePack).await
            }
        })
        .await
        .unwrap();
    assert_eq!(r2.sequence, 2);

    let update = storage.begin_root_update().await.unwrap();
    assert_eq!(update.current(), Some(&r2));
    let p3 = storage.push_bytes(b"three").await.unwrap();
    let r3 = update.publish(p3).await.unwrap();
    assert_eq!(r3.sequence, 3);
    assert_eq!(r3.pointer, p3);
    assert_eq!(storage.read_current_root().await.unwrap(), Some(r3.clone()));

    if let Space::Memory(p) = &space {
        // A root is published only once what it reaches is durable: after a
        // crash (unsynced bytes lost) the root and its atom are intact.
        let crashed = StorageBuilder::new()
            .with_block_provider(Arc::new(p.simulate_crash()))
            .build()
            .await
            .unwrap();
        assert_eq!(crashed.read_current_root().await.unwrap(), Some(r3.clone()));
        assert_eq!(&crashed.get_bytes(p3).await.unwrap()[..], b"three");
        assert_eq!(crashed.get_atom::<String>(p1).await.unwrap(), "one");
    }
    storage.close().await.unwrap();
    if let Some(dir) = space.dir() {
        // After `close`, the reference's `space_root` is exactly the root.
        let text = std::fs::read(dir.join("space_root")).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(json["transaction_id"], p3.wal_id.to_string());
        assert_eq!(json["offset"], p3.offset);
        assert_eq!(json["sequence"], 3);
        assert_eq!(RootRecord::from_json(&text).unwrap(), r3);
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    let storage = space.open().await;
    assert_eq!(storage.read_current_root().await.unwrap(), Some(r3.clone()));
    assert_eq!(storage.get_atom::<String>(r2.pointer).await.unwrap(), "two");
    let r4 = storage.set_root(p1).await.unwrap();
    assert_eq!((r4.sequence, r4.writer.as_deref()), (4, Some("local")));
    storage.close().await.unwrap();
}

on_both!(dropped_aborted_or_failed_updates_publish_nothing);
async fn dropped_aborted_or_failed_updates_publish_nothing(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let p = storage.push_bytes(b"base").await.unwrap();
    let base = storage.set_root(p).await.unwrap();
    let on_disk = || {
        space.dir().map(|d| {
            let file = |name| std::fs::read(d.join(name)).unwrap_or_default();
            (file("space_root"), file("space_root.log"))
        })
    };
    let disk_before = on_disk();

    let unpublished = storage.push_bytes(b"never published").await.unwrap();
    let update = storage.begin_root_update().await.unwrap();
    assert_eq!(update.current(), Some(&base));
    drop(update);
    let update = storage.begin_root_update().await.unwrap();
    assert_eq!(update.current(), Some(&base));
    update.abort().await;
    let err = storage
        .update_root(|_| async move {
            Err::<AtomPointer, _>(Error::invalid("test", "the closure gave up"))
        })
        .await;
    assert_err!(err, Error::Invalid { what: "test", .. });

    assert_eq!(
        storage.read_current_root().await.unwrap(),
        Some(base.clone())
    );
    assert_eq!(on_disk(), disk_before);
    assert_ne!(base.pointer, unpublished);
    // A later update still works and continues the sequence.
    let next = storage.set_root(p).await.unwrap();
    assert_eq!(next.sequence, base.sequence + 1);
    storage.close().await.unwrap();
    let storage = space.open().await;
    assert_eq!(storage.read_current_root().await.unwrap(), Some(next));
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Concurrency

on_both!(concurrent_pushers_and_readers);
async fn concurrent_pushers_and_readers(backend: Backend) {
    let seed = seed();
    let space = backend.space();
    let buffer = 4096;
    let storage = space
        .builder()
        .buffer_size(buffer)
        .page_size(8192)
        .max_wal_size(256 << 10)
        .build()
        .await
        .unwrap();
    let shared: Shared = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let (storage, shared) = (storage.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ (t << 32));
            let mut mine = Vec::new();
            for i in 0..40u64 {
                let len = match rng.u8(..10) {
                    0 => rng.usize(buffer..3 * buffer),
                    1..=3 => rng.usize(500..buffer),
                    _ => rng.usize(1..200),
                };
                let data = pseudo_random_bytes(seed ^ (t << 32) ^ i, len);
                let ptr = storage.push_bytes(&data).await.unwrap();
                assert_eq!(
                    storage.get_bytes(ptr).await.unwrap(),
                    data,
                    "own read of {ptr}"
                );
                shared.lock().unwrap().push((ptr, data.clone()));
                mine.push((ptr, data));
                // Read someone's record, wherever it is by now.
                let pick = {
                    let s = shared.lock().unwrap();
                    s[rng.usize(..s.len())].clone()
                };
                assert_eq!(
                    storage.get_bytes(pick.0).await.unwrap(),
                    pick.1,
                    "read of {}",
                    pick.0
                );
                if rng.u8(..16) == 0 {
                    storage.flush_wal().await.unwrap();
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 32 * 40);
    let distinct: HashSet<AtomPointer> = all.iter().map(|(p, _)| *p).collect();
    assert_eq!(distinct.len(), all.len(), "two pushes got the same pointer");
    assert_reads(&storage, &all, "after the tasks").await;
    storage.flush_wal().await.unwrap();
    assert_reads(&storage, &all, "after flush").await;
    storage.close().await.unwrap();

    let storage = space.open().await;
    assert_reads(&storage, &all, "after reopen").await;
    let mut total = 0;
    for w in storage.list_wals().await.unwrap() {
        let report = storage.scan_wal(w.id, |_| {}).await.unwrap();
        assert!(report.is_clean(true), "{report:?}");
        total += report.records;
    }
    assert_eq!(total, all.len() as u64);
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_records_survive_a_simulated_crash() {
    // Background writes, rollovers and flushes all overlap; once the last
    // flush returns, a crash (unsynced bytes lost) must lose nothing.
    let seed = seed();
    let provider = MemoryBlockProvider::new();
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(provider.clone()))
        .buffer_size(512)
        .max_wal_size(8192)
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ t);
            let mut mine = Vec::new();
            for i in 0..60u64 {
                let data = pseudo_random_bytes(seed ^ (t << 32) ^ i, rng.usize(1..1500));
                mine.push((storage.push_bytes(&data).await.unwrap(), data));
                if rng.u8(..8) == 0 {
                    storage.flush_wal().await.unwrap();
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    storage.flush_wal().await.unwrap();
    assert_eq!(storage.unsynced_bytes(), 0);
    let crashed = StorageBuilder::new()
        .with_block_provider(Arc::new(provider.simulate_crash()))
        .build()
        .await
        .unwrap();
    assert_reads(&crashed, &all, "after a crash following flush_wal").await;
    storage.close().await.unwrap();
}

#[tokio::test]
async fn corrupt_or_empty_root_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("space");
    let storage = StorageBuilder::standalone(&dir).build().await.unwrap();
    let ptr = storage.push_bytes(b"x").await.unwrap();
    let root = storage.set_root(ptr).await.unwrap();
    storage.close().await.unwrap();
    let path = dir.join("space_root");
    let good = std::fs::read_to_string(&path).unwrap();

    // A root whose fields do not match its checksum.
    let tampered = good.replace(&format!("\"offset\":{}", ptr.offset), "\"offset\":33");
    assert_ne!(tampered, good);
    std::fs::write(&path, &tampered).unwrap();
    assert_err!(
        StorageBuilder::standalone(&dir).build().await,
        Error::CorruptRoot {
            source: FormatError::BadCrc { .. },
            ..
        }
    );
    // Not a root at all.
    std::fs::write(&path, b"{\"transaction_id\": 12").unwrap();
    let err = StorageBuilder::standalone(&dir).build().await.unwrap_err();
    assert!(
        matches!(&err, Error::CorruptRoot { location, source: FormatError::BadRoot(_) } if location.ends_with("space_root")),
        "{err:?}"
    );
    assert_eq!(err.kind(), protobase::ErrorKind::Data);
    // An empty (or blank) root file is no root: the root log's root is the
    // root (the reference's file is a copy of it)...
    std::fs::write(&path, b"  \n").unwrap();
    let storage = StorageBuilder::standalone(&dir).build().await.unwrap();
    assert_eq!(
        storage.read_current_root().await.unwrap(),
        Some(root.clone())
    );
    storage.close().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        good,
        "close rewrites the copy"
    );
    // ...and without a log (a space the reference wrote), no root yet.
    std::fs::remove_file(dir.join("space_root.log")).unwrap();
    std::fs::write(&path, b"  \n").unwrap();
    let storage = StorageBuilder::standalone(&dir).build().await.unwrap();
    assert_eq!(storage.read_current_root().await.unwrap(), None);
    // A corrupt root appearing while open is reported by reads of it.
    std::fs::write(&path, &tampered).unwrap();
    assert_err!(storage.read_current_root().await, Error::CorruptRoot { .. });
    std::fs::write(&path, &good).unwrap();
    assert_eq!(storage.read_current_root().await.unwrap(), Some(root));
    storage.close().await.unwrap();
}

/// What each root atom of the linearity tests records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Link {
    prev_seq: Option<u64>,
    prev_ptr: Option<AtomPointer>,
    writer: String,
}

/// One root update whose atom embeds the root it builds on; also checks,
/// inside the critical section, that the previous atom is readable and
/// consistent.
async fn linked_update(storage: &Storage, writer: String) -> RootRecord {
    let s = storage.clone();
    storage
        .update_root(move |current| async move {
            if let Some(cur) = &current {
                let prev: Link = s.get_atom(cur.pointer).await?;
                assert_eq!(prev.prev_seq, (cur.sequence > 1).then(|| cur.sequence - 1));
            }
            let link = Link {
                prev_seq: current.as_ref().map(|r| r.sequence),
                prev_ptr: current.as_ref().map(|r| r.pointer),
                writer,
            };
            s.push_atom(&link, AtomFormat::Json).await
        })
        .await
        .unwrap()
}

/// The published roots form one chain: sequences 1..=n, each atom naming
/// its predecessor.
async fn assert_linear(storage: &Storage, mut roots: Vec<RootRecord>) {
    let n = roots.len() as u64;
    roots.sort_by_key(|r| r.sequence);
    let seqs: Vec<u64> = roots.iter().map(|r| r.sequence).collect();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "sequences are not 1..={n}"
    );
    let mut prev: Option<&RootRecord> = None;
    for r in &roots {
        let link: Link = storage.get_atom(r.pointer).await.unwrap();
        assert_eq!(
            link.prev_seq,
            prev.map(|p| p.sequence),
            "root {} built on a stale root",
            r.sequence
        );
        assert_eq!(
            link.prev_ptr,
            prev.map(|p| p.pointer),
            "root {}",
            r.sequence
        );
        prev = Some(r);
    }
    assert_eq!(
        storage.read_current_root().await.unwrap().as_ref(),
        roots.last()
    );
}

on_both!(concurrent_root_updates_are_linear);
async fn concurrent_root_updates_are_linear(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            let mut roots = Vec::new();
            for i in 0..6 {
                roots.push(linked_update(&storage, format!("task {t} #{i}")).await);
            }
            roots
        }));
    }
    let mut roots = Vec::new();
    for t in tasks {
        roots.extend(t.await.unwrap());
    }
    assert_eq!(roots.len(), 96);
    assert_linear(&storage, roots.clone()).await;
    storage.close().await.unwrap();
    let storage = space.open().await;
    assert_linear(&storage, roots).await;
    storage.close().await.unwrap();
}

on_both!(two_instances_on_one_space_stay_linear);
async fn two_instances_on_one_space_stay_linear(backend: Backend) {
    let space = backend.space();
    let a = space.builder().node_id("a").build().await.unwrap();
    let b = space.builder().node_id("b").build().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        for (name, storage) in [("a", &a), ("b", &b)] {
            let storage = storage.clone();
            tasks.push(tokio::spawn(async move {
                let mut roots = Vec::new();
                for i in 0..5 {
                    roots.push(linked_update(&storage, format!("{name} task {t} #{i}")).await);
                }
                roots
            }));
        }
    }
    let mut roots = Vec::new();
    for t in tasks {
        roots.extend(t.await.unwrap());
    }
    assert_eq!(roots.len(), 80);
    let writers: HashSet<Option<String>> = roots.iter().map(|r| r.writer.clone()).collect();
    assert_eq!(writers.len(), 2, "both instances published");
    a.close().await.unwrap();
    b.close().await.unwrap();
    let storage = space.open().await;
    assert_linear(&storage, roots).await;
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Page cache

on_both!(second_read_of_a_flushed_record_hits_the_page_cache);
async fn second_read_of_a_flushed_record_hits_the_page_cache(backend: Backend) {
    let space = backend.space();
    let storage = space.open().await;
    let ptr = storage.push_bytes(b"cached").await.unwrap();
    storage.flush_wal().await.unwrap();
    let s0 = storage.cache_stats();
    assert_eq!(&storage.get_bytes(ptr).await.unwrap()[..], b"cached");
    let s1 = storage.cache_stats();
    assert_eq!(
        (s1.hits, s1.misses - s0.misses, s1.inserts - s0.inserts),
        (s0.hits, 1, 1)
    );
    assert_eq!(&storage.get_bytes(ptr).await.unwrap()[..], b"cached");
    let s2 = storage.cache_stats();
    assert_eq!((s2.hits - s1.hits, s2.misses), (1, s1.misses));
    assert!(s2.bytes > 0 && s2.bytes <= s2.capacity);
    storage.close().await.unwrap();

    // With the cache disabled nothing is cached and reads still work.
    let storage = space.builder().page_cache_size(0).build().await.unwrap();
    for _ in 0..2 {
        assert_eq!(&storage.get_bytes(ptr).await.unwrap()[..], b"cached");
    }
    let s = storage.cache_stats();
    assert_eq!((s.hits, s.inserts, s.bytes, s.capacity), (0, 0, 0, 0));
    storage.close().await.unwrap();
}

on_both!(zero_filled_tail_is_a_torn_tail);
async fn zero_filled_tail_is_a_torn_tail(backend: Backend) {
    // A crash can leave the end of a file zero-filled: that is a torn tail,
    // not corruption, and the records before it stay readable.
    let (space, ptrs) = three_records(backend).await;
    let wal = ptrs[2].wal_id;
    let zeros = vec![0u8; 4096];
    let end = space.raw(wal).await.len() as u64;
    space.overwrite(wal, end, &zeros).await;
    let report = scan(&space, wal).await;
    assert_eq!(report.records, 3, "{report:?}");
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_eq!(
        report
            .torn_tail
            .as_ref()
            .map(|t| (t.offset, t.error.clone())),
        Some((end, FormatError::ZeroLength))
    );
}

/// WAL buffers are pooled once their chunks are durable: bytes a reader
/// still holds (read from the writer's memory before the flush) must never
/// change when later pushes reuse buffers, and every record reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_write_buffers_never_change_bytes_a_reader_holds() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageBuilder::standalone(dir.path())
        .with_config(StorageConfig::default().with_buffer_size(4096))
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    let mut all = Vec::new();
    for round in 0..8u64 {
        for i in 0..200u64 {
            let payload = pseudo_random_bytes(round * 1000 + i, 100 + (i as usize % 300));
            let ptr = storage.push_bytes(&payload).await.unwrap();
            if i % 37 == 0 {
                // Read while the record is only in the writer's memory.
                held.push((storage.get_bytes(ptr).await.unwrap(), payload.clone()));
            }
            all.push((ptr, payload));
        }
        // Durable: the chunks go back to the pool (unless a reader holds
        // them) and the next round's buffers come from it.
        storage.flush_wal().await.unwrap();
        for (bytes, payload) in &held {
            assert_eq!(
                &bytes[..],
                &payload[..],
                "held bytes changed in round {round}"
            );
        }
    }
    for (ptr, payload) in &all {
        assert_eq!(storage.get_bytes(*ptr).await.unwrap(), payload[..]);
    }
    storage.close().await.unwrap();
}
