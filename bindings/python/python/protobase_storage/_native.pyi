"""Type stubs of the compiled extension ``protobase_storage._native``."""

import os
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Literal, Optional, Protocol, Tuple, Union

FORMAT_RAW: int
FORMAT_JSON: int
FORMAT_MSGPACK: int

class _PointerLike(Protocol):
    transaction_id: Any
    offset: int

PointerLike = Union["AtomPointer", _PointerLike, str]
Data = Union[bytes, bytearray, memoryview]
PathLike = Union[str, os.PathLike]

class ProtobaseError(Exception):
    """Base class of every protobase error."""

    kind: str
    """"invalid", "not_found", "data", "conflict", "closed", "unavailable" or "other"."""

class InvalidError(ProtobaseError):
    """Empty data, data over blob_max_size, a bad pointer, setting or config."""

class NotFoundError(ProtobaseError):
    """No such WAL here."""

class DataError(ProtobaseError):
    """Stored bytes failed validation (CRC, framing, root checksum)."""

class ConflictError(ProtobaseError):
    """Another writer won (root compare-and-swap, space lock, grant)."""

class ClosedError(ProtobaseError):
    """The storage is closed, or read-only and asked to write; or a root
    update already ended."""

class UnavailableError(ProtobaseError):
    """An I/O, network or object-store failure; retrying may help."""

class AtomPointer:
    """Where an atom lives: its WAL (``transaction_id``) and offset."""

    def __init__(self, transaction_id: Union[uuid.UUID, str, bytes], offset: int) -> None: ...
    @staticmethod
    def parse(text: str) -> "AtomPointer":
        """Parses ``"<wal-uuid>:<offset>"``."""
    @property
    def transaction_id(self) -> uuid.UUID: ...
    @property
    def wal_id(self) -> uuid.UUID: ...
    @property
    def offset(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class RootRecord:
    """A published root: pointer, sequence, fencing term, writer."""

    @property
    def pointer(self) -> AtomPointer: ...
    @property
    def transaction_id(self) -> uuid.UUID: ...
    @property
    def offset(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def term(self) -> int: ...
    @property
    def writer(self) -> Optional[str]: ...

class RootUpdate:
    """An open root-update critical section; a context manager that aborts
    on exit unless published."""

    @property
    def current(self) -> Optional[RootRecord]: ...
    @property
    def term(self) -> int: ...
    @property
    def active(self) -> bool: ...
    def publish(self, pointer: PointerLike) -> RootRecord:
        """Publishes and waits until durable; ends the section."""
    def abort(self) -> None:
        """Ends the section without publishing (idempotent)."""
    def __enter__(self) -> "RootUpdate": ...
    def __exit__(self, *args: Any) -> bool: ...

class Storage:
    """An open space of any variant. Blocking methods release the GIL; the
    ``*_future`` methods return ``concurrent.futures.Future`` objects that the
    runtime resolves (``map_result`` / ``map_error`` are applied to the
    outcome in the completing thread)."""

    @staticmethod
    def standalone(
        path: PathLike,
        *,
        buffer_size: Optional[int] = None,
        page_size: Optional[int] = None,
        blob_max_size: Optional[int] = None,
        max_wal_size: Optional[int] = None,
        page_cache_size: Optional[int] = None,
        node_id: Optional[str] = None,
        read_only: bool = False,
    ) -> "Storage": ...
    @staticmethod
    def in_memory(
        *,
        buffer_size: Optional[int] = None,
        page_size: Optional[int] = None,
        blob_max_size: Optional[int] = None,
        max_wal_size: Optional[int] = None,
        page_cache_size: Optional[int] = None,
        node_id: Optional[str] = None,
    ) -> "Storage": ...
    @staticmethod
    def from_config_text(
        text: str,
        syntax: Literal["json", "toml"] = "json",
        base_dir: Optional[PathLike] = None,
        name: Optional[str] = None,
    ) -> "Storage": ...
    @property
    def variant(self) -> str: ...
    @property
    def config(self) -> dict: ...
    def push_bytes(self, data: Data) -> AtomPointer: ...
    def push_record(self, format: int, data: Data) -> AtomPointer: ...
    def push_record_future(
        self,
        format: int,
        data: Data,
        map_result: Optional[Callable[[AtomPointer], Any]] = None,
        map_error: Optional[Callable[[BaseException], BaseException]] = None,
    ) -> Future: ...
    def get_record(self, pointer: PointerLike) -> Tuple[int, bytes]: ...
    def get_bytes(self, pointer: PointerLike) -> bytes: ...
    def get_record_future(
        self,
        pointer: PointerLike,
        map_result: Optional[Callable[[Tuple[int, bytes]], Any]] = None,
        map_error: Optional[Callable[[BaseException], BaseException]] = None,
    ) -> Future: ...
    def get_bytes_future(
        self,
        pointer: PointerLike,
        map_result: Optional[Callable[[bytes], Any]] = None,
        map_error: Optional[Callable[[BaseException], BaseException]] = None,
    ) -> Future: ...
    def flush_wal(self) -> None: ...
    def flush_wal_future(self) -> Future: ...
    def read_current_root(self) -> Optional[RootRecord]: ...
    def begin_root_update(self) -> RootUpdate: ...
    def set_root(self, pointer: PointerLike) -> RootRecord: ...
    def set_root_future(self, pointer: PointerLike) -> Future: ...
    def list_wals(self) -> list[tuple[uuid.UUID, int]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Storage": ...
    def __exit__(self, *args: Any) -> bool: ...

def open(path: PathLike) -> Storage:
    """Opens the node a TOML/JSON config file describes (any variant)."""
