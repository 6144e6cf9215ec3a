"""The portfolio runner: a registered portfolio strategy over every symbol of the inputs, one cash account."""

from __future__ import annotations

import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  pa.compute
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.experiments import LookAhead, SpecError, create, execute, parse_spec, reproduce
from artifact_lake.experiments import plugins as exp_plugins
from artifact_lake.experiments.runners import runner_for
from artifact_lake.projections import Lake
from tests.conftest import Stop

SYMBOLS = ("A", "B", "C", "D", "E")

SPEC = """
name = "mom"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "xs_momentum"
every = 12
[execution]
fee_bps = 10.0
units = "fractional"
[portfolio]
direction = "long"
min_trade = 0.001
[sweep]
lookback = [10, 30]
top_k = [1, 2]
"""


@pytest.fixture
def plake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(SYMBOLS, bars=600, seed=5), "ohlcv", name="px")
    yield lk
    lk.close()


def test_xs_momentum_sweep_publishes_with_lineage_and_reproduces(plake):
    exp, created = create(plake, parse_spec(SPEC))
    assert created and runner_for(exp.spec).name == "portfolio"
    assert exp.spec.doc["portfolio"] == {"direction": "long", "min_trade": 0.001}
    run = execute(plake, "mom")
    assert run.status == "succeeded" and set(run.results) == {"fills", "positions", "equity", "metrics"}
    px = plake.resolve("px")
    for role, artifact_id in run.results.items():
        assert [a.id for a in plake.parents(artifact_id)] == [px]
        assert plake.runs_of(artifact_id) == [run.id]
        assert plake.resolve(f"exp/mom/{role}") == artifact_id
    metrics = plake.read(run.results["metrics"]).to_pylist()
    assert [(m["combo"], m["symbol"], m["lookback"], m["top_k"]) for m in metrics] == [
        (0, "*", 10, 1),
        (1, "*", 10, 2),
        (2, "*", 30, 1),
        (3, "*", 30, 2),
    ]
    assert all(m["n_fills"] > 0 and m["rebalances"] > 0 for m in metrics)
    equity = plake.read(run.results["equity"])
    assert equity.num_rows == 4 * 600 and set(equity.column("symbol").to_pylist()) == {"*"}
    eq = np.asarray(equity.column("equity"))
    assert np.isfinite(eq).all()
    last = [eq[(c + 1) * 600 - 1] for c in range(4)]
    assert np.allclose(last, [m["final_equity"] for m in metrics])
    fills = plake.read(run.results["fills"])
    assert set(fills.column("symbol").to_pylist()) <= set(SYMBOLS)
    assert set(fills.column("reason").to_pylist()) == {"rebalance"}
    assert reproduce(plake, run.results["metrics"]).identical
    assert reproduce(plake, run.id).identical
    again = execute(plake, "mom")
    assert again.results == run.results


def test_equal_weight_runs(plake):
    spec = SPEC.replace('"xs_momentum"', '"equal_weight"').split("[sweep]")[0] + "[sweep]\nevery = [6, 24]\n"
    spec = spec.replace('name = "mom"', 'name = "ew"').replace("every = 12\n", "")
    exp, _ = create(plake, parse_spec(spec))
    run = execute(plake, "ew")
    assert run.status == "succeeded"
    metrics = plake.read(run.results["metrics"]).to_pylist()
    assert [m["every"] for m in metrics] == [6, 24]
    assert all(m["open_trades"] == len(SYMBOLS) for m in metrics)
    assert reproduce(plake, run.results["equity"]).identical


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("min_trade = 0.001", "min_trad = 0.001"),
            "unknown spec key portfolio.'min_trad' (did you mean 'min_trade'?)",
        ),
        (("every = 12", "evry = 12"), "unknown spec key strategy.'evry' (did you mean 'every'?)"),
        (('direction = "long"', 'direction = "short"'), "spec key 'portfolio.direction': must be long or both"),
        (('"xs_momentum"', '"xs_momentun"'), "did you mean 'xs_momentum'?"),
    ],
)
def test_unknown_keys_are_refused_in_one_line(plake, edit, message):
    with pytest.raises(SpecError) as info:
        create(plake, parse_spec(SPEC.replace(*edit)))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_portfolio_section_refused_for_signal_strategies(plake):
    spec = textwrap.dedent(
        """
        kind = "backtest"
        [inputs]
        ohlcv = ["px"]
        [strategy]
        name = "sma_cross"
        [portfolio]
        direction = "long"
        """
    )
    with pytest.raises(SpecError, match="belongs to portfolio strategies"):
        create(plake, parse_spec(spec))


