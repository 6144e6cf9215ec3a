from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def lake(tmp_path):
    from artifact_lake.artifact_store import Lake

    lk = Lake.open(tmp_path / "lake")
    yield lk
    lk.close()


@pytest.fixture
def plake(tmp_path):
    """A lake with projections (``projections.Lake``)."""
    from artifact_lake.projections import Lake

    lk = Lake.open(tmp_path / "lake")
    yield lk
    lk.close()


@pytest.fixture
def ohlcv():
    from artifact_lake.artifact_store.samples import synthetic_ohlcv

    return synthetic_ohlcv(("BTC/USDT", "ETH/USDT"), bars=300, seed=3)


def lake_state(root: Path) -> dict:
    """Everything a refused operation must leave unchanged: manifest rows and files on disk."""
    import sqlite3

    db = sqlite3.connect(root / "manifest.sqlite")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    rows = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    db.close()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "manifest.sqlite" not in p.name)
    return {"rows": rows, "files": files}


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


PYTHON = sys.executable


def two_ids_sharing_a_prefix(lake) -> tuple[str, str]:
    """Rows for two artifacts whose ids both start with abcdef (no objects: enough to test references)."""
    from artifact_lake.artifact_store import manifest as mf

    ids = ("abcdef" + "1" * 58, "abcdef" + "2" * 58)
    with mf.immediate(lake.db):
        for artifact_id in ids:
            mf.insert_artifact(
                lake.db,
                artifact_id=artifact_id,
                type_name="table",
                schema_version=1,
                file_hash="0" * 64,
                rows=0,
                size=0,
                columns=[],
                meta={},
            )
    return ids


def free_port() -> int:
    """A free TCP port on loopback, for servers the tests start (lake ui, moto_server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server a test started: SIGTERM, then SIGKILL after 10 s; closes its stderr pipe if any."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


class Stop(Exception):
    """Stands for a kill from a progress callback: the run stops part way, leaving what it staged or finished."""
