//! Unit tests of the WAL engine and the root committer against the mockall
//! mocks of `BlockProvider` and `VoteStrategy` (feature `mock`): injected
//! failures surface as typed errors, nothing acknowledged is lost by an error
//! path, and a root is written only after the sync that covers what it
//! reaches (DESIGN.md §4, §8, §9).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mockall::Sequence;
use protobase::mock::{MockBlockProvider, MockVoteStrategy};
use protobase::record::{WAL_HEADER_LEN, WalKind};
use protobase::{
    AtomFormat, AtomPointer, Error, Grant, NewWal, RootLock, RootRecord, RootVersion, Storage,
    StorageBuilder, VersionedRoot, WalId, WalInfo,
};

/// What the mocks saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Create(WalId),
    Append {
        wal: WalId,
        offset: u64,
        len: u64,
    },
    Sync {
        wal: WalId,
        upto: u64,
    },
    SyncFailed {
        wal: WalId,
        upto: u64,
    },
    WriteRoot {
        sequence: u64,
        expected: Option<u64>,
    },
    LockRoot,
    Unlock,
    Acquire,
    Release,
}

/// The bytes behind the mock provider.
#[derive(Default)]
struct Disk {
    wals: HashMap<WalId, Vec<u8>>,
    root: Option<RootRecord>,
    log: Vec<Event>,
}

type Shared = Arc<Mutex<Disk>>;

fn log(disk: &Shared) -> Vec<Event> {
    disk.lock().unwrap().log.clone()
}

fn injected(what: &str) -> Error {
    Error::io(
        format!("injected {what} failure"),
        std::io::Error::other("boom"),
    )
}

/// Releases the root lock: logged, so tests see when it happens.
struct Unlock(Shared);

impl Drop for Unlock {
    fn drop(&mut self) {
        self.0.lock().unwrap().log.push(Event::Unlock);
    }
}

/// Adds expectations that behave like a correct provider over `disk`.
/// Expectations added before this call take precedence (mockall uses the
/// first matching, unsaturated expectation).
fn backed_by(m: &mut MockBlockProvider, disk: &Shared) {
    let d = disk.clone();
    m.expect_create_wal().returning(move || {
        let id = WalId::new_random();
        let mut d = d.lock().unwrap();
        d.wals.insert(id, Vec::new());
        d.log.push(Event::Create(id));
        Ok(NewWal::dense(id))
    });
    let d = disk.clone();
    m.expect_append()
        .returning(move |wal, offset, data: Bytes| {
            let mut d = d.lock().unwrap();
            d.log.push(Event::Append {
                wal,
                offset,
                len: data.len() as u64,
            });
            let w = d.wals.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
            let end = offset as usize + data.len();
            if w.len() < end {
                w.resize(end, 0);
            }
            w[offset as usize..end].copy_from_slice(&data);
            Ok(())
        });
    let d = disk.clone();
    m.expect_sync().returning(move |wal, upto| {
        d.lock().unwrap().log.push(Event::Sync { wal, upto });
        Ok(())
    });
    let d = disk.clone();
    m.expect_read().returning(move |wal, offset, len| {
        let d = d.lock().unwrap();
        let w = d.wals.get(&wal).ok_or(Error::WalNotFound { wal })?;
        if offset >= w.len() as u64 {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: w.len() as u64,
            });
        }
        let end = (w.len() as u64).min(offset.saturating_add(len));
        Ok(Bytes::copy_from_slice(&w[offset as usize..end as usize]))
    });
    let d = disk.clone();
    m.expect_list_wals().returning(move || {
        let d = d.lock().unwrap();
        Ok(d.wals
            .iter()
            .map(|(id, w)| WalInfo {
                id: *id,
                len: w.len() as u64,
            })
            .collect())
    });
    m.expect_close_wal().returning(|_| Ok(()));
    let d = disk.clone();
    m.expect_read_root()
        .returning(move || Ok(d.lock().unwrap().root.clone().map(VersionedRoot::by_order)));
    let d = disk.clone();
    m.expect_write_root()
        .returning(move |root: &RootRecord, expected: Option<RootVersion>| {
            let mut d = d.lock().unwrap();
            let expected_seq = expected.map(|v| v.parts().1);
            d.log.push(Event::WriteRoot {
                sequence: root.sequence,
                expected: expected_seq,
            });
            if d.root.as_ref().map(RootVersion::of_root) != expected {
                return Err(Error::RootConflict {
                    expected: expected_seq,
                    found: d.root.as_ref().map(|r| r.sequence),
                });
            }
            d.root = Some(root.clone());
            Ok(RootVersion::of_root(root))
        });
    let d = disk.clone();
    m.expect_lock_root().returning(move || {
        d.lock().unwrap().log.push(Event::LockRoot);
        Ok(RootLock::new(Unlock(d.clone())))
    });
    m.expect_read_config().returning(|| Ok(None));
    m.expect_close().returning(|| Ok(()));
}

