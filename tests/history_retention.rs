//! Root history with retention (issue 15 item 4): pruning an object store's
//! root chain (`Storage::prune_roots`) and the files' history, without
//! misleading a stale writer or reader, and a fresh reader still opening in
//! as many requests.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use protobase::backends::cloud::CloudBlockProvider;
use protobase::{
    AtomPointer, Error, RootRecord, RootRegister, RootRetention, RootVersion, Storage,
    StorageBuilder, WalId, WalStore,
};
use support::flaky_store::Flaky;

async fn provider(store: Arc<dyn ObjectStore>, staging: &std::path::Path) -> CloudBlockProvider {
    CloudBlockProvider::builder(store, staging)
        .object_size(4096)
        .upload_interval_ms(5)
        .build()
        .await
        .unwrap()
}

async fn cloud(store: Arc<dyn ObjectStore>, staging: &std::path::Path) -> Storage {
    StorageBuilder::cloud(Arc::new(provider(store, staging).await))
        .build()
        .await
        .unwrap()
}

/// `n` commits, each a new record; returns their pointers.
async fn commits(s: &Storage, n: u64) -> Vec<AtomPointer> {
    let mut out = Vec::new();
    for i in 0..n {
        let p = s.push_bytes(format!("r{i}").as_bytes()).await.unwrap();
        s.set_root(p).await.unwrap();
        out.push(p);
    }
    out
}

async fn root_objects(store: &dyn ObjectStore) -> usize {
    store
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .filter(|m| m.location.as_ref().starts_with("root/"))
        .count()
}

