//! The cluster layer: majority vote with fencing terms and leases, root
//! broadcast and catch-up, and remote page reads (DESIGN.md §6).
//!
//! A cluster node is a composition, not a copy, of the standalone engine:
//! its provider is a [`ClusterBlockProvider`] around the local one, its vote
//! strategy a [`MajorityVote`], and a [`ClusterHandler`] answers its peers
//! through any [`NetworkManager`](crate::NetworkManager).

pub mod acceptor;
pub mod cache_handler;
pub mod catch_up;
pub mod config;
mod fanout;
pub mod handler;
#[cfg(any(feature = "tcp", feature = "quic"))]
pub mod local;
pub mod majority_vote;
pub mod provider;
pub mod term_store;

pub use acceptor::{AcceptOutcome, Acceptor};
pub use cache_handler::CacheAwareHandler;
pub use config::{ClusterConfig, PeerAddress, TlsFiles, Transport};
pub use handler::ClusterHandler;
#[cfg(feature = "quic")]
pub use local::bind_local_quic_cluster;
#[cfg(feature = "tcp")]
pub use local::bind_local_tcp_cluster;
pub use majority_vote::MajorityVote;
pub use provider::ClusterBlockProvider;
pub use term_store::{FileTermStore, MemoryTermStore, TermStore};

/// The current time on tokio's clock, as a `std` instant.
///
/// Leases and vote deadlines use it (never `std::time::Instant::now()`), so
/// they follow a paused or advanced test clock
/// (`#[tokio::test(start_paused = true)]`) like every timer of the protocol;
/// on a normal runtime it is the system's monotonic clock.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests;
