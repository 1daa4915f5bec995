//! Conformance-style checks of the cloud provider (feature `cloud`), each
//! written once and run on `InMemory`, on `LocalFileSystem` (temp dir) and,
//! with feature `s3`, on S3 via object_store against a real S3-compatible
//! server on 127.0.0.1 (moto; see `tests/support/moto.rs`), one fresh bucket
//! per test, and with feature `aws-sdk` on the same server through the AWS
//! SDK client ([`AwsSdkStore`](protobase::backends::cloud::AwsSdkStore)).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protobase::backends::cloud::{
    CloudBlockProvider, CloudBlockProviderBuilder, Durability, UploadBacklog,
};
use protobase::{
    AtomPointer, BlockProvider, Error, RootRecord, RootRegister, RootVersion, StorageBuilder,
    WalId, WalStore,
};
use tempfile::TempDir;

mod support;
use support::flaky_store::Flaky;

const OS: u64 = 4096;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    Local,
    #[cfg(feature = "s3")]
    S3,
    #[cfg(feature = "aws-sdk")]
    AwsSdk,
    /// Google Cloud Storage on fake-gcs-server, behind a small XML-API shim
    /// (`support::emulators`).
    #[cfg(feature = "gcs")]
    Gcs,
    /// Azure Blob Storage on Azurite (`support::emulators`).
    #[cfg(feature = "azure")]
    Azure,
}

/// A store plus the temp dirs that must outlive it.
struct Env {
    store: Arc<dyn ObjectStore>,
    _dir: Option<TempDir>,
}

/// The one bucket of the S3 tests (created with the server, see
/// `support::moto`); each test works under a fresh prefix of it. (A bucket
/// per test would exhaust SeaweedFS's volumes: one collection per bucket.)
#[cfg(any(
    feature = "s3",
    feature = "aws-sdk",
    feature = "gcs",
    feature = "azure"
))]
const TEST_BUCKET: &str = support::moto::TEST_BUCKET;

/// `store` seen under a fresh `t-<uuid>/` prefix.
#[cfg(any(
    feature = "s3",
    feature = "aws-sdk",
    feature = "gcs",
    feature = "azure"
))]
fn own_prefix(store: impl ObjectStore) -> Arc<dyn ObjectStore> {
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
}

/// The store of one test; `None` only for S3 when `PROTOBASE_SKIP_S3=1`
/// (a loud `SKIPPED` line is printed then).
async fn env(kind: Kind) -> Option<Env> {
    Some(match kind {
        Kind::Memory => Env {
            store: Arc::new(InMemory::new()),
            _dir: None,
        },
        #[cfg(feature = "s3")]
        Kind::S3 => {
            let endpoint = support::moto::server()?;
            let store = protobase::backends::cloud::s3_store(TEST_BUCKET, Some(&endpoint)).unwrap();
            Env {
                store: own_prefix(store),
                _dir: None,
            }
        }
        #[cfg(feature = "aws-sdk")]
        Kind::AwsSdk => {
            let endpoint = support::moto::server()?;
            let store =
                protobase::backends::cloud::aws_sdk_store(TEST_BUCKET, Some(&endpoint)).await;
            Env {
                store: own_prefix(store),
                _dir: None,
            }
        }
        #[cfg(feature = "gcs")]
        Kind::Gcs => {
            let (_, account) = support::emulators::fake_gcs()?;
            let url = format!("gs://{TEST_BUCKET}?service_account={}", account.display());
            let store = protobase::backends::cloud::StoreUrl::parse(&url)
                .unwrap()
                .open()
                .unwrap();
            Env {
                store: own_prefix(store),
                _dir: None,
            }
        }
        #[cfg(feature = "azure")]
        Kind::Azure => {
            let endpoint = support::emulators::azurite()?;
            let url = format!(
                "az://{TEST_BUCKET}?account_name={}&access_key={}&endpoint={endpoint}&allow_http=true",
                support::emulators::AZURITE_ACCOUNT,
                support::emulators::AZURITE_KEY,
            );
            let store = protobase::backends::cloud::StoreUrl::parse(&url)
                .unwrap()
                .open()
                .unwrap();
            Env {
                store: own_prefix(store),
                _dir: None,
            }
        }
        Kind::Local => {
            let dir = TempDir::new().unwrap();
            let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
            Env {
                store: Arc::new(store),
                _dir: Some(dir),
            }
        }
    })
}

fn builder(store: Arc<dyn ObjectStore>, staging: &TempDir) -> CloudBlockProviderBuilder {
    CloudBlockProviderBuilder::new(store, staging.path())
        .prefix("space")
        .object_size(OS)
        .upload_interval_ms(20)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Runs each named test on every store kind (one module per kind).
macro_rules! on_all_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Memory).await })*
        }
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Local).await })*
        }
        #[cfg(feature = "s3")]
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::S3).await })*
        }
        #[cfg(feature = "aws-sdk")]
        mod aws_sdk {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::AwsSdk).await })*
        }
        #[cfg(feature = "gcs")]
        mod gcs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Gcs).await })*
        }
        #[cfg(feature = "azure")]
        mod azure {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Azure).await })*
        }
    };
}

on_all_stores!(
    slots_round_trip,
    barrier_gaps_read_as_zeros,
    storage_reopens_from_store_only,
    cloud_durability_visible_to_fresh_provider,
    root_race_has_one_winner,
    root_chain_orders_by_term_and_is_idempotent,
    failing_puts_are_retried,
    failing_gets_surface_and_lose_nothing,
    hung_requests_time_out_and_lose_nothing,
    slow_store_loses_nothing,
    two_storages_racing_on_one_bucket_stay_linear,
    cache_cold_then_warm,
    cache_eviction_under_small_budget,
    cache_corruption_detected_and_refetched,
);

/// A WAL whose every slot was uploaded before it was closed (the uploader
/// may finish between the last sync and `close_wal`) leaves nothing staged:
/// closing retires it, and it reads from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_closed_after_its_uploads_leaves_nothing_staged() {
    let e = env(Kind::Local).await.unwrap();
    let staging = TempDir::new().unwrap();
    let p = builder(e.store.clone(), &staging).build().await.unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern((2 * OS + 100) as usize, 9);
    p.append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    p.sync(wal, data.len() as u64).await.unwrap();
    p.flush_uploads().await.unwrap();
    assert_eq!(p.upload_backlog().slots, 0, "every slot is in the store");
    p.close_wal(wal).await.unwrap();
    p.flush_uploads().await.unwrap();
    let mut left: Vec<String> = std::fs::read_dir(staging.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["cloud_cache", "staging.lock"]);
    check_reads(&p, wal, &data).await;
    p.close().await.unwrap();
}

