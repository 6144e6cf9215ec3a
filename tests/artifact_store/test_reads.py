"""Reads check what they serve (issue #12, item 7): every read of an object's content hashes the bytes it
serves and refuses a changed object in one line that says to run ``lake verify``; publishing the original
content again restores it."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.errors import DamagedObject
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.cli.main import lake as lake_cli


def _flip(path, offset):
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def _one_line(r, code=1):
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == code, (r.exit_code, r.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_cat_get_read_head_and_export_refuse_a_changed_object_wherever_the_flip_is(tmp_path, ohlcv):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        a = lk.publish(ohlcv, "ohlcv", name="px").id
    path = object_path(root, a)
    size = path.stat().st_size
    original = path.read_bytes()
    for offset in range(8, size - 8, max(1, size // 12)):  # data pages, footer, magic
        path.chmod(0o644)
        path.write_bytes(original)
        _flip(path, offset)
        for args in (["cat", "px"], ["cat", "px", "--json"], ["get", "px", "--out", str(tmp_path / "out.parquet")]):
            r = CliRunner().invoke(lake_cli, ["--lake", str(root), *args])
            line = _one_line(r)
            assert f"artifact {a} has changed since it was published" in line and "run lake verify" in line, args
        assert not (tmp_path / "out.parquet").exists()  # no corrupt bytes copied
        with Lake.open(root) as lk:
            for call in (
                lambda: lk.read("px"),
                lambda: lk.head("px", 3),
                lambda: lk.export("px", tmp_path / "x.csv", "csv"),
            ):
                with pytest.raises(DamagedObject, match="run lake verify"):
                    call()
        assert not (tmp_path / "x.csv").exists()


def test_a_change_after_a_good_read_is_caught_by_the_next_read_of_the_same_lake(lake, ohlcv):
    a = lake.publish(ohlcv, "ohlcv").id
    assert lake.read(a).num_rows == ohlcv.num_rows  # checked once, remembered by (inode, size, mtime, ctime)
    _flip(object_path(lake.root, a), 200)
    with pytest.raises(DamagedObject):
        lake.read(a)


def test_a_missing_object_or_a_fifo_in_its_place_is_one_line_not_a_hang(tmp_path, ohlcv):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        a = lk.publish(ohlcv, "ohlcv", name="px").id
    path = object_path(root, a)
    path.unlink()
    line = _one_line(CliRunner().invoke(lake_cli, ["--lake", str(root), "cat", "px"]))
    assert line.startswith(f"error: artifact {a} is missing") and "run lake verify" in line
    os.mkfifo(path)  # a FIFO opened for reading would block forever
    line = _one_line(CliRunner().invoke(lake_cli, ["--lake", str(root), "get", "px", "--out", str(tmp_path / "o")]))
    assert "is a FIFO, not a file" in line


def test_republishing_the_original_content_restores_a_changed_object(tmp_path, ohlcv):
    root = tmp_path / "lake"
    src = tmp_path / "px.parquet"
    pq.write_table(ohlcv, src)
    with Lake.open(root) as lk:
        a = lk.publish(src, "ohlcv", name="px").id
        before = object_path(root, a).read_bytes()
        _flip(object_path(root, a), 300)
        assert [p.kind for p in lk.verify().problems] == ["changed"]
        # the same file again: answered from the known-source table before, now checked and restored
        rec = lk.publish(src, "ohlcv", name="px")
        assert rec.id == a and rec.deduplicated and rec.version == 1
        assert lk.verify().ok and object_path(root, a).read_bytes() == before
        assert oct(object_path(root, a).stat().st_mode & 0o777) == "0o444"
        _flip(object_path(root, a), 300)
        lk.publish(ohlcv, "ohlcv")  # the same content as a table restores it as well
        assert lk.verify().ok and lk.read("px").equals(lk.read(a))


SPEC = """
name = "trust"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
fast = 5
slow = 20
"""


def test_experiments_show_and_compare_refuse_a_changed_result(tmp_path):
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake as PLake

    root = tmp_path / "lake"
    with PLake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=200, seed=1), "ohlcv", name="px")
        exp = create(lk, parse_spec(SPEC))[0]
        run = execute(lk, exp.id)
    metrics = run.results["metrics"]
    _flip(object_path(root, metrics), object_path(root, metrics).stat().st_size // 2)
    for args in (["show", exp.id], ["show", exp.id, "--json"], ["compare", exp.id], ["compare", exp.id, "--json"]):
        line = _one_line(CliRunner().invoke(exp_cli, ["--lake", str(root), *args]))
        assert f"artifact {metrics} has changed since it was published" in line, args
