"""Test support: where proto_db is, a 3-node cluster on 127.0.0.1 (peers in
subprocesses), a moto S3 server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

import protobase_storage as pb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
PSK = "python-tests-psk"


def proto_db_dir() -> Optional[Path]:
    """The directory holding the reference package ``proto_db`` (commit
    1eaeed7): ``PROTOBASE_PROTO_DB_DIR`` when set, else ``../shared/vendor``
    beside the repository. None when absent (it is not on PyPI)."""
    env = os.environ.get("PROTOBASE_PROTO_DB_DIR")
    if env:
        candidates = [Path(env)]
    else:
        candidates = [REPO.parent / "shared" / "vendor" / "proto_db-1eaeed7"]
    for c in candidates:
        if (c / "proto_db" / "__init__.py").is_file():
            return c
    return None


def add_proto_db_to_path() -> bool:
    d = proto_db_dir()
    if d is None:
        return False
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))
    return True


MISSING_PROTO_DB = (
    "proto_db (reference package, commit 1eaeed7) not found: it is not on PyPI; "
    "set PROTOBASE_PROTO_DB_DIR to the directory holding proto_db/ "
    "(default ../shared/vendor/proto_db-1eaeed7 beside the repository)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """Waits for the child's 'ready' line (or its death)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"{what} did not start: {line!r} {err}")


class Cluster:
    """Three nodes a, b, c on 127.0.0.1 over TCP: b and c run in
    subprocesses (``cluster_peer.py``), a in this process (:meth:`open_a`).
    ``kill`` SIGKILLs a peer, ``restart`` starts it again on its directory
    and port."""

    def __init__(self, base: Path, a_dir: Optional[Path] = None, cloud_store: Optional[str] = None):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.ports = {n: free_port() for n in "abc"}
        self.servers = {n: f"127.0.0.1:{p}" for n, p in self.ports.items()}
        self.dirs = {n: self.base / f"node-{n}" for n in "abc"}
        if a_dir is not None:
            self.dirs["a"] = Path(a_dir)
        self.cloud_store = cloud_store
        self.procs: dict = {}
        self.configs = {n: self._write_config(n) for n in "abc"}

    def _new_ports(self) -> None:
        self.ports = {n: free_port() for n in "abc"}
        self.servers = {n: f"127.0.0.1:{p}" for n, p in self.ports.items()}
        self.configs = {n: self._write_config(n) for n in "abc"}

    def launch(self, attempts: int = 5) -> pb.Storage:
        """Starts b and c, opens a. A port picked free may be taken before
        its node binds it (by any process's outgoing connection): then the
        cluster moves to new ports and tries again."""
        for attempt in range(attempts):
            try:
                self.start_peers()
                return self.open_a()
            except (RuntimeError, pb.ProtobaseError) as e:
                if "in use" not in str(e) or attempt == attempts - 1:
                    raise
                self.stop_peers()
                self._new_ports()
        raise AssertionError("unreachable")

    def _write_config(self, node: str) -> Path:
        cluster = {
            "server_id": node,
            "host": "127.0.0.1",
            "port": self.ports[node],
            "servers": [{"id": n, "address": a} for n, a in self.servers.items()],
            "psk": PSK,
            "read_timeout_ms": 1000,
            "retry_interval_ms": 200,
            "max_retries": 2,
        }
        if self.cloud_store:
            store, prefix = pb._parse_store_url(self.cloud_store)
            backend = {
                "type": "cloud",
                "store": store,
                "prefix": prefix,
                "staging_dir": str(self.dirs[node]),
                "upload_interval_ms": 200,
            }
        else:
            backend = {"type": "fs", "dir": str(self.dirs[node])}
        path = self.base / f"node-{node}.json"
        path.write_text(json.dumps(pb.node_config(backend=backend, cluster=cluster)))
        return path

    def start(self, node: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "cluster_peer.py"), str(self.configs[node])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_ready(proc, f"cluster node {node}")
        except Exception:
            proc.kill()
            proc.wait()
            raise
        self.procs[node] = proc

    def start_peers(self) -> None:
        for n in "bc":
            self.start(n)

    def open_a(self) -> pb.Storage:
        return pb.open(self.configs["a"])

    def kill(self, node: str) -> None:
        proc = self.procs.pop(node)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f:
                f.close()

    def restart(self, node: str) -> None:
        if node in self.procs:
            self.kill(node)
        self.start(node)

    def stop_peers(self) -> None:
        for node, proc in list(self.procs.items()):
            try:
                proc.stdin.close()  # the peer closes its storage and exits
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
                proc.wait()
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()
            self.procs.pop(node, None)


def moto_server_bin() -> Optional[str]:
    env = os.environ.get("PROTOBASE_MOTO_BIN")
    if env and os.path.exists(env):
        return env
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    venv = REPO / ".ci" / "venv" / "bin" / "moto_server"
    if venv.exists():
        return str(venv)
    return shutil.which("moto_server")


class Moto:
    """A moto S3 server on 127.0.0.1 (``moto[server]==5.2.5``) with a
    bucket; ``url(prefix)`` is a store URL on it."""

    def __init__(self, bucket: str = "protobase-python"):
        binary = moto_server_bin()
        if binary is None:
            raise RuntimeError("moto_server not found (pip install 'moto[server]==5.2.5')")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
                urllib.request.urlopen(req, timeout=2).read()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}?endpoint={self.endpoint}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def protobase_cli() -> list:
    """The Rust CLI: PROTOBASE_CLI, else target/debug/protobase (built by
    `cargo build --features cli --bin protobase` when missing)."""
    env = os.environ.get("PROTOBASE_CLI")
    if env:
        return [env]
    exe = REPO / "target" / "debug" / "protobase"
    if not exe.exists():
        subprocess.run(
            ["cargo", "build", "--features", "cli", "--bin", "protobase"],
            cwd=REPO,
            check=True,
        )
    return [str(exe)]
