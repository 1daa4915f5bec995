//! A standalone commit in one flush: the root log record carries the WAL
//! bytes the root reaches that were not synced (see
//! `backends/carried_wal.rs`). A power loss may take those bytes from the
//! WAL; the next opener puts them back from the log.
//!
//! The crash is emulated on real files: a copy of the space taken while it
//! is open (what the page cache shows), whose WAL then loses every byte
//! the commits wrote (none of them was synced in the WAL).

use std::path::Path;

use protobase::backends::fs::FileBlockProvider;
use protobase::{AtomPointer, RootRecord, Storage, StorageBuilder};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Commits `n` small atoms one root at a time; what each root reached.
async fn commit_small(storage: &Storage, n: usize) -> Vec<(AtomPointer, Vec<u8>)> {
    let mut committed = Vec::new();
    for i in 0..n {
        let data = format!("atom {i} of a small commit").into_bytes();
        let p = storage.push_bytes(&data).await.unwrap();
        storage.set_root(p).await.unwrap();
        assert_eq!(storage.unsynced_bytes(), 0, "commit {i} is durable");
        committed.push((p, data));
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_bytes_a_crash_lost_come_back_from_the_root_log() {
    let dir = tempfile::tempdir().unwrap();
    let (space, image) = (dir.path().join("space"), dir.path().join("image"));
    let storage = Storage::open(&space).await.unwrap();
    let committed = commit_small(&storage, 60).await;
    copy_dir(&space, &image);
    storage.close().await.unwrap();

    // The power loss: the WAL lost every byte after the root `space_root`
    // is a copy of (copies are written after a sync of the WALs, about
    // once a second while commits run).
    let wal = committed[0].0.wal_id;
    assert!(committed.iter().all(|(p, _)| p.wal_id == wal));
    let copy = RootRecord::from_json(&std::fs::read(image.join("space_root")).unwrap()).unwrap();
    let copied = committed
        .iter()
        .position(|(p, _)| *p == copy.pointer)
        .unwrap();
    assert!(copied + 1 < committed.len(), "the copy is of the last root");
    let wal_file = image.join(wal.to_string());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal_file)
        .unwrap()
        .set_len(committed[copied + 1].0.offset)
        .unwrap();

    // A read-only opener cannot repair: it refuses, saying what to do.
    let refused = FileBlockProvider::open_read_only(&image).unwrap_err();
    assert!(
        refused.to_string().contains("open the space writable"),
        "{refused}"
    );
    let reopened = Storage::open(&image).await.unwrap();
    let root = reopened.read_current_root().await.unwrap().unwrap();
    assert_eq!(root.pointer, committed.last().unwrap().0);
    for (p, data) in &committed {
        assert_eq!(&reopened.get_bytes(*p).await.unwrap()[..], &data[..]);
    }
    // The space goes on (the repaired WAL is continued or a new one made).
    let more = commit_small(&reopened, 3).await;
    reopened.close().await.unwrap();
    let again = Storage::open(&image).await.unwrap();
    for (p, data) in committed.iter().chain(&more) {
        assert_eq!(&again.get_bytes(*p).await.unwrap()[..], &data[..]);
    }
    again.close().await.unwrap();
    FileBlockProvider::open_read_only(&image).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_space_needs_no_repair_and_the_reference_copy_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).await.unwrap();
    let committed = commit_small(&storage, 10).await;
    storage.close().await.unwrap();
    // `close` synced the WALs: a read-only opener (which repairs nothing)
    // reads every atom.
    let reader = StorageBuilder::standalone(dir.path())
        .read_only(true)
        .build()
        .await
        .unwrap();
    for (p, data) in &committed {
        assert_eq!(&reader.get_bytes(*p).await.unwrap()[..], &data[..]);
    }
    let copy = std::fs::read(dir.path().join("space_root")).unwrap();
    let last = reader.read_current_root().await.unwrap().unwrap();
    assert_eq!(copy, last.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_register_carries_only_small_commits_of_its_own_wals() {
    use protobase::{RootRegister, WalBytes, WalId, WalStore};
    let dir = tempfile::tempdir().unwrap();
    let p = FileBlockProvider::open(dir.path()).unwrap();
    let wal = p.create_wal().await.unwrap().id;
    let big = bytes::Bytes::from(vec![7u8; 3 << 10]);
    p.append(wal, 0, big.clone()).await.unwrap();
    let root = |seq| RootRecord::new(AtomPointer::new(wal, 0), seq, 0, None);
    let carry = |offset: u64, data: bytes::Bytes, wal| WalBytes { wal, offset, data };
    // Too many bytes for one record: declined, nothing written.
    let declined = p
        .write_root_carrying(&root(1), None, &[carry(0, big.clone(), wal)])
        .await
        .unwrap();
    assert_eq!(declined, None);
    assert_eq!(p.read_root().await.unwrap(), None);
    // A WAL of another store: not this register's to put back.
    let foreign = WalId(uuid::Uuid::new_v4());
    let declined = p
        .write_root_carrying(&root(1), None, &[carry(0, big.slice(..10), foreign)])
        .await
        .unwrap();
    assert_eq!(declined, None);
    // A small commit of its own WAL is carried.
    let stored = p
        .write_root_carrying(&root(1), None, &[carry(0, big.slice(..100), wal)])
        .await
        .unwrap();
    assert!(stored.is_some());
    assert_eq!(p.read_root().await.unwrap().unwrap().root, root(1));
}

/// A writer that continues a WAL another left (see `wal_resume`) syncs it
/// first: what the last writer appended may never have been synced (its
/// small commits carried their bytes in the root log), and the new
/// writer's carried commits go after it. Without the sync a power loss
/// can leave a hole of lost bytes below records that are put back, and a
/// scan of the WAL stops at it.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_wal_is_synced_before_new_records_follow_it() {
    use protobase::sim::SimDisk;
    use protobase::{StorageBuilder, StorageConfig, WalStore};

    let config = StorageConfig::default().with_buffer_size(256);
    let open = |disk: &SimDisk| {
        StorageBuilder::new()
            .with_block_provider(disk.mount())
            .with_config(config.clone())
            .build()
    };
    for seed in 0..16u64 {
        let disk = SimDisk::new(seed);
        // The first writer commits once, then appends records it never
        // commits (pushes past its buffers are written, not synced), and
        // dies without closing.
        let first = open(&disk).await.unwrap();
        let root = first.push_bytes(b"the first root").await.unwrap();
        first.set_root(root).await.unwrap();
        for i in 0..32u8 {
            first.push_bytes(&[i; 200]).await.unwrap();
        }
        drop(first);
        // Its tasks let go of the WAL's lock (they hold the mount a moment
        // after the storage is dropped).
        let probe = disk.mount();
        let mut free = false;
        for _ in 0..100_000 {
            if probe.reopen_wal(root.wal_id).await.unwrap().is_some() {
                probe.close_wal(root.wal_id).await.unwrap();
                free = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            free,
            "seed {seed}: the dead writer's WAL lock was never released"
        );
        drop(probe);
        // The next one continues the WAL and commits small roots.
        let next = open(&disk).await.unwrap();
        let mut committed = Vec::new();
        for i in 0..4u8 {
            let p = next.push_bytes(&[0xC0 | i; 40]).await.unwrap();
            assert_eq!(p.wal_id, root.wal_id, "seed {seed}: the WAL was continued");
            next.set_root(p).await.unwrap();
            committed.push((p, [0xC0 | i; 40]));
        }
        drop(next);
        disk.power_loss();
        let after = open(&disk).await.unwrap();
        for (p, data) in &committed {
            assert_eq!(&after.get_bytes(*p).await.unwrap()[..], data, "seed {seed}");
        }
        let report = after.scan_wal(root.wal_id, |_| {}).await.unwrap();
        assert!(report.corrupt.is_empty(), "seed {seed}: {report:?}");
        after.close().await.unwrap();
    }
}
