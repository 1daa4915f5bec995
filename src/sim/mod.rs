//! Deterministic simulation parts (feature `sim`): the pieces a seeded
//! simulation of whole clusters needs, in the manner of FoundationDB's
//! simulator, SlateDB's `slatedb-dst` and tokio's `turmoil`.
//!
//! - [`SimDisk`]: a node's disk with latency, EIO/ENOSPC and power loss
//!   (unsynced appends lost, torn or reordered; atomic replaces in flight
//!   found done or not);
//! - [`linearizable`]: a checker of register histories with
//!   compare-and-swap (Wing–Gong/Lowe);
//! - `SimObjectStore` (with feature `cloud`): an object store with latency,
//!   5xx errors and PUTs whose answer is lost after they took effect; a
//!   mounted [`SimDisk`] is also a cloud provider's staging area;
//! - with the always compiled parts: the in-process transport
//!   ([`InProcessHub`](crate::transports::InProcessHub): drop, delay,
//!   duplicate, reorder, partition, cut links, kill/restart), skewed clocks
//!   ([`SkewedClock`](crate::clock::SkewedClock)) and seeded randomness
//!   ([`StorageBuilder::rng_seed`](crate::StorageBuilder::rng_seed)).
//!
//! Everything runs on one current-thread tokio runtime with a paused clock:
//! a run is a function of its seed and takes no wall-clock time for its
//! timeouts. `tests/simulation.rs` drives the four variants with these parts
//! and checks every run's history.

pub mod disk;
pub mod linearizable;
#[cfg(feature = "cloud")]
pub mod store;

pub use disk::{DiskFaults, MountedDisk, SimDisk};
#[cfg(feature = "cloud")]
pub use store::{SimObjectStore, StoreFaults};
