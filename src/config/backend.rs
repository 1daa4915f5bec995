//! [`BackendConfig`]: which [`BlockProvider`](crate::BlockProvider) a node
//! stores its space in (`[backend]`, tagged by `type`).
//!
//! | `type` | fields | provider |
//! |---|---|---|
//! | `fs` | `dir` | [`FileBlockProvider`](crate::backends::fs::FileBlockProvider) (feature `fs`) |
//! | `memory` | — | [`MemoryBlockProvider`](crate::backends::memory::MemoryBlockProvider) |
//! | `cloud` | see [`CloudBackend`](super::cloud::CloudBackend) | [`CloudBlockProvider`](crate::backends::cloud::CloudBlockProvider) (feature `cloud`) |

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dyn_clone::DynClone;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::builder::StorageBuilder;
use crate::error::Result;

/// The `[backend]` section: builds the storage's block provider.
///
/// Implement it (with `#[typetag::serde(name = "...")]` on the impl) to make
/// another provider configurable; the `type` key selects the impl.
#[typetag::serde(tag = "type")]
#[async_trait]
pub trait BackendConfig: DynClone + Debug + Send + Sync {
    /// A builder with this backend's provider (or space directory) set.
    async fn builder(&self, ctx: &BuildContext<'_>) -> Result<StorageBuilder>;

    /// The local space directory, when there is one (its `space.config` is
    /// read with the node's file).
    fn space_dir(&self) -> Option<&Path> {
        None
    }

    /// Makes relative paths relative to `base` (the config file's directory).
    fn resolve_paths(&mut self, _base: &Path) {}

    /// True when the space lives in an object store (the cloud variants).
    fn is_object_store(&self) -> bool {
        false
    }

    /// The cloud backend this is, if it is one (feature `cloud`).
    #[cfg(feature = "cloud")]
    fn as_cloud(&self) -> Option<&super::cloud::CloudBackend> {
        None
    }
}

dyn_clone::clone_trait_object!(BackendConfig);

/// Joins `path` onto `base` unless it is absolute.
pub(crate) fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// `type = "fs"`: a space directory on the local filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsBackend {
    /// The space directory (created if missing; relative to the config file).
    pub dir: PathBuf,
}

#[typetag::serde(name = "fs")]
#[async_trait]
impl BackendConfig for FsBackend {
    #[cfg(feature = "fs")]
    async fn builder(&self, _ctx: &BuildContext<'_>) -> Result<StorageBuilder> {
        Ok(StorageBuilder::standalone(&self.dir))
    }

    #[cfg(not(feature = "fs"))]
    async fn builder(&self, _ctx: &BuildContext<'_>) -> Result<StorageBuilder> {
        Err(crate::Error::invalid(
            "backend",
            "type = \"fs\" needs protobase built with feature `fs`",
        ))
    }

    fn space_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.dir);
    }
}

/// `type = "memory"`: a fresh in-memory provider (tests, demos; nothing
/// survives the process — in a cluster, the acceptor's state neither, which
/// is consistent: the node's data is gone too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryBackend {}

#[typetag::serde(name = "memory")]
#[async_trait]
impl BackendConfig for MemoryBackend {
    async fn builder(&self, _ctx: &BuildContext<'_>) -> Result<StorageBuilder> {
        Ok(StorageBuilder::in_memory()
            .with_acceptor_store(Arc::new(crate::cluster::MemoryAcceptorStore::default())))
    }
}
