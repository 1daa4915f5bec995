//! [`NetworkManager`](crate::NetworkManager) implementations.
//!
//! The TCP (feature `tcp`), QUIC (feature `quic`) and in-process transports
//! arrive with the cluster variants; the trait and the protocol messages they
//! carry are defined in [`crate::network`] and [`crate::protocol`].
