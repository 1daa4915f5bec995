//! `Storage` and `RootUpdate` for Python.

use std::mem::ManuallyDrop;
use std::path::PathBuf;

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyByteArray, PyBytes, PyDict, PyList, PyTuple};

use protobase::config::{Source, Syntax};
use protobase::{Format, NodeConfig, StorageBuilder, StorageConfig};

use crate::errors::{ClosedError, InvalidError, config_to_py};
use crate::runtime::{Continuation, block_on, run, runtime_if_built, spawn_future};
use crate::types::{RootRecord, pointer_from, pointer_to_py, root_to_py};

/// Bytes to push: `bytes` (borrowed) or `bytearray` / `memoryview` (copied).
fn data_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if obj.hasattr("tobytes")? {
        let b = obj.call_method0("tobytes")?;
        if let Ok(b) = b.cast::<PyBytes>() {
            return Ok(b.as_bytes().to_vec());
        }
    }
    Err(PyTypeError::new_err(format!(
        "data must be bytes, bytearray or memoryview, not {}",
        obj.get_type().name()?
    )))
}

fn format_of(code: u8) -> PyResult<Format> {
    Format::from_byte(code).map_err(|e| InvalidError::new_err(e.to_string()))
}

fn record_to_py(py: Python<'_>, (format, payload): (Format, bytes::Bytes)) -> PyResult<Py<PyAny>> {
    let t = PyTuple::new(
        py,
        [
            (format as u8).into_pyobject(py)?.into_any(),
            PyBytes::new(py, &payload).into_any(),
        ],
    )?;
    Ok(t.into_any().unbind())
}

fn bytes_to_py(py: Python<'_>, payload: bytes::Bytes) -> PyResult<Py<PyAny>> {
    Ok(PyBytes::new(py, &payload).into_any().unbind())
}

fn unit_to_py(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}

fn root_record_to_py(py: Python<'_>, r: protobase::RootRecord) -> PyResult<Py<PyAny>> {
    root_to_py(py, Some(r))
}

/// An open space of any of the four variants: push and read atoms,
/// publish roots.
///
/// Build one with `Storage.standalone(dir)`, `Storage.in_memory()`,
/// `protobase_storage.open(config_path)` or the helpers of
/// `protobase_storage` (`cluster`, `cloud`, `cloud_cluster`). Every method
/// releases the GIL while it waits; the `*_future` methods return a
/// `concurrent.futures.Future` resolved by the storage's runtime. Safe to
/// use from many threads.
#[pyclass(frozen, module = "protobase_storage")]
pub(crate) struct Storage {
    inner: ManuallyDrop<protobase::Storage>,
    variant: String,
}

