//! The [`Storage`] conformance suite: what every variant promises through
//! the one storage API (DESIGN.md §4), run on each of them.
//!
//! | check | what must hold |
//! |---|---|
//! | [`atoms_round_trip`] | raw, JSON and MessagePack atoms read back at once (before any flush) and after `flush_wal`; empty data and data over `blob_max_size` are refused |
//! | [`bad_pointers`] | pointers into the header, past the end or into an unknown WAL are typed errors, never wrong bytes |
//! | [`roots_are_linear`] | `set_root`, `update_root` and an aborted update: each acknowledged root is read back, sequences grow by one, an aborted update publishes nothing |
//! | [`concurrent_committers`] | many tasks updating the root at once: every update is acknowledged once, each builds on its predecessor (one chain), the last one is current |
//! | [`run_exclusive`] | runs under the grant, publishes nothing |
//! | [`close_is_final`] | `close` is idempotent, and every operation afterwards fails with `Closed` |
//! | [`run_all`] | all of the above, `close_is_final` last |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::storage::{AtomFormat, Storage};
use crate::types::{AtomPointer, RootRecord, WalId};

/// Atoms read back at once and after a flush; bad sizes are refused.
pub async fn atoms_round_trip(storage: &Storage) {
    let raw = storage.push_bytes(b"raw bytes").await.expect("push_bytes");
    let json = serde_json::json!({"name": "ñandú", "n": [1, 2, 3]});
    let j = storage
        .push_atom(&json, AtomFormat::Json)
        .await
        .expect("push json");
    let m = storage
        .push_atom(&json, AtomFormat::MessagePack)
        .await
        .expect("push msgpack");
    let big = vec![7u8; 300_000];
    let b = storage.push_bytes(&big).await.expect("push a large blob");
    for _ in 0..2 {
        assert_eq!(
            &storage.get_bytes(raw).await.expect("get")[..],
            b"raw bytes"
        );
        assert_eq!(
            storage
                .get_atom::<serde_json::Value>(j)
                .await
                .expect("get json"),
            json
        );
        assert_eq!(
            storage
                .get_atom::<serde_json::Value>(m)
                .await
                .expect("get msgpack"),
            json
        );
        assert_eq!(storage.get_bytes(b).await.expect("get large"), big);
        storage.flush_wal().await.expect("flush_wal");
    }
    assert!(matches!(
        storage.push_bytes(b"").await,
        Err(Error::EmptyData)
    ));
    let max = storage.config().blob_max_size;
    if max < 64 << 20 {
        let over = vec![0u8; max as usize + 1];
        assert!(matches!(
            storage.push_bytes(&over).await,
            Err(Error::BlobTooLarge { .. })
        ));
    }
    assert!(matches!(
        storage.get_atom::<serde_json::Value>(raw).await,
        Err(Error::WrongFormat { .. })
    ));
}

/// Pointers that name no record are errors.
pub async fn bad_pointers(storage: &Storage) {
    let p = storage.push_bytes(b"anchor").await.expect("push");
    storage.flush_wal().await.expect("flush");
    let inside_header = AtomPointer::new(p.wal_id, 1);
    assert!(storage.get_bytes(inside_header).await.is_err());
    let past_end = AtomPointer::new(p.wal_id, 1 << 40);
    let err = storage.get_bytes(past_end).await.expect_err("past the end");
    assert_ne!(err.kind(), ErrorKind::Closed, "{err}");
    let unknown = AtomPointer::new(WalId(uuid::Uuid::from_u128(0xdead_beef)), 32);
    assert!(storage.get_bytes(unknown).await.is_err());
}

/// The atom every update of the suite publishes: the root it replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Link {
    task: u32,
    n: u32,
    prev: Option<AtomPointer>,
}

async fn publish_link(storage: &Storage, task: u32, n: u32) -> crate::Result<RootRecord> {
    let s = storage.clone();
    storage
        .update_root(move |current| async move {
            let link = Link {
                task,
                n,
                prev: current.map(|r| r.pointer),
            };
            s.push_atom(&link, AtomFormat::Json).await
        })
        .await
}

