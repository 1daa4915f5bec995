//! The [`VoteStrategy`] conformance suite.
//!
//! | check | what must hold |
//! |---|---|
//! | [`acquire_release`] | a grant names its holder; after `release` the next grant comes, with a term not lower (the same only as the same holder's kept grant); after `release` and `let_go` strictly higher for fencing strategies (term > 0) |
//! | [`terms_fence_each_other`] | two nodes' strategies: while one holds a fencing grant, the other either gets none or gets a strictly higher term (which fences the first) |

use crate::vote::VoteStrategy;

/// A grant, released, then the next one (maybe the same, kept for this
/// node); released and let go, then a fresh one.
pub async fn acquire_release(vote: &dyn VoteStrategy) {
    let g = vote.acquire().await.expect("acquire");
    assert!(!g.holder.is_empty(), "a grant without a holder");
    vote.release(&g).await.expect("release");
    let h = vote.acquire().await.expect("acquire after release");
    assert!(
        h.term >= g.term,
        "terms must not fall: {} then {}",
        g.term,
        h.term
    );
    if g.term > 0 && h.term == g.term {
        assert_eq!(h.holder, g.holder, "a term reused by another holder");
    }
    vote.release(&h).await.expect("release");
    vote.let_go().await;
    let k = vote.acquire().await.expect("acquire after let_go");
    if g.term > 0 {
        assert!(
            k.term > h.term,
            "fencing terms must grow once let go: {} then {}",
            h.term,
            k.term
        );
    } else {
        assert!(k.term >= h.term);
    }
    vote.release(&k).await.expect("release");
    vote.let_go().await;
}

/// Two strategies of different nodes: a second grant while the first is
/// held has a higher term.
pub async fn terms_fence_each_other(a: &dyn VoteStrategy, b: &dyn VoteStrategy) {
    let ga = a.acquire().await.expect("acquire on a");
    if let Ok(gb) = b.acquire().await {
        assert_ne!(gb.holder, ga.holder);
        if ga.term > 0 {
            assert!(gb.term > ga.term, "{gb:?} granted while {ga:?} is held");
        }
        b.release(&gb).await.expect("release b");
    }
    a.release(&ga).await.expect("release a");
    a.let_go().await;
    let again = a.acquire().await.expect("acquire on a again");
    if ga.term > 0 {
        assert!(again.term > ga.term);
    }
    a.release(&again).await.expect("release a");
    a.let_go().await;
}
