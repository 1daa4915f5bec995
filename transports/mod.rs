//! [`NetworkManager`](crate::NetworkManager) implementations.
//!
//! - [`in_process`]: a simulated network with fault injection (drop, delay,
//!   duplicate, reorder, partition, kill/restart), always compiled, for
//!   deterministic tests of the cluster protocol.
//! - [`tcp`] (feature `tcp`, default): tokio TCP with a pre-shared-key
//!   handshake, or mutual TLS 1.3 ([`tls`], feature `tcp-tls`), and
//!   request multiplexing over one connection per peer.
//! - [`quic`] (feature `quic`): quinn with mutual TLS ([`tls`]), one
//!   connection per peer and one stream per request.
//!
//! All transports speak the frames of [`crate::wire`], answer `Message::Ack`
//! when a handler returns no response, share their connection retry,
//! request deadline and response encoding code, and pass the conformance
//! suite in `protobase::conformance::network` (feature `conformance`).

// (The limit is public in every build; the gate is used by TCP and QUIC.)
#[cfg_attr(not(any(feature = "tcp", feature = "quic")), allow(dead_code))]
mod admission;
mod common;
pub mod in_process;
mod node;
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub mod quic;
#[cfg(feature = "tcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
pub mod tcp;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "quic", feature = "tcp-tls"))))]
pub mod tls;

pub use admission::MAX_HANDSHAKES_PER_SOURCE;
pub use in_process::{Faults, HubStats, InProcessHub, InProcessNetwork};
#[cfg(feature = "quic")]
pub use quic::{QuicConfig, QuicNetworkManager};
#[cfg(feature = "tcp")]
pub use tcp::{TcpConfig, TcpNetworkManager};
#[cfg(feature = "tls")]
pub use tls::{DevCerts, TlsConfig, Trust, generate_dev_certs, generate_dev_certs_with_ca};