async fn build(provider: MockBlockProvider) -> Storage {
    StorageBuilder::new()
        .with_block_provider(Arc::new(provider))
        .build()
        .await
        .unwrap()
}

/// Index of the first event matching `f`.
fn position(events: &[Event], f: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().position(f)
}

// ---------------------------------------------------------------------------
// Block provider failures

#[tokio::test]
async fn failed_sync_fails_the_flush_and_the_next_flush_retries() {
    let disk = Shared::default();
    let mut m = MockBlockProvider::new();
    let d = disk.clone();
    m.expect_sync().times(2).returning(move |wal, upto| {
        d.lock().unwrap().log.push(Event::SyncFailed { wal, upto });
        Err(injected("sync"))
    });
    backed_by(&mut m, &disk);
    let storage = build(m).await;

    let payload = b"must survive a failed fsync".to_vec();
    let ptr = storage.push_bytes(&payload).await.unwrap();
    let end = ptr.offset + WalKind::Native.record_len(payload.len() as u64);
    for _ in 0..2 {
        let err = storage.flush_wal().await.unwrap_err();
        assert!(
            matches!(&err, Error::Io { context, .. } if context == "injected sync failure"),
            "{err:?}"
        );
        assert_eq!(
            storage.unsynced_bytes(),
            end,
            "a failed sync made nothing durable"
        );
        // Still readable: from the provider, which has the bytes.
        assert_eq!(storage.get_bytes(ptr).await.unwrap(), payload);
    }
    storage.flush_wal().await.unwrap();
    assert_eq!(storage.unsynced_bytes(), 0);

    let events = log(&disk);
    let syncs: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Sync { .. } | Event::SyncFailed { .. }))
        .collect();
    assert_eq!(
        syncs,
        [
            &Event::SyncFailed {
                wal: ptr.wal_id,
                upto: end
            },
            &Event::SyncFailed {
                wal: ptr.wal_id,
                upto: end
            },
            &Event::Sync {
                wal: ptr.wal_id,
                upto: end
            },
        ]
    );
    // The successful sync covers bytes that were appended before it and
    // hold the record.
    let wal = disk.lock().unwrap().wals[&ptr.wal_id].clone();
    assert_eq!(wal.len() as u64, end);
    let at = ptr.offset as usize;
    assert_eq!(&wal[at + 9..at + 9 + payload.len()], &payload[..]);
    // A failed fsync may have dropped the pages it was to write: after each
    // failure every unsynced byte is appended again before the next sync
    // (once at first, then once per failure).
    let mut since_sync = 0u64;
    for e in &events {
        match e {
            Event::Append { wal, len, .. } if *wal == ptr.wal_id => since_sync += len,
            Event::Sync { .. } | Event::SyncFailed { .. } => {
                assert_eq!(since_sync, end, "the bytes before a sync: {events:?}");
                since_sync = 0;
            }
            _ => {}
        }
    }
    storage.close().await.unwrap();
}

