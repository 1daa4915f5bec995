//! The fuzz corpora and crash inputs, replayed on stable Rust.
//!
//! Every file of `fuzz/corpus/<target>/` (the minimised corpus the fuzzers
//! reached) and `fuzz/regressions/<target>/` (every input that once crashed
//! a target, named after what it found) goes through the target's check
//! function in `protobase::fuzzing`, the same function the cargo-fuzz target
//! (`fuzz/fuzz_targets/<target>.rs`) calls. The targets `cloud_roots` and
//! `cache_dir` need the `cloud` feature, the CLI location parser of
//! `pointer` the `cli` feature (`cargo test --all-features`).
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpus`
//! writes the seed inputs (`protobase::fuzzing::seeds`) into `fuzz/corpus/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use protobase::fuzzing;

#[cfg(feature = "cli")]
#[allow(dead_code, unreachable_pub)]
#[path = "../src/bin/protobase/address.rs"]
mod address;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The stored inputs of `target`: corpus and regressions, sorted by path.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs `check` on the seeds and every stored input of `target`, naming the
/// input that fails.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let mut n = 0;
    for seed in fuzzing::seeds(target) {
        check(&seed);
        n += 1;
    }
    for path in inputs(target) {
        let data = std::fs::read(&path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            panic!("{target}: {} fails its check", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "{target}: no inputs");
}

#[test]
fn every_target_has_a_corpus() {
    for target in fuzzing::TARGETS {
        assert!(!inputs(target).is_empty(), "fuzz/corpus/{target}/ is empty");
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "no fuzz target {target}"
        );
    }
}

#[test]
fn wire() {
    replay("wire", fuzzing::wire);
}

#[test]
fn record() {
    replay("record", fuzzing::record);
}

#[test]
fn wal_header() {
    replay("wal_header", fuzzing::wal_header);
}

#[test]
fn page_check() {
    replay("page_check", fuzzing::page_check);
}

#[test]
fn scan_wal() {
    replay("scan_wal", fuzzing::scan_wal);
}

#[test]
fn root_json() {
    replay("root_json", fuzzing::root_json);
}

#[cfg(feature = "cloud")]
#[test]
fn cloud_roots() {
    let staging = tempfile::tempdir().unwrap();
    replay("cloud_roots", |d| fuzzing::cloud_roots(staging.path(), d));
}

#[cfg(feature = "cloud")]
#[test]
fn cache_dir() {
    let dir = tempfile::tempdir().unwrap();
    replay("cache_dir", |d| fuzzing::cache_dir(dir.path(), d));
}

#[test]
fn config() {
    let base = tempfile::tempdir().unwrap();
    replay("config", |d| fuzzing::config(base.path(), d));
}

#[test]
fn space_config_ini() {
    replay("space_config_ini", fuzzing::space_config_ini);
}

#[test]
fn root_log() {
    let dir = tempfile::tempdir().unwrap();
    replay("root_log", |d| fuzzing::root_log(dir.path(), d));
}

#[test]
fn acceptor_log() {
    replay("acceptor_log", fuzzing::acceptor_log);
}

