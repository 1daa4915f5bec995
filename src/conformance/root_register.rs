//! The [`RootRegister`] conformance suite.
//!
//! Each check takes a fresh, empty register (a closure makes one per check;
//! `open_again` opens another handle on the same register, as a second
//! process or node would) and panics on a violation.
//!
//! | check | what must hold |
//! |---|---|
//! | [`compare_and_swap`] | an empty register reads `None`; a write with the held version succeeds and reads back with the version it returned (by `read_root` and by `read_root_to_update`); a stale version is a `RootConflict` and changes nothing |
//! | [`only_newer_roots`] | a root not newer (by `(term, sequence)`) than the one held is refused |
//! | [`racing_writers_have_one_winner`] | of two handles writing from the same version, exactly one wins; the loser sees `RootConflict` and the winner's root, and builds on it from `read_root_to_update` |
//! | [`pruned_history`] | pruning to the last N keeps the current root readable and writable, and the history holds at most what was kept (at least the current root) |
//! | [`carrying_is_a_write_or_nothing`] | `write_root_carrying` either declines (`Ok(None)`) and changes nothing, or is a `write_root`: the root reads back with the version it returned, and a stale version conflicts |
//! | [`local_lock_excludes`] | a second `lock_root` waits until the first lock is dropped (registers without a local lock return at once) |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::root_register::RootRegister;
use crate::types::{AtomPointer, RootRecord, WalId};

fn root(sequence: u64, term: u64) -> RootRecord {
    RootRecord::new(
        AtomPointer::new(WalId(uuid::Uuid::from_u128(0x5eed + sequence as u128)), 32),
        sequence,
        term,
        Some("conformance".into()),
    )
}

/// CAS: write with the held version, stale versions conflict.
pub async fn compare_and_swap(register: &dyn RootRegister) {
    assert_eq!(register.read_root().await.expect("read"), None);
    let v1 = register
        .write_root(&root(1, 1), None)
        .await
        .expect("first write");
    let got = register.read_root().await.expect("read").expect("a root");
    assert_eq!((got.root.clone(), got.version), (root(1, 1), v1));
    let v2 = register
        .write_root(&root(2, 1), Some(v1))
        .await
        .expect("write on the held version");
    assert_ne!(v1, v2);
    // Stale: built on v1 again, or on nothing.
    for stale in [Some(v1), None] {
        match register.write_root(&root(3, 1), stale).await {
            Err(Error::RootConflict { .. }) => {}
            other => panic!("write on stale version {stale:?}: {other:?}"),
        }
    }
    let got = register.read_root().await.expect("read").expect("a root");
    assert_eq!((got.root, got.version), (root(2, 1), v2));
    let to_update = register
        .read_root_to_update()
        .await
        .expect("read to update")
        .expect("a root");
    assert_eq!((to_update.root, to_update.version), (root(2, 1), v2));
}

/// `write_root_carrying` (nothing carried) declines or writes as
/// `write_root` does.
pub async fn carrying_is_a_write_or_nothing(register: &dyn RootRegister) {
    let before = register.read_root().await.expect("read");
    let expected = before.as_ref().map(|v| v.version);
    let next = root(before.as_ref().map_or(1, |v| v.root.sequence + 1), 1);
    let Some(version) = register
        .write_root_carrying(&next, expected, &[])
        .await
        .expect("a carrying write")
    else {
        assert_eq!(
            register.read_root().await.expect("read"),
            before,
            "declined, yet changed"
        );
        return;
    };
    let got = register.read_root().await.expect("read").expect("a root");
    assert_eq!((got.root, got.version), (next.clone(), version));
    let later = root(next.sequence + 1, 1);
    match register.write_root_carrying(&later, expected, &[]).await {
        Err(Error::RootConflict { .. }) | Ok(None) => {}
        other => panic!("a carrying write on a stale version: {other:?}"),
    }
    let got = register.read_root().await.expect("read").expect("a root");
    assert_eq!(got.root, next);
}

