//! The process's one tokio runtime, and the two ways Python waits on it:
//! blocking with the GIL released, or a `concurrent.futures.Future` that
//! the runtime resolves.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyAny;
use tokio::runtime::Runtime;

use crate::errors::to_py;

/// The runtime and the id of the process that built it.
static RUNTIME: OnceLock<(Runtime, u32)> = OnceLock::new();

/// The process's runtime, built on first use (worker threads named
/// `protobase-rt`). Fails in a forked child, whose copy has no threads.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    let (rt, pid) = RUNTIME.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("protobase-rt")
            .build()
            .expect("building the tokio runtime");
        (rt, std::process::id())
    });
    if *pid != std::process::id() {
        return Err(PyRuntimeError::new_err(
            "protobase_storage was used before os.fork(); a forked child cannot use it \
             (open storages in the child, or use the 'spawn' start method)",
        ));
    }
    Ok(rt)
}

/// The runtime if it was built in this process (for drops).
pub(crate) fn runtime_if_built() -> Option<&'static Runtime> {
    RUNTIME
        .get()
        .filter(|(_, pid)| *pid == std::process::id())
        .map(|(rt, _)| rt)
}

/// Runs `fut` to completion with the GIL released. From a runtime worker
/// (a future's callback calling back in), it blocks in place.
pub(crate) fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    Ok(py.detach(|| {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| rt.block_on(fut))
        } else {
            rt.block_on(fut)
        }
    }))
}

/// [`block_on`] for the crate's fallible operations, mapping the error.
pub(crate) fn run<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = protobase::Result<T>> + Send,
    T: Send,
{
    block_on(py, fut)?.map_err(to_py)
}

static FUTURE_CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn new_py_future(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let cls = FUTURE_CLASS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("concurrent.futures")?.getattr("Future")?.unbind())
    })?;
    cls.bind(py).call0()
}

/// How a completed operation's value becomes a Python object.
pub(crate) type Convert<T> = fn(Python<'_>, T) -> PyResult<Py<PyAny>>;

/// Callables applied when the operation completes, in the thread that
/// completes it (with the GIL): `map_result(value)` becomes the future's
/// result, `map_error(exception)` the exception it is set with.
pub(crate) struct Continuation {
    pub(crate) map_result: Option<Py<PyAny>>,
    pub(crate) map_error: Option<Py<PyAny>>,
}

/// Returns a `concurrent.futures.Future` of `fut`'s outcome.
///
/// `fut` is polled once right away, in the calling thread (operations on
/// the crate never block inside a poll: file I/O goes to the blocking pool,
/// network I/O is async), so what completes at once — a push into the WAL
/// buffer, a read served from memory — resolves the future before it is
/// returned. Otherwise the runtime drives it and resolves the future from a
/// worker thread when it completes: no thread per call.
pub(crate) fn spawn_future<F, T>(
    py: Python<'_>,
    fut: F,
    convert: Convert<T>,
    then: Continuation,
) -> PyResult<Py<PyAny>>
where
    F: Future<Output = protobase::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let py_future = new_py_future(py)?.unbind();
    let mut boxed: Pin<Box<F>> = Box::pin(fut);
    let first = {
        let _guard = rt.enter();
        let mut cx = Context::from_waker(Waker::noop());
        boxed.as_mut().poll(&mut cx)
    };
    match first {
        Poll::Ready(outcome) => resolve(py, &py_future, outcome, convert, &then),
        Poll::Pending => {
            let target = py_future.clone_ref(py);
            rt.spawn(async move {
                let outcome = boxed.await;
                // SAFETY: a plain query of the interpreter's state.
                if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
                    return;
                }
                Python::attach(|py| resolve(py, &target, outcome, convert, &then));
            });
        }
    }
    Ok(py_future)
}

fn resolve<T>(
    py: Python<'_>,
    py_future: &Py<PyAny>,
    outcome: protobase::Result<T>,
    convert: Convert<T>,
    then: &Continuation,
) {
    let mapped = outcome.map_err(to_py).and_then(|v| {
        let value = convert(py, v)?;
        match &then.map_result {
            Some(f) => Ok(f.bind(py).call1((value,))?.unbind()),
            None => Ok(value),
        }
    });
    let future = py_future.bind(py);
    let set = match mapped {
        Ok(value) => future.call_method1("set_result", (value,)),
        Err(err) => {
            let mut exc: Py<PyAny> = err.into_value(py).into_any();
            if let Some(f) = &then.map_error {
                match f.bind(py).call1((exc.clone_ref(py),)) {
                    Ok(mapped) => exc = mapped.unbind(),
                    Err(e) => exc = e.into_value(py).into_any(),
                }
            }
            future.call_method1("set_exception", (exc,))
        }
    };
    if let Err(e) = set {
        // The future was cancelled: nobody waits for the outcome.
        e.write_unraisable(py, Some(future));
    }
}
