//! Python exceptions, one per [`protobase::ErrorKind`].

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    protobase_storage,
    ProtobaseError,
    PyException,
    "Base class of every protobase error; `kind` names the error kind."
);
create_exception!(
    protobase_storage,
    InvalidError,
    ProtobaseError,
    "The caller passed something invalid: empty data, data over blob_max_size, a bad pointer or setting."
);
create_exception!(
    protobase_storage,
    NotFoundError,
    ProtobaseError,
    "The thing asked for does not exist here (no such WAL)."
);
create_exception!(
    protobase_storage,
    DataError,
    ProtobaseError,
    "Stored bytes failed validation (CRC, record framing, root checksum)."
);
create_exception!(
    protobase_storage,
    ConflictError,
    ProtobaseError,
    "Another writer won a race (root compare-and-swap, space lock, exclusive grant)."
);
create_exception!(
    protobase_storage,
    ClosedError,
    ProtobaseError,
    "The storage is closed, or read-only and asked to write."
);
create_exception!(
    protobase_storage,
    UnavailableError,
    ProtobaseError,
    "An I/O, network or object-store failure; retrying may help."
);

create_exception!(
    protobase_storage,
    PermissionDeniedError,
    ProtobaseError,
    "The store or a peer refused the credentials (HTTP 401/403): retrying does not help."
);
create_exception!(
    protobase_storage,
    FencedError,
    ConflictError,
    "This node's exclusive grant was fenced by a newer term or lost; a new root update may succeed."
);

/// The exception of a storage error, with `kind` set.
pub(crate) fn to_py(e: protobase::Error) -> PyErr {
    use protobase::ErrorKind as K;
    let message = e.to_string();
    let (err, kind) = match e.kind() {
        K::Invalid => (InvalidError::new_err(message), "invalid"),
        K::NotFound => (NotFoundError::new_err(message), "not_found"),
        K::Data => (DataError::new_err(message), "data"),
        K::Conflict => (ConflictError::new_err(message), "conflict"),
        K::Closed => (ClosedError::new_err(message), "closed"),
        K::Unavailable => (UnavailableError::new_err(message), "unavailable"),
        K::Permission => (PermissionDeniedError::new_err(message), "permission"),
        K::Fenced => (FencedError::new_err(message), "fenced"),
        _ => (ProtobaseError::new_err(message), "other"),
    };
    with_kind(err, kind)
}

/// The exception of a configuration error: a storage error's kind when it
/// wraps one (building a component), else `InvalidError`.
pub(crate) fn config_to_py(e: protobase::ConfigError) -> PyErr {
    use protobase::ConfigError as C;
    match e {
        C::Build { .. } => {
            let message = e.to_string();
            let C::Build { source, .. } = e else {
                unreachable!()
            };
            let kind_err = to_py(source);
            // Keep the class of the kind, with the message naming the file.
            Python::attach(|py| {
                let cls = kind_err.get_type(py);
                let kind = kind_err
                    .value(py)
                    .getattr("kind")
                    .ok()
                    .and_then(|k| k.extract::<String>().ok())
                    .unwrap_or_else(|| "other".into());
                let err = PyErr::from_type(cls, message);
                let _ = err.value(py).setattr("kind", kind);
                err
            })
        }
        C::Read { .. } => with_kind(UnavailableError::new_err(e.to_string()), "unavailable"),
        other => with_kind(InvalidError::new_err(other.to_string()), "invalid"),
    }
}

fn with_kind(err: PyErr, kind: &str) -> PyErr {
    Python::attach(|py| {
        let _ = err.value(py).setattr("kind", kind);
    });
    err
}

/// Registers the exception classes in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ProtobaseError", py.get_type::<ProtobaseError>())?;
    m.add("InvalidError", py.get_type::<InvalidError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add(
        "PermissionDeniedError",
        py.get_type::<PermissionDeniedError>(),
    )?;
    m.add("FencedError", py.get_type::<FencedError>())?;
    Ok(())
}
