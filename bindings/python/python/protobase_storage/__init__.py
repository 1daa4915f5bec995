"""protobase for Python: the storage of all four variants, and a proto_db
``SharedStorage`` on top of it.

The variants::

    standalone(path)                       # a space directory
    in_memory()                            # nothing survives the process
    cluster(path, server_id, servers, psk=...)          # nodes over TCP (or QUIC)
    cloud(store_url, staging_dir)          # s3://bucket/prefix?endpoint=..., file:///dir, memory://name
    cloud_cluster(store_url, staging_dir, server_id, servers, psk=...)
    open(config_path)                      # a node described in a TOML/JSON file

Each returns a :class:`Storage`. For proto_db, wrap it:
``ObjectSpace(storage=ProtobaseSharedStorage(storage))`` (see
:mod:`protobase_storage.shared_storage`).

Every blocking call releases the GIL; the ``*_future`` methods return
``concurrent.futures.Future`` objects resolved by the process's one tokio
runtime. Errors are :class:`ProtobaseError` subclasses, one per error kind.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

from ._native import (
    FORMAT_JSON,
    FORMAT_MSGPACK,
    FORMAT_RAW,
    AtomPointer,
    ClosedError,
    ConflictError,
    DataError,
    FencedError,
    InvalidError,
    NotFoundError,
    PermissionDeniedError,
    ProtobaseError,
    RootRecord,
    RootUpdate,
    Storage,
    UnavailableError,
    open,
)

__all__ = [
    "AtomPointer",
    "ClosedError",
    "ConflictError",
    "DataError",
    "FORMAT_JSON",
    "FORMAT_MSGPACK",
    "FORMAT_RAW",
    "FencedError",
    "InvalidError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtobaseError",
    "RootRecord",
    "RootUpdate",
    "Storage",
    "UnavailableError",
    "cloud",
    "cloud_cluster",
    "cluster",
    "in_memory",
    "node_config",
    "open",
    "standalone",
    "store_config",
]

Servers = Union[Mapping[str, str], Iterable[Any]]


def standalone(path: Union[str, os.PathLike], **options: Any) -> Storage:
    """Standalone file storage in the space directory ``path`` (created if
    missing). ``options``: buffer_size, page_size, blob_max_size,
    max_wal_size, page_cache_size, node_id, read_only."""
    return Storage.standalone(os.fspath(path), **options)


def in_memory(**options: Any) -> Storage:
    """Standalone storage in memory (same options as :func:`standalone`,
    without read_only)."""
    return Storage.in_memory(**options)


def store_config(url: str) -> str:
    """The ``store`` URL of a cloud backend for ``url`` (a plain directory
    path becomes ``file:///abs/dir``). Store URLs are ``s3://bucket[/prefix]``
    (``?endpoint=http://127.0.0.1:9000&region=...``; any object_store S3
    option), ``gs://bucket``, ``az://container``, ``file:///abs/dir`` and
    ``memory://name`` (an in-memory store shared by every storage of the
    process that names it); the protobase core checks them.
    """
    return _parse_store_url(url)[0]


def _parse_store_url(url: str) -> tuple:
    """``(store URL without its path, key prefix from its path)``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        path = unquote(parts.path) if scheme == "file" else url
        if not path:
            raise InvalidError(f"store URL {url!r} names no directory")
        return "file://" + os.path.abspath(path), ""
    if scheme == "memory":
        name = (parts.netloc + parts.path).strip("/") or "default"
        return f"memory://{name}", ""
    if not parts.netloc:
        raise InvalidError(f"store URL {url!r} names no bucket")
    store = f"{scheme}://{parts.netloc}"
    if parts.query:
        store += "?" + parts.query
    return store, parts.path.strip("/")


def _servers(servers: Servers) -> list:
    if isinstance(servers, Mapping):
        return [{"id": str(k), "address": str(v)} for k, v in servers.items()]
    out = []
    for s in servers:
        if isinstance(s, Mapping):
            out.append({"id": str(s["id"]), "address": str(s["address"])})
        else:
            sid, address = s
            out.append({"id": str(sid), "address": str(address)})
    return out


def _cluster_section(
    server_id: str,
    servers: Servers,
    port: Optional[int],
    host: Optional[str],
    psk: Optional[str],
    transport: Optional[str],
    tls: Optional[Mapping[str, Any]],
    options: Mapping[str, Any],
) -> dict:
    members = _servers(servers)
    own = next((m["address"] for m in members if m["id"] == server_id), None)
    if own is None:
        raise InvalidError(f"server_id {server_id!r} is not among the servers {[m['id'] for m in members]}")
    own_host, _, own_port = own.rpartition(":")
    section: dict = {
        "server_id": server_id,
        "servers": members,
        "host": host if host is not None else own_host.strip("[]"),
        "port": int(port if port is not None else own_port),
    }
    if psk is not None:
        section["psk"] = psk
    if transport is not None:
        section["transport"] = transport
    if tls is not None:
        section["tls"] = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in tls.items()}
    section.update(options)
    return section


