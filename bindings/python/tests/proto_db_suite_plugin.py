"""pytest plugin: runs proto_db's own test suite (``proto_db/tests``) with
every ObjectSpace built on protobase storage.

    PROTOBASE_PROTO_DB_STORAGE=memory pytest -p proto_db_suite_plugin <proto_db>/proto_db/tests

``PROTOBASE_PROTO_DB_STORAGE`` (the variant):

* ``reference`` — nothing substituted (the reference's own storages);
* ``memory`` — ``MemoryStorage()`` → protobase in memory,
  ``StandaloneFileStorage(FileBlockProvider(dir))`` → protobase standalone on dir;
* ``standalone`` — both → protobase standalone (a fresh directory for
  ``MemoryStorage``);
* ``cluster`` — both → node a of a fresh 3-node cluster on 127.0.0.1 (nodes b
  and c in subprocesses; c is SIGKILLed after the space's 3rd root publish
  and restarted after the 4th);
* ``cloud`` — both → protobase cloud storage on a moto S3 server, one prefix
  per space.

The substitution replaces the names ``MemoryStorage``,
``StandaloneFileStorage`` and ``FileBlockProvider`` in each test module,
except in the modules that test the reference's storage classes themselves
(with mocks of its block providers, clients and network managers): those
run unchanged. The summary says how many tests ran on protobase storage and
fails any test that built an ObjectSpace on a reference storage while
substitution was on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import pytest

import pbtest

MODE = os.environ.get("PROTOBASE_PROTO_DB_STORAGE", "reference")
MODES = ("reference", "memory", "standalone", "cluster", "cloud")
if MODE not in MODES:
    raise pytest.UsageError(f"PROTOBASE_PROTO_DB_STORAGE={MODE!r}: one of {MODES}")

if not pbtest.add_proto_db_to_path():
    raise pytest.UsageError(pbtest.MISSING_PROTO_DB)

import protobase_storage as pb  # noqa: E402
from protobase_storage.shared_storage import ProtobaseSharedStorage  # noqa: E402

# Modules testing the reference's storage classes themselves (mocked block
# providers, S3/GCS clients, network managers): never substituted.
STORAGE_UNIT_MODULES = {
    "test_atom_cache_write_through",
    "test_cloud_cluster_file_storage",
    "test_cloud_cluster_file_storage_with_gcs",
    "test_cloud_file_storage",
    "test_cloud_file_storage_with_gcs",
    "test_cluster_file_storage",
    "test_file_block_provider",
    "test_format_indicators",
    "test_google_cloud_client",
    "test_memory_storage",
    "test_standalone_file_storage",
}

_state = threading.local()
_stats = {"tests": 0, "on_protobase": 0, "reference_spaces": 0, "storages": 0}
_moto = None


_tmp_dirs: list = []


def _tmp() -> Path:
    d = Path(tempfile.mkdtemp(prefix="pb-suite-"))
    _tmp_dirs.append(d)
    return d


class _SpaceDir:
    """Stands in for ``FileBlockProvider(space_path, ...)``: just the path."""

    def __init__(self, space_path, *args, **kwargs):
        self.space_path = str(space_path)


_clusters: dict = {}


def _cluster_storage(path: Path) -> ProtobaseSharedStorage:
    key = str(path)
    cluster = _clusters.get(key)
    if cluster is None:
        cluster = pbtest.Cluster(Path(str(path) + "-cluster"), a_dir=path)
        _clusters[key] = cluster
        _tmp_dirs.append(cluster.base)
    node = cluster.launch()
    publishes = [0]

    def stop():
        cluster.stop_peers()

    shared = ProtobaseSharedStorage(node, on_close=stop)
    original = shared.set_current_root

    def set_current_root(pointer):
        publishes[0] += 1
        if publishes[0] == 3:
            cluster.kill("c")  # mid-run: this publish and the next go to a + b
        original(pointer)
        if publishes[0] == 4:
            cluster.start("c")

    shared.set_current_root = set_current_root
    return shared


def _cloud_storage(path: Path) -> ProtobaseSharedStorage:
    global _moto
    if _moto is None:
        _moto = pbtest.Moto()
    prefix = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    staging = Path(path) / "staging"
    return ProtobaseSharedStorage(
        pb.cloud(_moto.url(prefix), staging, upload_interval_ms=200)
    )


def _storage_for_dir(path) -> ProtobaseSharedStorage:
    path = Path(path)
    _stats["storages"] += 1
    _state.used = True
    if MODE in ("memory", "standalone"):
        return ProtobaseSharedStorage(pb.standalone(path))
    if MODE == "cluster":
        return _cluster_storage(path)
    return _cloud_storage(path)


def _memory_storage(*args, **kwargs) -> ProtobaseSharedStorage:
    if MODE == "memory":
        _stats["storages"] += 1
        _state.used = True
        return ProtobaseSharedStorage(pb.in_memory())
    return _storage_for_dir(_tmp())


def _standalone_storage(block_provider=None, *args, **kwargs) -> ProtobaseSharedStorage:
    path = getattr(block_provider, "space_path", None)
    if path is None:
        raise TypeError("protobase substitution: StandaloneFileStorage needs a FileBlockProvider(space_path)")
    return _storage_for_dir(path)


SUBSTITUTES = {
    "MemoryStorage": _memory_storage,
    "StandaloneFileStorage": _standalone_storage,
    "FileBlockProvider": _SpaceDir,
}


def _module_name(item) -> str:
    mod = getattr(item, "module", None)
    return mod.__name__.rsplit(".", 1)[-1] if mod else ""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _stats["tests"] += 1
    _state.used = False
    _state.saved = []
    _state.unit_module = _module_name(item) in STORAGE_UNIT_MODULES
    if MODE == "reference" or _state.unit_module:
        return
    mod = item.module
    for name, sub in SUBSTITUTES.items():
        if name in mod.__dict__:
            _state.saved.append((mod, name, mod.__dict__[name]))
            setattr(mod, name, sub)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    for mod, name, value in getattr(_state, "saved", []):
        setattr(mod, name, value)
    _state.saved = []
    if getattr(_state, "used", False):
        _stats["on_protobase"] += 1


def pytest_configure(config):
    if MODE == "reference":
        return
    from proto_db import db_access
    from proto_db.memory_storage import MemoryStorage
    from proto_db.standalone_file_storage import StandaloneFileStorage

    original = db_access.ObjectSpace.__init__

    def __init__(self, storage, *args, **kwargs):
        if isinstance(storage, (MemoryStorage, StandaloneFileStorage)) and not getattr(
            _state, "unit_module", False
        ):
            _stats["reference_spaces"] += 1
        return original(self, storage, *args, **kwargs)

    db_access.ObjectSpace.__init__ = __init__


def pytest_unconfigure(config):
    global _moto
    for cluster in _clusters.values():
        cluster.stop_peers()
    if _moto is not None:
        _moto.stop()
        _moto = None
    import shutil

    for d in _tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section(f"protobase storage: {MODE}")
    if MODE == "reference":
        tr.write_line(f"reference storages (nothing substituted): {_stats['tests']} tests")
        return
    tr.write_line(
        f"{_stats['on_protobase']} of {_stats['tests']} tests ran on protobase storage "
        f"({_stats['storages']} storages opened); "
        f"{_stats['reference_spaces']} ObjectSpaces built on a reference storage "
        f"outside the reference's storage-unit tests"
    )
