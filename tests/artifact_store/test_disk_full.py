"""A full disk is an error, not a bug (issue #12, item 12): one line, nothing half-registered, no staging
file left behind. Two real full disks: a process file-size limit (RLIMIT_FSIZE, EFBIG: needs no mount) and
a small tmpfs mounted for the test (ENOSPC, SQLite's SQLITE_FULL; skipped when mounting is not allowed)."""

from __future__ import annotations

import os
import subprocess
import textwrap
import uuid

import pyarrow.parquet as pq
import pytest

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.errors import DiskFull
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from tests.conftest import PYTHON, lake_state, subprocess_env

LIMITED = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
    from artifact_lake.cli.main import lake_main
    sys.argv = ["lake", *sys.argv[2:]]
    lake_main()
    """
)


def test_a_file_size_limit_while_staging_is_one_line_and_leaves_the_lake_as_it_was(tmp_path):
    root = tmp_path / "lake"
    src = tmp_path / "big.parquet"
    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=50, seed=1), "ohlcv", name="px")
    pq.write_table(synthetic_ohlcv(("A", "B", "C"), bars=20_000, seed=2), src)  # ~1.5 MB as an object
    before = lake_state(root)
    r = subprocess.run(
        [PYTHON, "-c", LIMITED, "300000", "--lake", str(root), "publish", str(src), "--type", "ohlcv", "--name", "px"],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: disk full while staging the object of {src} in {root / 'tmp'} (File too large)")
    assert lake_state(root) == before  # no staging file left although close() failed again
    with Lake.open(root) as lk:
        assert lk.verify().ok and lk.get("px").rows == 50


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs; the test is skipped (with the reason) where mounting is not allowed."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a real full disk: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path, leave: int):
    """A filler file that leaves about ``leave`` bytes free."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, _free(path) - leave))
    return filler


def test_a_full_disk_while_staging_or_committing_registers_nothing(small_disk):
    root = small_disk / "lake"
    lk = Lake.open(root)
    try:
        lk.publish(synthetic_ohlcv(("A",), bars=20, seed=1), "ohlcv", name="px")
        big = synthetic_ohlcv(("A", "B", "C"), bars=40_000, seed=2)  # larger than the whole disk
        before = lake_state(root)
        with pytest.raises(DiskFull, match=r"^disk full while staging the object of table .*No space left on device"):
            lk.publish(big, "ohlcv", name="big")
        assert lake_state(root) == before
        # room for a small object but not for the manifest's write-ahead log: SQLite fails at COMMIT
        lk.close()
        lk = Lake.open(root)
        lk.find()  # the -shm index is made while there is room
        filler = _fill(small_disk, leave=8192)
        small = synthetic_ohlcv(("Z",), bars=5, seed=3)
        with pytest.raises(DiskFull, match=r"^disk full while writing .*manifest.sqlite \(database or disk is full\)"):
            lk.publish(small, "ohlcv", name="small")
        filler.unlink()
        assert lake_state(root) == before  # the object renamed in was taken out again: no orphan
        rec = lk.publish(small, "ohlcv", name="small")
        assert rec.version == 1 and lk.verify().ok
    finally:
        lk.close()
