//! mockall mocks of the four core traits (feature `mock`), for unit tests of
//! code built on protobase — the way the reference's tests patch the network
//! manager and the cloud client.

pub use crate::block_provider::MockBlockProvider;
pub use crate::network::MockNetworkManager;
pub use crate::page_cache::MockPageCache;
pub use crate::vote::MockVoteStrategy;

/// The in-process transport with fault injection (always compiled; exported
/// here too for test code that uses the mocks).
pub use crate::transports::{Faults, InProcessHub, InProcessNetwork};