/// Requests a fresh provider makes to open the space and read its root.
async fn fresh_open_requests(flaky: &Arc<Flaky>) -> (u64, Option<RootRecord>) {
    let staging = tempfile::tempdir().unwrap();
    flaky.take_requests();
    let p = provider(flaky.clone(), staging.path()).await;
    let root = p.read_root().await.unwrap().map(|v| v.root);
    let n = flaky.take_requests();
    p.close().await.unwrap();
    (n, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_chain_keeps_its_newest_roots_and_opens_in_as_many_requests() {
    let (pruned, whole) = (Arc::new(InMemory::new()), Arc::new(InMemory::new()));
    let staging = tempfile::tempdir().unwrap();
    let mut last = Vec::new();
    for (i, store) in [pruned.clone(), whole.clone()].into_iter().enumerate() {
        let s = cloud(store, &staging.path().join(i.to_string())).await;
        last.push(*commits(&s, 30).await.last().unwrap());
        if i == 0 {
            let r = s.prune_roots(RootRetention::last(5)).await.unwrap();
            assert_eq!((r.removed, r.kept), (25, 5), "{r:?}");
            // Nothing left to do.
            let again = s.prune_roots(RootRetention::last(5)).await.unwrap();
            assert_eq!((again.removed, again.kept), (0, 5), "{again:?}");
            let h = s.root_history(100).await.unwrap();
            assert_eq!(
                h.iter().map(|r| r.root.sequence).collect::<Vec<_>>(),
                (26..=30).rev().collect::<Vec<_>>()
            );
            // The writer goes on where it was.
            commits(&s, 2).await;
            last[0] = s.read_current_root().await.unwrap().unwrap().pointer;
        }
        s.close().await.unwrap();
    }
    assert_eq!(root_objects(pruned.as_ref()).await, 7);
    assert_eq!(root_objects(whole.as_ref()).await, 30);
    let (n_pruned, root) = fresh_open_requests(&Flaky::new(pruned.clone())).await;
    assert_eq!(root.unwrap().pointer, last[0]);
    let (n_whole, root) = fresh_open_requests(&Flaky::new(whole.clone())).await;
    assert_eq!(root.unwrap().pointer, last[1]);
    assert_eq!(
        n_pruned, n_whole,
        "a pruned chain opens in as many requests"
    );
    println!("fresh open: {n_pruned} requests pruned, {n_whole} unpruned");
    assert!(n_whole <= 6, "{n_whole} requests to open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_roots_stay_whatever_their_number() {
    let store = Arc::new(InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let s = cloud(store.clone(), staging.path()).await;
    commits(&s, 10).await;
    let keep_young = RootRetention::last(2).younger_than(Duration::from_secs(3600));
    let r = s.prune_roots(keep_young).await.unwrap();
    assert_eq!((r.removed, r.kept), (0, 10), "{r:?}");
    let r = s.prune_roots(RootRetention::last(2)).await.unwrap();
    assert_eq!((r.removed, r.kept), (8, 2), "{r:?}");
    s.close().await.unwrap();
}

fn root(seq: u64) -> RootRecord {
    RootRecord::new(
        AtomPointer::new(WalId(uuid::Uuid::from_u128(99)), 32),
        seq,
        0,
        None,
    )
}

/// A writer whose view is older than the pruned stretch re-creates a
/// pruned position with put-if-absent: its write must not be acknowledged
/// (before the floor, it was, and the root was lost: the chain's newest
/// stayed the other writer's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_is_not_acknowledged_over_a_pruned_stretch() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let stale = provider(store.clone(), &staging.path().join("a")).await;
    let mut v: Option<RootVersion> = None;
    for seq in 1..=3 {
        v = Some(stale.write_root(&root(seq), v).await.unwrap());
    }
    let other = provider(store.clone(), &staging.path().join("b")).await;
    let mut w = other.read_root().await.unwrap().map(|x| x.version);
    for seq in 4..=20 {
        w = Some(other.write_root(&root(seq), w).await.unwrap());
    }
    let r = other.prune_history(&RootRetention::last(3)).await.unwrap();
    assert_eq!(r.kept, 3, "{r:?}");
    // Built on sequence 3, whose successor's position is pruned.
    let got = stale.write_root(&root(4_000), v).await;
    assert!(
        matches!(&got, Err(e) if !matches!(e, Error::RootConflict { .. })),
        "a write into a pruned position was acknowledged: {got:?}"
    );
    // Read again, as the contract says: the chain's newest, and a write on it.
    let now = stale.read_root().await.unwrap().unwrap();
    assert_eq!(now.root.sequence, 20);
    stale
        .write_root(&root(21), Some(now.version))
        .await
        .unwrap();
    assert_eq!(other.read_root().await.unwrap().unwrap().root.sequence, 21);
    // The history never walks into what was re-created below the floor.
    let h = other.history(100).await.unwrap();
    assert_eq!(
        h.iter().map(|r| r.root.sequence).collect::<Vec<_>>(),
        vec![21, 20, 19, 18]
    );
    stale.close().await.unwrap();
    other.close().await.unwrap();
}

/// The same through `Storage`: a process whose last commit is older than
/// the pruned stretch commits again. Its grant's read skips the floor check
/// (one floor GET per commit, after the create), so it builds on its stale
/// root; the publish must fail without an acknowledgement, and the next one
/// build on the newest root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_process_commit_over_a_pruned_stretch_is_not_acknowledged() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let stale = cloud(store.clone(), &staging.path().join("a")).await;
    commits(&stale, 3).await;
    let other = cloud(store.clone(), &staging.path().join("b")).await;
    let newest = *commits(&other, 17).await.last().unwrap();
    other.prune_roots(RootRetention::last(3)).await.unwrap();

    let p = stale.push_bytes(b"late").await.unwrap();
    let got = stale.set_root(p).await;
    assert!(
        got.is_err(),
        "a commit into a pruned position was acknowledged: {got:?}"
    );
    assert_eq!(
        other.read_current_root().await.unwrap().unwrap().pointer,
        newest,
        "the unacknowledged root must not be the newest"
    );
    let again = stale.set_root(p).await.unwrap();
    assert_eq!(again.sequence, 21, "built on the newest root (20)");
    assert_eq!(other.read_current_root().await.unwrap(), Some(again));
    stale.close().await.unwrap();
    other.close().await.unwrap();
}

/// A commit pays one floor GET (after its create), not two: the grant's
/// read of the root it builds on skips the check the create makes anyway.
/// Reads returned to a caller keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_checks_the_floor_once() {
    let flaky = Flaky::new(Arc::new(InMemory::new()));
    let staging = tempfile::tempdir().unwrap();
    let s = cloud(flaky.clone(), staging.path()).await;
    commits(&s, 2).await;
    let before = flaky.floor_gets.load(std::sync::atomic::Ordering::SeqCst);
    commits(&s, 5).await;
    let during = flaky.floor_gets.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(during, 5, "floor GETs in 5 commits");
    s.read_current_root().await.unwrap();
    let after = flaky.floor_gets.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(after, 6, "a read of the root checks the floor");
    s.close().await.unwrap();
}

/// A reader whose last view is older than the pruned stretch finds the
/// newest root, not the end of what it remembers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_reader_finds_the_newest_root_over_a_pruned_stretch() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let writer = provider(store.clone(), &staging.path().join("w")).await;
    let mut v = None;
    for seq in 1..=2 {
        v = Some(writer.write_root(&root(seq), v).await.unwrap());
    }
    let reader = provider(store.clone(), &staging.path().join("r")).await;
    assert_eq!(reader.read_root().await.unwrap().unwrap().root.sequence, 2);
    for seq in 3..=12 {
        v = Some(writer.write_root(&root(seq), v).await.unwrap());
    }
    writer.prune_history(&RootRetention::last(2)).await.unwrap();
    assert_eq!(reader.read_root().await.unwrap().unwrap().root.sequence, 12);
    writer.close().await.unwrap();
    reader.close().await.unwrap();
}