/// Roots only move forward by `(term, sequence)`.
pub async fn only_newer_roots(register: &dyn RootRegister) {
    let v = register.write_root(&root(5, 2), None).await.expect("write");
    for older in [root(4, 2), root(5, 2), root(9, 1)] {
        let r = register.write_root(&older, Some(v)).await;
        assert!(r.is_err(), "{older:?} over {:?} was accepted", root(5, 2));
    }
    // A later term may repeat or lower the sequence.
    register
        .write_root(&root(5, 3), Some(v))
        .await
        .expect("a newer term");
}

/// Two handles race from the same version: exactly one wins.
pub async fn racing_writers_have_one_winner<F, Fut>(open_again: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RootRegister>>,
{
    let (a, b) = (open_again().await, open_again().await);
    let base = a.write_root(&root(1, 1), None).await.expect("base");
    let ra = root(2, 1);
    let rb = {
        let mut pointer = ra.pointer;
        pointer.offset = 64;
        RootRecord::new(pointer, 2, 1, Some("other".into()))
    };
    let (x, y) = tokio::join!(a.write_root(&ra, Some(base)), b.write_root(&rb, Some(base)));
    let winner = match (x, y) {
        (Ok(_), Err(Error::RootConflict { .. })) => ra,
        (Err(Error::RootConflict { .. }), Ok(_)) => rb,
        other => panic!("not exactly one winner: {other:?}"),
    };
    for h in [&a, &b] {
        let got = h.read_root().await.expect("read").expect("a root");
        assert_eq!(got.root, winner);
    }
    // The loser (and the winner) build on the winner's root.
    for (h, seq) in [(&a, 3), (&b, 4)] {
        let base = h
            .read_root_to_update()
            .await
            .expect("read to update")
            .expect("a root");
        assert_eq!(base.root.sequence, seq - 1);
        h.write_root(&root(seq, 1), Some(base.version))
            .await
            .expect("a write on the version read to update");
    }
}

/// The local lock excludes a second holder until dropped.
pub async fn local_lock_excludes<F, Fut>(open_again: F, has_lock: bool)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RootRegister>>,
{
    let (a, b) = (open_again().await, open_again().await);
    let first = a.lock_root().await.expect("lock");
    let second = tokio::time::timeout(Duration::from_millis(200), b.lock_root()).await;
    if has_lock {
        assert!(
            second.is_err(),
            "a second lock was granted while the first is held"
        );
        // Another cancelled wait on the same handle.
        let third = tokio::time::timeout(Duration::from_millis(50), b.lock_root()).await;
        assert!(third.is_err(), "a lock was granted while the first is held");
        drop(first);
        let held = tokio::time::timeout(Duration::from_secs(10), b.lock_root())
            .await
            .expect("the lock was never handed over (a cancelled wait kept it)")
            .expect("lock");
        // The cancelled waits finished and released what they took
        // without releasing the new holder's lock.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let stolen = tokio::time::timeout(Duration::from_millis(200), a.lock_root()).await;
        assert!(
            stolen.is_err(),
            "the lock was granted again while held (a cancelled wait released it)"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), a.lock_root())
            .await
            .expect("the lock was never handed back")
            .expect("lock");
    } else {
        second
            .expect("no local lock: returns at once")
            .expect("lock");
    }
}

/// Pruning the history to the last 3 roots: the current root still reads
/// and takes the next write, and the history lists the newest roots first,
/// no more than were kept (registers that keep no history keep the current
/// root).
pub async fn pruned_history(register: &dyn RootRegister) {
    let mut v = None;
    for seq in 1..=8 {
        v = Some(register.write_root(&root(seq, 1), v).await.expect("write"));
    }
    let report = register
        .prune_history(&crate::root_register::RootRetention::last(3))
        .await
        .expect("prune_history");
    assert!(report.kept >= 1, "{report:?}");
    let got = register.read_root().await.expect("read").expect("a root");
    assert_eq!(got.root, root(8, 1), "pruning changed the current root");
    let h = register.history(100).await.expect("history");
    assert_eq!(h.first().map(|r| &r.root), Some(&root(8, 1)));
    assert!(
        h.len() as u64 <= report.kept.max(1),
        "{} listed, {report:?}",
        h.len()
    );
    for w in h.windows(2) {
        assert!(w[0].root.is_newer_than(&w[1].root), "not newest first");
    }
    register
        .write_root(&root(9, 1), Some(got.version))
        .await
        .expect("a write after pruning");
}
