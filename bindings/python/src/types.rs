//! `AtomPointer` and `RootRecord` for Python.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyBytes, PyDict, PyString};

use crate::errors::InvalidError;

static UUID_CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A `uuid.UUID` of `id`.
pub(crate) fn py_uuid<'py>(py: Python<'py>, id: uuid::Uuid) -> PyResult<Bound<'py, PyAny>> {
    let cls = UUID_CLASS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("uuid")?.getattr("UUID")?.unbind())
    })?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("bytes", PyBytes::new(py, id.as_bytes()))?;
    cls.bind(py).call((), Some(&kwargs))
}

/// A `uuid.UUID`, its string, or 16 bytes, as a `Uuid`.
pub(crate) fn uuid_from(obj: &Bound<'_, PyAny>) -> PyResult<uuid::Uuid> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        let s: &str = &s;
        return uuid::Uuid::parse_str(s)
            .map_err(|e| InvalidError::new_err(format!("invalid WAL id {s:?}: {e}")));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return uuid::Uuid::from_slice(b.as_bytes())
            .map_err(|e| InvalidError::new_err(format!("invalid WAL id bytes: {e}")));
    }
    if let Ok(b) = obj.getattr("bytes")
        && let Ok(b) = b.cast::<PyBytes>()
    {
        return uuid::Uuid::from_slice(b.as_bytes())
            .map_err(|e| InvalidError::new_err(format!("invalid WAL id: {e}")));
    }
    Err(PyTypeError::new_err(format!(
        "a WAL id must be a uuid.UUID or its string, not {}",
        obj.get_type().name()?
    )))
}

/// Where an atom lives: the WAL (`transaction_id`, as the reference calls
/// it) and the offset of the record's first byte.
///
/// Compatible with `proto_db.common.AtomPointer`: same attribute names, and
/// every method taking a pointer also accepts any object with
/// `transaction_id` and `offset` attributes, or a `"<uuid>:<offset>"` string.
#[pyclass(frozen, eq, hash, module = "protobase_storage")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AtomPointer {
    pub(crate) inner: protobase::AtomPointer,
}

#[pymethods]
impl AtomPointer {
    #[new]
    fn new(transaction_id: &Bound<'_, PyAny>, offset: u64) -> PyResult<Self> {
        Ok(AtomPointer {
            inner: protobase::AtomPointer::new(
                protobase::WalId(uuid_from(transaction_id)?),
                offset,
            ),
        })
    }

    /// Parses `"<wal-uuid>:<offset>"` (the CLI's form).
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        text.parse::<protobase::AtomPointer>()
            .map(|inner| AtomPointer { inner })
            .map_err(crate::errors::to_py)
    }

    /// The WAL id, a `uuid.UUID`.
    #[getter]
    fn transaction_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_uuid(py, self.inner.wal_id.0)
    }

    /// Same as `transaction_id`.
    #[getter]
    fn wal_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_uuid(py, self.inner.wal_id.0)
    }

    /// Offset of the record's first byte in its WAL.
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("AtomPointer('{}')", self.inner)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let cls = py.get_type::<AtomPointer>().getattr("parse")?;
        Ok((cls, (self.inner.to_string(),)))
    }
}

/// A pointer from anything pointer-like (see [`AtomPointer`]).
pub(crate) fn pointer_from(obj: &Bound<'_, PyAny>) -> PyResult<protobase::AtomPointer> {
    if let Ok(p) = obj.cast::<AtomPointer>() {
        return Ok(p.get().inner);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_cow()?
            .parse::<protobase::AtomPointer>()
            .map_err(crate::errors::to_py);
    }
    let (Ok(tid), Ok(off)) = (obj.getattr("transaction_id"), obj.getattr("offset")) else {
        return Err(PyTypeError::new_err(format!(
            "expected an AtomPointer (transaction_id and offset), not {}",
            obj.get_type().name()?
        )));
    };
    let offset: u64 = off.extract().map_err(|_| {
        InvalidError::new_err(format!(
            "pointer offset {} is not an integer in 0..2**64",
            off.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    Ok(protobase::AtomPointer::new(
        protobase::WalId(uuid_from(&tid)?),
        offset,
    ))
}

pub(crate) fn pointer_to_py(py: Python<'_>, p: protobase::AtomPointer) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, AtomPointer { inner: p })?.into_any())
}

/// A published root: the root atom's pointer plus the sequence, fencing
/// term and writer id this design adds to the reference's root.
#[pyclass(frozen, eq, module = "protobase_storage")]
#[derive(Clone, PartialEq)]
pub(crate) struct RootRecord {
    pub(crate) inner: protobase::RootRecord,
}

#[pymethods]
impl RootRecord {
    /// The root atom's pointer.
    #[getter]
    fn pointer(&self) -> AtomPointer {
        AtomPointer {
            inner: self.inner.pointer,
        }
    }

    /// The root atom's WAL id (`uuid.UUID`).
    #[getter]
    fn transaction_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_uuid(py, self.inner.pointer.wal_id.0)
    }

    /// The root atom's offset.
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.pointer.offset
    }

    /// Monotonic sequence (each root is its predecessor's plus one; 0 for a
    /// reference root).
    #[getter]
    fn sequence(&self) -> u64 {
        self.inner.sequence
    }

    /// Fencing term of the grant it was published under.
    #[getter]
    fn term(&self) -> u64 {
        self.inner.term
    }

    /// Id of the node that published it, if recorded.
    #[getter]
    fn writer(&self) -> Option<String> {
        self.inner.writer.clone()
    }

    fn __repr__(&self) -> String {
        let writer = match &self.inner.writer {
            Some(w) => format!("{w:?}"),
            None => "None".into(),
        };
        format!(
            "RootRecord(pointer='{}', sequence={}, term={}, writer={writer})",
            self.inner.pointer, self.inner.sequence, self.inner.term
        )
    }
}

pub(crate) fn root_to_py(py: Python<'_>, r: Option<protobase::RootRecord>) -> PyResult<Py<PyAny>> {
    match r {
        Some(inner) => Ok(Py::new(py, RootRecord { inner })?.into_any()),
        None => Ok(py.None()),
    }
}