impl Drop for Storage {
    fn drop(&mut self) {
        // Anything the storage spawns on drop needs the runtime's context.
        let _guard = runtime_if_built().map(|rt| rt.enter());
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

impl Storage {
    fn wrap(inner: protobase::Storage, variant: impl Into<String>) -> Self {
        Storage {
            inner: ManuallyDrop::new(inner),
            variant: variant.into(),
        }
    }

    fn storage(&self) -> protobase::Storage {
        (*self.inner).clone()
    }
}

#[allow(clippy::too_many_arguments)]
fn storage_config(
    buffer_size: Option<usize>,
    page_size: Option<u64>,
    blob_max_size: Option<u64>,
    max_wal_size: Option<u64>,
    page_cache_size: Option<u64>,
    node_id: Option<String>,
    read_only: bool,
) -> StorageConfig {
    let mut c = StorageConfig::default();
    if let Some(v) = buffer_size {
        c.buffer_size = v;
    }
    if let Some(v) = page_size {
        c.page_size = v;
    }
    if let Some(v) = blob_max_size {
        c.blob_max_size = v;
    }
    if let Some(v) = max_wal_size {
        c.max_wal_size = v;
    }
    if let Some(v) = page_cache_size {
        c.page_cache_size = v;
    }
    if let Some(v) = node_id {
        c.node_id = v;
    }
    c.read_only = read_only;
    c
}

#[pymethods]
impl Storage {
    /// Standalone file storage in the space directory `path` (created if
    /// missing). A space written by the reference `StandaloneFileStorage`
    /// opens as is (its WALs are read without CRC and never appended to).
    #[staticmethod]
    #[pyo3(signature = (path, *, buffer_size=None, page_size=None, blob_max_size=None,
                        max_wal_size=None, page_cache_size=None, node_id=None, read_only=false))]
    #[allow(clippy::too_many_arguments)]
    fn standalone(
        py: Python<'_>,
        path: PathBuf,
        buffer_size: Option<usize>,
        page_size: Option<u64>,
        blob_max_size: Option<u64>,
        max_wal_size: Option<u64>,
        page_cache_size: Option<u64>,
        node_id: Option<String>,
        read_only: bool,
    ) -> PyResult<Storage> {
        let config = storage_config(
            buffer_size,
            page_size,
            blob_max_size,
            max_wal_size,
            page_cache_size,
            node_id,
            read_only,
        );
        let storage = run(
            py,
            StorageBuilder::standalone(path).with_config(config).build(),
        )?;
        Ok(Storage::wrap(storage, "standalone"))
    }

    /// Standalone storage in memory: nothing survives the process.
    #[staticmethod]
    #[pyo3(signature = (*, buffer_size=None, page_size=None, blob_max_size=None,
                        max_wal_size=None, page_cache_size=None, node_id=None))]
    fn in_memory(
        py: Python<'_>,
        buffer_size: Option<usize>,
        page_size: Option<u64>,
        blob_max_size: Option<u64>,
        max_wal_size: Option<u64>,
        page_cache_size: Option<u64>,
        node_id: Option<String>,
    ) -> PyResult<Storage> {
        let config = storage_config(
            buffer_size,
            page_size,
            blob_max_size,
            max_wal_size,
            page_cache_size,
            node_id,
            false,
        );
        let storage = run(py, StorageBuilder::in_memory().with_config(config).build())?;
        Ok(Storage::wrap(storage, "memory"))
    }

    /// The node a description names, given as text (`syntax` "json" or
    /// "toml"; relative paths are relative to `base_dir`). The keyword
    /// helpers of `protobase_storage` build on this.
    #[staticmethod]
    #[pyo3(signature = (text, syntax="json", base_dir=None, name=None))]
    fn from_config_text(
        py: Python<'_>,
        text: &str,
        syntax: &str,
        base_dir: Option<PathBuf>,
        name: Option<String>,
    ) -> PyResult<Storage> {
        let syntax = match syntax {
            "json" => Syntax::Json,
            "toml" => Syntax::Toml,
            other => {
                return Err(InvalidError::new_err(format!(
                    "syntax must be \"json\" or \"toml\", not {other:?}"
                )));
            }
        };
        let base = base_dir.unwrap_or_else(|| PathBuf::from("."));
        let source = Source(name.unwrap_or_else(|| "<python>".into()));
        let config = NodeConfig::parse(text, syntax, source, &base, std::iter::empty())
            .map_err(config_to_py)?;
        build_config(py, config)
    }

    /// Which variant this is: "standalone", "memory", "cluster", "cloud" or
    /// "cloud-cluster".
    #[getter]
    fn variant(&self) -> &str {
        &self.variant
    }

    /// The storage settings (a dict: buffer_size, page_size, blob_max_size,
    /// max_wal_size, page_cache_size, node_id, read_only).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.config();
        let d = PyDict::new(py);
        d.set_item("buffer_size", c.buffer_size)?;
        d.set_item("page_size", c.page_size)?;
        d.set_item("blob_max_size", c.blob_max_size)?;
        d.set_item("max_wal_size", c.max_wal_size)?;
        d.set_item("page_cache_size", c.page_cache_size)?;
        d.set_item("node_id", &c.node_id)?;
        d.set_item("read_only", c.read_only)?;
        Ok(d)
    }

    /// Pushes raw bytes (format byte 0); returns the pointer. Readable at
    /// once; durable after `flush_wal()` or a root publish.
    fn push_bytes(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<crate::types::AtomPointer> {
        self.push_record(py, 0, data)
    }

    /// Pushes a record with format byte `format` (0 raw, 1 JSON, 2
    /// MessagePack) and payload `data`.
    fn push_record(
        &self,
        py: Python<'_>,
        format: u8,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<crate::types::AtomPointer> {
        let format = format_of(format)?;
        let data = data_of(data)?;
        let s = self.storage();
        let inner = run(py, async move { s.push_record(format, &data).await })?;
        Ok(crate::types::AtomPointer { inner })
    }

    /// `push_record` returning a `concurrent.futures.Future` of the pointer
    /// (or of `map_result(pointer)`; an error becomes `map_error(exc)`).
    #[pyo3(signature = (format, data, map_result=None, map_error=None))]
    fn push_record_future(
        &self,
        py: Python<'_>,
        format: u8,
        data: &Bound<'_, PyAny>,
        map_result: Option<Py<PyAny>>,
        map_error: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let format = format_of(format)?;
        let data = data_of(data)?;
        let s = self.storage();
        spawn_future(
            py,
            async move { s.push_record(format, &data).await },
            pointer_to_py,
            Continuation {
                map_result,
                map_error,
            },
        )
    }

    /// Reads a record: `(format, payload)`.
    fn get_record<'py>(&self, py: Python<'py>, pointer: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let ptr = pointer_from(pointer)?;
        let s = self.storage();
        let rec = run(py, async move { s.get_record(ptr).await })?;
        record_to_py(py, rec)
    }

    /// Reads a record's payload (any format).
    fn get_bytes<'py>(&self, py: Python<'py>, pointer: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let ptr = pointer_from(pointer)?;
        let s = self.storage();
        let payload = run(py, async move { s.get_bytes(ptr).await })?;
        bytes_to_py(py, payload)
    }

    /// `get_record` returning a `concurrent.futures.Future` of `(format,
    /// payload)` (or of `map_result((format, payload))`).
    #[pyo3(signature = (pointer, map_result=None, map_error=None))]
    fn get_record_future(
        &self,
        py: Python<'_>,
        pointer: &Bound<'_, PyAny>,
        map_result: Option<Py<PyAny>>,
        map_error: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let ptr = pointer_from(pointer)?;
        let s = self.storage();
        spawn_future(
            py,
            async move { s.get_record(ptr).await },
            record_to_py,
            Continuation {
                map_result,
                map_error,
            },
        )
    }

    /// `get_bytes` returning a `concurrent.futures.Future` of the payload.
    #[pyo3(signature = (pointer, map_result=None, map_error=None))]
    fn get_bytes_future(
        &self,
        py: Python<'_>,
        pointer: &Bound<'_, PyAny>,
        map_result: Option<Py<PyAny>>,
        map_error: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let ptr = pointer_from(pointer)?;
        let s = self.storage();
        spawn_future(
            py,
            async move { s.get_bytes(ptr).await },
            bytes_to_py,
            Continuation {
                map_result,
                map_error,
            },
        )
    }

    /// Makes every record pushed so far durable.
    fn flush_wal(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.storage();
        run(py, async move { s.flush_wal().await })
    }

    /// `flush_wal` returning a `concurrent.futures.Future` (of None).
    fn flush_wal_future(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = self.storage();
        spawn_future(
            py,
            async move { s.flush_wal().await },
            unit_to_py,
            Continuation {
                map_result: None,
                map_error: None,
            },
        )
    }

    /// The current durable root (a `RootRecord`), or None for an empty space.
    fn read_current_root(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = self.storage();
        let r = run(py, async move { s.read_current_root().await })?;
        root_to_py(py, r)
    }

    /// Opens the root-update critical section: waits (GIL released) for the
    /// exclusive grant — in a cluster, a majority's — and returns the
    /// `RootUpdate`. End it with `publish(pointer)` or `abort()`, or use it
    /// as a context manager (leaving without publishing aborts).
    fn begin_root_update(&self, py: Python<'_>) -> PyResult<RootUpdate> {
        let s = self.storage();
        let update = run(py, async move { s.begin_root_update().await })?;
        let current = update.current().cloned();
        let term = update.term();
        Ok(RootUpdate {
            update: Mutex::new(Some(update)),
            current,
            term,
        })
    }

    /// Publishes `pointer` as the root, whatever the current one is;
    /// returns the durable `RootRecord`.
    fn set_root(&self, py: Python<'_>, pointer: &Bound<'_, PyAny>) -> PyResult<RootRecord> {
        let ptr = pointer_from(pointer)?;
        let s = self.storage();
        let inner = run(py, async move { s.set_root(ptr).await })?;
        Ok(RootRecord { inner })
    }

    /// `set_root` returning a `concurrent.futures.Future` of the
    /// `RootRecord`.
    fn set_root_future(&self, py: Python<'_>, pointer: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let ptr = pointer_from(pointer)?;
        let s = self.storage();
        spawn_future(
            py,
            async move { s.set_root(ptr).await },
            root_record_to_py,
            Continuation {
                map_result: None,
                map_error: None,
            },
        )
    }

    /// Every WAL of the space: a list of `(uuid.UUID, length)`.
    fn list_wals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let s = self.storage();
        let wals = run(py, async move { s.list_wals().await })?;
        let list = PyList::empty(py);
        for w in wals {
            list.append((crate::types::py_uuid(py, w.id.0)?, w.len))?;
        }
        Ok(list)
    }

    /// Flushes everything and closes the space. Idempotent; afterwards every
    /// operation raises `ClosedError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.storage();
        run(py, async move { s.close().await })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("Storage({:?}, {:?})", self.variant, *self.inner)
    }
}

