//! The [`WalStore`] conformance suite.
//!
//! Every check takes a store that is open and may already hold other WALs
//! (suites share one store per run), and panics on a violation.
//!
//! | check | what must hold |
//! |---|---|
//! | [`append_read_round_trip`] | appended bytes read back at their offsets, in pieces of any size, and `list_wals` reports the length |
//! | [`reads_past_the_end_and_unknown_wals`] | an offset at or past the end is `OffsetOutOfRange`; an unknown WAL is `WalNotFound` (the "not here" tiers rely on) |
//! | [`rewrites_of_unsynced_bytes`] | bytes appended again at the same offsets (what the engine does after a failed sync) are accepted and read back |
//! | [`aligned_barriers`] | on a store with `barrier_alignment > 1`, a sync mid-unit is followed by appends at the next aligned offset, and the gap reads as zeros |
//! | [`concurrent_wals`] | many WALs written and read at once stay apart |
//! | [`deleted_wals`] | on a store that removes WALs, one its writer holds is refused; a removed one neither reads nor lists |
//! | [`continued_wals`] | on a store that [continues WALs](WalStore::continues_wals), a WAL is given to one writer at a time, and a cut is read back and appended after |
//! | [`checkpoints`] | on a store that keeps checkpoints, one is stored whole, listed by name, refused when its name is taken or bad, and removed once |
//! | [`run_all`] | all of the above |
//!
//! Durability across a crash cannot be checked through the trait alone: each
//! store's own tests do it (a memory store's `simulate_crash`, a file
//! store's reopen, the simulated disk's power loss).

use bytes::Bytes;

use crate::error::Error;
use crate::types::WalId;
use crate::wal_store::WalStore;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Reads `len` bytes at `offset`, in as many calls as the store needs.
async fn read_all(store: &dyn WalStore, wal: WalId, offset: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while (out.len() as u64) < len {
        let at = offset + out.len() as u64;
        let got = store
            .read(wal, at, len - out.len() as u64)
            .await
            .unwrap_or_else(|e| panic!("reading {wal} at {at}: {e}"));
        assert!(!got.is_empty(), "an empty read at {at} before the end");
        out.extend_from_slice(&got);
    }
    out
}

/// Appended bytes read back at their offsets; `list_wals` knows the WAL.
pub async fn append_read_round_trip(store: &dyn WalStore) {
    let wal = store.create_wal().await.expect("create_wal").id;
    let data = pattern(10_000, 1);
    let mut at = 0usize;
    for piece in [1usize, 7, 100, 4096, 10_000] {
        let end = (at + piece).min(data.len());
        if at == end {
            break;
        }
        store
            .append(wal, at as u64, Bytes::copy_from_slice(&data[at..end]))
            .await
            .expect("append");
        at = end;
    }
    store.sync(wal, at as u64).await.expect("sync");
    assert_eq!(read_all(store, wal, 0, at as u64).await, data[..at]);
    // Any range, any size.
    for (off, len) in [(0u64, 1u64), (5, 300), (4095, 2), (9_000, 1_000)] {
        let end = (off + len).min(at as u64);
        assert_eq!(
            read_all(store, wal, off, end - off).await,
            data[off as usize..end as usize],
            "range {off}+{len}"
        );
    }
    // A read asking for more than is there returns what there is.
    let tail = store.read(wal, at as u64 - 3, 1 << 20).await.expect("read");
    assert_eq!(&tail[..], &data[at - 3..at]);
    let listed = store.list_wals().await.expect("list_wals");
    let info = listed
        .iter()
        .find(|w| w.id == wal)
        .unwrap_or_else(|| panic!("{wal} not listed: {listed:?}"));
    assert_eq!(info.len, at as u64);
    store.close_wal(wal).await.expect("close_wal");
    // Closed WALs stay readable.
    assert_eq!(read_all(store, wal, 0, 10).await, data[..10]);
}

/// An offset at or past the end is `OffsetOutOfRange`; an unknown WAL is
/// `WalNotFound`.
pub async fn reads_past_the_end_and_unknown_wals(store: &dyn WalStore) {
    let wal = store.create_wal().await.expect("create_wal").id;
    store
        .append(wal, 0, Bytes::from_static(b"0123456789"))
        .await
        .expect("append");
    store.sync(wal, 10).await.expect("sync");
    for off in [10u64, 11, u64::MAX - 1] {
        match store.read(wal, off, 5).await {
            Err(Error::OffsetOutOfRange { wal: w, .. }) => assert_eq!(w, wal),
            other => panic!("read at {off} of a 10-byte WAL: {other:?}"),
        }
    }
    let unknown = WalId(uuid::Uuid::from_u128(0x0bad_0bad_0bad_0bad));
    match store.read(unknown, 0, 5).await {
        Err(Error::WalNotFound { wal }) => assert_eq!(wal, unknown),
        other => panic!("read of an unknown WAL: {other:?}"),
    }
}

