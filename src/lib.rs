//! # protobase
//!
//! An embedded, pluggable storage layer for an object database: applications
//! push immutable *atoms* (raw bytes, JSON or MessagePack values) into an
//! append-only write-ahead log and get back an [`AtomPointer`]; one *root*
//! pointer names the latest committed state, and publishing it is the only
//! mutable operation.
//!
//! One [`Storage`] type serves every variant; a [`StorageBuilder`] composes
//! it from four traits:
//!
//! | trait | role | implementations here |
//! |---|---|---|
//! | [`BlockProvider`] | where WAL bytes ([`WalStore`]) and the root ([`RootRegister`]) live | [`backends::fs::FileBlockProvider`] (`fs`), [`backends::memory::MemoryBlockProvider`] |
//! | [`PageCache`] | pages of WALs kept near the reader | [`MemoryPageCache`] |
//! | [`VoteStrategy`] | who may update the root | [`SingleNodeVote`], [`cluster::QuorumRegister`] |
//! | [`NetworkManager`] | a node's link to its peers | [`transports::tcp::TcpNetworkManager`] (`tcp`), `transports::quic::QuicNetworkManager` (`quic`), [`transports::in_process::InProcessNetwork`] (fault injection) |
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use protobase::{AtomFormat, Storage};
//!
//! let dir = tempfile::tempdir()?;
//! let storage = Storage::open(dir.path()).await?;
//! let ptr = storage.push_atom(&serde_json::json!({"hello": "world"}), AtomFormat::Json).await?;
//! let root = storage.set_root(ptr).await?; // durable when it returns
//! assert_eq!(storage.read_current_root().await?, Some(root));
//! storage.close().await?;
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! A node can also be described in a TOML or JSON file ([`config`]:
//! [`NodeConfig::load`], [`StorageBuilder::from_config`]), which the
//! `protobase node` command runs.
//!
//! Features: `fs` (default: space directories), `tcp` (default: the TCP
//! transport), `quic` (the QUIC transport with mutual TLS), `cloud` (the
//! object-store provider: memory and local-directory stores), `s3`, `gcs`,
//! `azure` (those stores, by URL: [`backends::cloud::StoreUrl`]), `aws-sdk`
//! (S3 through the AWS SDK), `mock` (mockall mocks of the four traits),
//! `conformance` (the trait conformance suites), `sim` (deterministic
//! simulation parts), `cli` (the `protobase` binary). Items behind a
//! feature say so in the documentation.
//!
//! Observability: [`metrics`] (the names and labels recorded through the
//! `metrics` facade), [`Storage::readiness`], `tracing` spans on the public
//! operations, errors classified by [`ErrorKind`] with their sources.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
// docs.rs (`--cfg docsrs`, all features): every feature-gated item says
// which feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod block_provider;
pub mod builder;
pub mod checkpoint;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod network;
pub mod page_cache;
pub mod page_check;
pub mod protocol;
mod reader;
pub mod reclaim;
pub mod record;
mod record_log;
pub mod retry;
pub mod root_commit;
pub mod root_forward;
pub mod root_register;
pub mod scan;
mod signal;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
pub mod storage;
pub mod types;
pub mod vote;
pub mod wal_resume;
pub mod wal_store;
mod wal_writer;
pub mod wire;

#[path = "../backends/mod.rs"]
pub mod backends;
#[path = "../transports/mod.rs"]
pub mod transports;

#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;

pub use block_provider::BlockProvider;
pub use builder::{StorageBuilder, StorageConfig};
pub use checkpoint::Checkpoint;
pub use config::{ConfigError, NodeConfig};
pub use error::{Error, ErrorKind, FormatError, Result};
pub use network::{MessageHandler, NetworkError, NetworkManager, PeerId, PeerInfo};
pub use page_cache::{CacheStats, MemoryPageCache, PageCache, PageKey};
pub use reclaim::{KeptBecause, ReclaimOptions, ReclaimReport, ReclaimedWal};
pub use root_commit::RootUpdate;
pub use root_register::{
    HistoricRoot, PruneReport, RootLock, RootRegister, RootRetention, RootVersion, VersionedRoot,
    WalBytes,
};
pub use storage::{AtomFormat, Readiness, Storage, WeakStorage};
pub use types::{AtomPointer, Format, RootRecord, WalId};
pub use vote::{Grant, SingleNodeVote, VoteStrategy};
pub use wal_store::{NewWal, ReadTier, StoreTier, TieredWalStore, WalInfo, WalStore};

/// The README's code, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
