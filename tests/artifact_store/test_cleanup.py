"""Clean-up stays inside the lake, and gc never runs without the lock (issue #12, items 3 and 11).

Real symlinks, FIFOs and folders; a real publisher process stopped (SIGSTOP) between rename and commit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import textwrap
import time

import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.errors import LakeBusy
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.cli.main import lake as lake_cli
from tests.conftest import PYTHON, subprocess_env

ORPHAN_NAME = "zz" + "0" * 62 + ".parquet"
STAGING_NAME = "4242-0123456789abcdef.parquet"


def _home(tmp_path):
    """A user's folder outside the lake, with files gc used to delete through a symlink."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.pdf").write_bytes(b"four years")
    (home / "id_ed25519").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    (home / ORPHAN_NAME).write_bytes(b"named like an orphan object")
    (home / STAGING_NAME).write_bytes(b"named like a stale staging file")
    return home


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_gc_and_verify_never_follow_a_symlink_out_of_the_lake(tmp_path):
    home = _home(tmp_path)
    before = _snapshot(home)
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        lk.publish(pa.table({"v": [1, 2]}), "table", name="t")
        (root / "objects" / "zz").symlink_to(home)  # a shard folder that is a link (as a tarball can hold)
        shutil.rmtree(root / "tmp")
        (root / "tmp").symlink_to(home)  # the staging folder itself a link
        link = root / "objects" / "ab" / ("ab" * 32 + ".parquet")
        link.parent.mkdir()
        link.symlink_to(home / "thesis.pdf")  # a file link named like an orphan object
        report = lk.verify()
        assert report.ok, report.problems
        left = {x.path: x.reason for x in report.left_alone}
        assert left[str(root / "objects" / "zz")].startswith(f"a symlink to {home}")
        assert left[str(link)].startswith("a symlink to") and str(root / "tmp") in left
        done = lk.gc(grace=0)
        assert done.removed == [] and {x.path for x in done.left_alone} == set(left)
        assert link.is_symlink()
    assert _snapshot(home) == before
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "gc", "--grace", "0"])
    assert r.exit_code == 0 and f"left alone {root / 'objects' / 'zz'}: a symlink to {home}" in r.stdout
    assert _snapshot(home) == before


def test_an_objects_folder_that_is_a_symlink_is_not_followed(tmp_path):
    home = _home(tmp_path)
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        a = lk.publish(pa.table({"v": [1]}), "table").id
    moved = tmp_path / "elsewhere"
    shutil.move(root / "objects", moved)
    (moved / "zz").symlink_to(home)
    (moved / "cd").mkdir()
    (moved / "cd" / ("cd" * 32 + ".parquet")).write_bytes(b"an orphan, but behind a symlinked objects/")
    (root / "objects").symlink_to(moved)
    before = _snapshot(home), _snapshot(moved / "cd")
    with Lake.open(root) as lk:
        report = lk.verify()
        assert [(p.kind, p.subject) for p in report.problems] == [("missing", a)]
        assert "not a folder of the lake" in report.problems[0].detail
        assert [x.path for x in report.left_alone] == [str(root / "objects")]
        assert lk.gc(grace=0).removed == []
    assert (_snapshot(home), _snapshot(moved / "cd")) == before


def test_only_files_of_names_the_lake_makes_are_removed(lake):
    notes = lake.root / "tmp" / "NOTES.txt"
    notes.write_text("my notes: not a staging file")
    stray = lake.root / "objects" / "ab" / "README"
    stray.parent.mkdir()
    stray.write_text("not an object")
    stale = lake.root / "tmp" / STAGING_NAME
    stale.write_bytes(b"a publish killed before rename")
    report = lake.verify()
    assert [(p.kind, p.subject) for p in report.problems] == [("stale", str(stale))]
    assert {x.path: x.reason for x in report.left_alone} == {
        str(stray): "not a name the lake makes",
        str(notes): "not a name the lake makes",
    }
    done = lake.gc(grace=0)
    assert done.removed == [str(stale)] and notes.exists() and stray.exists()
    r = CliRunner().invoke(lake_cli, ["--lake", str(lake.root), "gc", "--json"])
    assert r.exit_code == 0 and {x["path"] for x in json.loads(r.stdout)["left_alone"]} == {str(notes), str(stray)}