/// Checks every read class against `data` (the WAL from offset 0).
async fn check_reads(p: &dyn BlockProvider, wal: WalId, data: &[u8]) {
    let n = data.len() as u64;
    let mut offsets = vec![0, 1, OS / 2, OS - 1, OS, OS + 1, 2 * OS - 1, n - 1];
    offsets.retain(|o| *o < n);
    for off in offsets {
        for len in [1, 7, OS, 3 * OS + 5] {
            let got = p.read(wal, off, len).await.unwrap();
            let end = n.min(off + len) as usize;
            assert_eq!(&got[..], &data[off as usize..end], "read {off}+{len}");
        }
    }
    assert!(matches!(
        p.read(wal, n, 1).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
}

/// Write across slot boundaries (and one record larger than a slot); read
/// back from staging, then from the store only.
async fn slots_round_trip(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let staging = TempDir::new().unwrap();
    let p = builder(e.store.clone(), &staging).build().await.unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let a = pattern(3000, 1);
    let b = pattern((3 * OS + 123) as usize, 2); // larger than a slot
    let c = pattern(500, 3);
    let mut data = Vec::new();
    for chunk in [&a, &b, &c] {
        p.append(wal, data.len() as u64, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
        data.extend_from_slice(chunk);
    }
    check_reads(&p, wal, &data).await;
    p.sync(wal, data.len() as u64).await.unwrap();
    p.close_wal(wal).await.unwrap();
    p.flush_uploads().await.unwrap();
    assert_eq!(p.upload_backlog().slots, 0);
    // Staging file is gone once uploaded; reads come from the store.
    // (Only the default cache directory is left in the staging dir.)
    let mut left: Vec<String> = std::fs::read_dir(staging.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["cloud_cache", "staging.lock"]);
    check_reads(&p, wal, &data).await;
    p.close().await.unwrap();

    let staging2 = TempDir::new().unwrap();
    let q = builder(e.store.clone(), &staging2).build().await.unwrap();
    let wals = q.list_wals().await.unwrap();
    assert_eq!(wals.len(), 1);
    assert_eq!(wals[0].id, wal);
    assert_eq!(wals[0].len, data.len() as u64);
    check_reads(&q, wal, &data).await;
    assert!(matches!(
        q.read(WalId::new_random(), 0, 1).await,
        Err(Error::WalNotFound { .. })
    ));
    q.close().await.unwrap();
}

/// A barrier inside a slot seals it early; the writer continues at the next
/// slot boundary and the gap reads as zeros, from staging and from the store.
async fn barrier_gaps_read_as_zeros(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let staging = TempDir::new().unwrap();
    let p = builder(e.store.clone(), &staging).build().await.unwrap();
    let created = p.create_wal().await.unwrap();
    assert_eq!(
        created.barrier_alignment, OS,
        "barriers resume at slot boundaries"
    );
    let wal = created.id;
    let a = pattern(100, 5);
    p.append(wal, 0, Bytes::copy_from_slice(&a)).await.unwrap();
    p.sync(wal, 100).await.unwrap();
    let next = OS;
    // Bytes already in the sealed slot may be written again (a rewrite
    // after a failed sync): they are durable already, nothing changes.
    p.append(wal, 50, Bytes::copy_from_slice(&a[50..]))
        .await
        .unwrap();
    // Writing into the sealed slot is refused, not silently lost.
    assert!(p.append(wal, 100, Bytes::from_static(b"x")).await.is_err());
    let b = pattern(200, 6);
    p.append(wal, next, Bytes::copy_from_slice(&b))
        .await
        .unwrap();
    let mut data = a.clone();
    data.resize(OS as usize, 0);
    data.extend_from_slice(&b);
    check_reads(&p, wal, &data).await;
    p.close().await.unwrap();
    let key = Path::from(format!("space/wal/{wal}/0"));
    assert_eq!(e.store.head(&key).await.unwrap().size, 100);
    let staging2 = TempDir::new().unwrap();
    let q = builder(e.store.clone(), &staging2).build().await.unwrap();
    check_reads(&q, wal, &data).await;
    q.close().await.unwrap();
}

/// Storage-level round trip: push, set_root, close, reopen on a fresh
/// staging dir: everything comes from the store.
async fn storage_reopens_from_store_only(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let staging = TempDir::new().unwrap();
    let p = builder(e.store.clone(), &staging).build().await.unwrap();
    let s = StorageBuilder::new()
        .with_block_provider(Arc::new(p))
        .build()
        .await
        .unwrap();
    let mut ptrs = Vec::new();
    for i in 0..40u32 {
        let data = pattern(300 + (i as usize * 97) % 5000, i as u8);
        ptrs.push((s.push_bytes(&data).await.unwrap(), data));
        if i % 10 == 9 {
            s.set_root(ptrs.last().unwrap().0).await.unwrap();
        }
    }
    let big = pattern(3 * OS as usize + 17, 99);
    ptrs.push((s.push_bytes(&big).await.unwrap(), big));
    let root = s.set_root(ptrs.last().unwrap().0).await.unwrap();
    s.close().await.unwrap();

    let staging2 = TempDir::new().unwrap();
    let q = builder(e.store.clone(), &staging2).build().await.unwrap();
    let s2 = StorageBuilder::new()
        .with_block_provider(Arc::new(q))
        .build()
        .await
        .unwrap();
    let r = s2.read_current_root().await.unwrap().unwrap();
    assert_eq!(r.pointer, root.pointer);
    assert_eq!(r.sequence, root.sequence);
    for (ptr, data) in &ptrs {
        assert_eq!(&s2.get_bytes(*ptr).await.unwrap()[..], &data[..]);
    }
    // The readable copy (written by the uploader, flushed by close) holds
    // the newest root, in the reference JSON shape.
    let copy = e
        .store
        .get(&Path::from("space/space_root"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&copy).unwrap();
    assert!(v.get("transaction_id").is_some() && v.get("offset").is_some());
    assert_eq!(
        RootRecord::from_json(&copy).unwrap().sequence,
        root.sequence
    );
    s2.close().await.unwrap();
}

/// In `Cloud` mode a commit is in the store when it returns: a second
/// provider reading only the store sees the root and its data (the first
/// one is never closed).
async fn cloud_durability_visible_to_fresh_provider(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let staging = TempDir::new().unwrap();
    let p = builder(e.store.clone(), &staging)
        .upload_interval_ms(60_000) // commits must not wait for the timer
        .durability(Durability::Cloud)
        .build()
        .await
        .unwrap();
    let s = StorageBuilder::new()
        .with_block_provider(Arc::new(p))
        .build()
        .await
        .unwrap();
    let data = pattern(2 * OS as usize + 10, 7);
    let ptr = s.push_bytes(&data).await.unwrap();
    let small = s.push_bytes(b"tail").await.unwrap();
    let root = s.set_root(small).await.unwrap();

    let staging2 = TempDir::new().unwrap();
    let q = builder(e.store.clone(), &staging2).build().await.unwrap();
    assert_eq!(q.read_root().await.unwrap().unwrap().root, root);
    let s2 = StorageBuilder::new()
        .with_block_provider(Arc::new(q))
        .read_only(true)
        .build()
        .await
        .unwrap();
    assert_eq!(&s2.get_bytes(ptr).await.unwrap()[..], &data[..]);
    assert_eq!(&s2.get_bytes(small).await.unwrap()[..], b"tail");
    s2.close().await.unwrap();
    s.close().await.unwrap();
}

fn root(seq: u64) -> RootRecord {
    RootRecord::new(AtomPointer::new(WalId::new_random(), seq), seq, 0, None)
}

/// Two writers race `write_root` on one store: exactly one wins each
/// sequence; the loser gets `RootConflict` and can retry from the new root.
async fn root_race_has_one_winner(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let (sa, sb) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = Arc::new(builder(e.store.clone(), &sa).build().await.unwrap());
    let b = Arc::new(builder(e.store.clone(), &sb).build().await.unwrap());
    assert_eq!(a.read_root().await.unwrap(), None);
    let mut history = Vec::new();
    let mut expected = None;
    let read =
        |p: Arc<CloudBlockProvider>| async move { p.read_root().await.unwrap().map(|v| v.root) };
    for round in 0..10u64 {
        let (ra, rb) = (root(round + 1), root(round + 1));
        let (x, y) = tokio::join!(a.write_root(&ra, expected), b.write_root(&rb, expected));
        let (winner, version) = match (x, y) {
            (Ok(v), Err(Error::RootConflict { .. })) => (ra, v),
            (Err(Error::RootConflict { .. }), Ok(v)) => (rb, v),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(read(a.clone()).await.as_ref(), Some(&winner));
        assert_eq!(read(b.clone()).await.as_ref(), Some(&winner));
        expected = Some(version);
        history.push(winner);
    }
    // A stale writer loses; a group commit may skip sequences.
    assert!(matches!(
        a.write_root(&root(5), Some(RootVersion::from_u64(4))).await,
        Err(Error::RootConflict {
            found: Some(10),
            ..
        })
    ));
    a.write_root(&root(13), expected).await.unwrap();
    assert!(matches!(
        b.write_root(&root(11), expected).await,
        Err(Error::RootConflict {
            found: Some(13),
            ..
        })
    ));
    // A fresh provider finds the newest root even if the readable copy lags.
    e.store
        .put(
            &Path::from("space/space_root"),
            PutPayload::from(history[2].to_json()),
        )
        .await
        .unwrap();
    let sc = TempDir::new().unwrap();
    let c = builder(e.store.clone(), &sc).build().await.unwrap();
    assert_eq!(c.read_root().await.unwrap().unwrap().root.sequence, 13);
    c.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Roots of a newer term may repeat a sequence (a fenced holder's
/// unacknowledged root is superseded), repeating a write whose answer was
/// lost succeeds, an older root is refused,
/// and a fresh reader finds the newest even when `space_root` is a
/// reference-shaped copy without a chain index (it LISTs the chain).
async fn root_chain_orders_by_term_and_is_idempotent(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let ptr = AtomPointer::new(WalId::new_random(), 40);
    let at = |seq, term| RootRecord::new(ptr, seq, term, Some("n".into()));
    let (sa, sb) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = builder(e.store.clone(), &sa).build().await.unwrap();
    let b = builder(e.store.clone(), &sb).build().await.unwrap();
    let v1 = a.write_root(&at(1, 1), None).await.unwrap();
    let v2 = a.write_root(&at(2, 1), Some(v1)).await.unwrap();
    // Term 2 re-issues sequence 2 on top of term 1's sequence 2.
    let v3 = b.write_root(&at(2, 2), Some(v2)).await.unwrap();
    // The same write again (a retry whose answer was lost): already stored.
    assert_eq!(a.write_root(&at(2, 2), Some(v2)).await.unwrap(), v3);
    // Not newer than the current root: refused, nothing written.
    let err = a.write_root(&at(2, 1), Some(v3)).await.unwrap_err();
    assert_eq!(err.kind(), protobase::ErrorKind::Invalid, "{err}");
    assert_eq!(b.read_root().await.unwrap().map(|v| v.root), Some(at(2, 2)));
    a.close().await.unwrap();
    b.close().await.unwrap();
    e.store
        .put(
            &Path::from("space/space_root"),
            PutPayload::from(at(1, 1).to_json()),
        )
        .await
        .unwrap();
    let sc = TempDir::new().unwrap();
    let c = builder(e.store.clone(), &sc).build().await.unwrap();
    let newest = c.read_root().await.unwrap().unwrap();
    assert_eq!(newest.root, at(2, 2));
    c.write_root(&at(3, 2), Some(newest.version)).await.unwrap();
    c.close().await.unwrap();
}

/// Uploads that fail are retried with backoff; nothing acknowledged is lost
/// and the backlog drains.
async fn failing_puts_are_retried(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let flaky = Flaky::new(e.store.clone());
    let staging = TempDir::new().unwrap();
    let p: CloudBlockProvider = builder(flaky.clone(), &staging).build().await.unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(5 * OS as usize + 77, 9);
    flaky.fail_puts.store(6, Ordering::SeqCst);
    for (i, chunk) in data.chunks(1000).enumerate() {
        p.append(wal, i as u64 * 1000, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    p.sync(wal, data.len() as u64).await.unwrap();
    assert!(p.upload_backlog().slots > 0 || flaky.fail_puts.load(Ordering::SeqCst) < 6);
    p.close().await.unwrap();
    assert_eq!(flaky.fail_puts.load(Ordering::SeqCst), 0);
    assert!(flaky.puts.load(Ordering::SeqCst) >= 6 + 6);
    let staging2 = TempDir::new().unwrap();
    let q = builder(e.store.clone(), &staging2).build().await.unwrap();
    check_reads(&q, wal, &data).await;
    q.close().await.unwrap();
}

/// A store failing reads (5xx) gives typed, retryable errors — never wrong
/// bytes — and loses nothing: once it recovers, everything reads back.
async fn failing_gets_surface_and_lose_nothing(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let staging = TempDir::new().unwrap();
    let p = builder(e.store.clone(), &staging).build().await.unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(3 * OS as usize + 11, 5);
    p.append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    p.sync(wal, data.len() as u64).await.unwrap();
    p.close().await.unwrap();

    let flaky = Flaky::new(e.store.clone());
    let staging2 = TempDir::new().unwrap();
    let q = builder(flaky.clone(), &staging2).build().await.unwrap();
    flaky.fail_gets.store(2, Ordering::SeqCst);
    for _ in 0..2 {
        let err = q.read(wal, OS + 3, 100).await.unwrap_err();
        assert_eq!(err.kind(), protobase::ErrorKind::Unavailable, "{err}");
    }
    assert_eq!(flaky.fail_gets.load(Ordering::SeqCst), 0);
    check_reads(&q, wal, &data).await;
    q.close().await.unwrap();
}

/// Request deadline in the hung-request test: hung requests always reach
/// it; real ones (S3 on a loaded CI machine) must not.
const HUNG_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests that never answer (uploads and reads) fail at the request
/// timeout: uploads are retried until they land, a read fails as
/// `Unavailable` and succeeds once the store answers again.
async fn hung_requests_time_out_and_lose_nothing(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let flaky = Flaky::new(e.store.clone());
    let staging = TempDir::new().unwrap();
    let p = builder(flaky.clone(), &staging)
        .request_timeout(HUNG_TIMEOUT)
        .upload_deadline(Duration::from_secs(60))
        .durability(Durability::Cloud)
        .build()
        .await
        .unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(3 * OS as usize + 123, 3);
    flaky.hang_puts.store(3, Ordering::SeqCst);
    p.append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    // A Cloud-durable barrier returns only once every slot is stored.
    p.sync(wal, data.len() as u64).await.unwrap();
    assert_eq!(flaky.hang_puts.load(Ordering::SeqCst), 0);
    assert_eq!(p.upload_backlog(), UploadBacklog::default());
    p.close().await.unwrap();

    let staging2 = TempDir::new().unwrap();
    let q = builder(flaky.clone(), &staging2)
        .request_timeout(HUNG_TIMEOUT)
        .build()
        .await
        .unwrap();
    flaky.hang_gets.store(1, Ordering::SeqCst);
    let err = q.read(wal, OS + 1, 10).await.unwrap_err();
    assert_eq!(err.kind(), protobase::ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    check_reads(&q, wal, &data).await;
    q.close().await.unwrap();
}

/// A slow store (every request delayed, like a loaded S3) only slows
/// things down: with several uploads in flight, everything acknowledged is
/// stored and reads back.
async fn slow_store_loses_nothing(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let slow = Flaky::new(e.store.clone());
    slow.delay_ms.store(30, Ordering::SeqCst);
    let staging = TempDir::new().unwrap();
    let p = builder(slow.clone(), &staging)
        .upload_concurrency(3)
        .durability(Durability::Cloud)
        .build()
        .await
        .unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(7 * OS as usize + 5, 8);
    for (i, chunk) in data.chunks(OS as usize / 2).enumerate() {
        let off = i as u64 * OS / 2;
        p.append(wal, off, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    p.sync(wal, data.len() as u64).await.unwrap();
    p.close().await.unwrap();
    let staging2 = TempDir::new().unwrap();
    let q = builder(slow, &staging2).build().await.unwrap();
    check_reads(&q, wal, &data).await;
    q.close().await.unwrap();
}

/// Two storages (two nodes, each with its own staging dir) commit to one
/// bucket at the same time, retrying when they lose the root CAS: the
/// committed roots form one linear history holding every acknowledged one.
async fn two_storages_racing_on_one_bucket_stay_linear(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let mut tasks = Vec::new();
    let mut dirs = Vec::new();
    for node in 0..2u8 {
        let staging = TempDir::new().unwrap();
        let p = builder(e.store.clone(), &staging)
            .durability(protobase::backends::cloud::Durability::Cloud)
            .build()
            .await
            .unwrap();
        dirs.push(staging);
        let s = StorageBuilder::new()
            .with_block_provider(Arc::new(p))
            .node_id(format!("node-{node}"))
            .build()
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut conflicts) = (Vec::new(), 0u32);
            while acked.len() < 8 {
                let r = s
                    .update_root(|cur| {
                        let s = s.clone();
                        async move {
                            let prev = cur.map(|c| (c.sequence, c.pointer.to_string()));
                            s.push_atom(&(node, prev), protobase::AtomFormat::Json)
                                .await
                        }
                    })
                    .await;
                match r {
                    Ok(root) => acked.push(root),
                    Err(e) if e.kind() == protobase::ErrorKind::Conflict => conflicts += 1,
                    Err(other) => panic!("node {node}: {other}"),
                }
                assert!(conflicts < 1000, "node {node} never wins");
            }
            s.close().await.unwrap();
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // Walk back from the newest root through the embedded predecessors.
    let staging = TempDir::new().unwrap();
    let reader = StorageBuilder::new()
        .with_block_provider(Arc::new(
            builder(e.store.clone(), &staging).build().await.unwrap(),
        ))
        .build()
        .await
        .unwrap();
    let newest = reader.read_current_root().await.unwrap().unwrap();
    let mut chain = Vec::new();
    let mut at = Some((newest.sequence, newest.pointer));
    while let Some((seq, ptr)) = at {
        let (_node, prev): (u8, Option<(u64, String)>) = reader.get_atom(ptr).await.unwrap();
        chain.push((seq, ptr));
        if let Some((ps, _)) = &prev {
            assert_eq!(*ps + 1, seq, "sequences are consecutive");
        }
        at = prev.map(|(ps, pp)| (ps, pp.parse().unwrap()));
    }
    assert_eq!(chain.len() as u64, newest.sequence, "the chain reaches #1");
    for r in &acked {
        assert!(
            chain.contains(&(r.sequence, r.pointer)),
            "acknowledged root #{} is not in the history",
            r.sequence
        );
    }
    assert_eq!(acked.len(), 16);
    reader.close().await.unwrap();
}

/// A store that never accepts an upload (a wrong credential, a missing
/// bucket): `Durability::Cloud` commits and `close` fail once the upload
/// deadline passes instead of hanging, and nothing is lost — the next
/// provider on the staging directory uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_and_close_give_up_on_a_dead_store_at_the_deadline() {
    let e = env(Kind::Memory).await.unwrap();
    let flaky = Flaky::new(e.store.clone());
    flaky.fail_puts.store(u64::MAX, Ordering::SeqCst);
    let staging = TempDir::new().unwrap();
    let p = builder(flaky.clone(), &staging)
        .durability(Durability::Cloud)
        .upload_deadline(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let s = StorageBuilder::cloud(Arc::new(p)).build().await.unwrap();
    let ptr = s.push_bytes(b"staged, not uploaded").await.unwrap();
    let err = s.set_root(ptr).await.unwrap_err();
    assert_eq!(err.kind(), protobase::ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("not uploaded within"), "{err}");
    let err = s.close().await.unwrap_err();
    assert!(err.to_string().contains("not uploaded within"), "{err}");
    // The staging directory is free again, and its files reach the store.
    let q = builder(e.store.clone(), &staging).build().await.unwrap();
    q.flush_uploads().await.unwrap();
    let s = StorageBuilder::cloud(Arc::new(q)).build().await.unwrap();
    assert_eq!(
        &s.get_bytes(ptr).await.unwrap()[..],
        b"staged, not uploaded"
    );
    s.close().await.unwrap();
}

/// Staging files left by a process that died before uploading are uploaded
/// when a provider is built on the same staging dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_staging_is_uploaded_on_reopen() {
    let e = env(Kind::Memory).await.unwrap();
    let flaky = Flaky::new(e.store.clone());
    flaky.fail_puts.store(u64::MAX, Ordering::SeqCst);
    let staging = TempDir::new().unwrap();
    let p = builder(flaky.clone(), &staging).build().await.unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(2 * OS as usize + 5, 4);
    p.append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    p.sync(wal, data.len() as u64).await.unwrap();
    drop(p); // "crash": nothing could be uploaded
    let q = builder(e.store.clone(), &staging).build().await.unwrap();
    q.flush_uploads().await.unwrap();
    q.close().await.unwrap();
    let staging2 = TempDir::new().unwrap();
    let r = builder(e.store.clone(), &staging2).build().await.unwrap();
    check_reads(&r, wal, &data).await;
    r.close().await.unwrap();
}

/// Writes `slots` slots of patterned data (the last one partial) through a
/// provider on `store` and uploads them; returns the WAL and its bytes.
async fn write_slots(store: Arc<dyn ObjectStore>, slots: u64) -> (WalId, Vec<u8>) {
    let staging = TempDir::new().unwrap();
    let p = builder(store, &staging).no_cache().build().await.unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(((slots - 1) * OS + 333) as usize, 11);
    p.append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    p.sync(wal, data.len() as u64).await.unwrap();
    p.close().await.unwrap();
    (wal, data)
}

/// A provider reading `store` through a fresh staging dir and the cache
/// directory `cache`.
async fn reader(store: Arc<dyn ObjectStore>, cache: &std::path::Path, budget: u64) -> Reader {
    let staging = TempDir::new().unwrap();
    let p = builder(store, &staging)
        .cache_dir(cache)
        .cache_size(budget)
        .build()
        .await
        .unwrap();
    Reader {
        p,
        _staging: staging,
    }
}

struct Reader {
    p: CloudBlockProvider,
    _staging: TempDir,
}

/// Object files in a cache directory: (name, size).
fn cache_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".obj"))
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    v.sort();
    v
}

/// Reopen on a fresh cache dir: every slot comes from the store, once (whole
/// objects are cached). Reopen on the warm dir (new provider): no GETs.
async fn cache_cold_then_warm(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let (wal, data) = write_slots(e.store.clone(), 5).await;
    let counting = Flaky::new(e.store.clone());
    let cache = TempDir::new().unwrap();

    let r = reader(counting.clone(), cache.path(), 1 << 20).await;
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 5, "one whole GET per slot");
    let st = r.p.cache().unwrap().stats();
    assert_eq!((st.objects, st.bytes), (5, data.len() as u64));
    r.p.close().await.unwrap();
    drop(r);
    assert!(cache.path().join("index.json").exists());

    let r = reader(counting.clone(), cache.path(), 1 << 20).await;
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 0, "warm cache: no GETs");
    assert!(r.p.cache().unwrap().stats().hits > 0);
    r.p.close().await.unwrap();
    drop(r);

    // A cache of another size (e.g. a slot re-uploaded longer) is a miss;
    // with no cache every read is a ranged GET.
    let staging = TempDir::new().unwrap();
    let nc = builder(counting.clone(), &staging)
        .no_cache()
        .build()
        .await
        .unwrap();
    assert!(nc.cache().is_none());
    check_reads(&nc, wal, &data).await;
    assert!(counting.take_gets() > 5);
    nc.close().await.unwrap();

    // One provider per cache directory: a second one runs without it.
    let held = reader(counting.clone(), cache.path(), 1 << 20).await;
    let second = reader(counting.clone(), cache.path(), 1 << 20).await;
    assert!(held.p.cache().is_some() && second.p.cache().is_none());
    check_reads(&second.p, wal, &data).await;
    second.p.close().await.unwrap();
    held.p.close().await.unwrap();
}

/// A budget of about three slots: the directory stays within it while
/// everything still reads correctly; a smaller budget on reopen evicts.
async fn cache_eviction_under_small_budget(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let (wal, data) = write_slots(e.store.clone(), 8).await;
    let counting = Flaky::new(e.store.clone());
    let cache = TempDir::new().unwrap();
    let budget = 3 * OS + 100;
    let r = reader(counting.clone(), cache.path(), budget).await;
    for _ in 0..2 {
        check_reads(&r.p, wal, &data).await;
        let total: u64 = cache_files(cache.path()).iter().map(|f| f.1).sum();
        assert!(total <= budget, "{total} > {budget}");
        assert_eq!(total, r.p.cache().unwrap().stats().bytes);
    }
    let st = r.p.cache().unwrap().stats();
    assert!(st.evicted > 0 && st.objects <= 3, "{st:?}");
    assert!(counting.take_gets() > 8);
    // Every slot, in order, twice: the cache keeps the most recent ones.
    for slot in 0..8u64 {
        let off = slot * OS;
        let got = r.p.read(wal, off, 10).await.unwrap();
        assert_eq!(&got[..], &data[off as usize..off as usize + 10]);
    }
    counting.take_gets();
    let got = r.p.read(wal, 7 * OS, 10).await.unwrap();
    assert_eq!(&got[..], &data[7 * OS as usize..7 * OS as usize + 10]);
    assert_eq!(counting.take_gets(), 0, "most recent slot is cached");
    r.p.close().await.unwrap();
    drop(r);

    let r = reader(counting.clone(), cache.path(), OS).await;
    let total: u64 = cache_files(cache.path()).iter().map(|f| f.1).sum();
    assert!(total <= OS, "{total} > {OS}");
    check_reads(&r.p, wal, &data).await;
    r.p.close().await.unwrap();
}

/// A cache file with a flipped byte (caught by the CRC on first read) and a
/// truncated one (caught by the size check at open) are dropped and
/// refetched with one GET each; the reads are correct.
async fn cache_corruption_detected_and_refetched(kind: Kind) {
    let Some(e) = env(kind).await else { return };
    let (wal, data) = write_slots(e.store.clone(), 4).await;
    let counting = Flaky::new(e.store.clone());
    let cache = TempDir::new().unwrap();
    let r = reader(counting.clone(), cache.path(), 1 << 20).await;
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 4);
    r.p.close().await.unwrap();
    drop(r);

    let files = cache_files(cache.path());
    assert_eq!(files.len(), 4);
    let mut flipped = std::fs::read(&files[0].0).unwrap();
    flipped[17] ^= 0x40;
    std::fs::write(&files[0].0, &flipped).unwrap();
    let truncated = std::fs::read(&files[1].0).unwrap();
    std::fs::write(&files[1].0, &truncated[..truncated.len() - 1]).unwrap();

    let r = reader(counting.clone(), cache.path(), 1 << 20).await;
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 2, "one GET per damaged file");
    assert_eq!(r.p.cache().unwrap().stats().corrupt, 1);
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 0);
    r.p.close().await.unwrap();
    drop(r);

    // Refetched files are cached again and valid after another reopen.
    let r = reader(counting.clone(), cache.path(), 1 << 20).await;
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 0);
    assert_eq!(r.p.cache().unwrap().stats().corrupt, 0);
    r.p.close().await.unwrap();

    // An unreadable index empties the cache instead of trusting its files.
    drop(r);
    std::fs::write(cache.path().join("index.json"), b"{not json").unwrap();
    let r = reader(counting.clone(), cache.path(), 1 << 20).await;
    assert!(cache_files(cache.path()).is_empty());
    check_reads(&r.p, wal, &data).await;
    assert_eq!(counting.take_gets(), 4);
    r.p.close().await.unwrap();
}

/// A wrong secret on SeaweedFS (which checks SigV4 signatures) gets a 403:
/// a `Durability::Cloud` commit fails with a permission error at once —
/// permanent failures are not retried — instead of waiting for the upload
/// deadline; the uploader reports itself failing, and nothing is lost.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_fails_a_cloud_commit_with_a_permission_error() {
    use protobase::backends::cloud::StoreUrl;
    let Some(endpoint) = support::emulators::seaweed() else {
        return;
    };
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let url = |secret: &str| {
        format!(
            "s3://{TEST_BUCKET}/{prefix}?endpoint={endpoint}&access_key_id={}&secret_access_key={secret}",
            support::emulators::WEED_KEY
        )
    };
    let bad = StoreUrl::parse(&url("not-the-secret")).unwrap();
    let staging = TempDir::new().unwrap();
    let p = Arc::new(
        CloudBlockProvider::builder(bad.open().unwrap(), staging.path())
            .prefix(bad.prefix())
            .object_size(OS)
            .durability(Durability::Cloud)
            // Far beyond the retry budget: a permission error must not wait
            // for it (an expired deadline would read "not uploaded within").
            .upload_deadline(Duration::from_secs(600))
            .build()
            .await
            .unwrap(),
    );
    // Building reads the root: that GET is refused too.
    let err = StorageBuilder::cloud(p.clone()).build().await.unwrap_err();
    assert_eq!(err.kind(), protobase::ErrorKind::Permission, "{err}");
    // The commit path: bytes staged, the upload refused.
    let wal = p.create_wal().await.unwrap().id;
    p.append(wal, 0, Bytes::from_static(b"never uploaded"))
        .await
        .unwrap();
    let err = p.sync(wal, 14).await.unwrap_err();
    assert_eq!(err.kind(), protobase::ErrorKind::Permission, "{err}");
    assert!(!err.to_string().contains("not uploaded within"), "{err}");
    // The cause is kept: object_store's PermissionDenied, as the source.
    let mut source = std::error::Error::source(&err);
    let mut found = false;
    while let Some(s) = source {
        found |= matches!(
            s.downcast_ref::<object_store::Error>(),
            Some(object_store::Error::PermissionDenied { .. })
        );
        source = s.source();
    }
    assert!(found, "no object_store::Error::PermissionDenied in {err:?}");
    let health = p.upload_health();
    assert!(!health.is_ok() && health.failed_slots == 1, "{health:?}");
    assert!(health.last_error.unwrap().contains("403"));
    // Nothing is lost: the slot stays staged for a provider that can
    // upload it (the right secret, the same staging directory).
    drop(p);
    let good = StoreUrl::parse(&url(support::emulators::WEED_SECRET)).unwrap();
    let q = CloudBlockProvider::builder(good.open().unwrap(), staging.path())
        .prefix(good.prefix())
        .object_size(OS)
        .build()
        .await
        .unwrap();
    q.flush_uploads().await.unwrap();
    assert_eq!(&q.read(wal, 0, 14).await.unwrap()[..], b"never uploaded");
    assert!(q.upload_health().is_ok());
    q.close().await.unwrap();
}

/// A node described with `store = "s3://bucket/prefix?endpoint=…"` builds
/// a working cloud node; a second node from the same description reads
/// what the first committed.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_config_with_an_s3_url_builds_a_working_node() {
    use protobase::config::{Source, Syntax};
    let Some(endpoint) = support::moto::server() else {
        return;
    };
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let dir = TempDir::new().unwrap();
    let text = |staging: &str| {
        format!(
            "[backend]\ntype = \"cloud\"\nstore = \"s3://{TEST_BUCKET}/{prefix}?endpoint={endpoint}\"\n\
             staging_dir = \"{staging}\"\ndurability = \"cloud\"\nobject_size = 4096\n\
             [backend.store_options]\ntimeout = \"20s\"\nretry_max_retries = \"2\"\n"
        )
    };
    let parse = |t: String| {
        protobase::NodeConfig::parse(
            &t,
            Syntax::Toml,
            Source("node.toml".into()),
            dir.path(),
            Vec::new(),
        )
        .unwrap()
    };
    let a = parse(text("a")).build().await.unwrap();
    let ptr = a.push_bytes(b"through an s3 url").await.unwrap();
    let root = a.set_root(ptr).await.unwrap();
    a.close().await.unwrap();
    let b = parse(text("b")).build().await.unwrap();
    assert_eq!(b.read_current_root().await.unwrap(), Some(root));
    assert_eq!(&b.get_bytes(ptr).await.unwrap()[..], b"through an s3 url");
    b.close().await.unwrap();
    // The URL's options are checked: an unknown one names itself.
    let bad = text("c").replace("timeout = \"20s\"", "tiemout = \"20s\"");
    let err = parse(bad).build().await.unwrap_err().to_string();
    assert!(err.contains("tiemout"), "{err}");
}

