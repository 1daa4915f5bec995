//! Pruning the root chain ([`RootRegister::prune_history`](crate::RootRegister::prune_history)
//! on an object store).
//!
//! ```text
//! <prefix>/root_floor/<20-digit F>   (empty) links below F may be gone
//! ```
//!
//! A pruner publishes a *floor* before it deletes any link below it; the
//! floor in effect is the highest `root_floor/` key (floors are only added,
//! and only those below the highest are removed, so it only rises). One
//! LIST finds it: from the start the first time, after the highest floor
//! this process knows afterwards.
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
//! This costs one LIST per commit and per read of the root, pruned or not
//! (a process cannot know that no other one prunes).

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Inner, backend};
use crate::error::Result;
use crate::root_register::{PruneReport, RootRetention};

/// Deletes in flight while pruning.
const DELETES_IN_FLIGHT: usize = 8;

impl Inner {
    fn floor_key(&self, floor: u64) -> Path {
        self.key(&format!("root_floor/{floor:020}"))
    }

    /// The floors published after `after` (all of them for `None`).
    async fn list_floors(&self, after: Option<u64>) -> Result<Vec<(u64, Path)>> {
        let prefix = self.key("root_floor");
        let listing = match after {
            Some(f) => self
                .store
                .list_with_offset(Some(&prefix), &self.floor_key(f)),
            None => self.store.list(Some(&prefix)),
        };
        let metas: Vec<object_store::ObjectMeta> = listing
            .try_collect()
            .await
            .map_err(|e| backend("listing", &prefix, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| Some((m.location.filename()?.parse::<u64>().ok()?, m.location)))
            .collect())
    }

    /// The floor in effect (0: never pruned): one LIST.
    pub(crate) async fn current_floor(&self) -> Result<u64> {
        let known = *self.known_floor.lock();
        let newer = self.list_floors(known).await?;
        let floor = newer
            .iter()
            .map(|(f, _)| *f)
            .fold(known.unwrap_or(0), u64::max);
        let mut k = self.known_floor.lock();
        *k = Some(k.map_or(floor, |was| was.max(floor)));
        Ok(floor)
    }

    /// Publishes `floor` unless the floor is that high already; the floor
    /// in effect afterwards.
    async fn raise_floor(&self, floor: u64) -> Result<u64> {
        let current = self.current_floor().await?;
        if current >= floor {
            return Ok(current);
        }
        let key = self.floor_key(floor);
        self.store
            .put(&key, PutPayload::new())
            .await
            .map_err(|e| backend("creating root floor", &key, e))?;
        let mut k = self.known_floor.lock();
        *k = Some(k.map_or(floor, |was| was.max(floor)));
        Ok(floor)
    }

    /// Removes the floors below `floor` (the highest one stays).
    async fn drop_old_floors(&self, floor: u64) -> Result<()> {
        for (f, key) in self.list_floors(None).await? {
            if f < floor {
                match self.store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(backend("removing root floor", &key, e)),
                }
            }
        }
        Ok(())
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
        self.drop_old_floors(floor).await?;
        let kept = links.iter().filter(|(i, _, _)| *i >= floor).count() as u64;
        tracing::info!(floor, removed, kept, "root chain pruned");
        Ok(PruneReport { removed, kept })
    }
}
