"""A lake on a read-only mount (a shared archive, a snapshot): reading commands work, writing ones say why.

A real read-only bind mount (``mount --bind`` then ``remount,ro``), which needs root; the tests skip with the
reason where the machine refuses the mount.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import experiments, lake

SPEC = """
name = "sma"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
fast = 5
slow = 20
[sweep]
slow = [20, 30]
"""


@pytest.fixture(scope="module")
def ro_lake(tmp_path_factory):
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    base = tmp_path_factory.mktemp("ro")
    src, mnt = base / "src", base / "mnt"
    mnt.mkdir()
    with Lake.open(src) as lk:
        lk.publish(synthetic_ohlcv(("A", "B"), bars=400, seed=3), "ohlcv", name="px")
        execute(lk, create(lk, parse_spec(SPEC))[0].id)
        key = lk.projection("ohlcv", {"ohlcv": ["px"]}).key
    mounted = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a bind mount here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only here ({r.stderr.strip()})")
        with pytest.raises(OSError):
            (mnt / "probe").write_text("x")  # truly read-only, even for root
        yield mnt, key, base
    finally:
        # lazy: a handle some library still holds (and a busy mount) must not leave the mount behind
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def ok(group, root, *args):
    r = CliRunner().invoke(group, ["--lake", str(root), *args])
    assert r.exit_code == 0, (args, r.output)
    return r


def test_reading_commands_work(ro_lake):
    root, key, base = ro_lake
    assert [a["names"] for a in json.loads(ok(lake, root, "find", "--type", "ohlcv", "--json").stdout)] == [["px@v1"]]
    ok(lake, root, "show", "px")
    ok(lake, root, "cat", "px", "--limit", "3")
    ok(lake, root, "get", "px", "--out", str(base / "px.csv"), "--format", "csv")
    assert (base / "px.csv").read_text().startswith('"ts","symbol"')
    ok(lake, root, "lineage", "exp/sma/metrics")
    ok(lake, root, "verify")
    ok(lake, root, "projection", "list")
    q = ok(lake, root, "query", "--projection", key, "SELECT count(*) AS n FROM ohlcv", "--format", "json")
    assert json.loads(q.stdout) == [{"n": 800}]
    ok(experiments, root, "list")
    ok(experiments, root, "show", "sma")
    ok(experiments, root, "compare", "sma")
    ok(experiments, root, "plot", "sma", "--out", str(base / "sma.png"))
    r = ok(experiments, root, "reproduce", "exp/sma/metrics")
    assert "identical" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("lake", "publish", "{pq}", "--type", "table"),
        ("lake", "gc"),
        ("lake", "projection", "build", "ohlcv", "--input", "ohlcv=px", "--param", "timeframe=1h"),
        ("lake", "projection", "drop", "--all"),
        ("lake", "ingest", "file", "{csv}", "--type", "ohlcv"),
        ("experiments", "create", "{spec}"),
        ("experiments", "execute", "sma", "--force"),
    ],
)
def test_writing_commands_fail_in_one_line(ro_lake, args):
    root, _, base = ro_lake
    (base / "spec.toml").write_text(SPEC.replace('name = "sma"', 'name = "other"'))
    if not (base / "in.csv").exists():
        synthetic_ohlcv(("A",), bars=5, seed=1).to_pandas().to_csv(base / "in.csv", index=False)
    group = lake if args[0] == "lake" else experiments
    if not (base / "in.parquet").exists():
        import pyarrow.parquet as pq

        pq.write_table(synthetic_ohlcv(("A",), bars=5, seed=1), base / "in.parquet")
    argv = [a.format(csv=base / "in.csv", pq=base / "in.parquet", spec=base / "spec.toml") for a in args[1:]]
    r = CliRunner().invoke(group, ["--lake", str(root), *argv])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, (args, r.output)
    assert lines[0].startswith("error: ") and "read-only" in lines[0], lines