/// A staging sync that fails drops the bytes it did not make durable (as
/// Linux drops dirty pages after an fsync error). Slots full of such bytes
/// must not be uploaded, and the writer's rewrite of them must not be
/// skipped as "already sealed": before the fix, `append` sealed full slots
/// at once, the uploader sent the zeros the failed sync left, and a later
/// commit acknowledged a root over data that was gone (found by the
/// cloud-cluster simulation, seed 8466786).
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_staging_sync_never_uploads_what_it_dropped() {
    use protobase::sim::disk::{DiskFaults, SimDisk};
    let e = env(Kind::Memory).await.unwrap();
    let disk = SimDisk::new(7);
    // Uploads fail until the failed sync has dropped the bytes.
    let flaky = Flaky::new(e.store.clone());
    flaky.fail_puts.store(u64::MAX, Ordering::SeqCst);
    let p = CloudBlockProviderBuilder::new(flaky.clone(), "unused")
        .with_staging(disk.mount().staging())
        .prefix("space")
        .object_size(OS)
        .upload_interval_ms(1)
        .build()
        .await
        .unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(2 * OS as usize + 5, 9);
    let bytes = Bytes::copy_from_slice(&data);
    p.append(wal, 0, bytes.clone()).await.unwrap();
    disk.set_faults(DiskFaults {
        eio: 1.0,
        ..DiskFaults::default()
    });
    p.sync(wal, data.len() as u64).await.unwrap_err();
    disk.set_faults(DiskFaults::default());
    flaky.fail_puts.store(0, Ordering::SeqCst);
    // The writer's retry: everything not durable is written again.
    p.append(wal, 0, bytes).await.unwrap();
    p.sync(wal, data.len() as u64).await.unwrap();
    p.close_wal(wal).await.unwrap();
    p.flush_uploads().await.unwrap();
    p.close().await.unwrap();
    // Read back from the store alone.
    let staging = TempDir::new().unwrap();
    let r = builder(e.store.clone(), &staging).build().await.unwrap();
    check_reads(&r, wal, &data).await;
    r.close().await.unwrap();
}