def node_config(
    *,
    backend: Mapping[str, Any],
    storage: Optional[Mapping[str, Any]] = None,
    cluster: Optional[Mapping[str, Any]] = None,
) -> dict:
    """A node description (the format of ``protobase node`` config files, as
    a dict): write it with ``json.dump`` to get a file :func:`open` reads."""
    cfg: dict = {"backend": dict(backend)}
    if storage:
        cfg["storage"] = dict(storage)
    if cluster is not None:
        cfg["cluster"] = dict(cluster)
    return cfg


def _build(cfg: dict, name: str) -> Storage:
    return Storage.from_config_text(json.dumps(cfg), "json", os.getcwd(), name)


def cluster(
    path: Union[str, os.PathLike],
    server_id: str,
    servers: Servers,
    *,
    psk: Optional[str] = None,
    port: Optional[int] = None,
    host: Optional[str] = None,
    transport: Optional[str] = None,
    tls: Optional[Mapping[str, Any]] = None,
    storage: Optional[Mapping[str, Any]] = None,
    **cluster_options: Any,
) -> Storage:
    """A cluster node keeping its space in the directory ``path``.

    ``servers``: every member, ``{id: "host:port"}`` or ``[(id, "host:port")]``.
    This node listens on its own address (override with ``host`` / ``port``).
    ``transport``: ``"tcp"`` (default; needs ``psk``, at least 16 bytes),
    ``"tcp_tls"`` or ``"quic"`` (both need
    ``tls={"cert": ..., "key": ..., "ca": ...}``; every frame encrypted). ``cluster_options``: any
    other ``[cluster]`` key (read_timeout_ms, vote_timeout_ms,
    retry_interval_ms, max_retries, lease_ms, heartbeat_ms). ``storage``:
    the storage settings (buffer_size, ...).
    """
    section = _cluster_section(server_id, servers, port, host, psk, transport, tls, cluster_options)
    cfg = node_config(
        backend={"type": "fs", "dir": os.fspath(path)}, storage=storage, cluster=section
    )
    return _build(cfg, f"cluster node {server_id}")


def _cloud_backend(
    store_url: str,
    staging_dir: Union[str, os.PathLike],
    prefix: Optional[str],
    extra: Mapping[str, Any],
) -> dict:
    store, url_prefix = _parse_store_url(store_url)
    backend: dict = {
        "type": "cloud",
        "store": store,
        "staging_dir": os.fspath(staging_dir),
        "prefix": prefix if prefix is not None else url_prefix,
    }
    for key, value in extra.items():
        if value is not None:
            backend[key] = os.fspath(value) if isinstance(value, os.PathLike) else value
    return backend


def cloud(
    store_url: str,
    staging_dir: Union[str, os.PathLike],
    *,
    prefix: Optional[str] = None,
    object_size: Optional[int] = None,
    upload_interval_ms: Optional[int] = None,
    durability: Optional[str] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    cache_size: Optional[int] = None,
    storage: Optional[Mapping[str, Any]] = None,
) -> Storage:
    """Cloud file storage: WALs and roots in the object store ``store_url``
    (see :func:`store_config`), appends staged in ``staging_dir``.
    ``durability``: ``"local"`` (a commit waits for the staging fsync,
    default) or ``"cloud"`` (for the store)."""
    backend = _cloud_backend(
        store_url,
        staging_dir,
        prefix,
        dict(
            object_size=object_size,
            upload_interval_ms=upload_interval_ms,
            durability=durability,
            cache_dir=cache_dir,
            cache_size=cache_size,
        ),
    )
    return _build(node_config(backend=backend, storage=storage), f"cloud {store_url}")


def cloud_cluster(
    store_url: str,
    staging_dir: Union[str, os.PathLike],
    server_id: str,
    servers: Servers,
    *,
    psk: Optional[str] = None,
    port: Optional[int] = None,
    host: Optional[str] = None,
    transport: Optional[str] = None,
    tls: Optional[Mapping[str, Any]] = None,
    prefix: Optional[str] = None,
    object_size: Optional[int] = None,
    upload_interval_ms: Optional[int] = None,
    durability: Optional[str] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    cache_size: Optional[int] = None,
    page_cache_dir: Optional[Union[str, os.PathLike]] = None,
    page_cache_size: Optional[int] = None,
    storage: Optional[Mapping[str, Any]] = None,
    **cluster_options: Any,
) -> Storage:
    """A cloud-cluster node: the cloud variant's store shared by the
    cluster's members (arguments of :func:`cloud` and :func:`cluster`)."""
    backend = _cloud_backend(
        store_url,
        staging_dir,
        prefix,
        dict(
            object_size=object_size,
            upload_interval_ms=upload_interval_ms,
            durability=durability,
            cache_dir=cache_dir,
            cache_size=cache_size,
            page_cache_dir=page_cache_dir,
            page_cache_size=page_cache_size,
        ),
    )
    section = _cluster_section(server_id, servers, port, host, psk, transport, tls, cluster_options)
    cfg = node_config(backend=backend, storage=storage, cluster=section)
    return _build(cfg, f"cloud-cluster node {server_id}")
