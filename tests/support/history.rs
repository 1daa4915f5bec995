//! Linked root histories: every root update publishes an atom naming the
//! root it replaces, so walking back from the final root proves the updates
//! were serialised (no lost or forked update) and that every acknowledged
//! root is on the one chain.

#![allow(dead_code)]

use std::collections::BTreeMap;

use protobase::{AtomFormat, AtomPointer, RootRecord, Storage};
use serde::{Deserialize, Serialize};

/// The atom every root update publishes: who wrote it and the root it built on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub node: String,
    pub n: u32,
    pub prev: Option<Prev>,
}

/// A root as an entry names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prev {
    pub sequence: u64,
    pub term: u64,
    pub pointer: AtomPointer,
}

impl From<&RootRecord> for Prev {
    fn from(r: &RootRecord) -> Self {
        Prev {
            sequence: r.sequence,
            term: r.term,
            pointer: r.pointer,
        }
    }
}

/// One root update whose atom names the root it replaces.
pub async fn publish(storage: &Storage, node: &str, n: u32) -> protobase::Result<RootRecord> {
    let s = storage.clone();
    let node = node.to_string();
    storage
        .update_root(move |current| async move {
            let entry = Entry {
                node,
                n,
                prev: current.as_ref().map(Prev::from),
            };
            s.push_atom(&entry, AtomFormat::Json).await
        })
        .await
}

/// `publish`, retried up to `attempts` times; the root and the failures.
pub async fn publish_retrying(
    storage: &Storage,
    node: &str,
    n: u32,
    attempts: usize,
) -> (RootRecord, usize) {
    let mut errors = Vec::new();
    for _ in 0..attempts {
        match publish(storage, node, n).await {
            Ok(r) => return (r, errors.len()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    panic!("{node}: update {n} failed {attempts} times: {errors:#?}");
}

/// Walks back from `fin` (reading the atoms through `reader`), checks
/// consecutive sequences and non-decreasing terms, and that every root of
/// `acked` is on the chain; returns the chain's length.
pub async fn check_chain(reader: &Storage, fin: &RootRecord, acked: &[RootRecord]) -> usize {
    let mut chain: BTreeMap<u64, Prev> = BTreeMap::new();
    let mut at = Prev::from(fin);
    loop {
        let entry: Entry = reader
            .get_atom(at.pointer)
            .await
            .unwrap_or_else(|e| panic!("reading root #{} ({}): {e}", at.sequence, at.pointer));
        chain.insert(at.sequence, at.clone());
        match entry.prev {
            None => {
                assert_eq!(at.sequence, 1, "a root builds on nothing: {at:?}");
                break;
            }
            Some(prev) => {
                assert_eq!(
                    prev.sequence + 1,
                    at.sequence,
                    "root {at:?} builds on {prev:?}: lost or forked update"
                );
                assert!(
                    prev.term <= at.term,
                    "root {at:?} builds on a later term: {prev:?}"
                );
                at = prev;
            }
        }
    }
    let mut sequences: Vec<u64> = acked.iter().map(|r| r.sequence).collect();
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(
        sequences.len(),
        acked.len(),
        "two acknowledged roots share a sequence"
    );
    for r in acked {
        assert_eq!(
            chain.get(&r.sequence),
            Some(&Prev::from(r)),
            "acknowledged root {r:?} is not on the final chain"
        );
    }
    chain.len()
}
