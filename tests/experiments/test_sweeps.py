"""Sweeps at scale (issue #15): metrics for every combination, per-bar equity and trades for a bounded selection
the spec chooses, chunks staged under the lake's tmp/ so a killed sweep resumes where it stopped."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow.compute as pc
import pytest

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.experiments import SpecError, create, execute, parse_spec, reproduce
from artifact_lake.experiments import plugins as exp_plugins
from artifact_lake.experiments import sweep as sweep_mod
from artifact_lake.projections import Lake
from tests.conftest import subprocess_env

FASTS = list(range(3, 15))  # 12 x 11 = 132 combinations: more than AUTO_ALL, so "best" by default
SLOWS = list(range(20, 42, 2))


def spec(name: str, results: str = "", strategy: str = "sma_cross", fasts=FASTS, slows=SLOWS) -> str:
    return f"""
name = "{name}"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "{strategy}"
[execution]
fee_bps = 5.0
units = "fractional"
[sweep]
fast = {fasts}
slow = {slows}
{results}
"""


@pytest.fixture
def slake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A", "B"), bars=1200, seed=11), "ohlcv", name="px")
    yield lk
    lk.close()


def _metrics(lake, run):
    return lake.read(run.results["metrics"]).sort_by([("combo", "ascending"), ("symbol", "ascending")])


def test_a_large_sweep_keeps_every_metric_and_equity_of_the_best_only(slake):
    create(slake, parse_spec(spec("all", '[results]\nequity = "all"')))
    create(slake, parse_spec(spec("best")))  # 132 combinations: best 10 by sharpe per symbol by default
    every, best = execute(slake, "all"), execute(slake, "best")
    m_all, m_best = _metrics(slake, every), _metrics(slake, best)
    assert m_best.num_rows == 132 * 2
    assert m_best.equals(m_all)  # the chunked, metrics-only pass gives the very numbers of full runs
    eq = slake.read(best.results["equity"])
    kept = {(c, s) for c, s in zip(eq.column("combo").to_pylist(), eq.column("symbol").to_pylist(), strict=True)}
    assert len(kept) == 20 and eq.num_rows == 20 * 1200
    for symbol in ("A", "B"):
        rows = m_all.filter(pc.equal(m_all.column("symbol"), symbol)).to_pylist()
        rows.sort(key=lambda r: (math.isnan(r["sharpe"]), -r["sharpe"], r["combo"]))
        assert {(r["combo"], symbol) for r in rows[:10]} == {k for k in kept if k[1] == symbol}
    eq_all = slake.read(every.results["equity"])
    for c, s in sorted(kept)[:3]:  # a kept curve is the same curve the full run wrote
        mask = pc.and_(pc.equal(eq_all.column("combo"), c), pc.equal(eq_all.column("symbol"), s))
        mine = pc.and_(pc.equal(eq.column("combo"), c), pc.equal(eq.column("symbol"), s))
        assert eq_all.filter(mask).equals(eq.filter(mine))
    trades = slake.read(best.results["trades"])
    assert set(zip(trades.column("combo").to_pylist(), trades.column("symbol").to_pylist(), strict=True)) <= kept
    assert best.checks["sweep"]["kept"] == 20


def test_a_pinned_combination_has_the_equity_of_the_same_combination_run_alone(slake):
    create(slake, parse_spec(spec("pinned", "[results]\nbest = 0\npin = [{fast = 7, slow = 30}]")))
    alone_spec = spec("alone", fasts=[7], slows=[30]).replace("[sweep]", "[results]\nequity = 'all'\n[sweep]")
    create(slake, parse_spec(alone_spec))
    pinned, alone = execute(slake, "pinned"), execute(slake, "alone")
    eq, eq_alone = slake.read(pinned.results["equity"]), slake.read(alone.results["equity"])
    combo = (FASTS.index(7)) * len(SLOWS) + SLOWS.index(30)  # combinations run in sorted-key product order
    assert set(eq.column("combo").to_pylist()) == {combo}
    assert eq.drop_columns(["combo"]).equals(eq_alone.drop_columns(["combo"]))
    t, t_alone = slake.read(pinned.results["trades"]), slake.read(alone.results["trades"])
    assert t.num_rows == t_alone.num_rows > 0
    assert t.drop_columns(["combo"]).equals(t_alone.drop_columns(["combo"]))


def test_the_results_choice_is_part_of_the_experiment_id(slake):
    a, _ = create(slake, parse_spec(spec("x")))
    b, _ = create(slake, parse_spec(spec("x", "[results]\nbest = 3")), replace=True)
    c, _ = create(slake, parse_spec(spec("x", '[results]\nby = "total_return"')), replace=True)
    assert len({a.id, b.id, c.id}) == 3


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ('[results]\nby = "sharp"', "'results.by': 'sharp' is no metric (did you mean 'sharpe'?)"),
        ('[results]\nequity = "some"', "'results.equity': must be all or best, not 'some'"),
        ("[results]\nbest = -1", "'results.best': must be a whole number >= 0"),
        ("[results]\npin = [{fast = 99}]", "'results.pin[0]': {fast = 99} matches no combination of the sweep"),
        ("[results]\npin = [{fats = 5}]", "unknown spec key results.pin[0].'fats' (did you mean 'fast'?)"),
        ("[results]\nkeep = 3", "unknown spec key results.'keep'"),
    ],
)
def test_a_bad_results_section_is_refused_at_create_in_one_line(slake, results, message):
    with pytest.raises(SpecError) as err:
        create(slake, parse_spec(spec("bad", results)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_select_takes_the_best_per_symbol_nan_last_ties_to_the_lower_combination():
    import pyarrow as pa

    from artifact_lake.experiments.spec import ExperimentSpec, Keep

    rows = pa.table(
        {
            "combo": [0, 0, 1, 1, 2, 2, 3, 3],
            "symbol": ["A", "B"] * 4,
            "sharpe": [1.0, float("nan"), 3.0, 0.5, 3.0, float("nan"), float("nan"), 0.7],
        }
    )
    sp = ExperimentSpec({"strategy": {"name": "x"}, "sweep": {"fast": [1, 2, 3, 4]}})
    assert sweep_mod.select(rows, Keep(best=2), sp) == [(1, "A"), (1, "B"), (2, "A"), (3, "B")]
    assert sweep_mod.select(rows, Keep(best=1, ascending=True), sp) == [(0, "A"), (1, "B")]
    pinned = Keep(best=0, pin=((("fast", 4),),))
    assert sweep_mod.select(rows, pinned, sp) == [(3, "A"), (3, "B")]


SLOW_PLUGIN = textwrap.dedent(
    '''
    import time

    import numpy as np
    from artifact_lake.sim import Bars, strategy


    @strategy
    def slow_cross(bars: Bars, fast: int = 5, slow: int = 20) -> np.ndarray:
        """Crossings of two trailing means, slowly (so a test can kill the sweep half way)."""
        time.sleep(0.01)
        c = bars.close
        f = np.convolve(c, np.ones(fast) / fast)[: len(c)]
        s = np.convolve(c, np.ones(slow) / slow)[: len(c)]
        out = np.full(len(c), np.nan)
        out[slow:][f[slow:] > s[slow:]] = 1.0
        out[slow:][f[slow:] <= s[slow:]] = 0.0
        return out
    '''
)

CHILD = """
import sys
from artifact_lake.experiments import execute, sweep
from artifact_lake.projections import Lake
sweep.CHUNK_BAR_STEPS = int(sys.argv[2])
lake = Lake.open(sys.argv[1])
run = execute(lake, "slow", force=True)
print(run.results["metrics"], run.checks["sweep"]["reused"])
lake.close()
"""


def _slow_lake(root, plugin_file):
    lk = Lake.open(root)
    lk.publish(synthetic_ohlcv(("A",), bars=800, seed=5), "ohlcv", name="px")
    create(lk, parse_spec(spec("slow", strategy="slow_cross", fasts=[2, 3, 4, 5, 6, 7], slows=list(range(10, 34)))))
    return lk


def test_a_sweep_killed_mid_way_resumes_its_staged_chunks_and_publishes_the_same_ids(tmp_path, monkeypatch):
    plugin_file = tmp_path / "slow_cross.py"
    plugin_file.write_text(SLOW_PLUGIN)
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin_file))
    monkeypatch.setattr(exp_plugins, "_configured", None)  # the CLI's --plugins setting, if a CLI test ran
    steps = 800 * 8  # 8 combinations a chunk: 144 combinations make 18 chunks
    root = tmp_path / "killed"
    _slow_lake(root, plugin_file).close()
    env = subprocess_env(LAKE_PLUGINS=str(plugin_file))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(steps)], env=env)
    deadline = time.monotonic() + 120
    staged: list = []
    while time.monotonic() < deadline and len(staged) < 3 and child.poll() is None:
        staged = list((root / "tmp").glob("sweep-*/chunk-*.parquet"))
        time.sleep(0.05)
    assert child.poll() is None, "the sweep finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    staged = sorted(p.name for p in (root / "tmp").glob("sweep-*/chunk-*.parquet"))
    assert 3 <= len(staged) < 18

    monkeypatch.setattr(sweep_mod, "CHUNK_BAR_STEPS", steps)
    with Lake.open(root) as lk:
        problems = [p for p in lk.verify().problems if p.kind == "stale" and "/sweep-" in p.subject]
        assert len(problems) == 1 and "chunks of a sweep that did not finish" in problems[0].detail
        resumed = execute(lk, "slow", force=True)
        assert resumed.checks["sweep"]["chunks"] == 18
        assert resumed.checks["sweep"]["reused"] == len(staged)
        assert not list((root / "tmp").glob("sweep-*"))  # published: the staged chunks are gone
        assert reproduce(lk, resumed.id).identical

    with _slow_lake(tmp_path / "whole", plugin_file) as whole:
        uninterrupted = execute(whole, "slow")
        assert uninterrupted.checks["sweep"]["reused"] == 0
    assert resumed.results == uninterrupted.results


def test_memory_of_a_sweep_stays_flat_in_its_combinations(slake):
    """Orders are held a bounded block at a time and only the kept curves are tables: the result sizes do
    not grow with the combinations beyond one metric row each."""
    create(slake, parse_spec(spec("many", "[results]\nbest = 2", fasts=list(range(2, 20)), slows=list(range(20, 60)))))
    run = execute(slake, "many")
    assert slake.get(run.results["metrics"]).rows == 18 * 40 * 2
    assert slake.get(run.results["equity"]).rows == 2 * 2 * 1200
    assert np.isfinite(_metrics(slake, run).column("final_equity").to_numpy()).all()


def test_gc_removes_a_dead_sweeps_chunks_and_leaves_a_live_one_and_foreign_files(slake):
    import fcntl

    from artifact_lake.artifact_store.maintenance import gc

    dead = slake.root / "tmp" / ("sweep-" + "a" * 32)
    live = slake.root / "tmp" / ("sweep-" + "b" * 32)
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "chunk-000000.parquet").write_bytes(b"x" * 10)
        (d / "lock").touch()
    (dead / "notes.txt").write_text("mine")
    fd = os.open(live / "lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        report = gc(slake, grace=0)
    finally:
        os.close(fd)
    assert not (dead / "chunk-000000.parquet").exists() and (dead / "notes.txt").read_text() == "mine"
    assert (live / "chunk-000000.parquet").exists()
    assert any(str(dead / "notes.txt") == x.path for x in report.left_alone)