/// A process that saw an empty chain (its walk starts before position 0)
/// meets a first position a stale writer re-created after the pruning,
/// holding a root newer than the next link's: that is the pruned stretch,
/// not a corrupt chain (simulation seed 16469607: every later read failed
/// with "does not follow", so no node could commit again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_an_empty_chain_walks_past_a_recreated_first_position() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let reader = provider(store.clone(), &staging.path().join("r")).await;
    let stale = provider(store.clone(), &staging.path().join("s")).await;
    assert!(reader.read_root().await.unwrap().is_none());
    assert!(stale.read_root().await.unwrap().is_none());
    let writer = provider(store.clone(), &staging.path().join("w")).await;
    let mut v = None;
    for seq in 1..=5 {
        v = Some(writer.write_root(&root(seq), v).await.unwrap());
    }
    // Floor 1: position 0 is deleted, position 1 (sequence 2) kept.
    let r = writer.prune_history(&RootRetention::last(4)).await.unwrap();
    assert_eq!((r.removed, r.kept), (1, 4), "{r:?}");
    let got = stale.write_root(&root(4_000), None).await;
    assert!(got.is_err(), "a write into a pruned position: {got:?}");
    assert_eq!(reader.read_root().await.unwrap().unwrap().root.sequence, 5);
    assert_eq!(stale.read_root().await.unwrap().unwrap().root.sequence, 5);
    for p in [reader, stale, writer] {
        p.close().await.unwrap();
    }
}

/// A pruning run cut short (the process dies between deletes) loses no
/// kept root; the next run finishes the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruning_cut_short_loses_nothing_kept() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let flaky = Flaky::new(inner.clone());
    let staging = tempfile::tempdir().unwrap();
    let s = cloud(flaky.clone(), &staging.path().join("a")).await;
    let ptrs = commits(&s, 40).await;
    // The process "dies" after 10 of the 36 deletes: they never answer.
    flaky
        .delete_budget
        .store(10, std::sync::atomic::Ordering::SeqCst);
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        s.prune_roots(RootRetention::last(4)),
    )
    .await;
    assert!(cut.is_err(), "the run finished: {cut:?}");
    drop(s);
    let left = root_objects(inner.as_ref()).await;
    assert!((4..40).contains(&left), "{left} root objects left");
    // A fresh process: the newest root, the kept history, and the rest goes.
    let s = cloud(inner.clone(), &staging.path().join("b")).await;
    assert_eq!(
        s.read_current_root().await.unwrap().unwrap().pointer,
        *ptrs.last().unwrap()
    );
    let h = s.root_history(100).await.unwrap();
    assert!(h.len() >= 4, "{} roots kept", h.len());
    let r = s.prune_roots(RootRetention::last(4)).await.unwrap();
    assert_eq!(r.kept, 4, "{r:?}");
    assert_eq!(root_objects(inner.as_ref()).await, 4);
    assert_eq!(
        s.get_bytes(*ptrs.last().unwrap()).await.unwrap(),
        b"r39"[..]
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_memory_keep_the_last_roots_asked() {
    let t = tempfile::tempdir().unwrap();
    let files = StorageBuilder::standalone(t.path()).build().await.unwrap();
    let mem = StorageBuilder::in_memory().build().await.unwrap();
    for s in [&files, &mem] {
        commits(s, 12).await;
        let r = s.prune_roots(RootRetention::last(3)).await.unwrap();
        assert_eq!((r.removed, r.kept), (9, 3), "{r:?}");
        let h = s.root_history(100).await.unwrap();
        assert_eq!(
            h.iter().map(|r| r.root.sequence).collect::<Vec<_>>(),
            vec![12, 11, 10]
        );
        commits(s, 1).await;
        assert_eq!(s.root_history(100).await.unwrap().len(), 4);
    }
    files.close().await.unwrap();
    // The history file itself was cut (a fresh process reads it).
    let files = StorageBuilder::standalone(t.path()).build().await.unwrap();
    assert_eq!(files.root_history(100).await.unwrap().len(), 4);
    files.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_space_does_not_prune() {
    let t = tempfile::tempdir().unwrap();
    let s = StorageBuilder::standalone(t.path()).build().await.unwrap();
    commits(&s, 3).await;
    s.close().await.unwrap();
    let ro = StorageBuilder::standalone(t.path())
        .read_only(true)
        .build()
        .await
        .unwrap();
    assert!(matches!(
        ro.prune_roots(RootRetention::last(1)).await,
        Err(Error::ReadOnly)
    ));
    ro.close().await.unwrap();
}

/// "Keep everything" keeps everything (a huge `keep_last` overflowed the
/// memory register's arithmetic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_more_than_there_is_keeps_everything() {
    let t = tempfile::tempdir().unwrap();
    let files = StorageBuilder::standalone(t.path()).build().await.unwrap();
    let mem = StorageBuilder::in_memory().build().await.unwrap();
    for s in [&files, &mem] {
        commits(s, 5).await;
        let r = s.prune_roots(RootRetention::last(u64::MAX)).await.unwrap();
        assert_eq!((r.removed, r.kept), (0, 5), "{r:?}");
        assert_eq!(s.root_history(100).await.unwrap().len(), 5);
    }
    files.close().await.unwrap();
}