/// WAL files (named by their id) in a staging directory.
fn staged_wals(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<WalId>().is_ok())
        .collect();
    v.sort();
    v
}

/// Issue 15, item 2: after 2,000 1-KiB pushes with a 256 KiB
/// `max_wal_size` and a 64 KiB slot, `close` leaves no WAL file in
/// staging (every slot is in the store), in both durabilities; a provider
/// reopened on that staging directory uploads nothing, and everything reads
/// back from the store alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_is_empty_after_close_and_a_reopen_uploads_nothing() {
    const SLOT: u64 = 64 << 10;
    for durability in [Durability::Local, Durability::Cloud] {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let counted = Flaky::new(store.clone());
        let staging = TempDir::new().unwrap();
        let p = Arc::new(
            CloudBlockProviderBuilder::new(counted.clone(), staging.path())
                .prefix("space")
                .object_size(SLOT)
                .upload_interval_ms(20)
                .durability(durability)
                .build()
                .await
                .unwrap(),
        );
        let s = StorageBuilder::cloud(p.clone())
            .max_wal_size(256 << 10)
            .build()
            .await
            .unwrap();
        let mut ptrs = Vec::new();
        for i in 0..2000u32 {
            let data = pattern(1024, i as u8);
            ptrs.push((s.push_bytes(&data).await.unwrap(), data));
            if i % 250 == 249 {
                s.set_root(ptrs.last().unwrap().0).await.unwrap();
            }
        }
        let wals: std::collections::BTreeSet<WalId> = ptrs.iter().map(|(p, _)| p.wal_id).collect();
        assert!(wals.len() > 4, "{durability:?}: {} WALs", wals.len());
        // While running: once durable and uploaded, only the active WAL
        // is left in staging (rolled-over WALs are retired).
        s.flush_wal().await.unwrap();
        p.flush_uploads().await.unwrap();
        assert_eq!(
            staged_wals(staging.path()).len(),
            1,
            "{durability:?}: retired WALs left in staging while running"
        );
        s.close().await.unwrap();
        assert_eq!(
            staged_wals(staging.path()),
            Vec::<String>::new(),
            "{durability:?}: WAL files left in staging after close"
        );

        let before = counted.wal_puts.load(Ordering::SeqCst);
        let q = CloudBlockProviderBuilder::new(counted.clone(), staging.path())
            .prefix("space")
            .object_size(SLOT)
            .build()
            .await
            .unwrap();
        q.flush_uploads().await.unwrap();
        q.close().await.unwrap();
        assert_eq!(
            counted.wal_puts.load(Ordering::SeqCst),
            before,
            "{durability:?}: the reopen uploaded slots again"
        );

        let fresh = TempDir::new().unwrap();
        let r = CloudBlockProviderBuilder::new(store.clone(), fresh.path())
            .prefix("space")
            .object_size(SLOT)
            .build()
            .await
            .unwrap();
        let s2 = StorageBuilder::cloud(Arc::new(r))
            .read_only(true)
            .build()
            .await
            .unwrap();
        for (ptr, data) in &ptrs {
            assert_eq!(&s2.get_bytes(*ptr).await.unwrap()[..], &data[..]);
        }
        s2.close().await.unwrap();
    }
}