/// Builds the node `config` describes.
pub(crate) fn build_config(py: Python<'_>, config: NodeConfig) -> PyResult<Storage> {
    let variant = match config.variant() {
        "standalone" if format!("{:?}", config.backend).contains("Memory") => "memory",
        v => v,
    }
    .to_string();
    let storage = block_on(py, async move { config.build().await })?.map_err(config_to_py)?;
    Ok(Storage::wrap(storage, variant))
}

/// Opens the node described by the TOML or JSON file `path` (the format of
/// `protobase node`): any of the four variants. `PROTOBASE_*__*`
/// environment variables override its keys.
#[pyfunction]
pub(crate) fn open(py: Python<'_>, path: PathBuf) -> PyResult<Storage> {
    let config = py
        .detach(|| NodeConfig::load(&path))
        .map_err(config_to_py)?;
    build_config(py, config)
}

/// An open root-update critical section (see `Storage.begin_root_update`).
#[pyclass(frozen, module = "protobase_storage")]
pub(crate) struct RootUpdate {
    update: Mutex<Option<protobase::RootUpdate>>,
    current: Option<protobase::RootRecord>,
    term: u64,
}

impl RootUpdate {
    fn take(&self) -> PyResult<protobase::RootUpdate> {
        self.update.lock().take().ok_or_else(|| {
            ClosedError::new_err("this root update already ended (published or aborted)")
        })
    }
}

