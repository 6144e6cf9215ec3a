"""verify, gc, crash safety and concurrent publishers, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap

import pyarrow as pa
import pytest

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.objects import object_path
from tests.conftest import PYTHON, subprocess_env


def _flip_byte(path, offset=100):
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_verify_catches_a_flipped_byte_a_deleted_object_and_an_orphan(lake, ohlcv):
    a = lake.publish(ohlcv, "ohlcv").id
    b = lake.publish(ohlcv.slice(0, 50), "ohlcv").id
    c = lake.publish(ohlcv.slice(50, 50), "ohlcv").id
    assert lake.verify().ok and lake.verify().checked == 3
    _flip_byte(object_path(lake.root, a))
    p = object_path(lake.root, b)
    os.chmod(p, 0o644)
    p.unlink()
    orphan = object_path(lake.root, "ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"junk")
    report = lake.verify()
    kinds = sorted((pr.kind, pr.subject) for pr in report.problems)
    assert kinds == sorted([("changed", a), ("missing", b), ("orphan", str(orphan))])
    assert lake.verify([c]).ok
    young = lake.gc()  # the orphan is younger than the grace period: reported, kept
    assert young.removed == [] and [x.path for x in young.left_alone] == [str(orphan)] and orphan.exists()
    dry = lake.gc(dry_run=True, grace=0)
    assert dry.removed == [str(orphan)] and orphan.exists()
    done = lake.gc(grace=0)
    assert done.removed == [str(orphan)] and not orphan.exists()
    assert {pr.kind for pr in lake.verify().problems} == {"changed", "missing"}


def test_verify_recomputes_content_not_only_bytes(lake, ohlcv):
    """An object replaced by valid Parquet of other content, with the file hash updated, is still caught."""
    import pyarrow.parquet as pq

    from artifact_lake.artifact_store.hashing import file_hash

    a = lake.publish(ohlcv, "ohlcv").id
    path = object_path(lake.root, a)
    os.chmod(path, 0o644)
    pq.write_table(ohlcv.slice(1), path)
    lake.db.execute(
        "UPDATE artifacts SET file_hash = ?, bytes = ? WHERE id = ?", (file_hash(path), path.stat().st_size, a)
    )
    assert lake.verify(content=False).ok
    assert [p.kind for p in lake.verify().problems] == ["content"]


PUBLISH = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from artifact_lake.artifact_store import Lake
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    lake = Lake.open(sys.argv[1])
    worker = int(sys.argv[2])
    for i in range(6):
        lake.publish(synthetic_ohlcv(("S%d" % i,), bars=500, seed=i), "ohlcv", name="shared", meta={"i": i})
        lake.publish(pa.table({"w": [worker], "i": [i]}), "table", name="w%d" % worker)
    print("ok")
    """
)


def test_four_processes_publishing_at_once_lose_nothing_and_duplicate_nothing(tmp_path):
    root = tmp_path / "lake"
    Lake.open(root).close()
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", PUBLISH, str(root), str(w)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    lake = Lake.open(root)
    n = lake.db.execute("SELECT count(*), count(DISTINCT id) FROM artifacts").fetchone()
    assert tuple(n) == (6 + 24, 6 + 24)
    for w in range(4):
        assert lake.db.execute("SELECT max(version) FROM names WHERE name = ?", (f"w{w}",)).fetchone()[0] == 6
    # versions of the shared name: each change of content is one version, no gaps, no duplicates
    versions = [r[0] for r in lake.db.execute("SELECT version FROM names WHERE name='shared' ORDER BY version")]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 6
    assert len(list((root / "objects").rglob("*.parquet"))) == 30
    assert lake.verify().ok
    lake.close()


CRASH = textwrap.dedent(
    """
    import sys
    from artifact_lake.artifact_store import Lake
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    Lake.open(sys.argv[1]).publish(synthetic_ohlcv(bars=400, seed=11), "ohlcv", name="victim")
    """
)


@pytest.mark.parametrize(("where", "kind"), [("after-rename", "orphan"), ("after-stage", "stale")])
def test_a_publisher_killed_mid_publish_leaves_a_lake_verify_explains_and_gc_cleans(tmp_path, ohlcv, where, kind):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        keep = lk.publish(ohlcv, "ohlcv", name="keep").id
    proc = subprocess.run(
        [PYTHON, "-c", CRASH, str(root)],
        env=subprocess_env(ARTIFACT_LAKE_CRASH_AT=where),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL
    with Lake.open(root) as lk:
        report = lk.verify()
        assert [p.kind for p in report.problems] == [kind]
        assert lk.find(name="victim") == []  # no row points at the half-published object
        cleaned = lk.gc(grace=0)
        assert len(cleaned.removed) == 1
        assert lk.verify().ok
        assert lk.resolve("keep") == keep
        from artifact_lake.artifact_store.samples import synthetic_ohlcv

        again = lk.publish(synthetic_ohlcv(bars=400, seed=11), "ohlcv", name="victim")
        assert again.version == 1 and lk.verify().ok


def test_gc_leaves_a_staging_file_of_a_live_publisher_alone(lake):
    from artifact_lake.artifact_store.objects import stage

    staged = stage(lake.root)
    staged.handle.write(b"in flight")
    assert lake.gc().removed == [] and staged.path.exists()
    staged.close()  # the writer is gone: now it is stale
    assert lake.gc().removed == [str(staged.path)]


def test_a_read_only_lake_can_be_verified(tmp_path, ohlcv):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        lk.publish(pa.table({"v": [1]}), "table")
    with Lake.open(root) as lk:
        assert lk.verify().ok
