//! The root compare-and-swap on any object store: a chain of immutable,
//! numbered root objects created with put-if-absent.
//!
//! ```text
//! <prefix>/root/<20-digit index>   the index-th root of the space's history
//! <prefix>/space_root              a readable copy of a recent root, plus its index
//! ```
//!
//! The root that replaces the one at index `i` is created at `root/<i + 1>`
//! with `PutMode::Create`, which every store implements (S3 as
//! `If-None-Match: *`, `LocalFileSystem` with an exclusive create): of two
//! writers racing from the same predecessor exactly one creates the key, the
//! other gets [`Error::RootConflict`] and may retry from the new root. Keys
//! are chain *positions*, not root sequences: in a cluster two roots of
//! different terms may carry the same sequence, and ordering is by
//! `(term, sequence)` — each link must be newer than the one before it.
//!
//! Writing a root that is already the object at its key succeeds (a retry
//! of a write whose answer was lost finds its own root there).
//!
//! Reading finds the newest root by walking forward from the newest root
//! this process has seen (one GET of its absent successor), or the first
//! time from the index in `space_root` (a copy the uploader writes after
//! each commit, in the reference's JSON shape plus `root_index`), or, when
//! that is missing or has no index, from the highest key a LIST returns.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{Inner, backend};
use crate::error::{Error, FormatError, Result};
use crate::types::RootRecord;

/// A root and its position in the chain.
pub(crate) type Link = (u64, RootRecord);

/// Walks started again after meeting a pruned stretch before giving up.
const WALK_ATTEMPTS: usize = 8;

/// JSON key of the chain position in the `space_root` copy.
const INDEX_FIELD: &str = "root_index";

impl Inner {
    fn root_key(&self, index: u64) -> Path {
        self.key(&format!("root/{index:020}"))
    }

    /// GETs one root object's bytes (`None`: absent or empty).
    async fn get_bytes(&self, key: &Path) -> Result<Option<Bytes>> {
        let bytes = self.get_optional(key).await?;
        Ok(bytes.filter(|b| !b.iter().all(u8::is_ascii_whitespace)))
    }

    fn parse_root(key: &Path, bytes: &[u8]) -> Result<RootRecord> {
        RootRecord::from_json(bytes).map_err(|source| Error::CorruptRoot {
            location: key.to_string(),
            source,
        })
    }

