"""A ``proto_db`` storage on protobase.

:class:`ProtobaseSharedStorage` implements ``proto_db.common.SharedStorage``
on any :class:`protobase_storage.Storage` (all four variants), so the
reference object database runs unchanged on it::

    from proto_db.db_access import ObjectSpace
    import protobase_storage as pb
    from protobase_storage.shared_storage import ProtobaseSharedStorage

    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone("./space")))

Atoms are stored as the reference writes them: a record with format byte 1
and the atom's JSON (UTF-8), or 2 and its MessagePack (``atom_format``);
``push_bytes`` stores format byte 0. Pointers are
``proto_db.common.AtomPointer`` objects (WAL id as ``transaction_id``).

``proto_db`` is imported when this module is: it is not on PyPI, so put its
directory on ``sys.path`` (or ``PYTHONPATH``) first.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from typing import Any, Callable, Optional

from proto_db import common as _common
from proto_db.common import AtomPointer
from proto_db.exceptions import (
    ProtoCorruptionException,
    ProtoUnexpectedException,
    ProtoValidationException,
)

from . import _native
from ._native import (
    ClosedError,
    DataError,
    InvalidError,
    NotFoundError,
    ProtobaseError,
    Storage,
)

FORMAT_RAW_BINARY = _native.FORMAT_RAW
FORMAT_JSON_UTF8 = _native.FORMAT_JSON
FORMAT_MSGPACK = _native.FORMAT_MSGPACK

__all__ = ["ProtobaseSharedStorage", "proto_db_exception"]


def proto_db_exception(exc: BaseException) -> BaseException:
    """The proto_db exception for a protobase one: invalid arguments and a
    closed storage are ``ProtoValidationException``, missing or corrupt data
    ``ProtoCorruptionException``, the rest ``ProtoUnexpectedException``.
    The original is kept as ``__cause__``."""
    if not isinstance(exc, ProtobaseError):
        return exc
    if isinstance(exc, (InvalidError, ClosedError)):
        mapped: BaseException = ProtoValidationException(message=str(exc))
    elif isinstance(exc, (DataError, NotFoundError)):
        mapped = ProtoCorruptionException(message=str(exc))
    else:
        mapped = ProtoUnexpectedException(message=str(exc), exception_type=type(exc).__name__)
    mapped.__cause__ = exc
    return mapped


def _to_proto_pointer(p: Any) -> AtomPointer:
    return AtomPointer(p.transaction_id, p.offset)


_msgpack = None


def _decode(record: tuple) -> Any:
    fmt, payload = record
    if fmt == FORMAT_MSGPACK:
        global _msgpack
        if _msgpack is None:
            import msgpack as _mp

            _msgpack = _mp
        return _msgpack.unpackb(payload)
    # JSON, and (as the reference reads them) records of other formats
    return json.loads(payload)


class _RootContext:
    """The root-update critical section: re-entrant in one thread; the
    outermost entry takes protobase's exclusive grant (in a cluster, a
    majority's) and the first ``set_current_root`` inside publishes under it."""

    __slots__ = ("_s",)

    def __init__(self, storage: "ProtobaseSharedStorage"):
        self._s = storage

    def __enter__(self):
        self._s._enter_root()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self._s._exit_root()
        return False

    def __repr__(self):
        return f"ProtobaseSharedStorage.RootContext({self._s!r})"