#[tokio::test]
async fn failed_sync_blocks_the_root_and_a_later_publish_succeeds() {
    let disk = Shared::default();
    let mut m = MockBlockProvider::new();
    let d = disk.clone();
    m.expect_sync().times(1).returning(move |wal, upto| {
        d.lock().unwrap().log.push(Event::SyncFailed { wal, upto });
        Err(injected("sync"))
    });
    backed_by(&mut m, &disk);
    let storage = build(m).await;

    let ptr = storage
        .push_atom(&"root atom", AtomFormat::Json)
        .await
        .unwrap();
    let err = storage.set_root(ptr).await.unwrap_err();
    assert!(
        matches!(&err, Error::CommitFailed { source, .. } if matches!(**source, Error::Io { .. })),
        "{err:?}"
    );
    assert!(
        !log(&disk)
            .iter()
            .any(|e| matches!(e, Event::WriteRoot { .. })),
        "a root was written although its record is not durable"
    );
    assert_eq!(storage.read_current_root().await.unwrap(), None);
    assert!(
        log(&disk).contains(&Event::Unlock),
        "the root lock was released"
    );

    let root = storage.set_root(ptr).await.unwrap();
    assert_eq!(root.sequence, 1, "the failed attempt left no trace");
    assert_eq!(disk.lock().unwrap().root.as_ref(), Some(&root));
    let events = log(&disk);
    let write = position(&events, |e| matches!(e, Event::WriteRoot { .. })).unwrap();
    let sync = position(&events, |e| matches!(e, Event::Sync { .. })).unwrap();
    assert!(sync < write, "{events:?}");
    storage.close().await.unwrap();
}

