//! The cluster layer: a quorum root register with fencing terms and leases,
//! reads of other nodes' pages, and the message handler (DESIGN.md §6).
//!
//! A cluster node is a composition, not a copy, of the standalone engine:
//! its root register and vote strategy are a [`QuorumRegister`] over every
//! node's [`Acceptor`] (the one owner of promise and accept), its WAL reads
//! fall back to a [`PeerTier`], and a [`ClusterHandler`] answers its peers
//! through any [`NetworkManager`](crate::NetworkManager). A cloud-cluster
//! node keeps the object store's register (its compare-and-swap already
//! linearizes roots) and uses the quorum as its vote strategy only.

pub mod acceptor;
pub(crate) mod acceptor_log;
pub mod acceptor_store;
pub mod cache_handler;
pub mod config;
mod fanout;
pub mod handler;
#[cfg(any(feature = "tcp", feature = "quic"))]
pub mod local;
pub mod peer_tier;
pub mod quorum;
pub mod root_copy;

pub use acceptor::{AcceptOutcome, Acceptor, AcceptorSnapshot};
pub use acceptor_store::{AcceptorState, AcceptorStore, FileAcceptorStore, MemoryAcceptorStore};
pub use cache_handler::CacheAwareHandler;
pub use config::{ClusterConfig, PeerAddress, TlsFiles, Transport};
pub use handler::ClusterHandler;
#[cfg(feature = "quic")]
pub use local::bind_local_quic_cluster;
#[cfg(feature = "tcp")]
pub use local::bind_local_tcp_cluster;
#[cfg(feature = "tcp-tls")]
pub use local::bind_local_tcp_tls_cluster;
pub use peer_tier::{HintingRegister, PeerTier, RootHint};
pub use quorum::{QuorumLock, QuorumRegister};

#[cfg(test)]
mod tests;
