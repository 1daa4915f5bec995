//! Unit tests of the cluster logic against a patched network manager (the
//! way the reference's tests patch theirs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::backends::memory::MemoryBlockProvider;
use crate::block_provider::BlockProvider;
use crate::network::{MockNetworkManager, NetworkError};
use crate::protocol::Message;
use crate::types::{AtomPointer, RootRecord, WalId};
use crate::vote::{VoteRequest, VoteResponse, VoteStrategy};
use crate::{Error, StorageBuilder};

fn config(n: usize) -> ClusterConfig {
    ClusterConfig {
        server_id: "a".into(),
        servers: ["a", "b", "c", "d", "e"][..n]
            .iter()
            .map(|id| PeerAddress {
                id: id.to_string(),
                address: format!("{id}:1"),
            })
            .collect(),
        vote_timeout_ms: 60,
        retry_interval_ms: 1,
        read_timeout_ms: 50,
        max_retries: 2,
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

async fn acceptor(local: &MemoryBlockProvider) -> Arc<Acceptor> {
    Acceptor::open(
        "a".into(),
        Arc::new(local.clone()),
        Arc::new(MemoryTermStore::default()),
    )
    .await
    .unwrap()
}

fn vote_answer(granted: bool, term: u64, latest: Option<RootRecord>) -> Message {
    Message::VoteResponse(VoteResponse {
        voter: "peer".into(),
        granted,
        term,
        latest_root: latest,
    })
}

#[tokio::test]
async fn acquire_with_a_majority_adopts_the_newest_root() {
    let mut net = MockNetworkManager::new();
    net.expect_request().returning(|peer, msg, t| match msg {
        Message::VoteRequest(VoteRequest { term, .. }) if peer == "c" => {
            Ok(vote_answer(true, term, Some(root(4, 2))))
        }
        Message::VoteRequest(_) => Err(NetworkError::Timeout {
            peer: peer.clone(),
            timeout: t,
        }),
        other => panic!("unexpected {other:?}"),
    });
    let local = MemoryBlockProvider::new();
    local.write_root(&root(3, 9), None).await.unwrap();
    let vote = MajorityVote::new(config(3), acceptor(&local).await, Arc::new(net));
    let g = vote.acquire().await.unwrap();
    assert_eq!(g.term, 4, "above the local root's term");
    assert_eq!(g.holder, "a");
    assert!(g.expires_at.is_some());
    // (term, sequence) order: term 4 beats term 3 with a higher sequence.
    assert_eq!(g.latest_root, Some(root(4, 2)));
}

#[tokio::test]
async fn acquire_fails_without_a_majority_and_releases_what_it_got() {
    let releases = Arc::new(AtomicUsize::new(0));
    let r = releases.clone();
    let mut net = MockNetworkManager::new();
    net.expect_request()
        .returning(move |peer, msg, t| match msg {
            Message::VoteRequest(req) if peer == "b" => Ok(vote_answer(true, req.term, None)),
            Message::VoteRequest(req) => Ok(vote_answer(false, req.term + 5, None)),
            Message::Release { .. } => {
                r.fetch_add(1, Ordering::SeqCst);
                Err(NetworkError::Timeout {
                    peer: peer.clone(),
                    timeout: t,
                })
            }
            other => panic!("unexpected {other:?}"),
        });
    // 5 nodes: self + b grant, c d e refuse: 2 of 5.
    let local = MemoryBlockProvider::new();
    let acc = acceptor(&local).await;
    let vote = MajorityVote::new(config(5), acc.clone(), Arc::new(net));
    let err = vote.acquire().await.unwrap_err();
    assert!(matches!(err, Error::NotGranted(_)), "{err}");
    // The local promise was released, and later terms jump past refusals.
    assert!(
        acc.promised() > 5,
        "learned higher terms: {}",
        acc.promised()
    );
    // Release messages are sent in the background: wait for at least one.
    for _ in 0..100 {
        if releases.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(releases.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn acquire_tolerates_a_dead_minority() {
    let mut net = MockNetworkManager::new();
    net.expect_request()
        .returning(|peer, msg, t| match (peer.as_str(), msg) {
            ("b", Message::VoteRequest(req)) => Ok(vote_answer(true, req.term, None)),
            _ => Err(NetworkError::Timeout {
                peer: peer.clone(),
                timeout: t,
            }),
        });
    let local = MemoryBlockProvider::new();
    let vote = MajorityVote::new(config(3), acceptor(&local).await, Arc::new(net));
    assert_eq!(vote.acquire().await.unwrap().term, 1);
}

#[tokio::test]
async fn commit_needs_a_majority_of_acks() {
    for (acks, ok) in [(1usize, true), (0, false)] {
        let mut net = MockNetworkManager::new();
        let sent = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s = sent.clone();
        net.expect_request().returning(move |peer, msg, _| {
            let Message::RootUpdate { term, root } = msg else {
                panic!("unexpected {msg:?}")
            };
            s.lock().push((peer.clone(), term, root.sequence));
            let accepted = peer == "b" && acks == 1;
            Ok(Message::RootAck {
                term,
                sequence: 0,
                accepted,
            })
        });
        let local = MemoryBlockProvider::new();
        let vote = MajorityVote::new(config(3), acceptor(&local).await, Arc::new(net));
        let grant = crate::vote::Grant {
            term: 2,
            holder: "a".into(),
            expires_at: None,
            latest_root: None,
        };
        let r = vote.commit(&grant, &root(2, 1)).await;
        assert_eq!(r.is_ok(), ok, "{r:?}");
        let mut sent = sent.lock().clone();
        sent.sort();
        assert!(sent.iter().all(|(_, t, s)| *t == 2 && *s == 1));
        assert!(sent.iter().any(|(p, ..)| p == "b"));
    }
}

#[tokio::test]
async fn acceptor_fences_older_terms_and_older_roots() {
    let local = MemoryBlockProvider::new();
    let acc = acceptor(&local).await;
    let req = |candidate: &str, term| VoteRequest {
        candidate: candidate.into(),
        term,
        lease_ms: 60_000,
    };
    assert!(acc.vote(&req("b", 5)).unwrap().granted);
    // Another candidate while b's lease runs, even with a higher term: no.
    assert!(!acc.vote(&req("c", 6)).unwrap().granted);
    // The same candidate and term again (a duplicate): yes.
    assert!(acc.vote(&req("b", 5)).unwrap().granted);
    acc.release("b", 5);
    assert!(
        !acc.vote(&req("c", 5)).unwrap().granted,
        "term 5 was promised"
    );
    assert!(acc.vote(&req("c", 6)).unwrap().granted);
    // Accept: older term refused, same term stored, older root refused.
    assert!(matches!(
        acc.accept(5, &root(5, 1)).await.unwrap(),
        AcceptOutcome::Rejected { promised: 6, .. }
    ));
    assert_eq!(
        acc.accept(6, &root(6, 3)).await.unwrap(),
        AcceptOutcome::Accepted
    );
    assert_eq!(local.read_root().await.unwrap(), Some(root(6, 3)));
    assert!(matches!(
        acc.accept(6, &root(6, 2)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    // A root whose own term differs from the update's term is refused.
    assert!(matches!(
        acc.accept(7, &root(6, 9)).await.unwrap(),
        AcceptOutcome::Rejected { .. }
    ));
    // Catch-up learns newer roots whatever was promised.
    acc.release("c", 6);
    assert!(acc.vote(&req("d", 50)).unwrap().granted);
    assert_eq!(
        acc.learn(&root(7, 1)).await.unwrap(),
        AcceptOutcome::Accepted
    );
    assert_eq!(acc.latest(), Some(root(7, 1)));
}

#[tokio::test]
async fn a_restarted_voter_never_promises_a_term_it_may_have_promised() {
    let local = MemoryBlockProvider::new();
    let store = MemoryTermStore::default();
    let open = || Acceptor::open("a".into(), Arc::new(local.clone()), Arc::new(store.clone()));
    let acc = open().await.unwrap();
    let req = |term| VoteRequest {
        candidate: "b".into(),
        term,
        lease_ms: 10,
    };
    assert!(acc.vote(&req(7)).unwrap().granted);
    drop(acc);
    // Restart: the in-memory promise is gone, the durable ceiling is not.
    let acc = open().await.unwrap();
    for t in [6, 7, 8, term_store::TERM_BLOCK] {
        assert!(!acc.vote(&req(t)).unwrap().granted, "term {t}");
    }
    let answer = acc.vote(&req(1)).unwrap();
    assert!(
        answer.term > 7,
        "the refusal tells the floor: {}",
        answer.term
    );
    assert!(acc.vote(&req(answer.term + 1)).unwrap().granted);
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

#[tokio::test]
async fn remote_reads_skip_not_found_and_remember_the_holder() {
    let wal = WalId::new_random();
    let (net, asked) = recording_page_network(|peer| match peer {
        "b" => None,
        _ => Some(b"page bytes"),
    });
    let local = MemoryBlockProvider::new();
    let acc = acceptor(&local).await;
    let p = ClusterBlockProvider::new(Arc::new(local), acc, Arc::new(net), config(3));
    assert_eq!(&p.read(wal, 0, 100).await.unwrap()[..], b"page bytes");
    assert_eq!(*asked.lock(), vec!["b".to_string(), "c".to_string()]);
    asked.lock().clear();
    assert_eq!(&p.read(wal, 0, 100).await.unwrap()[..], b"page bytes");
    assert_eq!(
        *asked.lock(),
        vec!["c".to_string()],
        "the holder is asked first"
    );
}

/// The writer the latest root names is asked first for the root's WAL
/// (it has the pages not uploaded yet), before any holder is known.
#[tokio::test]
async fn remote_reads_ask_the_latest_roots_writer_first() {
    let wal = WalId::new_random();
    let (net, asked) = recording_page_network(|_| Some(b"from the writer"));
    let local = MemoryBlockProvider::new();
    let acc = acceptor(&local).await;
    let root = RootRecord::new(AtomPointer::new(wal, 32), 1, 1, Some("c".into()));
    acc.note_local(Some(&root));
    let p = ClusterBlockProvider::new(Arc::new(local), acc, Arc::new(net), config(3));
    assert_eq!(&p.read(wal, 0, 100).await.unwrap()[..], b"from the writer");
    assert_eq!(*asked.lock(), vec!["c".to_string()]);
}

#[tokio::test]
async fn remote_reads_retry_failures_then_give_up() {
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
    let local = MemoryBlockProvider::new();
    let p = ClusterBlockProvider::new(
        Arc::new(local.clone()),
        acceptor(&local).await,
        Arc::new(net),
        config(3),
    );
    assert_eq!(&p.read(wal, 0, 10).await.unwrap()[..], b"late");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Everyone keeps failing: 1 + max_retries rounds, then a typed error.
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
    let p = ClusterBlockProvider::new(
        Arc::new(local.clone()),
        acceptor(&local).await,
        Arc::new(net),
        config(3),
    );
    let err = p.read(wal, 0, 10).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2 * 3);

    // Everyone answers "not found": no retries, WalNotFound.
    let mut net = MockNetworkManager::new();
    net.expect_request().times(2).returning(|_, msg, _| {
        let Message::PageRequest { wal, offset, .. } = msg else {
            panic!("unexpected {msg:?}")
        };
        Ok(page_answer(wal, offset, None))
    });
    let p = ClusterBlockProvider::new(
        Arc::new(local.clone()),
        acceptor(&local).await,
        Arc::new(net),
        config(3),
    );
    assert!(matches!(
        p.read(wal, 0, 10).await.unwrap_err(),
        Error::WalNotFound { .. }
    ));
}

#[tokio::test]
async fn a_cluster_storage_on_a_patched_network_publishes_through_votes_and_acks() {
    let updates = Arc::new(AtomicUsize::new(0));
    let u = updates.clone();
    let mut net = MockNetworkManager::new();
    net.expect_start().returning(|_| Ok(()));
    net.expect_stop().returning(|| Ok(()));
    net.expect_broadcast().returning(|_, _| Vec::new());
    net.expect_request().returning(move |_, msg, _| match msg {
        Message::VoteRequest(req) => Ok(vote_answer(true, req.term, None)),
        Message::RootUpdate { term, root } => {
            u.fetch_add(1, Ordering::SeqCst);
            Ok(Message::RootAck {
                term,
                sequence: root.sequence,
                accepted: true,
            })
        }
        Message::Release { .. } => Ok(Message::Heartbeat {
            node: "b".into(),
            root_sequence: 0,
            term: 0,
        }),
        other => panic!("unexpected {other:?}"),
    });
    let mut cfg = config(3);
    cfg.heartbeat_ms = 0;
    let storage = StorageBuilder::in_memory()
        .cluster(cfg)
        .with_network_manager(Arc::new(net))
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"x").await.unwrap();
    let r1 = storage.set_root(p).await.unwrap();
    let r2 = storage.set_root(p).await.unwrap();
    assert_eq!((r1.sequence, r2.sequence), (1, 2));
    assert!(r1.term >= 1 && r2.term >= r1.term);
    assert_eq!(r1.writer.as_deref(), Some("a"));
    assert!(updates.load(Ordering::SeqCst) >= 2, "roots were broadcast");
    assert_eq!(storage.read_current_root().await.unwrap(), Some(r2));
    let term = storage
        .run_exclusive(|t| async move { Ok(t) })
        .await
        .unwrap();
    assert!(term >= 1);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_one_node_cluster_is_its_own_majority() {
    let mut net = MockNetworkManager::new();
    net.expect_start().returning(|_| Ok(()));
    net.expect_stop().returning(|| Ok(()));
    // No peers: nothing may be sent.
    net.expect_request().never();
    net.expect_broadcast().returning(|_, _| Vec::new());
    let mut cfg = config(1);
    cfg.heartbeat_ms = 0;
    assert_eq!((cfg.cluster_size(), cfg.quorum()), (1, 1));
    let storage = StorageBuilder::in_memory()
        .cluster(cfg)
        .with_network_manager(Arc::new(net))
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"alone").await.unwrap();
    let r = storage.set_root(p).await.unwrap();
    assert_eq!((r.sequence, r.term), (1, 1));
    let r = storage.set_root(p).await.unwrap();
    assert_eq!((r.sequence, r.term), (2, 2));
    storage.close().await.unwrap();
}

/// Two candidates and a silent third node (messages to it are lost, so every
/// round waits for its timeout): each candidate holds its own vote during a
/// round and refuses the other, and rounds of equal length would keep them
/// in lockstep forever. Backing off by a random part of the last round's
/// length breaks the tie: both get every grant they ask for.
#[tokio::test(start_paused = true)]
async fn two_candidates_with_a_silent_peer_do_not_duel_forever() {
    use crate::network::NetworkManager;
    use crate::transports::InProcessHub;

    let hub = InProcessHub::new(3);
    let cfg = |id: &str| ClusterConfig {
        server_id: id.into(),
        servers: ["a", "b", "c"]
            .iter()
            .map(|p| PeerAddress {
                id: p.to_string(),
                address: format!("{p}:1"),
            })
            .collect(),
        read_timeout_ms: 100,
        vote_timeout_ms: 20_000,
        retry_interval_ms: 10,
        lease_ms: 1_000,
        ..ClusterConfig::default()
    };
    let mut votes = Vec::new();
    for id in ["a", "b", "c"] {
        let local: Arc<dyn BlockProvider> = Arc::new(MemoryBlockProvider::new());
        let acceptor = Acceptor::open(
            id.into(),
            local.clone(),
            Arc::new(MemoryTermStore::default()),
        )
        .await
        .unwrap();
        let net: Arc<dyn NetworkManager> = Arc::new(hub.node(id));
        net.start(Arc::new(ClusterHandler::new(acceptor.clone(), local)))
            .await
            .unwrap();
        votes.push(Arc::new(MajorityVote::new(cfg(id), acceptor, net)));
    }
    hub.partition(&[&["a", "b"], &["c"]]);
    // A one-way delay longer than a short retry backoff: a candidate's
    // request arrives after the other has voted for itself again.
    hub.set_delay(Duration::from_millis(20), Duration::from_millis(20));
    let mut tasks = tokio::task::JoinSet::new();
    for v in votes.into_iter().take(2) {
        tasks.spawn(async move {
            for _ in 0..5 {
                let g = v.acquire().await?;
                v.release(&g).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
}
