//! Unit tests of the cluster logic against a patched network manager (the
//! way the reference's tests patch theirs), and small in-process clusters
//! for the defects that need real message flows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::clock::{SeededRng, TokioClock};
use crate::network::{MockNetworkManager, NetworkError, NetworkManager};
use crate::protocol::{AcceptedRoot, Message, Promise};
use crate::root_register::{RootRegister, VersionedRoot};
use crate::types::{AtomPointer, RootRecord, WalId};
use crate::vote::VoteStrategy;
use crate::wal_store::ReadTier;
use crate::{Error, StorageBuilder};

fn peers(ids: &[&str]) -> Vec<PeerAddress> {
    ids.iter()
        .map(|id| PeerAddress {
            id: id.to_string(),
            address: format!("{id}:1"),
        })
        .collect()
}

fn config(n: usize) -> ClusterConfig {
    ClusterConfig {
        server_id: "a".into(),
        servers: peers(&["a", "b", "c", "d", "e"][..n]),
        vote_timeout_ms: 60,
        retry_interval_ms: 1,
        read_timeout_ms: 50,
        max_retries: 2,
        heartbeat_ms: 0,
        ..ClusterConfig::default()
    }
}

fn root(term: u64, sequence: u64) -> RootRecord {
    RootRecord::new(
        AtomPointer::new(WalId(uuid::Uuid::from_u128(7)), 32),
        sequence,
        term,
        Some("x".into()),
    )
}

async fn acceptor_with(store: MemoryAcceptorStore, id: &str, lease_ms: u64) -> Arc<Acceptor> {
    Acceptor::open(
        id.into(),
        Arc::new(store),
        Duration::from_millis(lease_ms),
        Arc::new(TokioClock),
    )
    .await
    .unwrap()
}

async fn acceptor() -> Arc<Acceptor> {
    acceptor_with(MemoryAcceptorStore::default(), "a", 5_000).await
}

fn quorum(cfg: ClusterConfig, acc: Arc<Acceptor>, net: MockNetworkManager) -> QuorumRegister {
    QuorumRegister::new(
        cfg,
        acc,
        Arc::new(net),
        Arc::new(TokioClock),
        SeededRng::new(1),
    )
}

fn promise(granted: bool, promised: u64, accepted: Option<AcceptedRoot>) -> Message {
    Message::Promise(Promise {
        granted,
        promised,
        accepted,
        lease_ms: if granted { 1000 } else { 0 },
    })
}

fn accepted(ballot: u64, r: RootRecord) -> Option<AcceptedRoot> {
    Some(AcceptedRoot { ballot, root: r })
}

#[tokio::test]
async fn acquire_with_a_majority_builds_on_the_newest_accepted_root() {
    let mut net = MockNetworkManager::new();
    net.expect_request().returning(|peer, msg, t| match msg {
        Message::Prepare { term, .. } if peer == "c" => {
            Ok(promise(true, term, accepted(4, root(4, 2))))
        }
        // The newest root is at c only: it is written back first.
        Message::Accept { term, .. } if peer == "c" => Ok(Message::Accepted {
            term,
            accepted: true,
            promised: term,
        }),
        _ => Err(NetworkError::Timeout {
            peer: peer.clone(),
            timeout: t,
        }),
    });
    let acc = acceptor().await;
    acc.accept("z", 3, &root(3, 9)).await.unwrap();
    let q = quorum(config(3), acc.clone(), net);
    let g = q.acquire().await.unwrap();
    assert_eq!(g.term, 4, "above the local promise");
    assert_eq!(g.holder, "a");
    assert!(g.expires_at.is_some());
    // Ballot order: ballot 4 beats ballot 3 with a higher sequence.
    let base = g.established_root.unwrap().unwrap();
    assert_eq!(base.root, root(4, 2));
    // The write-back reached this node's acceptor under the new ballot.
    assert_eq!(
        acc.snapshot().accepted,
        Some(AcceptedRoot {
            ballot: 4,
            root: root(4, 2)
        })
    );
}

