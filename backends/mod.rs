//! [`BlockProvider`](crate::BlockProvider) implementations.
//!
//! - [`memory`]: everything in memory, always compiled (tests, examples).
//! - [`fs`] (feature `fs`, default): the reference space-directory layout.

#[cfg(feature = "fs")]
pub mod fs;
pub mod memory;
