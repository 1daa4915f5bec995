//! Blind root writes handed to the grant's holder (`protobase::root_forward`):
//! published there under its grant, refused when duplicated or named for
//! a term it does not hold, and never sent under a term again once an
//! answer did not come.
//!
//! The clusters run on the in-process transport with a paused clock; a
//! short sleep lets every task run until it waits (the clock only moves
//! when nothing can run), which is how a test knows that a forward is
//! queued at the holder's critical section.

use std::sync::Arc;
use std::time::Duration;

use protobase::cluster::{ClusterConfig, MemoryAcceptorStore, PeerAddress};
use protobase::protocol::Message;
use protobase::transports::InProcessHub;
use protobase::{Error, NetworkManager, RootRecord, Storage};

#[path = "support/members.rs"]
mod members;

const IDS: [&str; 3] = ["a", "b", "c"];

async fn member(hub: &InProcessHub, id: &str) -> Storage {
    member_with(hub, id, Arc::new(MemoryAcceptorStore::default())).await
}

async fn member_with(hub: &InProcessHub, id: &str, acceptor: Arc<MemoryAcceptorStore>) -> Storage {
    let config = ClusterConfig::new(id)
        .with_servers(IDS.iter().map(|p| PeerAddress::new(*p, format!("{p}:1"))))
        .with_read_timeout_ms(200)
        .with_vote_timeout_ms(10_000)
        .with_retry_interval_ms(20)
        .with_lease_ms(1_000)
        .with_heartbeat_ms(0);
    members::in_memory_member(hub, config, acceptor).await
}

/// Answers nothing (a member that only sends).
struct Silent;

#[async_trait::async_trait]
impl protobase::MessageHandler for Silent {
    async fn handle(&self, _from: protobase::PeerId, _message: Message) -> Option<Message> {
        None
    }
}

/// The members a, b and c.
async fn three(hub: &InProcessHub) -> (Storage, Storage, Storage) {
    (
        member(hub, "a").await,
        member(hub, "b").await,
        member(hub, "c").await,
    )
}

/// `s.set_root(p)` on a task of its own.
fn set_root_in_task(
    s: &Storage,
    p: protobase::AtomPointer,
) -> tokio::task::JoinHandle<protobase::Result<RootRecord>> {
    let s = s.clone();
    tokio::spawn(async move { s.set_root(p).await })
}

/// Lets every task run until it waits.
async fn settle() {
    tokio::time::sleep(Duration::from_micros(1)).await;
}

/// a publishes (so every node has accepted a root under its grant) and
/// keeps its grant with an open update.
async fn a_holds(a: &Storage) -> (RootRecord, protobase::RootUpdate) {
    let p = a.push_bytes(b"a0").await.unwrap();
    let r0 = a.set_root(p).await.unwrap();
    let u = a.begin_root_update().await.unwrap();
    assert_eq!(u.term(), r0.term, "a's next update reuses its grant");
    (r0, u)
}