#[tokio::test]
async fn a_failed_prepare_releases_every_voter_also_late_ones() {
    let releases = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let r = releases.clone();
    let mut net = MockNetworkManager::new();
    net.expect_request()
        .returning(move |peer, msg, t| match msg {
            Message::Prepare { term, .. } if peer == "b" => Ok(promise(true, term, None)),
            // c's grant arrives after the round gave up (it timed out).
            Message::Prepare { .. } if peer == "c" => Err(NetworkError::Timeout {
                peer: peer.clone(),
                timeout: t,
            }),
            Message::Prepare { term, .. } => Ok(promise(false, term + 5, None)),
            Message::Release { .. } => {
                r.lock().push(peer.clone());
                Ok(Message::Ack)
            }
            other => panic!("unexpected {other:?}"),
        });
    // 5 nodes: self + b grant, c silent, d e refuse: 2 of 5.
    let acc = acceptor().await;
    let q = quorum(config(5), acc.clone(), net);
    let err = q.acquire().await.unwrap_err();
    // No majority within the vote timeout: unavailable, not a conflict.
    assert!(matches!(err, Error::NoMajority(_)), "{err}");
    assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
    // Releases go out in the background: wait (virtual time is not paused
    // here, so yield until they arrive, bounded).
    for _ in 0..200 {
        if releases.lock().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut got = releases.lock().clone();
    got.sort();
    got.dedup();
    assert_eq!(got, vec!["b", "c", "d", "e"], "every voter is released");
}

#[tokio::test]
async fn acquire_tolerates_a_dead_minority() {
    let mut net = MockNetworkManager::new();
    net.expect_request()
        .returning(|peer, msg, t| match (peer.as_str(), msg) {
            ("b", Message::Prepare { term, .. }) => Ok(promise(true, term, None)),
            _ => Err(NetworkError::Timeout {
                peer: peer.clone(),
                timeout: t,
            }),
        });
    let q = quorum(config(3), acceptor().await, net);
    let g = q.acquire().await.unwrap();
    assert_eq!(g.term, 1);
    assert_eq!(g.established_root, Some(None));
}

/// Acknowledgements count only for the ballot the root was sent under: an
/// `Accepted` of another term (a stale or forged answer) is not one.
#[tokio::test]
async fn writes_count_only_acknowledgements_of_their_own_ballot() {
    for (ack_term, ok) in [(1u64, true), (0, false), (2, false)] {
        let mut net = MockNetworkManager::new();
        let sent = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s = sent.clone();
        net.expect_request()
            .returning(move |peer, msg, t| match msg {
                Message::Prepare { term, .. } if peer == "b" => Ok(promise(true, term, None)),
                Message::Accept { term, root } => {
                    s.lock().push((peer.clone(), term, root.sequence));
                    if peer == "b" {
                        Ok(Message::Accepted {
                            term: ack_term,
                            accepted: true,
                            promised: ack_term,
                        })
                    } else {
                        Err(NetworkError::Timeout {
                            peer: peer.clone(),
                            timeout: t,
                        })
                    }
                }
                _ => Err(NetworkError::Timeout {
                    peer: peer.clone(),
                    timeout: t,
                }),
            });
        let q = quorum(config(3), acceptor().await, net);
        let g = q.acquire().await.unwrap();
        assert_eq!(g.term, 1);
        let r = q.write_root(&root(1, 1), None).await;
        assert_eq!(r.is_ok(), ok, "ack of term {ack_term}: {r:?}");
        assert!(sent.lock().iter().all(|(_, t, s)| *t == 1 && *s == 1));
    }
}

/// Within the holder, a write must build on what its grant established
/// (or it last wrote): a stale version is a conflict, a foreign term is
/// refused, and without a grant nothing is written.
#[tokio::test]
async fn writes_compare_against_the_holders_version() {
    let mut net = MockNetworkManager::new();
    net.expect_request().returning(|_, msg, _| match msg {
        Message::Prepare { term, .. } => Ok(promise(true, term, None)),
        Message::Accept { term, .. } => Ok(Message::Accepted {
            term,
            accepted: true,
            promised: term,
        }),
        Message::Release { .. } => Ok(Message::Ack),
        other => panic!("unexpected {other:?}"),
    });
    let q = quorum(config(3), acceptor().await, net);
    assert!(matches!(
        q.write_root(&root(1, 1), None).await,
        Err(Error::NotGranted(_))
    ));
    let g = q.acquire().await.unwrap();
    let v1 = q.write_root(&root(g.term, 1), None).await.unwrap();
    assert!(matches!(
        q.write_root(&root(g.term, 2), None).await,
        Err(Error::RootConflict { .. })
    ));
    assert!(matches!(
        q.write_root(&root(g.term + 1, 2), Some(v1)).await,
        Err(Error::NotGranted(_))
    ));
    q.write_root(&root(g.term, 2), Some(v1)).await.unwrap();
    q.release(&g).await.unwrap();
    assert!(matches!(
        q.write_root(&root(g.term, 3), None).await,
        Err(Error::NotGranted(_))
    ));
}

#[tokio::test]
async fn the_acceptor_fences_older_ballots_and_older_roots_of_a_ballot() {
    let acc = acceptor().await;
    let p = acc.prepare("b", 5, 1000).await.unwrap();
    assert!(p.granted);
    assert_eq!(
        acc.accept("b", 5, &root(5, 3)).await.unwrap(),
        AcceptOutcome::Accepted
    );
    // The same root again: idempotent.
    assert_eq!(
        acc.accept("b", 5, &root(5, 3)).await.unwrap(),
        AcceptOutcome::Accepted
    );
    // An older root of the same ballot (a reordered accept) is refused.
    assert!(matches!(
        acc.accept("b", 5, &root(5, 2)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    // An older ballot is refused.
    assert!(matches!(
        acc.accept("c", 4, &root(4, 9)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    // The ballot belongs to its holder: another member cannot accept under it.
    assert!(matches!(
        acc.accept("c", 5, &root(5, 4)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    // A root whose term is above its ballot, or whose checksum is wrong.
    assert!(matches!(
        acc.accept("b", 5, &root(6, 4)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    let mut forged = root(5, 4);
    forged.pointer.offset += 1;
    assert!(matches!(
        acc.accept("b", 5, &forged).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    // A newer ballot wins, and a write-back of an older root under it too.
    assert_eq!(
        acc.accept("d", 7, &root(5, 3)).await.unwrap(),
        AcceptOutcome::Accepted
    );
    assert_eq!(acc.snapshot().promised, 7);
}

/// Defect: a member asked for `u64::MAX - 1` with an unbounded lease and
/// every later publish failed. Now the lease is capped by the voter, the
/// term jump is refused, and the term space is not exhausted.
#[tokio::test]
async fn hostile_prepares_are_bounded() {
    let acc = acceptor_with(MemoryAcceptorStore::default(), "a", 300).await;
    let p = acc.prepare("m", u64::MAX - 1, u64::MAX).await.unwrap();
    assert!(!p.granted, "a jump past MAX_TERM_STEP is refused");
    assert_eq!(p.promised, 0);
    let p = acc.prepare("m", 1 << 20, u64::MAX).await.unwrap();
    assert!(p.granted);
    assert_eq!(p.lease_ms, 300, "the lease is capped by the voter's own");
    // Accepts cannot jump either.
    assert!(matches!(
        acc.accept("m", u64::MAX, &root(u64::MAX, 1)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
}

#[tokio::test]
async fn a_restarted_acceptor_never_promises_a_term_it_may_have_promised() {
    let store = MemoryAcceptorStore::default();
    let acc = acceptor_with(store.clone(), "a", 1000).await;
    assert!(acc.prepare("b", 3, 1000).await.unwrap().granted);
    assert!(acc.accept("b", 3, &root(3, 1)).await.unwrap() == AcceptOutcome::Accepted);
    drop(acc);
    let again = acceptor_with(store, "a", 1000).await;
    let snap = again.snapshot();
    assert!(
        snap.promised >= 3 + acceptor_store::TERM_BLOCK - 1,
        "{snap:?}"
    );
    assert_eq!(snap.accepted.map(|a| a.root), Some(root(3, 1)));
    assert!(!again.prepare("c", 3, 1000).await.unwrap().granted);
}

fn page_answer(wal: WalId, offset: u64, data: Option<&'static [u8]>) -> Message {
    Message::PageResponse {
        wal,
        offset,
        data: data.map(Bytes::from_static),
    }
}

/// A patched network answering page requests with `data(peer)` and
/// recording, in order, which peers were asked.
fn recording_page_network(
    data: impl Fn(&str) -> Option<&'static [u8]> + Send + Sync + 'static,
) -> (MockNetworkManager, Arc<parking_lot::Mutex<Vec<String>>>) {
    let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let a2 = asked.clone();
    let mut net = MockNetworkManager::new();
    net.expect_request().returning(move |peer, msg, _| {
        let Message::PageRequest { wal, offset, .. } = msg else {
            panic!("unexpected {msg:?}")
        };
        a2.lock().push(peer.clone());
        Ok(page_answer(wal, offset, data(peer)))
    });
    (net, asked)
}

fn peer_tier(net: MockNetworkManager, hint: RootHint) -> PeerTier {
    PeerTier::new(Arc::new(net), config(3), hint, 2)
}

#[tokio::test]
async fn peer_reads_skip_not_found_and_remember_the_holder() {
    let wal = WalId::new_random();
    let (net, asked) = recording_page_network(|peer| match peer {
        "b" => None,
        _ => Some(b"page bytes"),
    });
    let p = peer_tier(net, RootHint::default());
    assert_eq!(
        &p.read(wal, 64, 100).await.unwrap().unwrap()[..],
        b"page bytes"
    );
    assert_eq!(*asked.lock(), vec!["b".to_string(), "c".to_string()]);
    asked.lock().clear();
    assert_eq!(
        &p.read(wal, 64, 100).await.unwrap().unwrap()[..],
        b"page bytes"
    );
    assert_eq!(
        *asked.lock(),
        vec!["c".to_string()],
        "the holder is asked first"
    );
}

/// The writer the newest root names is asked first for the root's WAL (it
/// has the pages not uploaded yet), before any holder is known.
#[tokio::test]
async fn peer_reads_ask_the_newest_roots_writer_first() {
    let wal = WalId::new_random();
    let (net, asked) = recording_page_network(|_| Some(b"from the writer"));
    let hint = RootHint::default();
    hint.note(&RootRecord::new(
        AtomPointer::new(wal, 32),
        1,
        1,
        Some("c".into()),
    ));
    let p = peer_tier(net, hint);
    assert_eq!(
        &p.read(wal, 64, 100).await.unwrap().unwrap()[..],
        b"from the writer"
    );
    assert_eq!(*asked.lock(), vec!["c".to_string()]);
}

#[tokio::test]
async fn peer_reads_retry_failures_then_give_up() {
    let wal = WalId::new_random();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let mut net = MockNetworkManager::new();
    net.expect_request().returning(move |peer, msg, t| {
        let n = c2.fetch_add(1, Ordering::SeqCst);
        let Message::PageRequest { wal, offset, .. } = msg else {
            panic!("unexpected {msg:?}")
        };
        // The first round fails everywhere; then b answers.
        if n < 2 || peer != "b" {
            Err(NetworkError::Timeout {
                peer: peer.clone(),
                timeout: t,
            })
        } else {
            Ok(page_answer(wal, offset, Some(b"late")))
        }
    });
    let p = peer_tier(net, RootHint::default());
    assert_eq!(&p.read(wal, 64, 10).await.unwrap().unwrap()[..], b"late");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Everyone keeps failing: 1 + retries rounds, then a typed error.
    let mut net = MockNetworkManager::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c3 = calls.clone();
    net.expect_request().returning(move |peer, _, _| {
        c3.fetch_add(1, Ordering::SeqCst);
        Err(NetworkError::Unreachable {
            peer: peer.clone(),
            reason: "down".into(),
        })
    });
    let err = peer_tier(net, RootHint::default())
        .read(wal, 64, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2 * 3);

    // Everyone answers "not found": no retries, not here.
    let mut net = MockNetworkManager::new();
    net.expect_request().times(2).returning(|_, msg, _| {
        let Message::PageRequest { wal, offset, .. } = msg else {
            panic!("unexpected {msg:?}")
        };
        Ok(page_answer(wal, offset, None))
    });
    assert_eq!(
        peer_tier(net, RootHint::default())
            .read(wal, 64, 10)
            .await
            .unwrap(),
        None
    );
}

/// Issue 17: answers that do not match their request, or whose first bytes
/// are not the WAL's own native header, are not used: the next peer is
/// asked, and the offender is asked last for that WAL from then on.
#[tokio::test]
async fn peer_answers_that_fail_their_check_go_on_to_the_next_peer() {
    let wal = WalId::new_random();
    let other = WalId::new_random();
    let good = Bytes::from(crate::record::encode_header(wal).to_vec());
    let foreign = Bytes::from(crate::record::encode_header(other).to_vec());
    // What b answers, by case; c always answers the truth.
    let cases: Vec<Box<dyn Fn(WalId, u64) -> Message + Send + Sync>> = vec![
        // Too long.
        Box::new(|wal, offset| Message::PageResponse {
            wal,
            offset,
            data: Some(Bytes::from(vec![7u8; 64])),
        }),
        // Another WAL named in the answer.
        Box::new(move |_, offset| Message::PageResponse {
            wal: other,
            offset,
            data: Some(Bytes::from(vec![7u8; 32])),
        }),
        // Another offset.
        Box::new(|wal, offset| Message::PageResponse {
            wal,
            offset: offset + 1,
            data: Some(Bytes::from(vec![7u8; 32])),
        }),
        // Another WAL's header under the right envelope.
        Box::new({
            let foreign = foreign.clone();
            move |wal, offset| Message::PageResponse {
                wal,
                offset,
                data: Some(foreign.clone()),
            }
        }),
        // No native magic: a plausible reference record.
        Box::new(|wal, offset| {
            let mut v = 23u64.to_le_bytes().to_vec();
            v.resize(32, 0);
            Message::PageResponse {
                wal,
                offset,
                data: Some(Bytes::from(v)),
            }
        }),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let case = Arc::new(case);
        let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let a2 = asked.clone();
        let good2 = good.clone();
        let mut net = MockNetworkManager::new();
        net.expect_request().returning(move |peer, msg, _| {
            let Message::PageRequest { wal, offset, .. } = msg else {
                panic!("unexpected {msg:?}")
            };
            a2.lock().push(peer.clone());
            Ok(if peer == "b" {
                case(wal, offset)
            } else {
                page_answer_bytes(wal, offset, good2.clone())
            })
        });
        let p = peer_tier(net, RootHint::default());
        let got = p.read(wal, 0, 32).await.unwrap().unwrap();
        assert_eq!(got, good, "case {i}");
        assert_eq!(
            *asked.lock(),
            vec!["b".to_string(), "c".to_string()],
            "case {i}"
        );
        // b is asked last from now on (c is the holder anyway; forget it).
        p.holders.write().clear();
        asked.lock().clear();
        p.read(wal, 0, 32).await.unwrap().unwrap();
        assert_eq!(*asked.lock(), vec!["c".to_string()], "case {i}");
    }
}

fn page_answer_bytes(wal: WalId, offset: u64, data: Bytes) -> Message {
    Message::PageResponse {
        wal,
        offset,
        data: Some(data),
    }
}

#[tokio::test]
async fn a_cluster_storage_on_a_patched_network_publishes_through_promises_and_accepts() {
    let accepts = Arc::new(AtomicUsize::new(0));
    let u = accepts.clone();
    // The peers answer as acceptors do: a promise reports the newest root
    // accepted (a peer that forgot it could make a chosen root lost, which
    // no majority of real acceptors can).
    let newest: Arc<parking_lot::Mutex<Option<AcceptedRoot>>> = Arc::default();
    let mut net = MockNetworkManager::new();
    net.expect_start().returning(|_| Ok(()));
    net.expect_stop().returning(|| Ok(()));
    net.expect_request().returning(move |_, msg, _| match msg {
        Message::Prepare { term, .. } => Ok(promise(true, term, newest.lock().clone())),
        Message::Accept { term, root } => {
            u.fetch_add(1, Ordering::SeqCst);
            *newest.lock() = Some(AcceptedRoot { ballot: term, root });
            Ok(Message::Accepted {
                term,
                accepted: true,
                promised: term,
            })
        }
        Message::Release { .. } => Ok(Message::Ack),
        Message::QueryAccepted => Ok(Message::AcceptedValue(None)),
        other => panic!("unexpected {other:?}"),
    });
    let storage = StorageBuilder::in_memory()
        .cluster(config(3))
        .with_network_manager(Arc::new(net))
        .with_acceptor_store(Arc::new(MemoryAcceptorStore::default()))
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"x").await.unwrap();
    let r1 = storage.set_root(p).await.unwrap();
    let r2 = storage.set_root(p).await.unwrap();
    assert_eq!((r1.sequence, r2.sequence), (1, 2));
    assert!(r1.term >= 1 && r2.term >= r1.term);
    assert_eq!(r1.writer.as_deref(), Some("a"));
    assert!(
        accepts.load(Ordering::SeqCst) >= 2,
        "roots were sent to peers"
    );
    let term = storage
        .run_exclusive(|t| async move { Ok(t) })
        .await
        .unwrap();
    assert!(term >= 1);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_cluster_without_durable_acceptor_state_is_refused() {
    let mut net = MockNetworkManager::new();
    net.expect_start().never();
    let err = StorageBuilder::in_memory()
        .cluster(config(3))
        .with_network_manager(Arc::new(net))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("acceptor"), "{err}");
}

/// Counts of what a patched peer network was asked.
#[derive(Default)]
struct Asked {
    prepares: AtomicUsize,
    releases: AtomicUsize,
}

/// Peers that promise and accept everything (but refuse the first
/// `fail_accepts` accepts as if a newer ballot was promised), counting
/// requests.
fn counting_net(asked: Arc<Asked>, fail_accepts: usize) -> MockNetworkManager {
    let failing = AtomicUsize::new(fail_accepts);
    let mut net = MockNetworkManager::new();
    net.expect_request().returning(move |_, msg, _| match msg {
        Message::Prepare { term, .. } => {
            asked.prepares.fetch_add(1, Ordering::SeqCst);
            Ok(promise(true, term, None))
        }
        Message::Accept { term, .. } => {
            let fail = failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            Ok(Message::Accepted {
                term,
                accepted: !fail,
                promised: if fail { term + 10 } else { term },
            })
        }
        Message::Release { .. } => {
            asked.releases.fetch_add(1, Ordering::SeqCst);
            Ok(Message::Ack)
        }
        other => panic!("unexpected {other:?}"),
    });
    net
}

/// A released grant is kept a moment: the next acquire reuses it without
/// a prepare round and builds on the root last written under it; once the
/// moment passed it is released to every voter and the next acquire
/// prepares afresh. (Paused time: the moment passes only when slept.)
#[tokio::test(start_paused = true)]
async fn a_kept_grant_serves_the_next_acquire_without_a_prepare() {
    let asked = Arc::new(Asked::default());
    let q = quorum(config(3), acceptor().await, counting_net(asked.clone(), 0));
    let g = q.acquire().await.unwrap();
    let prepares = asked.prepares.load(Ordering::SeqCst);
    assert!(prepares >= 1);
    let v1 = q.write_root(&root(g.term, 1), None).await.unwrap();
    q.release(&g).await.unwrap();
    // Released: no write under it until acquired again.
    assert!(matches!(
        q.write_root(&root(g.term, 2), Some(v1)).await,
        Err(Error::NotGranted(_))
    ));
    let again = q.acquire().await.unwrap();
    assert_eq!(again.term, g.term);
    assert_eq!(
        asked.prepares.load(Ordering::SeqCst),
        prepares,
        "no prepare"
    );
    assert_eq!(
        again.established_root,
        Some(Some(VersionedRoot::by_order(root(g.term, 1))))
    );
    q.write_root(&root(g.term, 2), Some(v1)).await.unwrap();
    q.release(&again).await.unwrap();
    assert_eq!(asked.releases.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        asked.releases.load(Ordering::SeqCst),
        2,
        "both peers released"
    );
    let fresh = q.acquire().await.unwrap();
    assert!(fresh.term > g.term);
    assert!(asked.prepares.load(Ordering::SeqCst) > prepares);
}

/// A grant whose write failed (its outcome unknown, a newer ballot
/// promised) is not kept: the next acquire prepares afresh.
#[tokio::test(start_paused = true)]
async fn a_grant_whose_write_failed_is_not_kept() {
    let asked = Arc::new(Asked::default());
    let q = quorum(config(3), acceptor().await, counting_net(asked.clone(), 2));
    let g = q.acquire().await.unwrap();
    let prepares = asked.prepares.load(Ordering::SeqCst);
    assert!(q.write_root(&root(g.term, 1), None).await.is_err());
    q.release(&g).await.unwrap();
    let next = q.acquire().await.unwrap();
    assert!(next.term > g.term, "{} after {}", next.term, g.term);
    assert!(asked.prepares.load(Ordering::SeqCst) > prepares);
}

/// `let_go` (a closing storage) releases a kept grant at once.
#[tokio::test(start_paused = true)]
async fn let_go_releases_a_kept_grant_at_once() {
    let asked = Arc::new(Asked::default());
    let q = quorum(config(3), acceptor().await, counting_net(asked.clone(), 0));
    let g = q.acquire().await.unwrap();
    q.release(&g).await.unwrap();
    q.let_go().await;
    // The peers' releases go out on a task: let it run (time stays put).
    for _ in 0..100 {
        if asked.releases.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(asked.releases.load(Ordering::SeqCst), 2);
    assert!(q.acceptor().snapshot().promised == g.term);
    // Once let go, nothing is kept any more (the storage is closing).
    let h = q.acquire().await.unwrap();
    assert!(h.term > g.term);
    q.release(&h).await.unwrap();
    for _ in 0..100 {
        if asked.releases.load(Ordering::SeqCst) == 4 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(asked.releases.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_one_node_cluster_is_its_own_majority() {
    let mut net = MockNetworkManager::new();
    net.expect_start().returning(|_| Ok(()));
    net.expect_stop().returning(|| Ok(()));
    // No peers: nothing may be sent.
    net.expect_request().never();
    let cfg = config(1);
    assert_eq!((cfg.cluster_size(), cfg.quorum()), (1, 1));
    let storage = StorageBuilder::in_memory()
        .cluster(cfg)
        .with_network_manager(Arc::new(net))
        .with_acceptor_store(Arc::new(MemoryAcceptorStore::default()))
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"alone").await.unwrap();
    let r = storage.set_root(p).await.unwrap();
    assert_eq!((r.sequence, r.term), (1, 1));
    // The next update follows within the grant's linger: the same ballot.
    let r = storage.set_root(p).await.unwrap();
    assert_eq!((r.sequence, r.term), (2, 1));
    assert_eq!(storage.read_current_root().await.unwrap(), Some(r));
    storage.close().await.unwrap();
}

/// In-process nodes: acceptor + handler on a hub node, and the node's
/// quorum register.
async fn in_process_nodes(
    hub: &crate::transports::InProcessHub,
    ids: &[&str],
    cfg: impl Fn(&str) -> ClusterConfig,
) -> Vec<Arc<QuorumRegister>> {
    let mut out = Vec::new();
    for id in ids {
        let c = cfg(id);
        let acceptor = acceptor_with(MemoryAcceptorStore::default(), id, c.lease_ms).await;
        let net: Arc<dyn NetworkManager> = Arc::new(hub.node(*id));
        let local = Arc::new(crate::backends::memory::MemoryBlockProvider::new());
        net.start(Arc::new(ClusterHandler::new(acceptor.clone(), local)))
            .await
            .unwrap();
        out.push(Arc::new(QuorumRegister::new(
            c,
            acceptor,
            net,
            Arc::new(TokioClock),
            SeededRng::new(u64::from(id.as_bytes()[0])),
        )));
    }
    out
}

fn in_process_config(id: &str, ids: &[&str]) -> ClusterConfig {
    ClusterConfig {
        server_id: id.into(),
        servers: peers(ids),
        read_timeout_ms: 100,
        vote_timeout_ms: 20_000,
        retry_interval_ms: 10,
        lease_ms: 1_000,
        heartbeat_ms: 0,
        ..ClusterConfig::default()
    }
}

/// Two candidates and a silent third node (messages to it are lost, so every
/// round waits for its timeout): each candidate holds its own vote during a
/// round and refuses the other, and rounds of equal length would keep them
/// in lockstep forever. Backing off by a random part of the last round's
/// length breaks the tie: both get every grant they ask for.
#[tokio::test(start_paused = true)]
async fn two_candidates_with_a_silent_peer_do_not_duel_forever() {
    let hub = crate::transports::InProcessHub::new(3);
    let ids = ["a", "b", "c"];
    let nodes = in_process_nodes(&hub, &ids, |id| in_process_config(id, &ids)).await;
    hub.partition(&[&["a", "b"], &["c"]]);
    // A one-way delay longer than a short retry backoff: a candidate's
    // request arrives after the other has voted for itself again.
    hub.set_delay(Duration::from_millis(20), Duration::from_millis(20));
    let mut tasks = tokio::task::JoinSet::new();
    for q in nodes.into_iter().take(2) {
        tasks.spawn(async move {
            for _ in 0..5 {
                let g = q.acquire().await?;
                q.release(&g).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
}

/// Defect: one member's prepare with a huge term and lease wedged the
/// cluster. Now, after the capped lease ends, an honest node acquires and
/// writes.
#[tokio::test(start_paused = true)]
async fn a_hostile_members_prepare_blocks_others_at_most_one_lease() {
    let hub = crate::transports::InProcessHub::new(5);
    let ids = ["a", "b", "m"];
    let nodes = in_process_nodes(&hub, &ids, |id| in_process_config(id, &ids)).await;
    let m = hub.node("m");
    for target in ["a", "b"] {
        for term in [u64::MAX - 1, 1 << 30] {
            let _ = m
                .request(
                    &target.to_string(),
                    Message::Prepare {
                        term,
                        lease_ms: u64::MAX,
                    },
                    Duration::from_millis(100),
                )
                .await;
        }
    }
    let started = tokio::time::Instant::now();
    let a = &nodes[0];
    let g = a.acquire().await.unwrap();
    assert!(
        started.elapsed() <= Duration::from_millis(1_000 + 500),
        "blocked for {:?}",
        started.elapsed()
    );
    assert!(g.term > 1 << 30);
    a.write_root(&root(g.term, 1), None).await.unwrap();
    a.release(&g).await.unwrap();
    // The register reads back what was written.
    let b = &nodes[1];
    assert_eq!(
        b.read_root().await.unwrap().map(|v| v.root),
        Some(root(g.term, 1))
    );
}

/// The holder a blind write may be handed to (`crate::root_forward`): only
/// one that wrote under its ballot here (its prepare round had finished),
/// while its lease runs, above the terms promised before this process
/// started, and never a fenced term.
#[tokio::test(start_paused = true)]
async fn a_holder_is_named_only_once_it_wrote_and_never_under_a_fenced_term() {
    let acc = acceptor().await;
    let q = quorum(config(3), acc.clone(), MockNetworkManager::new());
    assert_eq!(q.holder(), None);
    assert!(acc.prepare("b", 3, 1_000).await.unwrap().granted);
    assert_eq!(q.holder(), None, "promised, but b may not hold it yet");
    assert_eq!(
        acc.accept("b", 3, &root(3, 1)).await.unwrap(),
        AcceptOutcome::Accepted
    );
    assert_eq!(q.holder(), Some(("b".to_string(), 3)));
    // A process started now: an earlier one may have forwarded under 3.
    let later = quorum(config(3), acc.clone(), MockNetworkManager::new());
    assert_eq!(later.holder(), None);
    // The lease ended.
    tokio::time::advance(Duration::from_millis(1_001)).await;
    assert_eq!(q.holder(), None);
    // A newer grant of b, then fenced.
    assert!(acc.prepare("b", 4, 1_000).await.unwrap().granted);
    acc.accept("b", 4, &root(4, 2)).await.unwrap();
    assert_eq!(later.holder(), Some(("b".to_string(), 4)));
    later.fence(4);
    assert_eq!(later.holder(), None);
    // Released: nobody holds it.
    assert_eq!(q.holder(), Some(("b".to_string(), 4)));
    acc.release("b", 4).await;
    assert_eq!(q.holder(), None);
}
