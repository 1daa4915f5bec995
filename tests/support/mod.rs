//! Helpers shared by integration tests.

pub mod counting_store;
pub mod history;
pub mod moto;