/// A provider that crashed (dropped without `close`) with some slots in the
/// store and some not: the next provider on its staging directory uploads
/// only the slots the store lacks, then retires the staging file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_uploads_only_the_slots_the_store_lacks() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let flaky = Flaky::new(store.clone());
    let staging = TempDir::new().unwrap();
    let p = builder(flaky.clone(), &staging)
        .upload_interval_ms(60_000)
        .build()
        .await
        .unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let data = pattern(8 * OS as usize + 100, 3);
    let first = 5 * OS as usize;
    p.append(wal, 0, Bytes::copy_from_slice(&data[..first]))
        .await
        .unwrap();
    p.sync(wal, first as u64).await.unwrap();
    p.flush_uploads().await.unwrap();
    // From now on the store refuses every upload: slots 5..=8 stay staged.
    flaky.fail_puts.store(u64::MAX, Ordering::SeqCst);
    p.append(wal, first as u64, Bytes::copy_from_slice(&data[first..]))
        .await
        .unwrap();
    p.sync(wal, data.len() as u64).await.unwrap();
    drop(p); // a crash

    let counted = Flaky::new(store.clone());
    let q = builder(counted.clone(), &staging).build().await.unwrap();
    q.flush_uploads().await.unwrap();
    assert_eq!(
        counted.wal_puts.load(Ordering::SeqCst),
        4,
        "slots 5, 6, 7 and the short slot 8 only"
    );
    assert_eq!(staged_wals(staging.path()), Vec::<String>::new());
    // Read across what the store held at the restart: the listing the
    // restart made (slots 0-4) must not cut it short (it did, and lost a
    // committed root in crash_recovery with
    // PROTOBASE_TEST_SEED=5231061072443704361).
    let (from, to) = (4 * OS as usize, 7 * OS as usize);
    let got = q.read(wal, from as u64, (to - from) as u64).await.unwrap();
    assert_eq!(
        &got[..],
        &data[from..to],
        "a read across the restart's listing"
    );
    q.close().await.unwrap();
    let fresh = TempDir::new().unwrap();
    let r = builder(store.clone(), &fresh).build().await.unwrap();
    check_reads(&r, wal, &data).await;
    r.close().await.unwrap();
}

