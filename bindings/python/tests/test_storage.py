"""The extension's own API: every variant's constructor, push/get, roots,
futures, errors (one exception class per error kind), threads."""

from __future__ import annotations

import json
import pickle
import threading
import uuid
from concurrent.futures import Future

import pytest

import protobase_storage as pb


@pytest.fixture
def space(tmp_path):
    s = pb.standalone(tmp_path / "space")
    yield s
    s.close()


def test_push_get_every_format(space):
    raw = space.push_bytes(b"\x00\x01raw")
    js = space.push_record(pb.FORMAT_JSON, json.dumps({"a": 1}).encode())
    mp = space.push_record(pb.FORMAT_MSGPACK, b"\x81\xa1a\x01")
    assert space.get_record(raw) == (0, b"\x00\x01raw")
    assert space.get_record(js) == (1, b'{"a":1}'.replace(b":", b": "))
    assert space.get_record(mp) == (2, b"\x81\xa1a\x01")
    assert space.get_bytes(raw) == b"\x00\x01raw"
    # bytearray and memoryview are accepted too
    p = space.push_bytes(bytearray(b"ba"))
    q = space.push_bytes(memoryview(b"mv"))
    assert space.get_bytes(p) == b"ba" and space.get_bytes(q) == b"mv"


def test_pointer_type(space):
    p = space.push_bytes(b"x")
    assert isinstance(p.transaction_id, uuid.UUID)
    assert p.wal_id == p.transaction_id
    assert p == pb.AtomPointer(p.transaction_id, p.offset)
    assert p == pb.AtomPointer(str(p.transaction_id), p.offset)
    assert hash(p) == hash(pb.AtomPointer.parse(str(p)))
    assert pickle.loads(pickle.dumps(p)) == p
    assert str(p) == f"{p.transaction_id}:{p.offset}"

    class Duck:  # anything with transaction_id and offset, e.g. proto_db's
        transaction_id = p.transaction_id
        offset = p.offset

    assert space.get_bytes(Duck()) == b"x"
    assert space.get_bytes(str(p)) == b"x"


def test_roots_and_update_section(space):
    assert space.read_current_root() is None
    a = space.push_bytes(b"a")
    r1 = space.set_root(a)
    assert (r1.pointer, r1.sequence, r1.writer) == (a, 1, "local")
    assert space.read_current_root() == r1
    b = space.push_bytes(b"b")
    with space.begin_root_update() as update:
        assert update.active and update.current == r1
        r2 = update.publish(b)
        assert not update.active
        with pytest.raises(pb.ClosedError):
            update.publish(b)
    assert r2.sequence == 2 and space.read_current_root().pointer == b
    # leaving a section without publishing changes nothing
    with space.begin_root_update() as update:
        pass
    assert space.read_current_root() == r2
    update.abort()  # idempotent


def test_update_section_is_exclusive(space):
    """A second begin_root_update waits (GIL released) until the first ends."""
    p = space.push_bytes(b"p")
    first = space.begin_root_update()
    order = []

    def second():
        with space.begin_root_update() as u:
            order.append(("second", u.current.sequence if u.current else None))
            u.publish(p)

    t = threading.Thread(target=second)
    t.start()
    t.join(0.2)  # no timing assertion: only lets the thread reach the wait
    order.append(("first", None))
    first.publish(p)
    t.join()
    assert order == [("first", None), ("second", 1)]
    assert space.read_current_root().sequence == 2


def test_reopen_reads_back(tmp_path):
    s = pb.standalone(tmp_path / "s")
    p = s.push_record(pb.FORMAT_JSON, b'{"k": "v"}')
    s.set_root(p)
    unpublished = s.push_bytes(b"after")
    s.flush_wal()
    s.close()
    s = pb.standalone(tmp_path / "s", read_only=True)
    assert s.read_current_root().pointer == p
    assert s.get_record(p) == (1, b'{"k": "v"}')
    assert s.get_bytes(unpublished) == b"after"  # flushed, so durable
    with pytest.raises(pb.ClosedError) as e:
        s.push_bytes(b"no")
    assert e.value.kind == "closed" and "read-only" in str(e.value)
    assert [w for w, n in s.list_wals() if w == p.transaction_id]
    assert s.config["read_only"] is True
    s.close()


def test_errors_by_kind(tmp_path):
    s = pb.standalone(tmp_path / "s", blob_max_size=16)
    with pytest.raises(pb.InvalidError) as e:
        s.push_bytes(b"")
    assert e.value.kind == "invalid" and isinstance(e.value, pb.ProtobaseError)
    with pytest.raises(pb.InvalidError, match="blob_max_size"):
        s.push_bytes(b"x" * 17)
    with pytest.raises(pb.InvalidError):
        s.push_record(7, b"x")  # no such format byte
    with pytest.raises(pb.NotFoundError) as e:
        s.get_bytes(pb.AtomPointer(uuid.uuid4(), 0))
    assert e.value.kind == "not_found"
    p = s.push_bytes(b"abc")
    with pytest.raises(pb.InvalidError, match="past the end"):
        s.get_bytes(pb.AtomPointer(p.transaction_id, 1 << 40))
    with pytest.raises(TypeError):
        s.get_bytes(42)
    with pytest.raises(TypeError):
        s.push_bytes("text is not bytes")
    with pytest.raises(pb.InvalidError):
        s.get_bytes("not-a-pointer")
    with pytest.raises(pb.InvalidError):
        pb.AtomPointer("nope", 0)
    s.close()
    s.close()  # idempotent
    for op in (lambda: s.push_bytes(b"x"), lambda: s.get_bytes(p), s.read_current_root, s.flush_wal):
        with pytest.raises(pb.ClosedError):
            op()


