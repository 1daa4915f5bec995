//! Pruning the root chain ([`RootRegister::prune_history`](crate::RootRegister::prune_history)
//! on an object store).
//!
//! ```text
//! <prefix>/root_floor/<20-digit n>         {"floor": F}: the floor chain
//! <prefix>/root_floor_value/<20-digit F>   (empty) F, for fresh readers
//! ```
//!
//! A pruner publishes a *floor* before it deletes any link below it: the
//! next position of the floor chain, created with put-if-absent (of two
//! pruners one wins, the other reads again), its body at least the floor
//! before; then the floor's value key. Nothing of either is ever deleted
//! (one small object each per pruning run that raises the floor). A
//! process finds the floor in effect with one GET of the chain position
//! after the one it knows (absent: unchanged), like the root walk; the
//! first time with a LIST of the value keys (as many requests whether the
//! chain was pruned or not), the second with a LIST and a GET to find its
//! position in the chain.
//!
//! Why: put-if-absent on a *deleted* key succeeds, so a writer whose view
//! of the chain is many roots old could re-create a pruned position and
//! take its root for stored; and a reader walking forward from an old
//! position could take the first pruned link for the end of the chain.
//! Both read the floor after the request that ended their walk or created
//! their link:
//!
//! - a link created at position `k` while the floor is still `<= k` was not
//!   a pruned position (it was deleted only after a floor above `k` was
//!   published), so it is the chain's next link; with a floor above `k`
//!   the outcome is unknown and the write says so (the writer reads again);
//! - a walk that found no link after position `i` while the floor is still
//!   `<= i` saw the chain's end; otherwise it starts again from the newest
//!   key a LIST returns.
//!
//! This costs one GET per commit and per read of the root, pruned or not
//! (a process cannot know that no other one prunes). (A first version
//! LISTed the floors each time: on moto, whose LIST scans the bucket, it
//! doubled the commit latency.)

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Inner, backend};
use crate::error::Result;
use crate::root_register::{PruneReport, RootRetention};

/// Deletes in flight while pruning.
const DELETES_IN_FLIGHT: usize = 8;

/// A floor object's body.
#[derive(serde::Serialize, serde::Deserialize)]
struct FloorBody {
    floor: u64,
}

/// What a process knows of the floor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FloorView {
    /// `pos` is the chain's position (else only `floor` is known, from
    /// the value listing).
    located: bool,
    /// The newest chain position seen.
    pos: Option<u64>,
    /// The floor in effect, as far as known.
    floor: u64,
}

impl Inner {
    fn floor_key(&self, n: u64) -> Path {
        self.key(&format!("root_floor/{n:020}"))
    }

    /// The floor published at position `n` of the floor chain, if any.
    async fn get_floor(&self, n: u64) -> Result<Option<u64>> {
        let key = self.floor_key(n);
        match self.get_optional(&key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice::<FloorBody>(&b)
                .map(|f| Some(f.floor))
                .map_err(|e| crate::error::Error::CorruptRoot {
                    location: key.to_string(),
                    source: crate::error::FormatError::BadRoot(format!("a bad floor: {e}")),
                }),
        }
    }

    /// The floor chain's newest position and the floor in effect.
    ///
    /// The first call of a process LISTs `root_floor_value/` (one request
    /// whether the chain was pruned or not: a fresh reader opens in as
    /// many requests either way); the next one finds the chain's position
    /// (a LIST and a GET); from then on one GET of the position after the
    /// known one (absent: unchanged).
    async fn floor_at(&self) -> Result<(Option<u64>, u64)> {
        let known = *self.known_floor.lock();
        let mut view = match known {
            Some(v) => v,
            None => {
                let floor = self
                    .highest_numbered(&self.key("root_floor_value"))
                    .await?
                    .unwrap_or(0);
                let view = FloorView {
                    located: false,
                    pos: None,
                    floor,
                };
                self.note_floor(view);
                return Ok((None, floor));
            }
        };
        if !view.located {
            let newest = self.highest_numbered(&self.key("root_floor")).await?;
            view.located = true;
            if let Some(n) = newest {
                view.pos = Some(n);
                view.floor = view.floor.max(self.get_floor(n).await?.unwrap_or(0));
            }
        }
        loop {
            let next = match view.pos {
                None => 0,
                Some(n) => match n.checked_add(1) {
                    Some(m) => m,
                    None => break,
                },
            };
            match self.get_floor(next).await? {
                // Floors only rise (a lower body is ignored).
                Some(f) => {
                    view.pos = Some(next);
                    view.floor = view.floor.max(f);
                }
                None => break,
            }
        }
        self.note_floor(view);
        Ok((view.pos, view.floor))
    }

