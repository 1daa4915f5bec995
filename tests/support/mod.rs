//! Helpers shared by integration tests.

pub mod flaky_store;
pub mod history;
pub mod moto;