/// Roots: acknowledged ones read back, sequences grow, aborts publish
/// nothing.
pub async fn roots_are_linear(storage: &Storage) {
    let before = storage.read_current_root().await.expect("read root");
    let p = storage.push_bytes(b"root atom").await.expect("push");
    let r1 = storage.set_root(p).await.expect("set_root");
    if let Some(b) = &before {
        assert!(r1.is_newer_than(b));
        assert_eq!(r1.sequence, b.sequence + 1);
    }
    assert_eq!(
        storage.read_current_root().await.expect("read"),
        Some(r1.clone())
    );
    let r2 = publish_link(storage, 0, 0).await.expect("update_root");
    assert_eq!(r2.sequence, r1.sequence + 1);
    let link: Link = storage.get_atom(r2.pointer).await.expect("link");
    assert_eq!(
        link.prev,
        Some(r1.pointer),
        "update_root saw the current root"
    );
    let update = storage.begin_root_update().await.expect("begin");
    assert_eq!(update.current(), Some(&r2));
    update.abort().await;
    assert_eq!(storage.read_current_root().await.expect("read"), Some(r2));
}

/// Concurrent committers form one chain; each is acknowledged once.
pub async fn concurrent_committers(storage: &Storage) {
    const TASKS: u32 = 8;
    const EACH: u32 = 4;
    let start = storage.read_current_root().await.expect("read root");
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let s = storage.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..EACH {
                    acked.push(publish_link(&s, task + 1, n).await.expect("update_root"));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("a committer panicked"));
    }
    let mut by_seq = BTreeMap::new();
    for r in &acked {
        assert!(
            by_seq.insert(r.sequence, r.clone()).is_none(),
            "sequence {} twice",
            r.sequence
        );
    }
    let last = by_seq.values().next_back().cloned().expect("roots");
    assert_eq!(
        storage.read_current_root().await.expect("read"),
        Some(last.clone())
    );
    // Walk the chain back: every acknowledged root is on it.
    let mut at = Some(last.pointer);
    let mut seen = 0;
    while let Some(p) = at {
        if start.as_ref().is_some_and(|s| s.pointer == p) {
            break;
        }
        let link: Link = storage.get_atom(p).await.expect("a link of the chain");
        if link.task > 0 {
            seen += 1;
        }
        at = link.prev;
    }
    assert_eq!(
        seen,
        (TASKS * EACH) as usize,
        "acknowledged roots missing from the chain"
    );
}

/// Runs under the grant; publishes nothing.
pub async fn run_exclusive(storage: &Storage) {
    let before = storage.read_current_root().await.expect("read");
    let term = storage
        .run_exclusive(|term| async move { Ok(term) })
        .await
        .expect("run_exclusive");
    if let Some(b) = &before {
        assert!(term >= b.term || term == 0);
    }
    assert_eq!(storage.read_current_root().await.expect("read"), before);
}

/// `close` is idempotent and final.
pub async fn close_is_final(storage: &Storage) {
    let p = storage.push_bytes(b"before close").await.expect("push");
    storage.close().await.expect("close");
    storage.close().await.expect("close again");
    assert!(matches!(storage.push_bytes(b"x").await, Err(Error::Closed)));
    assert!(matches!(storage.get_bytes(p).await, Err(Error::Closed)));
    assert!(matches!(
        storage.read_current_root().await,
        Err(Error::Closed)
    ));
    assert!(matches!(storage.set_root(p).await, Err(Error::Closed)));
}

/// Every check, `close_is_final` last (it closes the storage).
pub async fn run_all(storage: &Storage) {
    atoms_round_trip(storage).await;
    bad_pointers(storage).await;
    roots_are_linear(storage).await;
    concurrent_committers(storage).await;
    run_exclusive(storage).await;
    close_is_final(storage).await;
}