/// A staging directory serves one provider: a second one is refused with
/// [`Error::Locked`] naming the lock file, until the first is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_provider_on_a_staging_directory_is_refused() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let staging = TempDir::new().unwrap();
    let p = builder(store.clone(), &staging).build().await.unwrap();
    let err = builder(store.clone(), &staging).build().await.unwrap_err();
    match &err {
        Error::Locked { path } => assert!(path.ends_with("staging.lock"), "{path:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    p.close().await.unwrap();
    let q = builder(store, &staging).build().await.unwrap();
    q.close().await.unwrap();
}

/// A reader that remembered the layout of another writer's WAL reads what
/// the writer added later, also through a read that starts inside the
/// remembered layout (a page read from the WAL's start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_layout_does_not_cut_later_records_short() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (sa, sb) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let open = |dir: &TempDir| {
        let b = builder(store.clone(), dir);
        async move {
            let p = Arc::new(b.build().await.unwrap());
            let s = protobase::StorageBuilder::cloud(p.clone())
                .page_size(1 << 20)
                .build()
                .await
                .unwrap();
            (p, s)
        }
    };
    let (pw, writer) = open(&sa).await;
    let (_pr, reader) = open(&sb).await;
    let first = writer.push_bytes(b"first").await.unwrap();
    writer.flush_wal().await.unwrap();
    pw.flush_uploads().await.unwrap();
    assert_eq!(reader.get_bytes(first).await.unwrap(), b"first"[..]);
    // Slots later in the same WAL.
    let big = pattern(3 * OS as usize, 4);
    let second = writer.push_bytes(&big).await.unwrap();
    writer.flush_wal().await.unwrap();
    pw.flush_uploads().await.unwrap();
    assert_eq!(second.wal_id, first.wal_id, "one WAL");
    assert_eq!(reader.get_bytes(second).await.unwrap(), big[..]);
    writer.close().await.unwrap();
    reader.close().await.unwrap();
}

/// A remembered layout that lacks a slot below its end (another writer
/// uploaded a later slot first) lists again before reading it, instead of
/// taking the missing slot for a gap of zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_uploaded_after_a_later_one_is_read_not_taken_for_a_gap() {
    use object_store::ObjectStoreExt;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let wal = WalId::new_random();
    let slot = |n: u64| object_store::path::Path::from(format!("space/wal/{wal}/{n}"));
    let data = pattern(3 * OS as usize, 6);
    let piece = |n: u64| Bytes::copy_from_slice(&data[(n * OS) as usize..((n + 1) * OS) as usize]);
    for n in [0, 2] {
        store.put(&slot(n), piece(n).into()).await.unwrap();
    }
    let staging = TempDir::new().unwrap();
    let r = builder(store.clone(), &staging).build().await.unwrap();
    // Listed now, with slot 1 missing.
    assert_eq!(&r.read(wal, 0, 10).await.unwrap()[..], &data[..10]);
    store.put(&slot(1), piece(1).into()).await.unwrap();
    let got = r.read(wal, OS + 5, 100).await.unwrap();
    assert_eq!(&got[..], &data[(OS + 5) as usize..(OS + 105) as usize]);
    r.close().await.unwrap();
}
