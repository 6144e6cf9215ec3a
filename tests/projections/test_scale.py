"""Projection builds at scale (issue #15, item 4): DuckDB's memory limit, its spill folder in the lake's
``tmp/`` (gone after a build, reported and removed after a crash), and the one-sort ``ohlcv`` spec giving
the same relations as the window-based SQL it replaced, over many row groups."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.projections import ProjectionError
from artifact_lake.projections._sandbox import MEMORY_ENV, memory_limit, physical_memory
from tests.conftest import PYTHON, subprocess_env

MIN_US = 60_000_000
SPILL = re.compile(r"[0-9]+-[0-9a-f]{16}\.spill")
SETTINGS_SPEC = """\
name = "settings"
version = 1
relations = ["s"]
[[inputs]]
role = "t"
type = "table"
[sql]
text = '''CREATE TABLE s AS SELECT current_setting('memory_limit') AS memory_limit,
    current_setting('temp_directory') AS temp_directory, (SELECT count(*) FROM input_t) AS n'''
"""


def bars(symbol: str, ts_us: np.ndarray, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ts_us)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pa.table(
        {
            "ts": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
            "symbol": pa.array([symbol] * n),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.round(rng.lognormal(3, 0.6, n), 4),
        }
    )


def irregular_ohlcv(rows: int = 300_000) -> pa.Table:
    """Symbols with gaps of several sizes (also back to back), another bar length, irregular bars and a
    symbol with a single bar, sorted by (symbol, ts): more rows than one DuckDB row group (122,880)."""
    rng = np.random.default_rng(3)
    start = 1_704_067_200_000_000
    a_steps = np.where(rng.random(rows) < 0.002, rng.integers(2, 6, rows), 1)
    a_steps[1000:1003] = 2  # three gaps in a row: one run of long steps
    b_steps = np.where(rng.random(rows // 4) < 0.001, 3, 1) * 5
    c_steps = rng.integers(1, 11, 2_000)
    parts = [
        bars("A", start + np.cumsum(a_steps) * MIN_US, 1),
        bars("B", start + np.cumsum(b_steps) * MIN_US, 2),
        bars("C", start + np.cumsum(c_steps) * MIN_US, 3),
        bars("D", np.array([start], dtype=np.int64), 4),
    ]
    return pa.concat_tables(parts)


def split_by_time(t: pa.Table, cuts: list[int]) -> list[pa.Table]:
    """Parts of ``t`` between the ``cuts`` (microseconds), each sorted by (symbol, ts)."""
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    bounds = [-(2**62), *cuts, 2**62]
    return [t.filter(pa.array((ts >= lo) & (ts < hi))) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def the_window_spec(root: Path) -> None:
    """The ``ohlcv`` spec as it was before (a window partitioned by symbol, ordered by ts), as a lake spec."""
    from artifact_lake.projections.spec import BUILTIN_DIR

    text = (BUILTIN_DIR / "ohlcv.toml").read_text()
    sql = textwrap.dedent(
        """
        CREATE TABLE ohlcv AS
            SELECT ts, symbol, open, high, low, close, volume FROM input_ohlcv ORDER BY symbol, ts;
        CREATE TEMP TABLE _steps AS
            SELECT symbol, epoch_us(ts) AS cur_us,
                   epoch_us(ts) - lag(epoch_us(ts)) OVER (PARTITION BY symbol ORDER BY ts) AS step_us
            FROM ohlcv;
        CREATE TABLE timeframes AS
            SELECT symbol, coalesce((SELECT timeframe_us FROM _params), step_us) AS step_us
            FROM (SELECT symbol, step_us, count(*) AS n FROM _steps WHERE step_us IS NOT NULL GROUP BY ALL)
            QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY n DESC, step_us) = 1
            ORDER BY symbol;
        CREATE TABLE gaps AS
            SELECT symbol, first_missing, last_missing, missing_bars FROM (
                SELECT s.symbol, s.cur_us AS at_us,
                       make_timestamptz(s.cur_us - s.step_us + t.step_us) AS first_missing,
                       make_timestamptz(s.cur_us - t.step_us) AS last_missing,
                       s.step_us // t.step_us - 1 AS missing_bars
                FROM _steps s JOIN timeframes t USING (symbol)
                WHERE s.step_us > t.step_us)
            ORDER BY symbol, at_us;
        """
    )
    head = text[: text.index("[sql]")].replace('name = "ohlcv"', 'name = "ohlcv_window"')
    specs = root / "projections" / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "ohlcv_window.toml").write_text(head + '[sql]\ntext = """' + sql + '"""\n')


@pytest.mark.parametrize("overlap", [False, True], ids=["split-by-time", "overlapping-parts"])
def test_one_sort_gives_the_relations_of_the_window_sql(plake, overlap):
    t = irregular_ohlcv()
    start = 1_704_067_200_000_000
    parts = split_by_time(t, [start + 50_000 * MIN_US, start + 200_000 * MIN_US])
    if overlap:  # identical rows in two artifacts: the deduplicating view
        parts.append(split_by_time(t, [start + 40_000 * MIN_US, start + 60_000 * MIN_US])[1])
    ids = [plake.publish(p, "ohlcv").id for p in parts]
    the_window_spec(plake.root)
    for params in ({}, {"timeframe": "2m"}):
        ours = plake.projection("ohlcv", {"ohlcv": ids}, params)
        before = plake.projection("ohlcv_window", {"ohlcv": ids}, params)
        for rel in ("ohlcv", "timeframes", "gaps"):
            got, want = ours.arrow(f"SELECT * FROM {rel}"), before.arrow(f"SELECT * FROM {rel}")
            assert got.equals(want), (rel, params)
        gaps = ours.arrow("SELECT symbol, missing_bars FROM gaps").to_pylist()
        if not params:
            assert {g["symbol"] for g in gaps} == {"A", "B", "C"} and len(gaps) > 500
            assert ours.arrow("SELECT count(*) AS n FROM ohlcv").column("n")[0].as_py() == t.num_rows
    assert sorted(os.listdir(plake.root / "tmp")) == []


def settings_of_a_build(plake) -> dict[str, object]:
    specs = plake.root / "projections" / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "settings.toml").write_text(SETTINGS_SPEC)
    art = plake.publish(pa.table({"x": list(range(10))}), "table").id
    plake.projections.drop()
    row: dict[str, object] = plake.projection("settings", {"t": art}).arrow("SELECT * FROM s").to_pylist()[0]
    return row


def duckdb_shows(limit: str) -> str:
    con = duckdb.connect(config={"memory_limit": limit})
    try:
        return str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def test_a_build_has_the_memory_limit_and_spills_in_a_folder_of_its_own_in_tmp(plake, monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    row = settings_of_a_build(plake)
    assert row["n"] == 10
    assert row["memory_limit"] == duckdb_shows(memory_limit())  # half of this machine's memory
    spill = Path(str(row["temp_directory"]))
    assert spill.parent == plake.root / "tmp" and SPILL.fullmatch(spill.name), spill
    assert not spill.exists() and os.listdir(plake.root / "tmp") == []

    monkeypatch.setenv(MEMORY_ENV, "300MB")
    row = settings_of_a_build(plake)
    assert row["memory_limit"] == duckdb_shows("300MB") == "286.1 MiB"
    assert Path(str(row["temp_directory"])) != spill  # a folder per build
    assert memory_limit({MEMORY_ENV: "10%"}) == f"{int(physical_memory() * 10 / 100) // 1024}KiB"
    assert memory_limit({MEMORY_ENV: "1.5GiB"}) == f"{3 * 2**29 // 1024}KiB"


@pytest.mark.parametrize("bad", ["lots", "8", "0GB", "150%", "8 parsecs"])
def test_a_memory_limit_that_is_not_a_size_is_one_line_and_leaves_nothing(plake, monkeypatch, bad):
    t = irregular_ohlcv(1_000)
    art = plake.publish(t, "ohlcv", name="bars").id
    monkeypatch.setenv(MEMORY_ENV, bad)
    with pytest.raises(ProjectionError) as err:
        plake.projection("ohlcv", {"ohlcv": art})
    assert str(err.value) == (
        f"{MEMORY_ENV}={bad!r} is not a memory size: give one like 8GB, 512MiB or 40% (of this machine's memory)"
    )
    assert err.value.exit_code == 2
    assert os.listdir(plake.root / "tmp") == [] and list((plake.root / "projections").glob("*.duckdb")) == []
    res = CliRunner().invoke(
        lake_cli, ["--lake", str(plake.root), "projection", "build", "ohlcv", "--input", "ohlcv=bars"]
    )
    assert res.exit_code == 2 and res.stderr == f"error: {err.value}\n"


def spill_files(tmp: Path) -> list[str]:
    out = []
    for folder in tmp.glob("*.spill"):
        try:
            out += [f"{folder.name}/{f}" for f in os.listdir(folder) if f.startswith("duckdb_temp_")]
        except OSError:
            pass  # removed while we looked
    return out


def test_a_build_over_its_memory_limit_spills_into_the_lake_and_gives_the_same_projection(plake, monkeypatch):
    """1M rows sorted under a 64 MB limit: DuckDB spills into the build's folder in tmp/ and finishes."""
    t = irregular_ohlcv(1_000_000)
    start = 1_704_067_200_000_000
    ids = [plake.publish(p, "ohlcv").id for p in split_by_time(t, [start + 400_000 * MIN_US])]
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.extend(spill_files(plake.root / "tmp"))
            time.sleep(0.002)

    monkeypatch.setenv(MEMORY_ENV, "64MB")
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        small = plake.projection("ohlcv", {"ohlcv": ids})
    finally:
        done.set()
        watcher.join()
    assert any(SPILL.fullmatch(s.split("/")[0]) and "storage" in s for s in seen), seen[:5]
    assert os.listdir(plake.root / "tmp") == []
    digest = {rel: small.arrow(f"SELECT * FROM {rel}") for rel in ("ohlcv", "timeframes", "gaps")}
    plake.projections.drop()
    monkeypatch.delenv(MEMORY_ENV)
    again = plake.projection("ohlcv", {"ohlcv": ids})
    assert again.key == small.key and not again.reused
    assert all(again.arrow(f"SELECT * FROM {rel}").equals(want) for rel, want in digest.items())


