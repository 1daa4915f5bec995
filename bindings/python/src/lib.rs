//! Python bindings of protobase (`protobase_storage._native`).
//!
//! One tokio runtime per process ([`runtime`]); every blocking call
//! releases the GIL; the `*_future` methods return
//! `concurrent.futures.Future`s that the runtime resolves, without a thread
//! per call. Errors map to one exception class per
//! [`protobase::ErrorKind`] ([`errors`]). The Python package
//! (`python/protobase_storage`) adds the keyword helpers for the cluster and
//! cloud variants and the `proto_db` `SharedStorage` adapter.

mod errors;
mod runtime;
mod storage;
mod types;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<storage::Storage>()?;
    m.add_class::<storage::RootUpdate>()?;
    m.add_class::<types::AtomPointer>()?;
    m.add_class::<types::RootRecord>()?;
    m.add_function(wrap_pyfunction!(storage::open, m)?)?;
    errors::register(m)?;
    m.add("FORMAT_RAW", 0u8)?;
    m.add("FORMAT_JSON", 1u8)?;
    m.add("FORMAT_MSGPACK", 2u8)?;
    Ok(())
}