#[tokio::test]
async fn root_conflict_from_the_provider_surfaces_from_publish() {
    let disk = Shared::default();
    let mut m = MockBlockProvider::new();
    m.expect_write_root().times(1).returning(|_, expected| {
        Err(Error::RootConflict {
            expected: expected.map(|v| v.parts().1),
            found: Some(7),
        })
    });
    backed_by(&mut m, &disk);
    let storage = build(m).await;
    let ptr = storage.push_bytes(b"loser").await.unwrap();
    let update = storage.begin_root_update().await.unwrap();
    let err = update.publish(ptr).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::CommitFailed { source, .. } if matches!(**source, Error::RootConflict {
                expected: None,
                found: Some(7)
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), protobase::ErrorKind::Conflict);
    // Nothing claims the lost root.
    assert_eq!(storage.read_current_root().await.unwrap(), None);
    assert_eq!(disk.lock().unwrap().root, None);
    // The record itself is durable and the next update works.
    assert_eq!(&storage.get_bytes(ptr).await.unwrap()[..], b"loser");
    let root = storage.set_root(ptr).await.unwrap();
    assert_eq!(root.sequence, 1);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn wal_not_found_from_the_provider_surfaces() {
    let disk = Shared::default();
    let mut m = MockBlockProvider::new();
    m.expect_read()
        .times(1)
        .returning(|wal, _, _| Err(Error::WalNotFound { wal }));
    backed_by(&mut m, &disk);
    let storage = build(m).await;
    let foreign = AtomPointer::new(WalId::new_random(), 32);
    let err = storage.get_bytes(foreign).await.unwrap_err();
    assert!(
        matches!(err, Error::WalNotFound { wal } if wal == foreign.wal_id),
        "{err:?}"
    );
    assert!(err.is_not_found());
    storage.close().await.unwrap();
}

#[tokio::test]
async fn failed_background_write_loses_nothing() {
    let disk = Shared::default();
    let mut m = MockBlockProvider::new();
    m.expect_append()
        .times(3)
        .returning(|_, _, _| Err(injected("append")));
    backed_by(&mut m, &disk);
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(m))
        .buffer_size(256)
        .build()
        .await
        .unwrap();
    // Few enough records that pushes never wait for the writer (8 buffers):
    // every append failure hits a background write or a flush.
    let mut pushed = Vec::new();
    for i in 0..15u8 {
        let data = vec![i; 100];
        pushed.push((storage.push_bytes(&data).await.unwrap(), data));
    }
    // Whatever the background writer managed, every record reads back...
    for (ptr, data) in &pushed {
        assert_eq!(storage.get_bytes(*ptr).await.unwrap(), data[..]);
    }
    // ...and a flush (retrying the failed writes) makes all of it durable.
    while let Err(e) = storage.flush_wal().await {
        assert!(
            matches!(&e, Error::Io { context, .. } if context == "injected append failure"),
            "{e:?}"
        );
    }
    assert_eq!(storage.unsynced_bytes(), 0);
    let wal = pushed[0].0.wal_id;
    let stored = disk.lock().unwrap().wals[&wal].clone();
    for (ptr, data) in &pushed {
        let at = ptr.offset as usize;
        assert_eq!(&stored[at + 9..at + 9 + data.len()], &data[..]);
    }
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Ordering: data before root

#[tokio::test]
async fn root_is_written_only_after_the_sync_covering_its_record_in_sequence() {
    let mut m = MockBlockProvider::new();
    let mut seq = Sequence::new();
    let wal = WalId::new_random();
    m.expect_create_wal()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move || Ok(NewWal::dense(wal)));
    m.expect_append()
        .withf(move |w, offset, data| {
            *w == wal && *offset == 0 && data.len() as u64 == WAL_HEADER_LEN + 13 + 5
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(()));
    m.expect_sync()
        .withf(move |w, upto| *w == wal && *upto == WAL_HEADER_LEN + 18)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    m.expect_write_root()
        .withf(move |root, expected| {
            root.pointer == AtomPointer::new(wal, WAL_HEADER_LEN)
                && root.sequence == 1
                && expected.is_none()
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(RootVersion::from_u64(1)));
    m.expect_read_root().returning(|| Ok(None));
    m.expect_lock_root().returning(|| Ok(RootLock::none()));
    m.expect_close_wal().returning(|_| Ok(()));
    m.expect_close().times(1).returning(|| Ok(()));
    let storage = build(m).await;
    let ptr = storage.push_bytes(b"hello").await.unwrap();
    assert_eq!(ptr, AtomPointer::new(wal, WAL_HEADER_LEN));
    let root = storage.set_root(ptr).await.unwrap();
    assert_eq!(root.pointer, ptr);
    // Nothing more to write at close: everything is durable.
    storage.close().await.unwrap();
}

/// Regression: a WAL sealed by a rollover while a flush of it was writing
/// was forgotten by the writer once that flush ended, although the records
/// pushed during the flush were not synced; later roots reaching them were
/// then written without any sync covering them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollover_during_a_flush_keeps_the_rest_of_the_wal_for_the_next_sync() {
    let disk = Shared::default();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = Mutex::new(Some(entered_tx));
    let release_rx = Mutex::new(release_rx);
    let mut m = MockBlockProvider::new();
    let d = disk.clone();
    // The flush's first write stops until the test has pushed more.
    m.expect_append()
        .times(1)
        .returning(move |wal, offset, data: Bytes| {
            entered_tx.lock().unwrap().take().unwrap().send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
            let mut d = d.lock().unwrap();
            d.log.push(Event::Append {
                wal,
                offset,
                len: data.len() as u64,
            });
            d.wals.get_mut(&wal).unwrap().extend_from_slice(&data);
            Ok(())
        });
    backed_by(&mut m, &disk);
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(m))
        .max_wal_size(4096)
        .build()
        .await
        .unwrap();
    let r1 = storage.push_bytes(&[1; 100]).await.unwrap();
    let flush = tokio::spawn({
        let storage = storage.clone();
        async move { storage.flush_wal().await }
    });
    entered_rx.await.unwrap();
    // While the flush writes: one more record in the same WAL, then one
    // that does not fit and rolls over to a new WAL.
    let r2 = storage.push_bytes(&[2; 100]).await.unwrap();
    let r3 = storage.push_bytes(&[3; 4000]).await.unwrap();
    assert_eq!(r2.wal_id, r1.wal_id);
    assert_ne!(r3.wal_id, r1.wal_id);
    release_tx.send(()).unwrap();
    flush.await.unwrap().unwrap();

    let r2_end = r2.offset + WalKind::Native.record_len(100);
    let root = storage.set_root(r2).await.unwrap();
    let events = log(&disk);
    let write = position(&events, |e| matches!(e, Event::WriteRoot { .. })).unwrap();
    assert!(
        position(&events[..write], |e| {
            matches!(e, Event::Sync { wal, upto } if *wal == r2.wal_id && *upto >= r2_end)
        })
        .is_some(),
        "root {} written before its record was synced: {events:?}",
        root.sequence
    );
    assert_eq!(storage.unsynced_bytes(), 0);
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_root_is_written_before_every_record_it_reaches_is_synced() {
    let disk = Shared::default();
    let mut m = MockBlockProvider::new();
    backed_by(&mut m, &disk);
    // Small buffers and WALs: background writes and rollovers.
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(m))
        .buffer_size(512)
        .max_wal_size(4096)
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            let mut published = Vec::new();
            for i in 0..10u64 {
                let mut reached = Vec::new();
                for k in 0..3 {
                    let len = 50 + ((t * 31 + i * 7 + k * 13) % 900) as usize;
                    reached.push((storage.push_bytes(&vec![t as u8; len]).await.unwrap(), len));
                }
                let root = storage.set_root(reached[0].0).await.unwrap();
                published.push((root, reached));
            }
            published
        }));
    }
    let mut published = Vec::new();
    for t in tasks {
        published.extend(t.await.unwrap());
    }
    let events = log(&disk);
    for (root, reached) in &published {
        let write = position(
            &events,
            |e| matches!(e, Event::WriteRoot { sequence, .. } if *sequence >= root.sequence),
        )
        .unwrap_or_else(|| panic!("root {} was acknowledged but never written", root.sequence));
        for (ptr, len) in reached {
            let end = ptr.offset + WalKind::Native.record_len(*len as u64);
            let synced = position(
                &events[..write],
                |e| matches!(e, Event::Sync { wal, upto } if *wal == ptr.wal_id && *upto >= end),
            );
            assert!(
                synced.is_some(),
                "root {} written before {ptr} (ends at {end}) was synced",
                root.sequence
            );
            // And the sync came after the bytes were appended.
            let appended = position(
                &events[..synced.unwrap()],
                |e| matches!(e, Event::Append { wal, offset, len } if *wal == ptr.wal_id && offset + len >= end),
            );
            assert!(appended.is_some(), "{ptr} synced before it was appended");
        }
    }
    // Root writes are ordered compare-and-swaps.
    let mut last = None;
    for e in &events {
        if let Event::WriteRoot { sequence, expected } = e {
            assert_eq!(*expected, last);
            last = Some(*sequence);
        }
    }
    assert_eq!(last, Some(80));
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Vote strategy

