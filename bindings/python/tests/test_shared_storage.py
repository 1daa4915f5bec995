"""proto_db on protobase: the SharedStorage adapter, interoperability with
the reference's spaces and the Rust CLI, and a SIGKILL during commits.

Needs the reference package proto_db (not on PyPI): found through
PROTOBASE_PROTO_DB_DIR or ../shared/vendor; without it every test here is
skipped with that reason (pytest -rs lists them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import pbtest

if not pbtest.add_proto_db_to_path():
    pytest.skip(pbtest.MISSING_PROTO_DB, allow_module_level=True)

from proto_db.common import AtomPointer  # noqa: E402
from proto_db.db_access import ObjectSpace  # noqa: E402
from proto_db.exceptions import ProtoCorruptionException, ProtoValidationException  # noqa: E402
from proto_db.file_block_provider import FileBlockProvider  # noqa: E402
from proto_db.standalone_file_storage import StandaloneFileStorage  # noqa: E402

import protobase_storage as pb  # noqa: E402
from protobase_storage.shared_storage import ProtobaseSharedStorage  # noqa: E402
from pbtest import protobase_cli  # noqa: E402

FIXTURE = pbtest.REPO / "tests" / "fixtures" / "python-space"


def write_objects(space: ObjectSpace, db_name: str = "db", n: int = 20, create: bool = True) -> None:
    """One transaction setting two root objects. (proto_db keeps only the
    root objects a commit sets, and only the last database created: its own
    behaviour, on every storage.)"""
    db = space.new_database(db_name) if create else space.open_database(db_name)
    tr = db.new_transaction()
    d = tr.new_dictionary()
    for i in range(n):
        d = d.set_at(f"k{i}", {"i": i, "name": f"ñandú-{i}"}.__repr__())
    lst = tr.new_list()
    for i in range(n):
        lst = lst.set_at(i, i * i)
    tr.set_root_object("dict", d)
    tr.set_root_object("list", lst)
    tr.commit()


def check_objects(space: ObjectSpace, db_name: str = "db", n: int = 20) -> None:
    tr = space.open_database(db_name).new_transaction()
    d = tr.get_root_object("dict")
    lst = tr.get_root_object("list")
    assert d.count == n and lst.count == n
    for i in range(n):
        assert d.get_at(f"k{i}") == {"i": i, "name": f"ñandú-{i}"}.__repr__()
        assert lst.get_at(i) == i * i
    tr.abort()


def test_object_space_round_trip(tmp_path):
    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(tmp_path / "s")))
    write_objects(space)
    check_objects(space)
    space.close()
    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(tmp_path / "s")))
    check_objects(space)
    space.close()


def test_shared_storage_interface(tmp_path):
    st = ProtobaseSharedStorage(pb.standalone(tmp_path / "s"))
    assert st.read_current_root() is None
    p = st.push_atom({"className": "X", "v": [1, "ñ"]}).result()
    assert isinstance(p, AtomPointer)
    assert st.get_atom(p).result() == {"className": "X", "v": [1, "ñ"]}
    m = st.push_atom_msgpack({"m": 1}).result()
    assert st.get_atom(m).result() == {"m": 1}
    assert st.storage.get_record(m)[0] == pb.FORMAT_MSGPACK
    b = st.push_bytes(b"\x00raw").result()
    assert st.get_bytes(b).result() == b"\x00raw"
    with st.root_context_manager():
        with st.root_context_manager():  # re-entrant, as proto_db nests it
            assert st.read_current_root() is None
        st.set_current_root(p)
    assert st.read_current_root() == p
    assert st.read_lock_current_root() == p
    st.set_current_root(m)
    st.unlock_current_root()
    st.set_current_root(b)  # outside any section
    assert st.read_current_root() == b
    st.flush_wal()
    # reference error classes
    with pytest.raises(ProtoValidationException):
        st.push_bytes(b"")
    with pytest.raises(ProtoValidationException):
        st.push_bytes("str")
    with pytest.raises(ProtoValidationException):
        st.push_atom({}, format_type=9)
    with pytest.raises(ProtoValidationException):
        st.get_atom("not a pointer")
    with pytest.raises(ProtoCorruptionException):
        st.get_atom(AtomPointer(uuid.uuid4(), 0)).result()
    with pytest.raises(ProtoValidationException):
        st.get_atom(AtomPointer(p.transaction_id, -1)).result()
    st.close()
    st.close()
    with pytest.raises(ProtoValidationException):
        st.push_atom({"a": 1})
    with pytest.raises(ProtoValidationException):
        st.read_current_root()


def test_reference_space_opens_through_the_bindings(tmp_path):
    """A space the reference's StandaloneFileStorage wrote (its WAL format,
    its space_root) opens with ObjectSpace on protobase, which then appends
    in its own WALs; the reference's WALs are only read."""
    d = tmp_path / "ref"
    d.mkdir()
    ref = ObjectSpace(storage=StandaloneFileStorage(FileBlockProvider(str(d))))
    write_objects(ref, "refdb")
    ref.close()
    ref_wals = {p.name: p.read_bytes() for p in d.iterdir() if p.name not in ("space_root", "space_root.lock")}

    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(d)))
    check_objects(space, "refdb")
    write_objects(space, "refdb", n=30, create=False)
    check_objects(space, "refdb", n=30)
    space.close()
    for name, content in ref_wals.items():
        now = (d / name).read_bytes()
        assert now == content, f"reference WAL {name} was modified ({len(content)} -> {len(now)} bytes)"
    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(d, read_only=True)))
    check_objects(space, "refdb", n=30)