def test_cli_unknown_key_one_line(plake, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(SPEC.replace("top_k = [1, 2]", "topk = [1, 2]"))
    out = CliRunner().invoke(exp_cli, ["--lake", str(plake.root), "create", str(f)])
    assert out.exit_code != 0
    assert "did you mean 'top_k'?" in out.output


USER_PLUGIN = """
import numpy as np
from artifact_lake.sim import Panel
from artifact_lake.sim.plugins import portfolio_strategy

@portfolio_strategy
def first_two(panel: Panel, every: int = 24, share: float = 0.5) -> np.ndarray:
    out = np.full(panel.shape, np.nan)
    out[::every, :] = 0.0
    out[::every, :2] = share
    return out
"""


def test_user_portfolio_strategy_records_code_and_reproduces(plake, tmp_path, monkeypatch):
    path = tmp_path / "my_portfolios.py"
    path.write_text(USER_PLUGIN)
    monkeypatch.setenv("LAKE_PLUGINS", str(path))
    monkeypatch.setattr(exp_plugins, "_configured", None)  # the CLI's --plugins setting, if a CLI test ran
    spec = 'name = "user"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "first_two"\n'
    spec += "[sweep]\nshare = [0.3, 0.5]\n"
    exp, _ = create(plake, parse_spec(spec))
    assert runner_for(exp.spec).name == "portfolio"
    run = execute(plake, "user")
    assert set(run.plugins) == {"first_two"}
    rec = run.plugins["first_two"]
    assert rec["origin"] == f"file {path}"
    assert rec["source"] in {n.id for n in plake.lineage(run.results["metrics"]).nodes}
    assert reproduce(plake, run.results["metrics"]).identical
    assert execute(plake, "user").reused
    with pytest.raises(SpecError, match=r"unknown spec key sweep.'shar' \(did you mean 'share'\?\)"):
        create(plake, parse_spec(spec.replace("share = [", "shar = [")))


PEEKING_PLUGIN = """
import numpy as np
from artifact_lake.sim import Panel
from artifact_lake.sim.plugins import portfolio_strategy

@portfolio_strategy
def tomorrow(panel: Panel, hold: float = 0.5) -> np.ndarray:
    # holds the symbols whose NEXT close is higher: it reads a bar it cannot know yet
    c = panel.last_close()
    up = np.zeros(panel.shape)
    up[:-1] = (c[1:] > c[:-1]).astype(float) * hold / panel.shape[1]
    return up
"""


def test_a_portfolio_plugin_that_reads_later_bars_is_refused_by_the_guard(plake, tmp_path, monkeypatch):
    path = tmp_path / "peek.py"
    path.write_text(PEEKING_PLUGIN)
    monkeypatch.setenv("LAKE_PLUGINS", str(path))
    monkeypatch.setattr(exp_plugins, "_configured", None)
    spec = 'name = "peek"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "tomorrow"\n'
    create(plake, parse_spec(spec))
    before = {a.id for a in plake.find()}
    with pytest.raises(LookAhead, match=r"look-ahead: portfolio_strategy 'tomorrow' \(hold=0\.5\): bar \d+, symbol '"):
        execute(plake, "peek")
    assert {a.id for a in plake.find()} == before  # nothing published


def test_the_guard_checks_every_user_portfolio_combination(plake, tmp_path, monkeypatch):
    path = tmp_path / "guarded_portfolios.py"
    path.write_text(USER_PLUGIN.replace("first_two", "first_two_guarded"))
    monkeypatch.setenv("LAKE_PLUGINS", str(path))
    monkeypatch.setattr(exp_plugins, "_configured", None)
    spec = 'name = "g"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "first_two_guarded"\n'
    create(plake, parse_spec(spec + "[sweep]\nshare = [0.3, 0.5, 0.7]\n"))
    run = execute(plake, "g")
    assert run.checks["plugins"]["first_two_guarded"]["combinations"] == 3
    assert run.checks["plugins"]["first_two_guarded"]["cuts"] >= 9


def test_positions_in_long_format_replay_to_the_simulators_matrix(plake):
    """``positions`` has a row per symbol at every bar where its position changes; carrying each forward
    rebuilds the simulator's (bars, symbols) matrix exactly, and every change is a fill of that size."""
    from artifact_lake import sim
    from artifact_lake.experiments._inputs import bars_by_symbol

    create(plake, parse_spec(SPEC))
    run = execute(plake, "mom")
    pos = plake.read(run.results["positions"]).to_pylist()
    fills = plake.read(run.results["fills"])
    panel = sim.Panel.from_bars(bars_by_symbol(plake, [plake.resolve("px")], []))
    weights = sim.xs_momentum(panel, lookback=10, top_k=1, every=12)
    want = sim.run_portfolio(panel, weights, sim.Execution(fee_bps=10.0, units="fractional"), min_trade=0.001)
    index = {int(t): i for i, t in enumerate(panel.ts)}
    got = np.zeros(panel.shape)
    for row in (r for r in pos if r["combo"] == 0):
        i = index[int(row["ts"].timestamp() * 1_000_000)]
        got[i:, panel.symbols.index(row["symbol"])] = row["position"]
    assert np.array_equal(got, want.positions)
    combo0 = fills.filter(pa.compute.equal(fills.column("combo"), 0))
    assert len([r for r in pos if r["combo"] == 0]) <= combo0.num_rows


def _sweep_spec(name: str, results: str) -> str:
    """Six combinations of xs_momentum with a ``[results]`` section (empty: none)."""
    spec = SPEC.replace('name = "mom"', f'name = "{name}"').replace("lookback = [10, 30]", "lookback = [5, 10, 30]")
    return spec.replace("[sweep]", f"{results}\n[sweep]") if results else spec


def _combos(table: pa.Table) -> list[int]:
    return sorted(set(table.column("combo").to_pylist()))


def _only(table: pa.Table, combos: list[int]) -> pa.Table:
    return table.filter(pa.compute.is_in(table.column("combo"), pa.array(combos, pa.int64())))


def test_results_best_keeps_per_bar_outputs_of_the_best_only_and_equal_to_an_all_run(plake):
    create(plake, parse_spec(_sweep_spec("all", '[results]\nequity = "all"')))
    everything = execute(plake, "all")
    exp, _ = create(plake, parse_spec(_sweep_spec("best", '[results]\nequity = "best"\nbest = 2')))
    assert exp.spec.doc["results"] == {"equity": "best", "best": 2}
    run = execute(plake, "best")
    assert run.status == "succeeded" and set(run.results) == {"fills", "positions", "equity", "metrics"}
    # metrics of every combination, the same artifact as the all run's
    assert run.results["metrics"] == everything.results["metrics"]
    metrics = plake.read(run.results["metrics"]).to_pylist()
    assert [m["combo"] for m in metrics] == list(range(6)) and {m["symbol"] for m in metrics} == {"*"}
    ranked = sorted(metrics, key=lambda m: (np.isnan(m["sharpe"]), -m["sharpe"], m["combo"]))
    best = sorted(m["combo"] for m in ranked[:2])
    assert run.checks["sweep"] == {
        "combinations": 6,
        "kept": 2,
        "equity": "best",
        "best": 2,
        "by": "sharpe",
        "chunks": 1,
        "reused": 0,
        "chunk_combinations": 6,
        "executor": {"name": "local"},
    }
    for role in ("equity", "fills", "positions"):
        kept = plake.read(run.results[role])
        assert _combos(kept) == best, role
        assert kept.equals(_only(plake.read(everything.results[role]), best)), role
    assert plake.read(run.results["equity"]).num_rows == 2 * 600
    assert reproduce(plake, run.id).identical


def test_results_pin_and_by_a_portfolio_metric(plake):
    create(plake, parse_spec(_sweep_spec("ref", "")))  # 6 combinations, no [results]: everything is kept
    everything = execute(plake, "ref")
    metrics = plake.read(everything.results["metrics"]).to_pylist()
    assert _combos(plake.read(everything.results["equity"])) == list(range(6))
    lowest = min(metrics, key=lambda m: (m["avg_holdings"], m["combo"]))["combo"]
    worst = min(metrics, key=lambda m: (m["sharpe"], -m["combo"]))
    assert worst["combo"] != lowest  # the pin keeps a combination the ranking leaves out
    results = '[results]\nbest = 1\nby = "avg_holdings"\nascending = true\n'
    results += f"pin = [{{lookback = {worst['lookback']}, top_k = {worst['top_k']}}}]"
    create(plake, parse_spec(_sweep_spec("pinned", results)))
    run = execute(plake, "pinned")
    want = sorted({lowest, worst["combo"]})
    for role in ("equity", "fills", "positions"):
        kept = plake.read(run.results[role])
        assert _combos(kept) == want, role
        assert kept.equals(_only(plake.read(everything.results[role]), want)), role
    assert run.checks["sweep"]["kept"] == len(want) and run.checks["sweep"]["by"] == "avg_holdings"


def test_results_best_zero_keeps_only_metrics(plake):
    create(plake, parse_spec(_sweep_spec("none", "[results]\nbest = 0")))
    run = execute(plake, "none")
    assert plake.read(run.results["metrics"]).num_rows == 6
    for role in ("equity", "fills", "positions"):
        assert plake.read(run.results[role]).num_rows == 0, role


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ('by = "sharp"', "spec key 'results.by': 'sharp' is no portfolio metric (did you mean 'sharpe'?)"),
        ('by = "win_rate"', "spec key 'results.by': 'win_rate' is no portfolio metric"),
        ("pin = [{lookback = 7}]", "spec key 'results.pin[0]': {lookback = 7} matches no combination of the sweep"),
        ("pin = [{lookbak = 5}]", "unknown spec key results.pin[0].'lookbak' (did you mean 'lookback'?)"),
    ],
)
def test_bad_results_are_refused_in_one_line(plake, results, message):
    with pytest.raises(SpecError) as info:
        create(plake, parse_spec(_sweep_spec("bad", f"[results]\n{results}")))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_large_portfolio_sweep_without_results_keeps_the_best_ten(plake):
    """Without ``[results]`` more than ``AUTO_ALL`` combinations keep the best 10 by Sharpe, as signal sweeps
    do; the default is no key of the spec, so the experiment's id is what it was."""
    spec = SPEC.replace('name = "mom"', 'name = "wide"').replace("lookback = [10, 30]", "lookback = [5, 10, 30]")
    spec = spec.replace("top_k = [1, 2]", "top_k = [1, 2, 3]").replace("every = 12\n", "")
    spec += "every = [12, 24, 36, 48, 60, 72, 84, 96, 108, 120, 132, 144]\n"  # 3 x 3 x 12 = 108 combinations
    exp, _ = create(plake, parse_spec(spec))
    assert "results" not in exp.spec.doc and exp.spec.n_combos == 108
    run = execute(plake, "wide")
    assert plake.read(run.results["metrics"]).num_rows == 108
    assert len(_combos(plake.read(run.results["equity"]))) == 10
    assert run.checks["sweep"]["kept"] == 10