/// Bytes appended again at the same offsets before a sync (the engine's
/// rewrite after a failed sync) are accepted and read back.
pub async fn rewrites_of_unsynced_bytes(store: &dyn WalStore) {
    let wal = store.create_wal().await.expect("create_wal").id;
    let data = pattern(3_000, 9);
    store
        .append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .expect("append");
    store
        .append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .expect("the same bytes again");
    store
        .append(wal, 1_000, Bytes::copy_from_slice(&data[1_000..]))
        .await
        .expect("a tail again");
    store.sync(wal, 3_000).await.expect("sync");
    assert_eq!(read_all(store, wal, 0, 3_000).await, data);
}

/// A barrier mid-unit on an aligned store: appends continue at the next
/// aligned offset and the gap reads as zeros (dense stores: nothing to do).
pub async fn aligned_barriers(store: &dyn WalStore) {
    let created = store.create_wal().await.expect("create_wal");
    let (wal, a) = (created.id, created.barrier_alignment);
    assert!(a >= 1, "alignment 0");
    if a == 1 || a > 1 << 24 {
        return;
    }
    let first = pattern(100, 3);
    store
        .append(wal, 0, Bytes::copy_from_slice(&first))
        .await
        .expect("append");
    store.sync(wal, 100).await.expect("sync");
    let second = pattern(50, 4);
    store
        .append(wal, a, Bytes::copy_from_slice(&second))
        .await
        .expect("append at the next aligned offset");
    store.sync(wal, a + 50).await.expect("sync");
    let all = read_all(store, wal, 0, a + 50).await;
    assert_eq!(&all[..100], &first[..]);
    assert!(
        all[100..a as usize].iter().all(|b| *b == 0),
        "the gap is not zeros"
    );
    assert_eq!(&all[a as usize..], &second[..]);
}

/// Many WALs written and read at once stay apart.
pub async fn concurrent_wals(store: &dyn WalStore) {
    let ids = futures_util::future::join_all((0..8).map(|_| store.create_wal()))
        .await
        .into_iter()
        .map(|w| w.expect("create_wal").id)
        .collect::<Vec<_>>();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "two WALs share an id");
    futures_util::future::join_all(ids.iter().enumerate().map(|(i, wal)| async move {
        let data = pattern(2_000 + i * 10, i as u8);
        for (k, piece) in data.chunks(333).enumerate() {
            store
                .append(*wal, (k * 333) as u64, Bytes::copy_from_slice(piece))
                .await
                .expect("append");
        }
        store.sync(*wal, data.len() as u64).await.expect("sync");
        assert_eq!(read_all(store, *wal, 0, data.len() as u64).await, data);
    }))
    .await;
}

/// On a store that continues WALs: a WAL its writer holds is not given to
/// another ([`WalStore::reopen_wal`] is `None`); once closed it is, and
/// its writer may write over its tail.
/// A store that does not continue WALs gives none.
pub async fn continued_wals(store: &dyn WalStore) {
    let wal = store.create_wal().await.expect("create_wal").id;
    let data = pattern(3_000, 9);
    store
        .append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .expect("append");
    store.sync(wal, data.len() as u64).await.expect("sync");
    assert_eq!(
        store.reopen_wal(wal).await.expect("reopen_wal"),
        None,
        "a WAL its writer holds was given to another"
    );
    store.close_wal(wal).await.expect("close_wal");
    if !store.continues_wals() {
        assert_eq!(store.reopen_wal(wal).await.expect("reopen_wal"), None);
        return;
    }
    let again = store.reopen_wal(wal).await.expect("reopen_wal");
    assert_eq!(again.map(|w| w.id), Some(wal), "a closed WAL was not given");
    assert_eq!(store.reopen_wal(wal).await.expect("reopen_wal"), None);
    // The continuing writer fences a torn tail by writing over its first
    // bytes: a reopened WAL takes writes below its end.
    let more = pattern(500, 3);
    store
        .append(wal, 1_000, Bytes::copy_from_slice(&more))
        .await
        .expect("append below the end of a reopened WAL");
    store.sync(wal, 1_500).await.expect("sync");
    let mut expected = data.clone();
    expected[1_000..1_500].copy_from_slice(&more);
    assert_eq!(read_all(store, wal, 0, data.len() as u64).await, expected);
    store.close_wal(wal).await.expect("close_wal");
}