fn grant(term: u64, established: Option<RootRecord>) -> Grant {
    Grant {
        term,
        holder: "mock".into(),
        expires_at: None,
        established_root: established.map(|r| Some(VersionedRoot::by_order(r))),
    }
}

/// A vote mock that grants `term` after `failures` refusals and logs calls.
fn vote_mock(
    disk: &Shared,
    failures: usize,
    term: u64,
    latest: Option<RootRecord>,
) -> MockVoteStrategy {
    let mut v = MockVoteStrategy::new();
    v.expect_let_go().returning(|| ());
    if failures > 0 {
        let d = disk.clone();
        v.expect_acquire().times(failures).returning(move || {
            d.lock().unwrap().log.push(Event::Acquire);
            Err(Error::NotGranted("no quorum".into()))
        });
    }
    let d = disk.clone();
    v.expect_acquire().returning(move || {
        d.lock().unwrap().log.push(Event::Acquire);
        Ok(grant(term, latest.clone()))
    });
    let d = disk.clone();
    v.expect_release().returning(move |g| {
        assert_eq!(g.term, term);
        d.lock().unwrap().log.push(Event::Release);
        Ok(())
    });
    v
}

async fn build_with_vote(disk: &Shared, vote: MockVoteStrategy) -> Storage {
    let mut m = MockBlockProvider::new();
    backed_by(&mut m, disk);
    StorageBuilder::new()
        .with_block_provider(Arc::new(m))
        .with_vote_strategy(Arc::new(vote))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn refused_grant_fails_begin_root_update_and_holds_nothing() {
    let disk = Shared::default();
    let storage = build_with_vote(&disk, vote_mock(&disk, 1, 3, None)).await;
    let ptr = storage.push_bytes(b"x").await.unwrap();
    let err = storage.begin_root_update().await.unwrap_err();
    assert!(
        matches!(&err, Error::NotGranted(m) if m == "no quorum"),
        "{err:?}"
    );
    assert_eq!(err.kind(), protobase::ErrorKind::Fenced);
    assert_eq!(
        log(&disk)
            .into_iter()
            .filter(|e| !matches!(e, Event::Create(_)))
            .collect::<Vec<_>>(),
        [Event::LockRoot, Event::Acquire, Event::Unlock],
        "the root lock is released and nothing is released to the voters"
    );
    // The next attempt is granted and publishes under the grant's term.
    let root = storage.set_root(ptr).await.unwrap();
    assert_eq!((root.sequence, root.term), (1, 3));
    storage.close().await.unwrap();
}

/// Waits (on the runtime's clock: paused tests advance it) until the
/// lingering grant is given back.
async fn until_released(disk: &Shared) {
    for _ in 0..10_000 {
        if log(disk).ends_with(&[Event::Release, Event::Unlock]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the grant was never given back: {:?}", log(disk));
}

#[tokio::test(start_paused = true)]
async fn grant_is_released_after_the_root_is_written() {
    let disk = Shared::default();
    let storage = build_with_vote(&disk, vote_mock(&disk, 0, 9, None)).await;
    let ptr = storage.push_bytes(b"x").await.unwrap();
    let update = storage.begin_root_update().await.unwrap();
    assert_eq!(update.term(), 9);
    assert!(!log(&disk).contains(&Event::Release));
    let root = update.publish(ptr).await.unwrap();
    assert_eq!(root.term, 9);
    // A grant without a lease lingers a moment for the next update.
    until_released(&disk).await;
    let events: Vec<Event> = log(&disk)
        .into_iter()
        .filter(|e| {
            !matches!(
                e,
                Event::Create(_) | Event::Append { .. } | Event::Sync { .. }
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            Event::LockRoot,
            Event::Acquire,
            Event::WriteRoot {
                sequence: 1,
                expected: None
            },
            Event::Release,
            Event::Unlock,
        ]
    );
    // An aborted update releases too, and publishes nothing.
    let update = storage.begin_root_update().await.unwrap();
    update.abort().await;
    until_released(&disk).await;
    let events = log(&disk);
    assert_eq!(
        events[events.len() - 4..],
        [
            Event::LockRoot,
            Event::Acquire,
            Event::Release,
            Event::Unlock
        ]
    );
    storage.close().await.unwrap();
}

/// Updates that follow one another within the linger share one grant and
/// root lock: the second neither acquires nor reads the register again,
/// and builds on the first. (Paused time: the linger cannot run out
/// between them.)
#[tokio::test(start_paused = true)]
async fn consecutive_updates_share_one_lingering_grant() {
    let disk = Shared::default();
    let storage = build_with_vote(&disk, vote_mock(&disk, 0, 4, None)).await;
    let a = storage.push_bytes(b"a").await.unwrap();
    let b = storage.push_bytes(b"b").await.unwrap();
    storage.set_root(a).await.unwrap();
    let second = storage.set_root(b).await.unwrap();
    assert_eq!((second.sequence, second.term), (2, 4));
    let count = |e: &Event| log(&disk).iter().filter(|x| *x == e).count();
    assert_eq!(count(&Event::Acquire), 1, "{:?}", log(&disk));
    assert_eq!(count(&Event::LockRoot), 1, "{:?}", log(&disk));
    assert_eq!(count(&Event::Release), 0, "{:?}", log(&disk));
    until_released(&disk).await;
    assert_eq!((count(&Event::Release), count(&Event::Unlock)), (1, 1));
    // After the linger the next update acquires afresh.
    storage.set_root(a).await.unwrap();
    assert_eq!(count(&Event::Acquire), 2);
    storage.close().await.unwrap();
}

/// `close` gives a lingering grant and root lock back at once (another
/// process may be waiting for the lock).
#[tokio::test(start_paused = true)]
async fn close_gives_a_lingering_grant_back_at_once() {
    let disk = Shared::default();
    let storage = build_with_vote(&disk, vote_mock(&disk, 0, 2, None)).await;
    let p = storage.push_bytes(b"x").await.unwrap();
    storage.set_root(p).await.unwrap();
    assert!(!log(&disk).contains(&Event::Release));
    storage.close().await.unwrap();
    assert!(
        log(&disk).ends_with(&[Event::Release, Event::Unlock]),
        "{:?}",
        log(&disk)
    );
}

/// A grant with a lease does not linger (it could expire while idle).
#[tokio::test]
async fn a_leased_grant_is_given_back_with_the_last_update() {
    let disk = Shared::default();
    let mut v = MockVoteStrategy::new();
    v.expect_let_go().returning(|| ());
    let d = disk.clone();
    v.expect_acquire().returning(move || {
        d.lock().unwrap().log.push(Event::Acquire);
        let mut g = grant(6, None);
        g.expires_at = Some(std::time::Instant::now() + Duration::from_secs(3600));
        Ok(g)
    });
    let d = disk.clone();
    v.expect_release().returning(move |_| {
        d.lock().unwrap().log.push(Event::Release);
        Ok(())
    });
    let storage = build_with_vote(&disk, v).await;
    let p = storage.push_bytes(b"x").await.unwrap();
    storage.set_root(p).await.unwrap();
    assert!(
        log(&disk).ends_with(&[Event::Release, Event::Unlock]),
        "{:?}",
        log(&disk)
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn dropped_update_releases_the_grant() {
    let disk = Shared::default();
    let released = Arc::new(tokio::sync::Notify::new());
    let mut v = MockVoteStrategy::new();
    v.expect_let_go().returning(|| ());
    v.expect_acquire().returning(|| Ok(grant(1, None)));
    let r = released.clone();
    v.expect_release().times(1).returning(move |_| {
        r.notify_one();
        Ok(())
    });
    let storage = build_with_vote(&disk, v).await;
    let update = storage.begin_root_update().await.unwrap();
    drop(update);
    // The release runs on a spawned task; the timeout only bounds a hang.
    tokio::time::timeout(Duration::from_secs(10), released.notified())
        .await
        .expect("a dropped update never released its grant");
    assert_eq!(storage.read_current_root().await.unwrap(), None);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn the_newest_root_reported_by_the_voters_is_adopted() {
    let disk = Shared::default();
    let elsewhere = RootRecord::new(
        AtomPointer::new(WalId::new_random(), 32),
        5,
        4,
        Some("peer".into()),
    );
    let mut m = MockBlockProvider::new();
    // The local copy of the root is behind; the provider accepts the CAS
    // built on the voters' root.
    m.expect_write_root()
        .withf(|root, expected| {
            root.sequence == 6 && *expected == Some(RootVersion::from_pair(4, 5))
        })
        .times(1)
        .returning(|root, _| Ok(RootVersion::of_root(root)));
    backed_by(&mut m, &disk);
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(m))
        .with_vote_strategy(Arc::new(vote_mock(&disk, 0, 5, Some(elsewhere.clone()))))
        .build()
        .await
        .unwrap();
    let update = storage.begin_root_update().await.unwrap();
    assert_eq!(update.current(), Some(&elsewhere));
    let ptr = storage
        .push_bytes(b"on top of the peer's root")
        .await
        .unwrap();
    let root = update.publish(ptr).await.unwrap();
    assert_eq!((root.sequence, root.term), (6, 5));
    storage.close().await.unwrap();
}

#[tokio::test]
async fn failed_root_write_surfaces_and_releases() {
    let disk = Shared::default();
    let mut v = MockVoteStrategy::new();
    v.expect_let_go().returning(|| ());
    v.expect_acquire().returning(|| Ok(grant(2, None)));
    let d = disk.clone();
    v.expect_release().times(1).returning(move |_| {
        d.lock().unwrap().log.push(Event::Release);
        Ok(())
    });
    let mut m = MockBlockProvider::new();
    m.expect_write_root()
        .times(1)
        .returning(|_, _| Err(Error::NotGranted("lost the majority".into())));
    backed_by(&mut m, &disk);
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(m))
        .with_vote_strategy(Arc::new(v))
        .build()
        .await
        .unwrap();
    let ptr = storage.push_bytes(b"x").await.unwrap();
    let err = storage.set_root(ptr).await.unwrap_err();
    assert!(
        matches!(&err, Error::CommitFailed { source, .. }
            if matches!(&**source, Error::NotGranted(m) if m == "lost the majority")),
        "{err:?}"
    );
    // The release runs on a spawned task once the last hold is gone.
    for _ in 0..1000 {
        if log(&disk).contains(&Event::Release) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(log(&disk).contains(&Event::Release));
    storage.close().await.unwrap();
}