    /// The root at chain position `index`.
    async fn get_link(&self, index: u64) -> Result<Option<RootRecord>> {
        let key = self.root_key(index);
        match self.get_bytes(&key).await? {
            Some(b) => Self::parse_root(&key, &b).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` roots of the chain, newest first, each with its
    /// object's `last_modified`: a walk back from the newest link, one GET
    /// per root, ending at the chain's first root (or the first one gone).
    pub(crate) async fn chain_history(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::root_register::HistoricRoot>> {
        let mut out = Vec::new();
        let Some((mut index, _)) = self.newest_link().await? else {
            return Ok(out);
        };
        // `newest_link` has just read the floor.
        let floor = self.floor_seen();
        while out.len() < limit && index >= floor {
            let key = self.root_key(index);
            let got = match self.store.get(&key).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(backend("reading", &key, e)),
            };
            let written = std::time::SystemTime::from(got.meta.last_modified);
            let bytes = got.bytes().await.map_err(|e| backend("reading", &key, e))?;
            let root = Self::parse_root(&key, &bytes)?;
            out.push(crate::root_register::HistoricRoot {
                root,
                written: Some(written),
            });
            match index.checked_sub(1) {
                Some(i) => index = i,
                None => break,
            }
        }
        Ok(out)
    }

    /// Where a walk starts when this process knows no root yet.
    async fn chain_start(&self) -> Result<Option<Link>> {
        let copy = self.key("space_root");
        if let Some(bytes) = self.get_bytes(&copy).await? {
            let index = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get(INDEX_FIELD).and_then(serde_json::Value::as_u64));
            if let Some(index) = index {
                return Ok(Some((index, Self::parse_root(&copy, &bytes)?)));
            }
        }
        // No usable hint: the highest numbered root object.
        self.newest_listed().await
    }

    /// The highest numbered root object a LIST returns, and its root.
    async fn newest_listed(&self) -> Result<Option<Link>> {
        match self.highest_numbered(&self.key("root")).await? {
            Some(index) => Ok(self.get_link(index).await?.map(|r| (index, r))),
            None => Ok(None),
        }
    }

    /// The newest root and its chain position: a walk forward from the
    /// newest link this process knows, checked against the chain's floor
    /// (see `prune`: a walk that started below a pruned stretch starts again
    /// from the newest key a LIST returns).
    pub(crate) async fn newest_link(&self) -> Result<Option<Link>> {
        let known = self.known_root.lock().clone();
        let mut start = match known {
            Some(k) => k,
            None => self.chain_start().await?,
        };
        for _ in 0..WALK_ATTEMPTS {
            let from = start.as_ref().map(|(i, _)| *i);
            let walked = self.walk_forward(start).await;
            let floor = self.current_floor().await?;
            match walked {
                Ok(best) => {
                    let end = best.as_ref().map(|(i, _)| *i);
                    if floor == 0 || end.is_some_and(|i| i >= floor) {
                        *self.known_root.lock() = Some(best.clone());
                        return Ok(best);
                    }
                }
                // A stale walk may meet links re-created below the floor
                // (a walk from no root starts below position 0, so below
                // any floor but 0).
                Err((at, _)) if at < floor || from.map_or(floor > 0, |f| f < floor) => {}
                Err((_, e)) => return Err(e),
            }
            start = self.newest_listed().await?;
        }
        *self.known_root.lock() = None;
        Err(Error::backend(
            "object store",
            "the root chain was pruned faster than it could be read",
        ))
    }

    /// The end of a walk from the newest link this process knows, without
    /// the floor check `newest_link` makes: possibly older than the newest
    /// root when the chain was pruned past it, which `write_root`'s own
    /// floor check after its create turns into an unknown outcome, never an
    /// acknowledgement (a create at position `k + 1` that succeeds while
    /// the floor is at most `k + 1` was the chain's next link, and the link
    /// before it the chain's genuine `k`-th). A walk that breaks falls back
    /// to `newest_link`.
    pub(crate) async fn newest_link_to_update(&self) -> Result<Option<Link>> {
        let known = self.known_root.lock().clone();
        let Some(start) = known else {
            return self.newest_link().await;
        };
        match self.walk_forward(start).await {
            Ok(best) => {
                *self.known_root.lock() = Some(best.clone());
                Ok(best)
            }
            Err(_) => self.newest_link().await,
        }
    }

    /// Follows the chain from `best` to the first absent position; an error
    /// names the position that broke the chain.
    async fn walk_forward(
        &self,
        mut best: Option<Link>,
    ) -> std::result::Result<Option<Link>, (u64, Error)> {
        loop {
            // A chain that reached the last index has no successor.
            let next = match &best {
                Some((i, _)) => match i.checked_add(1) {
                    Some(n) => n,
                    None => break,
                },
                None => 0,
            };
            match self.get_link(next).await {
                Ok(Some(r)) if best.as_ref().is_none_or(|(_, b)| r.is_newer_than(b)) => {
                    best = Some((next, r));
                }
                Ok(Some(r)) => {
                    return Err((
                        next,
                        Error::CorruptRoot {
                            location: self.root_key(next).to_string(),
                            source: FormatError::BadRoot(format!(
                                "{r:?} does not follow {:?}",
                                best.map(|(_, b)| b)
                            )),
                        },
                    ));
                }
                Ok(None) => break,
                Err(e) => return Err((u64::MAX, e)),
            }
        }
        Ok(best)
    }

    /// Appends `root` to the chain if the newest root is at chain position
    /// `expected` (`None`: no root yet); returns `root`'s position.
    pub(crate) async fn write_root(&self, root: &RootRecord, expected: Option<u64>) -> Result<u64> {
        let known = self.known_root.lock().clone();
        let newest = match known {
            Some(k) if k.as_ref().map(|(i, _)| *i) == expected => k,
            _ => self.newest_link().await?,
        };
        let found = newest.as_ref().map(|(i, _)| *i);
        if found != expected {
            return Err(Error::RootConflict {
                expected,
                found: newest.as_ref().map(|(_, r)| r.sequence),
            });
        }
        if let Some((_, prev)) = &newest
            && !root.is_newer_than(prev)
        {
            return Err(Error::invalid(
                "root",
                format!("{root:?} is not newer than the current {prev:?}"),
            ));
        }
        let index = match &newest {
            Some((i, _)) => i.checked_add(1).ok_or_else(|| Error::CorruptRoot {
                location: self.root_key(*i).to_string(),
                source: FormatError::BadRoot("the root chain is at its last index".into()),
            })?,
            None => 0,
        };
        let key = self.root_key(index);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let json = Bytes::from(root.to_json());
        match self
            .store
            .put_opts(&key, PutPayload::from(json), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                *self.known_root.lock() = None;
                let won = self.get_link(index).await?;
                if won.as_ref() != Some(root) {
                    return Err(Error::RootConflict {
                        expected,
                        found: won.map(|r| r.sequence),
                    });
                }
                // An earlier attempt of this very write (its answer lost)
                // created it: done.
            }
            Err(e) => {
                // The object may or may not have been created.
                *self.known_root.lock() = None;
                return Err(backend("creating root", &key, e));
            }
        }
        // A position below the floor was pruned before this create (or
        // after it, once newer roots followed): unknown (see `prune`).
        let floor = self.current_floor().await.inspect_err(|_| {
            *self.known_root.lock() = None;
        })?;
        if floor > index {
            *self.known_root.lock() = None;
            return Err(Error::backend(
                "object store",
                format!(
                    "root chain position {index} is below the chain's floor {floor}: pruned \
                     while this root was written; whether it is stored is unknown, read the \
                     root again"
                ),
            ));
        }
        *self.known_root.lock() = Some(Some((index, root.clone())));
        // The numbered object is the truth (readers follow the chain); the
        // readable copy follows in the background, off the commit path.
        // In `Local` durability it waits for the uploader's next round, like
        // the slots (uploads keep to `upload_interval_ms`).
        *self.root_copy.lock() = Some(copy_json(index, root));
        if self.durability == super::Durability::Cloud {
            self.wake.notify_one();
        }
        Ok(index)
    }
}

/// `space_root`: the root's JSON (reference keys first) plus its index.
fn copy_json(index: u64, root: &RootRecord) -> Bytes {
    let mut v = serde_json::to_value(root).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(INDEX_FIELD.into(), index.into());
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_else(|_| root.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AtomPointer, WalId};

    #[test]
    fn copy_keeps_the_reference_shape_and_adds_the_index() {
        let r = RootRecord::new(AtomPointer::new(WalId::new_random(), 9), 4, 2, None);
        let json = copy_json(17, &r);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[INDEX_FIELD], 17);
        assert!(v.get("transaction_id").is_some() && v.get("offset").is_some());
        assert_eq!(RootRecord::from_json(&json).unwrap(), r);
    }
}
