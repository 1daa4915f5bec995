//! [`BlockProvider`]: a backend that holds both a space's WAL bytes and its
//! root — the two seams [`WalStore`] and [`RootRegister`] in one object.
//!
//! Backends implement the two traits; everything that implements both is a
//! `BlockProvider`, and [`StorageBuilder::with_block_provider`](crate::StorageBuilder::with_block_provider)
//! takes one. The engine itself only ever sees the two seams, so a builder
//! can combine a backend's WAL store with another root register (a cluster's
//! quorum) or put read tiers in front of it. Implementations:
//! [`FileBlockProvider`](crate::backends::fs::FileBlockProvider) (feature
//! `fs`), [`MemoryBlockProvider`](crate::backends::memory::MemoryBlockProvider)
//! (always), and `CloudBlockProvider` (feature `cloud`).

use std::sync::Arc;

pub use crate::root_register::{RootLock, RootRegister, RootVersion, VersionedRoot};
pub use crate::wal_store::{NewWal, WalInfo, WalStore};

/// A backend holding WAL bytes and the root.
pub trait BlockProvider: WalStore + RootRegister {
    /// This provider as its WAL store.
    fn wal_store(self: Arc<Self>) -> Arc<dyn WalStore>;
    /// This provider as its root register.
    fn root_register(self: Arc<Self>) -> Arc<dyn RootRegister>;
}

impl<T: WalStore + RootRegister + 'static> BlockProvider for T {
    fn wal_store(self: Arc<Self>) -> Arc<dyn WalStore> {
        self
    }
    fn root_register(self: Arc<Self>) -> Arc<dyn RootRegister> {
        self
    }
}

#[cfg(any(test, feature = "mock"))]
mod mocks {
    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::error::Result;
    use crate::types::{RootRecord, WalId};

    mockall::mock! {
        /// A mock [`BlockProvider`]: both seams in one mock.
        pub BlockProvider {}

        #[async_trait]
        impl WalStore for BlockProvider {
            async fn create_wal(&self) -> Result<NewWal>;
            async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()>;
            async fn sync(&self, wal: WalId, upto: u64) -> Result<()>;
            async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes>;
            async fn list_wals(&self) -> Result<Vec<WalInfo>>;
            async fn close_wal(&self, wal: WalId) -> Result<()>;
            async fn read_config(&self) -> Result<Option<Bytes>>;
            async fn close(&self) -> Result<()>;
        }

        #[async_trait]
        impl RootRegister for BlockProvider {
            async fn read_root(&self) -> Result<Option<VersionedRoot>>;
            async fn write_root(
                &self,
                root: &RootRecord,
                expected: Option<RootVersion>,
            ) -> Result<RootVersion>;
            async fn lock_root(&self) -> Result<RootLock>;
        }
    }
}

#[cfg(any(test, feature = "mock"))]
pub use mocks::MockBlockProvider;

#[cfg(any(test, feature = "mock"))]
impl std::fmt::Debug for MockBlockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockBlockProvider")
    }
}
