//! [`NetworkManager`](crate::NetworkManager) implementations.
//!
//! - [`in_process`]: a simulated network with fault injection (drop, delay,
//!   duplicate, reorder, partition, kill/restart), always compiled, for
//!   deterministic tests of the cluster protocol.
//! - [`tcp`] (feature `tcp`, default): tokio TCP with a pre-shared-key
//!   handshake and request multiplexing over one connection per peer.
//!
//! All transports speak the frames of [`crate::wire`], answer `Message::Ack`
//! when a handler returns no response, and pass the conformance suite in
//! `protobase::conformance::network` (feature `conformance`).

mod common;
pub mod in_process;
#[cfg(feature = "tcp")]
pub mod tcp;

pub use in_process::{Faults, HubStats, InProcessHub, InProcessNetwork};
#[cfg(feature = "tcp")]
pub use tcp::{TcpConfig, TcpNetworkManager};
