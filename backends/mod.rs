//! [`BlockProvider`](crate::BlockProvider) implementations.
//!
//! - [`memory`]: everything in memory, always compiled (tests, examples).
//! - [`fs`] (feature `fs`, default): the reference space-directory layout.
//! - [`cloud`] (feature `cloud`): fixed-size WAL objects in an `object_store`.

#[cfg(feature = "fs")]
pub(crate) mod carried_wal;
#[cfg(feature = "fs")]
pub(crate) mod checkpoint_files;
#[cfg(feature = "cloud")]
#[cfg_attr(docsrs, doc(cfg(feature = "cloud")))]
pub mod cloud;
#[cfg(feature = "fs")]
pub(crate) mod file_id;
pub(crate) mod file_io;
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub mod fs;
pub mod memory;
#[cfg(feature = "fs")]
pub(crate) mod root_history;
#[cfg(feature = "fs")]
pub(crate) mod root_log;