def test_a_fifo_or_a_folder_at_an_object_path_neither_hangs_nor_crashes_verify(tmp_path):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        a = lk.publish(pa.table({"v": [1]}), "table").id
        b = lk.publish(pa.table({"v": [2]}), "table").id
    for artifact_id, make in ((a, os.mkfifo), (b, os.mkdir)):
        path = object_path(root, artifact_id)
        path.unlink()
        make(path)
    os.mkfifo(root / "tmp" / STAGING_NAME)  # a FIFO named like a staging file: gc must not open it blocking
    # a subprocess with a timeout: verify used to block forever opening the FIFO
    r = subprocess.run(
        [PYTHON, "-m", "artifact_lake.cli", "--lake", str(root), "verify", "--json"],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    problems = {p["subject"]: p["detail"] for p in json.loads(r.stdout)["problems"]}
    assert problems == {
        a: f"object path {object_path(root, a)} is a FIFO, not a file",
        b: f"object path {object_path(root, b)} is a folder, not a file",
    }
    r = subprocess.run(
        [PYTHON, "-m", "artifact_lake.cli", "--lake", str(root), "gc", "--grace", "0"],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and "removed 0 file(s)" in r.stdout, r.stderr
    assert f"left alone {root / 'tmp' / STAGING_NAME}: a FIFO" in r.stdout
    assert stat.S_ISFIFO(os.lstat(object_path(root, a)).st_mode) and object_path(root, b).is_dir()


STALLED = textwrap.dedent(
    """
    import sys
    from artifact_lake.artifact_store import Lake
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    rec = Lake.open(sys.argv[1]).publish(synthetic_ohlcv(bars=300, seed=5), "ohlcv", name="slow")
    print(rec.id)
    """
)


def _wait_stopped(pid, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.02)
    raise AssertionError("the publisher never reached its stall point")


def test_gc_never_goes_on_without_the_lock_while_a_publisher_is_stalled_between_rename_and_commit(tmp_path):
    root = tmp_path / "lake"
    Lake.open(root).close()
    proc = subprocess.Popen(
        [PYTHON, "-c", STALLED, str(root)],
        env=subprocess_env(ARTIFACT_LAKE_STALL_AT="after-rename"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_stopped(proc.pid)  # SIGSTOPped with its object renamed in and its transaction open
        (in_flight,) = (root / "objects").rglob("*.parquet")
        with Lake.open(root) as lk:
            for attempt in (lambda: lk.gc(grace=0, wait=0.3), lambda: lk.gc(grace=0, dry_run=True, wait=0.3)):
                with pytest.raises(LakeBusy, match=r"held the write lock .* for more than 0.3 s"):
                    attempt()
            with pytest.raises(LakeBusy):
                lk.verify(wait=0.3)
        assert in_flight.exists()
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with Lake.open(root) as lk:
        assert lk.resolve("slow") == out.strip() == in_flight.name.split(".")[0]
        assert lk.verify().ok and lk.read("slow").num_rows > 0


def test_a_staging_file_is_locked_before_it_has_its_name(lake, monkeypatch):
    """gc takes an unlocked staging file for a dead publisher's: the name must appear already locked."""
    from artifact_lake.artifact_store import objects

    seen = []
    real_flock = objects.fcntl.flock

    def watching_flock(fd, op):
        seen.append(sorted(p.name for p in (lake.root / "tmp").iterdir()))
        return real_flock(fd, op)

    monkeypatch.setattr(objects.fcntl, "flock", watching_flock)
    staged = objects.stage(lake.root)
    monkeypatch.undo()
    assert len(seen) == 1 and not any(objects.STAGING_NAME.fullmatch(n) for n in seen[0]), seen
    assert lake.gc(grace=0).removed == [] and staged.path.exists()
    staged.discard()


def test_a_new_shard_folder_is_made_durable_in_objects(lake, monkeypatch):
    from artifact_lake.artifact_store import objects

    synced = []
    real_fsync = os.fsync

    def watching_fsync(fd):
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        return real_fsync(fd)

    monkeypatch.setattr(objects.os, "fsync", watching_fsync)
    lake.publish(pa.table({"v": [7]}), "table")
    monkeypatch.undo()
    objects_dir = os.stat(lake.root / "objects")
    assert (objects_dir.st_dev, objects_dir.st_ino) in synced


def test_gc_keeps_recent_orphans_of_a_lake_copied_without_its_wal(tmp_path):
    root = tmp_path / "lake"
    lk = Lake.open(root)
    try:
        a = lk.publish(pa.table({"v": [1, 2, 3]}), "table", name="fresh").id
        assert (root / "manifest.sqlite-wal").stat().st_size > 0  # the commit lives in the WAL until a checkpoint
        copy = tmp_path / "copy"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    finally:
        lk.close()
    with Lake.open(copy) as cp:
        assert cp.find(name="fresh") == []  # the row was only in the WAL
        assert [p.kind for p in cp.verify().problems] == ["orphan"]
        kept = cp.gc()
        assert kept.removed == [] and "orphan younger than the grace period" in kept.left_alone[0].reason
    shutil.copy(root / "manifest.sqlite", copy / "manifest.sqlite")  # the copy fixed with the full manifest
    with Lake.open(copy) as cp:
        assert cp.resolve("fresh") == a and cp.verify().ok


@pytest.mark.parametrize("bad", ["soon", "-1h", "inf"])
def test_a_bad_grace_is_one_line(lake, bad):
    r = CliRunner().invoke(lake_cli, ["--lake", str(lake.root), "gc", "--grace", bad])
    assert r.exit_code == 2 and r.stderr.strip().startswith(f"error: --grace {bad!r}: give a duration")
