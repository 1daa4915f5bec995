"""The cluster (TCP and QUIC) and cloud-cluster variants through the keyword
helpers, three nodes in this process on 127.0.0.1; the cluster with a node
SIGKILLed in its own process; cloud on moto."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import pbtest
import protobase_storage as pb


def three_nodes(make):
    servers = {n: f"127.0.0.1:{pbtest.free_port()}" for n in "abc"}
    return servers, {n: make(n, servers) for n in "abc"}


def exercise(nodes: dict) -> None:
    """a writes and publishes; b and c see the root and read a's atoms (from
    a, their peer); then b publishes and a sees it."""
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    p = a.push_record(pb.FORMAT_JSON, b'{"from": "a"}')
    r = a.set_root(p)
    assert r.writer == "a"
    for other in (b, c):
        # b and c learn the root from the majority's acknowledgements or a
        # heartbeat; a root update on them reads the newest.
        with other.begin_root_update() as u:
            assert u.current is not None and u.current.sequence >= r.sequence
        assert other.get_record(p) == (1, b'{"from": "a"}')
    q = b.push_bytes(b"from b")
    rb = b.set_root(q)
    assert rb.sequence > r.sequence and rb.term >= r.term
    with a.begin_root_update() as u:
        assert u.current.pointer == q
    assert a.get_bytes(q) == b"from b"


def close_all(nodes: dict) -> None:
    for s in nodes.values():
        s.close()


def test_cluster_tcp_in_process(tmp_path):
    servers, nodes = three_nodes(
        lambda n, servers: pb.cluster(tmp_path / n, n, servers, psk=pbtest.PSK, heartbeat_ms=200)
    )
    try:
        assert {s.variant for s in nodes.values()} == {"cluster"}
        exercise(nodes)
    finally:
        close_all(nodes)


def test_cluster_quic_in_process(tmp_path):
    out = subprocess.run(
        pbtest.protobase_cli() + ["certs", "--out", str(tmp_path / "certs"), "a", "b", "c"],
        capture_output=True,
        text=True,
        check=True,
    )
    tls = json.loads(out.stdout)["tls"]
    servers, nodes = three_nodes(
        lambda n, servers: pb.cluster(tmp_path / n, n, servers, transport="quic", tls=tls[n])
    )
    try:
        exercise(nodes)
    finally:
        close_all(nodes)


def test_cloud_cluster_in_process(tmp_path):
    servers, nodes = three_nodes(
        lambda n, servers: pb.cloud_cluster(
            "memory://py-cloud-cluster", tmp_path / n, n, servers, psk=pbtest.PSK, prefix="cc", upload_interval_ms=100
        )
    )
    try:
        assert {s.variant for s in nodes.values()} == {"cloud-cluster"}
        exercise(nodes)
    finally:
        close_all(nodes)


def test_cluster_survives_a_killed_node(tmp_path):
    """Nodes b and c in their own processes: c is SIGKILLed, a keeps
    publishing with b; c restarts on its directory and catches up."""
    cluster = pbtest.Cluster(tmp_path)
    a = cluster.launch()
    try:
        pointers = []
        for i in range(3):
            pointers.append(a.push_bytes(b"before %d" % i))
            a.set_root(pointers[-1])
        cluster.kill("c")
        for i in range(3):
            pointers.append(a.push_bytes(b"during %d" % i))
            a.set_root(pointers[-1])
        cluster.start("c")
        for i in range(3):
            pointers.append(a.push_bytes(b"after %d" % i))
            a.set_root(pointers[-1])
        assert a.read_current_root().sequence == 9
        cluster.kill("b")  # a + the restarted c are a majority
        p = a.push_bytes(b"with c")
        # A restarted acceptor promises its whole durable term block (it may
        # have promised any term in it before the kill), so c refuses a's
        # grant if a still holds the one from before c's restart: that
        # publish is fenced (not committed) and the next one, on a new
        # grant, succeeds. Bounded: at most a few attempts.
        committed, fenced = None, []
        for _ in range(5):
            try:
                committed = a.set_root(p)
                break
            except pb.FencedError as e:
                fenced.append(str(e))
        assert committed is not None, fenced
        assert committed.sequence >= 10, (committed, fenced)
        assert a.read_current_root().sequence == committed.sequence
        # The restarted c copies the chosen root into its own space_root
        # (every heartbeat, by a quorum read: a and c are a majority), so
        # tools reading its directory find a committed root. Wait for that
        # copy while the majority is still up (a generous deadline, not a
        # timing assertion).
        root = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c = pb.standalone(Path(cluster.dirs["c"]), read_only=True)
            root = c.read_current_root()
            c.close()
            if root is not None and root.sequence >= 7:
                break
            time.sleep(0.05)
    finally:
        a.close()
        cluster.stop_peers()
    assert root is not None and root.sequence >= 7


def test_no_majority_is_an_error(tmp_path):
    servers = {n: f"127.0.0.1:{pbtest.free_port()}" for n in "abc"}
    a = pb.cluster(tmp_path / "a", "a", servers, psk=pbtest.PSK, vote_timeout_ms=500, read_timeout_ms=200, max_retries=1)
    try:
        p = a.push_bytes(b"alone")
        with pytest.raises(pb.ProtobaseError) as e:
            a.set_root(p)
        assert e.value.kind in ("conflict", "unavailable")
    finally:
        a.close()


@pytest.fixture(scope="module")
def moto():
    if pbtest.moto_server_bin() is None:
        pytest.skip("moto_server not found: pip install 'moto[server]==5.2.5'")
    server = pbtest.Moto()
    yield server
    server.stop()


def test_cloud_on_moto(tmp_path, moto):
    url = moto.url("py-cloud")
    s = pb.cloud(url, tmp_path / "staging", durability="cloud", object_size=1 << 16)
    assert s.variant == "cloud"
    ptrs = [s.push_bytes(bytes([i]) * 5000) for i in range(40)]  # several slots
    s.set_root(ptrs[-1])
    s.close()
    # a fresh node (new staging, no cache) reads everything from the store
    s = pb.cloud(url, tmp_path / "staging2", object_size=1 << 16)
    assert s.read_current_root().pointer == ptrs[-1]
    for i, p in enumerate(ptrs):
        assert s.get_bytes(p) == bytes([i]) * 5000
    s.close()