class ProtobaseSharedStorage(_common.SharedStorage):
    """``proto_db.common.SharedStorage`` on a protobase :class:`Storage`.

    :param storage: an open storage of any variant.
    :param atom_format: ``FORMAT_JSON_UTF8`` (default, as the reference) or
        ``FORMAT_MSGPACK`` for ``push_atom``.
    :param object_cache: keep decoded atoms in proto_db's own atom object
        cache (``proto_db.atom_cache``), as the reference storages do; the
        bytes are cached by protobase's page cache either way.
    :param on_close: called after :meth:`close` closed the storage.

    Every ``Future`` it returns is a ``concurrent.futures.Future``, resolved
    by protobase's runtime (at once when the data is in memory), never by a
    thread per call.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        atom_format: int = FORMAT_JSON_UTF8,
        object_cache: bool = True,
        on_close: Optional[Callable[[], None]] = None,
    ):
        if atom_format not in (FORMAT_JSON_UTF8, FORMAT_MSGPACK):
            raise ProtoValidationException(message=f"Invalid format type: {atom_format}")
        self.storage = storage
        self.atom_format = atom_format
        self.blob_max_size = storage.config["blob_max_size"]
        self.state = "Running"
        self._on_close = on_close
        self._root_lock = threading.RLock()
        self._root_depth = 0
        self._update: Optional[_native.RootUpdate] = None
        self._atom_caches = None
        if object_cache:
            from proto_db.atom_cache import AtomCacheBundle

            # Decoded atoms only: protobase caches the bytes itself.
            self._atom_caches = AtomCacheBundle(enable_object_cache=True, enable_bytes_cache=False)

    # -- helpers -----------------------------------------------------------

    def _check_running(self) -> None:
        if self.state != "Running":
            raise ProtoValidationException(message="Storage is not in 'Running' state.")

    @staticmethod
    def _pointer(pointer: Any) -> Any:
        if not hasattr(pointer, "transaction_id") or not hasattr(pointer, "offset"):
            raise ProtoValidationException(message="Pointer must be an instance of AtomPointer.")
        return pointer

    def _call(self, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except ProtobaseError as e:
            raise proto_db_exception(e) from e
        except (TypeError, OverflowError) as e:
            raise ProtoValidationException(message=str(e)) from e

    # -- atoms ---------------------------------------------------------------

    def push_atom(self, atom: dict, format_type: Optional[int] = None) -> "Future[AtomPointer]":
        """Serialises ``atom`` (JSON, or MessagePack) and pushes it; the future
        resolves to its pointer."""
        self._check_running()
        fmt = self.atom_format if format_type is None else format_type
        if fmt == FORMAT_JSON_UTF8:
            data = json.dumps(atom).encode("utf-8")
        elif fmt == FORMAT_MSGPACK:
            import msgpack

            data = msgpack.packb(atom)
        else:
            raise ProtoValidationException(message=f"Invalid format type: {fmt}")
        caches = self._atom_caches
        if caches is not None and caches.obj_cache is not None:

            def remember(p: Any) -> AtomPointer:
                ptr = AtomPointer(p.transaction_id, p.offset)
                try:
                    caches.obj_cache.put(ptr.transaction_id, ptr.offset, atom, caches.schema_epoch)
                except Exception:
                    pass
                return ptr

            on_result = remember
        else:
            on_result = _to_proto_pointer
        return self._call(
            self.storage.push_record_future, fmt, data, on_result, proto_db_exception
        )

    def push_atom_msgpack(self, atom: dict) -> "Future[AtomPointer]":
        """``push_atom`` in MessagePack."""
        return self.push_atom(atom, FORMAT_MSGPACK)

    def get_atom(self, atom_pointer: AtomPointer) -> "Future[dict]":
        """Reads and decodes the atom at ``atom_pointer``."""
        self._check_running()
        self._pointer(atom_pointer)
        caches = self._atom_caches
        if caches is not None and caches.obj_cache is not None:
            obj = caches.obj_cache.get(atom_pointer.transaction_id, atom_pointer.offset, caches.schema_epoch)
            if obj is not None:
                f: Future = Future()
                f.set_result(obj)
                return f
            tid, off = atom_pointer.transaction_id, atom_pointer.offset

            def decode(record: tuple) -> Any:
                value = _decode(record)
                try:
                    caches.obj_cache.put(tid, off, value, caches.schema_epoch)
                except Exception:
                    pass
                return value

            on_result = decode
        else:
            on_result = _decode
        return self._call(
            self.storage.get_record_future, atom_pointer, on_result, proto_db_exception
        )

    def push_bytes(self, data: bytes, format_type: int = FORMAT_RAW_BINARY) -> "Future[AtomPointer]":
        """Pushes raw bytes (format byte 0 unless ``format_type`` says
        otherwise); the future resolves to the pointer."""
        self._check_running()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ProtoValidationException(message="Invalid data to push. Only bytes!")
        if len(data) == 0:
            raise ProtoValidationException(message="Cannot push empty data!")
        if len(data) > self.blob_max_size:
            raise ProtoValidationException(
                message=f"Data exceeds maximum blob size ({len(data)} bytes). "
                f"Only up to {self.blob_max_size} bytes are accepted!"
            )
        if format_type not in (FORMAT_RAW_BINARY, FORMAT_JSON_UTF8, FORMAT_MSGPACK):
            raise ProtoValidationException(message=f"Invalid format type: {format_type}")
        return self._call(
            self.storage.push_record_future, format_type, data, _to_proto_pointer, proto_db_exception
        )

    def get_bytes(self, atom_pointer: AtomPointer) -> "Future[bytes]":
        """Reads the payload at ``atom_pointer`` (any format)."""
        self._check_running()
        self._pointer(atom_pointer)
        return self._call(self.storage.get_bytes_future, atom_pointer, None, proto_db_exception)

    # -- the root ------------------------------------------------------------

    def read_current_root(self) -> Optional[AtomPointer]:
        """The current root's pointer, or None for an empty space."""
        self._check_running()
        root = self._call(self.storage.read_current_root)
        if root is None:
            return None
        return AtomPointer(root.transaction_id, root.offset)

    def _enter_root(self) -> None:
        self._check_running()
        self._root_lock.acquire()
        try:
            if self._root_depth == 0:
                self._update = self._call(self.storage.begin_root_update)
            self._root_depth += 1
        except BaseException:
            self._root_lock.release()
            raise

    def _exit_root(self) -> None:
        try:
            self._root_depth -= 1
            if self._root_depth == 0:
                update, self._update = self._update, None
                if update is not None:
                    update.abort()
        finally:
            self._root_lock.release()

    def root_context_manager(self) -> _RootContext:
        """The root-update critical section (re-entrant within a thread)."""
        return _RootContext(self)

    def read_lock_current_root(self) -> Optional[AtomPointer]:
        """Enters the critical section and returns the current root; leave
        it with :meth:`unlock_current_root`."""
        self._enter_root()
        try:
            return self.read_current_root()
        except BaseException:
            self._exit_root()
            raise

    def unlock_current_root(self) -> None:
        """Leaves the section :meth:`read_lock_current_root` entered."""
        self._exit_root()

    def set_current_root(self, new_root_pointer: AtomPointer) -> None:
        """Publishes ``new_root_pointer``; returns once it is durable, with
        every atom pushed before it. Inside the critical section it publishes
        under the grant the section took."""
        self._check_running()
        self._pointer(new_root_pointer)
        with self._root_lock:
            update, self._update = self._update, None
            if update is not None:
                self._call(update.publish, new_root_pointer)
            else:
                self._call(self.storage.set_root, new_root_pointer)

    # -- lifecycle -----------------------------------------------------------

    def flush_wal(self) -> None:
        """Makes every atom pushed so far durable."""
        self._check_running()
        self._call(self.storage.flush_wal)

    def close(self) -> None:
        """Flushes and closes the storage. Idempotent."""
        with self._root_lock:
            if self.state == "Closed":
                return
            self.state = "Closed"
            update, self._update = self._update, None
        if update is not None:
            update.abort()
        try:
            self._call(self.storage.close)
        finally:
            if self._on_close is not None:
                self._on_close()

    def __repr__(self) -> str:
        return f"ProtobaseSharedStorage({self.storage!r})"
