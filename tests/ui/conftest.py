"""A demo lake and a real ``lake ui`` process on a free port, shared by the UI tests of this folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


class Server:
    def __init__(self, lake: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.lake, self.port, self.proc = lake, port, proc
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, bytes, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("content-type", "")

    def json(self, path: str) -> object:
        status, body, _ = self.get(path)
        assert status == 200, (path, body[:300])
        return json.loads(body)


def start_ui(lake: Path, *extra: str) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "artifact_lake.cli", "--lake", str(lake), "ui", "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            stop(proc)
            raise AssertionError(f"lake ui exited {proc.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Server(lake, port, proc)
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise AssertionError("lake ui did not start listening in 30 s")


stop = stop_process


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui") / "demo"
    subprocess.run(
        [sys.executable, "-m", "artifact_lake.cli", "demo", "--lake", str(root), "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return root


@pytest.fixture(scope="session")
def server(demo_lake: Path) -> Iterator[Server]:
    srv = start_ui(demo_lake)
    yield srv
    stop(srv.proc)