def test_bad_settings_and_configs(tmp_path):
    with pytest.raises(pb.InvalidError, match="buffer_size"):
        pb.in_memory(buffer_size=0)
    bad = tmp_path / "node.toml"
    bad.write_text('[backend]\ntype = "fs"\ndir = "d"\nbogus = 1\n')
    with pytest.raises(pb.InvalidError, match="bogus"):
        pb.open(bad)
    with pytest.raises(pb.UnavailableError):
        pb.open(tmp_path / "missing.toml")
    with pytest.raises(pb.InvalidError, match="pre-shared key"):
        pb.cluster(tmp_path / "c", "a", {"a": "127.0.0.1:1", "b": "127.0.0.1:2"})
    with pytest.raises(pb.InvalidError, match="fewer than 16"):
        pb.cluster(tmp_path / "c", "a", {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}, psk="short")
    with pytest.raises(pb.InvalidError, match="not among"):
        pb.cluster(tmp_path / "c", "z", {"a": "127.0.0.1:1"}, psk="a key long enough to pass")
    with pytest.raises(pb.InvalidError, match="scheme"):
        pb.cloud("ftp://x/y", tmp_path / "staging")
    with pytest.raises(pb.InvalidError, match="endpont' is not valid"):
        pb.cloud("s3://b/p?endpont=x", tmp_path / "staging")


def test_open_config_file(tmp_path):
    cfg = tmp_path / "node.toml"
    cfg.write_text('[storage]\nbuffer_size = 4096\n[backend]\ntype = "fs"\ndir = "space"\n')
    s = pb.open(cfg)
    assert s.variant == "standalone" and s.config["buffer_size"] == 4096
    p = s.push_bytes(b"from config")
    s.set_root(p)
    s.close()
    assert (tmp_path / "space" / "space_root").exists()


def test_futures_resolve(space):
    f = space.push_record_future(pb.FORMAT_JSON, b'{"n": 1}')
    assert isinstance(f, Future)
    p = f.result(timeout=30)
    g = space.get_record_future(p, lambda rec: json.loads(rec[1]))
    assert g.result(timeout=30) == {"n": 1}
    assert space.get_bytes_future(p).result(timeout=30) == b'{"n": 1}'
    assert space.set_root_future(p).result(timeout=30).pointer == p
    assert space.flush_wal_future().result(timeout=30) is None
    # errors arrive through the future, mapped when asked
    bad = space.get_bytes_future(pb.AtomPointer(uuid.uuid4(), 0))
    with pytest.raises(pb.NotFoundError):
        bad.result(timeout=30)
    mapped = space.get_bytes_future(pb.AtomPointer(uuid.uuid4(), 0), None, lambda e: KeyError(str(e)))
    with pytest.raises(KeyError):
        mapped.result(timeout=30)
    # an exception in map_result becomes the future's exception
    boom = space.get_bytes_future(p, lambda v: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        boom.result(timeout=30)


def test_futures_resolved_by_the_runtime(tmp_path):
    """Reads that must wait for the disk resolve from the runtime's worker
    threads (no thread per call): many outstanding futures, no new Python
    threads."""
    s = pb.standalone(tmp_path / "s", page_cache_size=0, buffer_size=4096)
    ptrs = [s.push_bytes(bytes([i % 251]) * 1000) for i in range(200)]
    s.close()
    s = pb.standalone(tmp_path / "s", page_cache_size=0)
    before = threading.active_count()
    futures = [s.get_bytes_future(p) for p in ptrs]
    assert threading.active_count() == before
    for i, f in enumerate(futures):
        assert f.result(timeout=60) == bytes([i % 251]) * 1000
    s.close()


def test_threads_share_a_storage(space):
    """Pushes and root updates from many Python threads at once (the GIL
    is released while each waits)."""
    results: dict = {}

    def worker(n):
        ptrs = [space.push_record(pb.FORMAT_JSON, json.dumps({"t": n, "i": i}).encode()) for i in range(50)]
        for p in ptrs:
            with space.begin_root_update() as u:
                u.publish(p)
        results[n] = ptrs

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert space.read_current_root().sequence == 8 * 50
    for n, ptrs in results.items():
        for i, p in enumerate(ptrs):
            assert json.loads(space.get_bytes(p)) == {"t": n, "i": i}


def test_in_memory_and_cloud_memory_store(tmp_path):
    m = pb.in_memory()
    assert m.variant == "memory"
    p = m.push_bytes(b"mem")
    m.set_root(p)
    assert m.get_bytes(p) == b"mem"
    m.close()
    c = pb.cloud("memory://py-test-store", tmp_path / "staging", prefix="space1")
    assert c.variant == "cloud"
    q = c.push_record(pb.FORMAT_JSON, b"{}")
    c.set_root(q)
    c.close()
    c = pb.cloud("memory://py-test-store", tmp_path / "staging2", prefix="space1")
    assert c.read_current_root().pointer == q
    assert c.get_record(q) == (1, b"{}")
    c.close()


def test_store_urls():
    assert pb.store_config("memory://x") == "memory://x"
    assert pb.store_config("file:///tmp/b") == "file:///tmp/b"
    assert pb.store_config("/tmp/b") == "file:///tmp/b"
    assert pb._parse_store_url("s3://bk/some/prefix?endpoint=http://127.0.0.1:9&region=eu") == (
        "s3://bk?endpoint=http://127.0.0.1:9&region=eu",
        "some/prefix",
    )