#[tokio::test(start_paused = true)]
async fn a_members_blind_write_is_published_under_the_holders_grant() {
    let hub = InProcessHub::new(1);
    let (a, b, c) = three(&hub).await;
    let (r0, u) = a_holds(&a).await;
    let pb = b.push_bytes(b"from b").await.unwrap();
    let sent = set_root_in_task(&b, pb);
    settle().await;
    u.abort().await;
    let rb = sent.await.unwrap().unwrap();
    // Published by a under a's grant: b took no grant of its own.
    assert_eq!(rb.term, r0.term);
    assert_eq!(rb.sequence, r0.sequence + 1);
    assert_eq!(rb.pointer, pb);
    assert_eq!(rb.writer.as_deref(), Some("b"));
    assert_eq!(c.read_current_root().await.unwrap(), Some(rb));
    // The atom is durable at b and reads from any node.
    assert_eq!(&c.get_bytes(pb).await.unwrap()[..], b"from b");
    for s in [a, b, c] {
        s.close().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_copy_or_a_forward_for_another_term_publishes_nothing() {
    let hub = InProcessHub::new(2);
    let a_state = Arc::new(MemoryAcceptorStore::default());
    let a = member_with(&hub, "a", a_state.clone()).await;
    let c = member(&hub, "c").await;
    // b is a member without a storage: it only sends.
    let b = hub.node("b");
    b.start(Arc::new(Silent)).await.unwrap();
    let p = a.push_bytes(b"a0").await.unwrap();
    let r0 = a.set_root(p).await.unwrap();
    let forward = |term, id| Message::ForwardRoot {
        pointer: p,
        term,
        nonce: 7,
        id,
    };
    let ask = |to: &'static str, m| {
        let b = b.clone();
        async move {
            b.request(&to.to_string(), m, Duration::from_secs(5))
                .await
                .unwrap()
        }
    };
    let Message::ForwardedRoot(r1) = ask("a", forward(r0.term, 1)).await else {
        panic!("the holder did not publish a forward for its term");
    };
    assert_eq!((r1.term, r1.sequence), (r0.term, r0.sequence + 1));
    assert_eq!(r1.writer.as_deref(), Some("b"));
    // The same message again (a copy made by the network): not published
    // again, and not refused either (the sender may hear this answer
    // first, and must not take the first copy for unpublished).
    assert!(matches!(
        ask("a", forward(r0.term, 1)).await,
        Message::Error { .. }
    ));
    // A term a does not hold, and a node that holds none: refused.
    assert!(matches!(
        ask("a", forward(r0.term + 1, 2)).await,
        Message::ForwardRefused { .. }
    ));
    assert!(matches!(
        ask("c", forward(r0.term, 3)).await,
        Message::ForwardRefused { .. }
    ));
    // Nothing of it was published.
    assert_eq!(a.read_current_root().await.unwrap(), Some(r1.clone()));
    // A client link may not hand roots over.
    let client = hub.node(protobase::network::client_id("b"));
    client.start(Arc::new(Silent)).await.unwrap();
    let answer = client
        .request(
            &"a".to_string(),
            forward(r0.term, 4),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(matches!(answer, Message::Error { .. }), "{answer:?}");
    // A later process of a cannot tell whether an earlier one published a
    // forward under a term it held: an unknown outcome, not a refusal.
    a.close().await.unwrap();
    let a = member_with(&hub, "a", a_state).await;
    assert!(matches!(
        ask("a", forward(r0.term, 5)).await,
        Message::Error { .. }
    ));
    assert_eq!(c.read_current_root().await.unwrap(), Some(r1));
    a.close().await.unwrap();
    c.close().await.unwrap();
}

/// A forward that got no answer fences its term: should it still arrive
/// (here: b's caller went away while the forward waited at a), it lands
/// before b's next commit, never after it.
#[tokio::test(start_paused = true)]
async fn a_forward_without_an_answer_is_never_published_after_a_later_commit() {
    let hub = InProcessHub::new(3);
    let (a, b, c) = three(&hub).await;
    let (r0, u) = a_holds(&a).await;
    let first = b.push_bytes(b"first").await.unwrap();
    let dropped = set_root_in_task(&b, first);
    settle().await;
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    // a holds the same grant again when b commits next.
    u.abort().await;
    let u = a.begin_root_update().await.unwrap();
    assert_eq!(u.term(), r0.term);
    let second = b.push_bytes(b"second").await.unwrap();
    let next = set_root_in_task(&b, second);
    settle().await;
    u.abort().await;
    let r2 = next.await.unwrap().unwrap();
    // Not under the fenced term: through a newer grant.
    assert!(
        r2.term > r0.term,
        "{r2:?} under the fenced term {}",
        r0.term
    );
    assert_eq!(r2.pointer, second);
    assert_eq!(c.read_current_root().await.unwrap(), Some(r2));
    for s in [a, b, c] {
        s.close().await.unwrap();
    }
}

/// A holder that cannot be reached: the caller learns the outcome is
/// unknown (not that nothing was published), and the next commit takes a
/// newer grant once the link is back.
#[tokio::test(start_paused = true)]
async fn an_unreachable_holder_gives_an_unknown_outcome() {
    let hub = InProcessHub::new(4);
    let (a, b, c) = three(&hub).await;
    let (r0, u) = a_holds(&a).await;
    hub.cut("a", "b");
    let p = b.push_bytes(b"cut off").await.unwrap();
    match b.set_root(p).await {
        Err(Error::ForwardFailed { holder, term, .. }) => {
            assert_eq!((holder.as_str(), term), ("a", r0.term));
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    hub.heal();
    u.abort().await;
    let r = b.set_root(p).await.unwrap();
    assert!(r.term > r0.term);
    assert_eq!(c.read_current_root().await.unwrap(), Some(r));
    for s in [a, b, c] {
        s.close().await.unwrap();
    }
}
