//! Helpers shared by integration tests.

pub mod emulators;
pub mod flaky_store;
pub mod history;
pub mod moto;