impl Drop for RootUpdate {
    fn drop(&mut self) {
        if let Some(update) = self.update.get_mut().take() {
            // Dropping it ends the section on the runtime.
            let _guard = runtime_if_built().map(|rt| rt.enter());
            drop(update);
        }
    }
}

#[pymethods]
impl RootUpdate {
    /// The root this update builds on (`RootRecord` or None).
    #[getter]
    fn current(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        root_to_py(py, self.current.clone())
    }

    /// The fencing term of the grant held.
    #[getter]
    fn term(&self) -> u64 {
        self.term
    }

    /// True until `publish` or `abort`.
    #[getter]
    fn active(&self) -> bool {
        self.update.lock().is_some()
    }

    /// Publishes `pointer` as the new root and returns once it is durable
    /// (with every byte pushed before it). Ends the section.
    fn publish(&self, py: Python<'_>, pointer: &Bound<'_, PyAny>) -> PyResult<RootRecord> {
        let ptr = pointer_from(pointer)?;
        let update = self.take()?;
        let inner = run(py, async move { update.publish(ptr).await })?;
        Ok(RootRecord { inner })
    }

    /// Ends the section without publishing. Idempotent.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        if let Ok(update) = self.take() {
            block_on(py, async move { update.abort().await })?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.abort(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "RootUpdate(term={}, current={:?}, active={})",
            self.term,
            self.current,
            self.update.lock().is_some()
        )
    }
}