BUILDER = """
import sys
from artifact_lake.projections import Lake
lake = Lake.open(sys.argv[1])
lake.projection("ohlcv", {"ohlcv": sys.argv[2:]})
"""


def test_a_killed_build_leaves_a_spill_folder_that_verify_reports_and_gc_removes(plake):
    t = irregular_ohlcv(1_000_000)
    start = 1_704_067_200_000_000
    ids = [plake.publish(p, "ohlcv").id for p in split_by_time(t, [start + 400_000 * MIN_US])]
    tmp = plake.root / "tmp"
    env = subprocess_env(**{MEMORY_ENV: "64MB"})
    proc = subprocess.Popen([PYTHON, "-c", BUILDER, str(plake.root), *ids], env=env)
    try:
        deadline = time.monotonic() + 120
        while not any("storage" in s for s in spill_files(tmp)):
            assert proc.poll() is None, "the build ended before it spilled"
            assert time.monotonic() < deadline, "no spill in 120 s"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    (spill,) = [p for p in tmp.iterdir() if SPILL.fullmatch(p.name)]
    assert any(f.startswith("duckdb_temp_") for f in os.listdir(spill))
    stale = {Path(p.subject).name: p.detail for p in plake.verify().problems if p.kind == "stale"}
    assert stale[spill.name] == "spill folder of a projection build that did not finish (lake gc removes it)"
    prefix = spill.name.split(".")[0]
    assert {f"{prefix}.lock", f"{prefix}.duckdb"} <= set(stale)
    report = plake.gc(grace=0)
    assert str(spill) in report.removed and report.left_alone == []
    assert os.listdir(tmp) == [] and plake.verify().problems == []
    assert not plake.projection("ohlcv", {"ohlcv": ids}).reused  # builds again from scratch