def test_a_portfolio_sweep_stopped_half_way_resumes_its_staged_chunks_with_the_same_ids(plake, tmp_path, monkeypatch):
    from artifact_lake.experiments import sweep

    monkeypatch.setattr(sweep, "CHUNK_BAR_STEPS", 600 * len(SYMBOLS) * 2)  # chunks of 2 combinations: 3
    create(plake, parse_spec(_sweep_spec("best", "[results]\nbest = 2")))

    def stop_after_two_chunks(done: int, total: int, what: str) -> None:
        if done >= 4:
            raise Stop(what)

    with pytest.raises(Stop):
        execute(plake, "best", progress=stop_after_two_chunks)
    staged = sorted(p.name for p in (plake.root / "tmp").glob("sweep-*/chunk-*.parquet"))
    assert staged == ["chunk-000000.parquet", "chunk-000001.parquet"]
    (problem,) = plake.verify().problems  # what is left is explained (and gc could clean it)
    assert "chunks of a sweep that did not finish" in problem.detail
    run = execute(plake, "best")
    assert run.checks["sweep"]["reused"] == 2 and run.checks["sweep"]["chunks"] == 3
    assert not list((plake.root / "tmp").glob("sweep-*"))  # published: the staged chunks are gone
    with Lake.open(tmp_path / "other") as other:  # the same sweep in one go, elsewhere
        other.publish(synthetic_ohlcv(SYMBOLS, bars=600, seed=5), "ohlcv", name="px")
        create(other, parse_spec(_sweep_spec("best", "[results]\nbest = 2")))
        assert execute(other, "best").results == run.results