#[test]
fn pointer() {
    replay("pointer", |d| {
        fuzzing::pointer(d);
        #[cfg(feature = "cli")]
        if let Ok(s) = std::str::from_utf8(d) {
            fuzzing::endpoint(s, address::parse(s).map(|e| e.to_string()));
        }
    });
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<n>` (run by hand).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand to re-seed"]
fn write_seed_corpus() {
    for target in fuzzing::TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in fuzzing::seeds(target).into_iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}

// Named regressions for the bugs the fuzzers and the issue found (their
// inputs are also under fuzz/regressions/).

/// Issue 17: with `limit` near `u64::MAX`, a length prefix near it made the
/// record length overflow and `decode_record` panic on a slice.
#[test]
fn record_lengths_near_u64_max_are_errors() {
    use bytes::Bytes;
    use protobase::FormatError;
    use protobase::record::{WalKind, decode_record, record_total_len};

    for kind in [WalKind::Native, WalKind::Reference] {
        for len in [u64::MAX, u64::MAX - 4, u64::MAX - 9, u64::MAX - 13] {
            let mut v = len.to_le_bytes().to_vec();
            v.extend_from_slice(&[0; 8]);
            let b = Bytes::from(v);
            for limit in [u64::MAX, len] {
                assert!(
                    record_total_len(kind, &b, limit).is_ok_and(|t| t > b.len() as u64)
                        || matches!(
                            record_total_len(kind, &b, limit),
                            Err(FormatError::LengthTooLarge { .. })
                        )
                );
                assert!(decode_record(kind, &b, limit).is_err());
            }
        }
    }
}

/// Issue 17: the same lengths inside a WAL scanned with the largest limit.
#[test]
fn scan_with_a_huge_limit_reports_instead_of_panicking() {
    let mut input = vec![3u8]; // limit u64::MAX
    input.extend_from_slice(&u64::MAX.to_le_bytes());
    input.extend_from_slice(&[1, 2, 3, 4, 5]);
    fuzzing::scan_wal(&input);
    let mut input = vec![3u8];
    input.extend_from_slice(&(u64::MAX - 9).to_le_bytes());
    input.extend_from_slice(&[1; 20]);
    fuzzing::scan_wal(&input);
}

/// Issue 17: `blob_max_size` has an upper bound.
#[tokio::test]
async fn blob_max_size_has_an_upper_bound() {
    use protobase::record::MAX_BLOB_MAX_SIZE;
    use protobase::{Error, StorageBuilder};

    for size in [MAX_BLOB_MAX_SIZE + 1, u64::MAX] {
        let err = StorageBuilder::in_memory()
            .blob_max_size(size)
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    what: "blob_max_size",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let storage = StorageBuilder::in_memory()
        .blob_max_size(MAX_BLOB_MAX_SIZE)
        .build()
        .await
        .unwrap();
    storage.close().await.unwrap();
}

/// Found by the `cloud_roots` target: a chain whose newest root sits at
/// index `u64::MAX - 1` took a successor at `u64::MAX`, after which every
/// read walked from `u64::MAX` to `u64::MAX` (a saturating add) and failed,
/// the root seeming not to follow itself. Now the walk stops at the last
/// index and a write past it is a typed error.
#[cfg(feature = "cloud")]
#[tokio::test]
async fn cloud_root_chain_at_the_last_index() {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::path::Path as Key;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    use protobase::backends::cloud::CloudBlockProvider;
    use protobase::{AtomPointer, Error, RootRecord, RootRegister, WalId, WalStore};

    let staging = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pointer = AtomPointer::new(WalId::new_random(), 32);
    let first = RootRecord::new(pointer, 2, 1, None);
    store
        .put(
            &Key::from(format!("root/{:020}", u64::MAX - 1)),
            PutPayload::from(first.to_json()),
        )
        .await
        .unwrap();
    let provider = CloudBlockProvider::builder(store, staging.path())
        .no_cache()
        .build()
        .await
        .unwrap();
    async fn root(p: &CloudBlockProvider) -> Option<protobase::VersionedRoot> {
        p.read_root().await.unwrap()
    }
    let stored = root(&provider).await.unwrap();
    assert_eq!(stored.root, first);
    let second = RootRecord::new(pointer, 3, 1, None);
    let v = provider
        .write_root(&second, Some(stored.version))
        .await
        .unwrap();
    assert_eq!(root(&provider).await.map(|v| v.root), Some(second.clone()));
    let third = RootRecord::new(pointer, 4, 1, None);
    let err = provider.write_root(&third, Some(v)).await.unwrap_err();
    assert!(matches!(err, Error::CorruptRoot { .. }), "{err:?}");
    assert_eq!(root(&provider).await.map(|v| v.root), Some(second));
    WalStore::close(&provider).await.unwrap();
}