def test_gc_leaves_a_live_builds_spill_folder_symlinks_and_foreign_files_alone(plake, tmp_path):
    from artifact_lake.artifact_store.objects import stage_lock

    tmp = plake.root / "tmp"
    live = stage_lock(plake.root)  # a build in flight holds its lock
    live_spill = live.path.with_suffix(".spill")
    live_spill.mkdir()
    (live_spill / "duckdb_temp_1_0_storage_S32K-0.tmp").write_bytes(b"x" * 10)
    dead = tmp / "123-00000000000000aa.spill"  # no lock beside it: its build is gone
    dead.mkdir()
    (dead / "duckdb_temp_123_0_owner").write_bytes(b"")
    (dead / "notes.txt").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "duckdb_temp_9_0_owner").write_text("not the lake's")
    (tmp / "124-00000000000000bb.spill").symlink_to(outside, target_is_directory=True)
    try:
        report = plake.gc(grace=0)
        assert live_spill.is_dir() and (live_spill / "duckdb_temp_1_0_storage_S32K-0.tmp").exists()
    finally:
        fcntl.flock(live.handle.fileno(), fcntl.LOCK_UN)
        live.close()
    assert not (dead / "duckdb_temp_123_0_owner").exists() and (dead / "notes.txt").read_text() == "mine"
    assert (outside / "duckdb_temp_9_0_owner").read_text() == "not the lake's"
    left = {Path(x.path).name for x in report.left_alone}
    assert {"notes.txt", "124-00000000000000bb.spill"} <= left
    report = plake.gc(grace=0)  # the build is gone now: its lock and spill folder go
    assert str(live_spill) in report.removed and str(live.path) in report.removed
    assert (tmp / "124-00000000000000bb.spill").is_symlink() and dead.is_dir()


def test_symbol_ranges_of_an_object_whose_symbols_are_interleaved(plake):
    """The overlap check's ranges are exact also when rows are ordered by time, symbols interleaved."""
    from artifact_lake.artifact_store.objects import object_path
    from artifact_lake.projections.build import _symbol_ranges

    t = irregular_ohlcv(300_000).sort_by([("ts", "ascending"), ("symbol", "ascending")])
    art = plake.publish(t, "ohlcv").id
    want = t.group_by("symbol").aggregate([("ts", "min"), ("ts", "max")])
    expected = sorted(
        zip(
            want["symbol"].to_pylist(),
            want["ts_min"].cast(pa.int64()).to_pylist(),
            want["ts_max"].cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )
    assert sorted(_symbol_ranges(str(object_path(plake.root, art)))) == expected


def test_parts_that_interleave_in_time_without_common_bars_are_all_kept(plake):
    t = irregular_ohlcv(20_000)
    by_time = t.sort_by([("ts", "ascending"), ("symbol", "ascending")])
    even = pa.array(np.arange(by_time.num_rows) % 2 == 0)
    ids = [plake.publish(by_time.filter(even), "ohlcv").id, plake.publish(by_time.filter(pc.invert(even)), "ohlcv").id]
    got = plake.projection("ohlcv", {"ohlcv": ids}).arrow("SELECT * FROM ohlcv")
    assert got.equals(t.sort_by([("symbol", "ascending"), ("ts", "ascending")]).select(got.column_names))
