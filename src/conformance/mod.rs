//! Conformance suites: the behaviour every implementation of a core trait
//! must show, as `pub async fn`s that implementations (here and in other
//! crates) run from their own tests.
//!
//! Compiled under `cfg(test)` and the `conformance` feature.
//!
//! - [`network`]: [`NetworkManager`](crate::NetworkManager) transports.

pub mod network;