def test_reference_fixture_records(tmp_path):
    """tests/fixtures/python-space (written by the reference): every record of
    its manifest reads back through the bindings, read-only."""
    d = tmp_path / "space"
    shutil.copytree(FIXTURE / "space", d)
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    st = ProtobaseSharedStorage(pb.standalone(d, read_only=True), object_cache=False)
    root = st.read_current_root()
    assert root == AtomPointer(uuid.UUID(manifest["root"]["transaction_id"]), manifest["root"]["offset"])
    import hashlib

    for rec in manifest["records"]:
        ptr = AtomPointer(uuid.UUID(rec["wal"]), rec["offset"])
        fmt, payload = st.storage.get_record(ptr)
        assert fmt == rec["format"]
        if fmt == 0:
            assert len(payload) == rec["length"]
            assert hashlib.sha256(payload).hexdigest() == rec["sha256"]
        else:
            assert st.get_atom(ptr).result() == rec["value"]
    st.close()


def test_space_written_through_bindings_reads_back_through_the_cli(tmp_path):
    d = tmp_path / "space"
    st = ProtobaseSharedStorage(pb.standalone(d))
    space = ObjectSpace(storage=st)
    write_objects(space)
    atom = st.push_atom({"className": "Probe", "text": "ñandú €"}).result()
    raw = st.push_bytes(b"\x00\xffbytes").result()
    st.set_current_root(st.read_current_root())  # makes both durable
    space.close()

    cli = protobase_cli()
    verify = subprocess.run(cli + ["verify", str(d)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    got = subprocess.run(
        cli + ["get", str(d), f"{atom.transaction_id}:{atom.offset}", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(got.stdout) == {"className": "Probe", "text": "ñandú €"}
    got = subprocess.run(cli + ["get", str(d), f"{raw.transaction_id}:{raw.offset}"], capture_output=True, check=True)
    assert got.stdout == b"\x00\xffbytes"
    # the space still opens, in the reference database
    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(d)))
    check_objects(space)
    space.close()


COMMITTER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from proto_db.db_access import ObjectSpace
import protobase_storage as pb
from protobase_storage.shared_storage import ProtobaseSharedStorage

space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(sys.argv[1])))
db = space.new_database("crash")
n = 0
while True:
    tr = db.new_transaction()
    log = str(tr.get_root_object("log") or "")
    tr.set_root_object("log", f"{log},{n}")
    tr.set_root_object("last", n)
    tr.commit()
    print(n, flush=True)  # committed: commit() returned
    n += 1
"""


def test_sigkill_loses_no_committed_transaction(tmp_path):
    """A process committing proto_db transactions on protobase is SIGKILLed;
    every transaction whose commit() returned is in the reopened space."""
    d = tmp_path / "space"
    script = tmp_path / "committer.py"
    script.write_text(COMMITTER)
    child = subprocess.Popen(
        [sys.executable, str(script), str(d), str(pbtest.proto_db_dir())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = -1
    for line in child.stdout:
        committed = int(line)
        if committed >= 40:
            break
    child.send_signal(signal.SIGKILL)
    # commits acknowledged between our last read and the kill count too
    for line in child.stdout:
        committed = int(line)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    child.stderr.close()
    assert committed >= 40

    space = ObjectSpace(storage=ProtobaseSharedStorage(pb.standalone(d)))
    tr = space.open_database("crash").new_transaction()
    last = tr.get_root_object("last")
    log = str(tr.get_root_object("log"))
    assert last >= committed  # a commit may have landed after its print was cut
    assert log == "".join(f",{n}" for n in range(last + 1))
    tr.abort()
    space.close()
    verify = subprocess.run(protobase_cli() + ["verify", str(d)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