/// A store that removes WALs ([`WalStore::delete_wal`]) refuses one its
/// writer holds ([`Error::WalInUse`]); once closed (and, for a store that
/// uploads, uploaded: a bounded wait) it is removed, reads and a second
/// removal give [`Error::WalNotFound`], and `list_wals` leaves it out. An
/// unknown WAL is [`Error::WalNotFound`]. A store that cannot remove WALs
/// refuses with [`Error::Invalid`] and keeps the WAL.
pub async fn deleted_wals(store: &dyn WalStore) {
    let wal = store.create_wal().await.expect("create_wal").id;
    let data = pattern(3_000, 5);
    store
        .append(wal, 0, Bytes::copy_from_slice(&data))
        .await
        .expect("append");
    store.sync(wal, data.len() as u64).await.expect("sync");
    match store.delete_wal(wal).await {
        Err(Error::Invalid { .. }) => {
            assert_eq!(
                read_all(store, wal, 0, 3_000).await,
                data,
                "a refused removal lost bytes"
            );
            store.close_wal(wal).await.expect("close_wal");
            return;
        }
        Err(Error::WalInUse { .. }) => {}
        other => panic!("a WAL its writer holds was not refused: {other:?}"),
    }
    assert_eq!(read_all(store, wal, 0, 3_000).await, data);
    store.close_wal(wal).await.expect("close_wal");
    // A store may hold a closed WAL until it is uploaded.
    let mut tries = 0;
    loop {
        match store.delete_wal(wal).await {
            Ok(()) => break,
            Err(Error::WalInUse { .. }) if tries < 1_000 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => panic!("removing closed WAL {wal}: {other:?}"),
        }
    }
    assert!(
        matches!(store.read(wal, 0, 10).await, Err(Error::WalNotFound { .. })),
        "a removed WAL still reads"
    );
    let listed = store.list_wals().await.expect("list_wals");
    assert!(
        listed.iter().all(|w| w.id != wal),
        "a removed WAL is listed"
    );
    assert!(matches!(
        store.delete_wal(wal).await,
        Err(Error::WalNotFound { .. })
    ));
    assert!(matches!(
        store.delete_wal(WalId::new_random()).await,
        Err(Error::WalNotFound { .. })
    ));
}

/// A store that keeps [checkpoints](crate::checkpoint) stores them whole,
/// lists them sorted by name, refuses a taken name
/// ([`Error::CheckpointExists`], the first one staying) and a bad one,
/// and removes one once ([`Error::CheckpointNotFound`] after). A store
/// that keeps none refuses with [`Error::Invalid`] and lists none.
pub async fn checkpoints(store: &dyn WalStore) {
    use crate::checkpoint::Checkpoint;
    use crate::types::{AtomPointer, RootRecord};
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cp = |name: &str, seq: u64| {
        let root = RootRecord::new(AtomPointer::new(WalId::new_random(), 64), seq, 1, None);
        Checkpoint::new(&format!("{name}-{tag}"), root).expect("a good name")
    };
    let (b, a) = (cp("b", 2), cp("a", 1));
    match store.put_checkpoint(&b).await {
        Err(Error::Invalid { .. }) => {
            assert!(
                store.checkpoints().await.expect("checkpoints").is_empty(),
                "a store that keeps no checkpoints lists some"
            );
            return;
        }
        other => other.expect("put_checkpoint"),
    }
    store.put_checkpoint(&a).await.expect("put_checkpoint");
    let taken = store.put_checkpoint(&cp("a", 9)).await;
    assert!(
        matches!(taken, Err(Error::CheckpointExists { .. })),
        "a taken name: {taken:?}"
    );
    let mine = |all: Vec<Checkpoint>| -> Vec<Checkpoint> {
        all.into_iter().filter(|c| c.name.ends_with(&tag)).collect()
    };
    let listed = mine(store.checkpoints().await.expect("checkpoints"));
    assert_eq!(
        listed,
        vec![a.clone(), b.clone()],
        "stored whole, sorted by name"
    );
    let mut bad = a.clone();
    bad.name = "../escape".into();
    assert!(
        store.put_checkpoint(&bad).await.is_err(),
        "a bad name was stored"
    );
    store.remove_checkpoint(&a.name).await.expect("remove");
    assert!(matches!(
        store.remove_checkpoint(&a.name).await,
        Err(Error::CheckpointNotFound { .. })
    ));
    assert_eq!(
        mine(store.checkpoints().await.expect("checkpoints")),
        vec![b.clone()]
    );
    store.remove_checkpoint(&b.name).await.expect("remove");
}

/// Every check.
pub async fn run_all(store: &dyn WalStore) {
    checkpoints(store).await;
    deleted_wals(store).await;
    continued_wals(store).await;
    append_read_round_trip(store).await;
    reads_past_the_end_and_unknown_wals(store).await;
    rewrites_of_unsynced_bytes(store).await;
    aligned_barriers(store).await;
    concurrent_wals(store).await;
}