    /// Remembers `view` unless a newer one is remembered.
    fn note_floor(&self, view: FloorView) {
        let mut k = self.known_floor.lock();
        let newer = k.is_none_or(|was| {
            (view.located && !was.located) || (view.located == was.located && view.pos >= was.pos)
        });
        if newer {
            *k = Some(FloorView {
                floor: view.floor.max(k.map_or(0, |w| w.floor)),
                ..view
            });
        }
    }

    /// The floor this process last found (0: none yet), without a request.
    pub(crate) fn floor_seen(&self) -> u64 {
        self.known_floor.lock().map_or(0, |v| v.floor)
    }

    /// The floor in effect (0: never pruned).
    pub(crate) async fn current_floor(&self) -> Result<u64> {
        Ok(self.floor_at().await?.1)
    }

    /// Publishes `floor` unless the floor is that high already: the next
    /// position of the floor chain, created with put-if-absent (of two
    /// pruners, one wins and the other reads again); the floor in effect
    /// afterwards.
    async fn raise_floor(&self, floor: u64) -> Result<u64> {
        for _ in 0..64 {
            let (at, current) = self.floor_at().await?;
            if current >= floor {
                return Ok(current);
            }
            let n = match at {
                None => 0,
                Some(n) => n.checked_add(1).ok_or_else(|| {
                    crate::error::Error::invalid(
                        "root floor",
                        "the floor chain is at its last index",
                    )
                })?,
            };
            let key = self.floor_key(n);
            let body = serde_json::to_vec(&FloorBody { floor })
                .map_err(|e| crate::error::Error::invalid("root floor", e.to_string()))?;
            let opts = object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&key, PutPayload::from(body), opts)
                .await
            {
                Ok(_) => {
                    // What fresh readers list; written before anything below
                    // `floor` is deleted.
                    let value = self.key(&format!("root_floor_value/{floor:020}"));
                    self.store
                        .put(&value, PutPayload::new())
                        .await
                        .map_err(|e| backend("creating root floor", &value, e))?;
                    self.note_floor(FloorView {
                        located: true,
                        pos: Some(n),
                        floor,
                    });
                    return Ok(floor);
                }
                // Another pruner (or this put's lost answer): read again.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(backend("creating root floor", &key, e)),
            }
        }
        Err(crate::error::Error::backend(
            "object store",
            "the root floor could not be raised: other pruners kept winning",
        ))
    }

    /// Every root object's position and time (a LIST).
    async fn list_links(&self) -> Result<Vec<(u64, std::time::SystemTime, Path)>> {
        let prefix = self.key("root");
        let metas = self.list_all(&prefix).await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let i = m.location.filename()?.parse::<u64>().ok()?;
                Some((i, std::time::SystemTime::from(m.last_modified), m.location))
            })
            .collect())
    }

    /// Prunes the chain to `retention` (see the module docs).
    pub(crate) async fn prune_chain(&self, retention: &RootRetention) -> Result<PruneReport> {
        let Some((newest, _)) = self.newest_link().await? else {
            return Ok(PruneReport::default());
        };
        let links = self.list_links().await?;
        let keep_last = retention.keep_last.max(1);
        let mut target = newest.saturating_add(1).saturating_sub(keep_last);
        if let Some(age) = retention.keep_younger_than {
            let now = std::time::SystemTime::now();
            let young = links
                .iter()
                .filter(|(_, t, _)| crate::reclaim::is_recent(*t, now, age))
                .map(|(i, _, _)| *i)
                .min();
            if let Some(y) = young {
                target = target.min(y);
            }
        }
        let floor = self.raise_floor(target).await?;
        let doomed: Vec<Path> = links
            .iter()
            .filter(|(i, _, _)| *i < floor)
            .map(|(_, _, p)| p.clone())
            .collect();
        let removed = doomed.len() as u64;
        futures_util::stream::iter(doomed)
            .map(|key| async move {
                match self.store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(backend("removing root", &key, e)),
                }
            })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        let kept = links.iter().filter(|(i, _, _)| *i >= floor).count() as u64;
        tracing::info!(floor, removed, kept, "root chain pruned");
        Ok(PruneReport { removed, kept })
    }
}
