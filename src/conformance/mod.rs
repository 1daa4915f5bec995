//! Conformance suites: the behaviour every implementation of a seam must
//! show, as `pub async fn`s that implementations (here and in other crates)
//! run from their own tests, in the manner of `object_store`'s
//! `integration` module.
//!
//! Compiled under `cfg(test)` and the `conformance` feature.
//!
//! - [`wal_store`]: [`WalStore`](crate::WalStore) backends;
//! - [`root_register`]: [`RootRegister`](crate::RootRegister)s (files,
//!   memory, object-store chains, a cluster's quorum);
//! - [`page_cache`]: the [`PageCache`](crate::PageCache) implementations;
//! - [`vote`]: the [`VoteStrategy`](crate::VoteStrategy) implementations;
//! - [`network`]: [`NetworkManager`](crate::NetworkManager) transports;
//! - [`storage`]: the [`Storage`](crate::Storage) API, on every variant.
//!
//! `tests/conformance.rs` runs them on every implementation in the crate.

pub mod network;
pub mod page_cache;
pub mod root_register;
pub mod storage;
pub mod vote;
pub mod wal_store;
