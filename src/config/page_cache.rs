//! [`PageCacheConfig`]: the cache of WAL pages near the reader
//! (`[page_cache]`, tagged by `type`; default `memory` with
//! `storage.page_cache_size`).
//!
//! | `type` | fields | cache |
//! |---|---|---|
//! | `memory` | `size` (bytes) | [`MemoryPageCache`] |

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use dyn_clone::DynClone;
use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::error::Result;
use crate::page_cache::{MemoryPageCache, PageCache};

/// The `[page_cache]` section: builds the storage's page cache.
#[typetag::serde(tag = "type")]
#[async_trait]
pub trait PageCacheConfig: DynClone + Debug + Send + Sync {
    /// The cache (pages of `ctx.storage.page_size` bytes).
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn PageCache>>;

    /// Makes relative paths relative to `base` (the config file's directory).
    fn resolve_paths(&mut self, _base: &Path) {}
}

dyn_clone::clone_trait_object!(PageCacheConfig);

/// `type = "memory"`: an in-memory LRU-like cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPageCacheConfig {
    /// Byte budget (default: `storage.page_cache_size`, 256 MiB; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[typetag::serde(name = "memory")]
#[async_trait]
impl PageCacheConfig for MemoryPageCacheConfig {
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn PageCache>> {
        Ok(Arc::new(MemoryPageCache::new(
            self.size.unwrap_or(ctx.storage.page_cache_size),
            ctx.storage.page_size,
        )))
    }
}
