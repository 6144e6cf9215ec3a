"""Plots, compare and cat as people read them: every kind of experiment plots, nothing is left out silently,
numbers are formatted like ``experiments show``, wide tables are never cut."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import synthetic_alerts, synthetic_ohlcv
from artifact_lake.cli.main import experiments, lake
from artifact_lake.experiments import create, execute, get_experiment, parse_spec
from artifact_lake.experiments.report import Curve, choose_curves, latest_run, plot, validation_equity
from artifact_lake.projections import Lake

SWEEP = """
name = "sweep"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
direction = "both"
[execution]
fee_bps = 10.0
units = "fractional"
[sweep]
fast = [5, 10, 20]
slow = [30, 60, 90]
"""

ALERTS = """
name = "alerts"
kind = "backtest"
[inputs]
ohlcv = ["px"]
alerts = ["feed"]
[strategy]
name = "alert_replay"
take_profit = [0.01]
stop_loss = 0.01
max_hold_bars = 30
[sweep]
max_concurrent = [1, 5]
"""

TRAIN = """
name = "ppo"
kind = "train"
seed = 3
[inputs]
ohlcv = ["px"]
[env]
symbol = "A"
window = 8
episode_length = 64
[execution]
fee_bps = 5.0
units = "fractional"
[trainer]
total_steps = 512
n_envs = 2
n_steps = 128
hidden = [8, 8]
device = "cpu"
"""


@pytest.fixture(scope="module")
def rlake(tmp_path_factory):
    """Two symbols of 400 hourly bars, an alert feed, and a run of each kind (read-only for the tests)."""
    lk = Lake.open(tmp_path_factory.mktemp("report") / "lake")
    bars = synthetic_ohlcv(("A", "B"), bars=400, seed=3, step_s=3600)
    lk.publish(bars, "ohlcv", name="px")
    lk.publish(synthetic_alerts(bars, 20, seed=2), "alerts", name="feed")
    for spec in (SWEEP, ALERTS, TRAIN):
        execute(lk, create(lk, parse_spec(spec))[0].id)
    yield lk
    lk.close()


def cli(group, lk, *args: str, columns: int = 120):
    return CliRunner().invoke(group, ["--lake", str(lk.root), *args], env={"COLUMNS": str(columns)})


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_train_experiment_draws_the_curve_and_the_validation_split(rlake, tmp_path):
    png = tmp_path / "ppo.png"
    r = cli(experiments, rlake, "plot", "ppo", "--out", str(png), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert is_png(png) and out["kind"] == "train" and out["left_out"] == []
    assert [c["label"] for c in out["drawn"]] == ["#0 policy on A", "#1 buy_and_hold on A", "#2 flat on A"]
    # the per-bar validation equity drawn is the one the run's metrics were computed from
    exp, run = latest_run(rlake, "ppo")
    val = validation_equity(rlake, exp, run)
    metrics = {m["strategy"]: m for m in rlake.read(run.results["metrics"]).to_pylist()}
    for name, (ts, equity) in val["equity"].items():
        assert len(ts) == len(equity) == len(val["ts"]) - val["split"]
        assert equity[-1] == pytest.approx(metrics[name]["final_equity"], rel=1e-12)


def test_a_sweep_of_18_curves_draws_12_and_names_the_6_left_out(rlake, tmp_path):
    png = tmp_path / "sweep.png"
    r = cli(experiments, rlake, "plot", "sweep", "--out", str(png), "--max-lines", "12", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert is_png(png) and out["lines"] == 12 and out["total"] == 18 and len(out["left_out"]) == 6
    assert out["selection"] == "12 of 18 curves: the 6 best by total return on each symbol (--max-lines)"
    for symbol in ("A", "B"):
        drawn = [c["total_return"] for c in out["drawn"] if c["symbol"] == symbol]
        left = [c["total_return"] for c in out["left_out"] if c["symbol"] == symbol]
        assert len(drawn) == 6 and len(left) == 3 and min(drawn) >= max(left)
    assert all(re.fullmatch(r"#\d fast=\d+ slow=\d+ on [AB]", c["label"]) for c in out["left_out"])

    human = cli(experiments, rlake, "plot", "sweep", "--out", str(png))
    assert human.exit_code == 0 and human.stdout == f"{png}\n"
    lines = human.stderr.splitlines()
    assert lines[0] == "drew 12 of 18 curves: the 6 best by total return on each symbol (--max-lines)"
    assert lines[1] == "left out 6 (raise --max-lines to draw them):"
    assert lines[2:] == [f"  {c['label']}" for c in out["left_out"]]


def test_choose_curves_splits_the_budget_over_symbols_and_keeps_the_best():
    curves = [Curve(c, s, f"n={c}", float(c if s == "A" else -c), 1.0) for c in range(4) for s in ("A", "B", "C")]
    drawn, left, selection = choose_curves(curves, 5)
    assert {(c.combo, c.symbol) for c in drawn} == {(3, "A"), (2, "A"), (0, "B"), (1, "B"), (0, "C")}
    assert len(left) == 7 and selection == "5 of 12 curves: the best by total return on each symbol (--max-lines)"
    assert choose_curves(curves, 12)[1] == []


def test_alert_replay_plots_the_portfolio_by_name(rlake, tmp_path):
    report = plot(rlake, "alerts", str(tmp_path / "alerts.png"), max_lines=12)
    assert is_png(report.out) and [c.label for c in report.drawn] == [
        "#0 max_concurrent=1 on portfolio",
        "#1 max_concurrent=5 on portfolio",
    ]
    shown = cli(experiments, rlake, "compare", "alerts")
    assert "portfolio" in shown.stdout and "*" not in shown.stdout


def test_compare_lists_fixed_and_swept_parameters_and_formats_like_show(rlake):
    r = cli(experiments, rlake, "compare", "sweep", "ppo")
    assert r.exit_code == 0, r.output
    exp = get_experiment(rlake.db, "sweep")
    assert f"sweep ({exp.id[:12]}) sma_cross: fixed: direction=both; swept: fast, slow" in r.stdout
    assert "ppo (" in r.stdout and "train: fixed: env.episode_length=64, env.symbol=A, env.window=8" in r.stdout
    row = next(line for line in r.stdout.splitlines() if "sweep #4 " in line and " A " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:3] == ["sweep #4", "A", "fast=10, slow=60"]
    assert re.fullmatch(r"[+-]\d+\.\d\d%", cells[3]) and re.fullmatch(r"-?\d+\.\d\d", cells[4])  # return, Sharpe
    assert re.fullmatch(r"[+-]\d+\.\d\d%", cells[5]) and re.fullmatch(r"\d{1,3}(,\d{3})*\.\d\d", cells[7])
    for label in ("ppo policy", "ppo buy_and_hold", "ppo flat"):
        assert label in r.stdout

    rows = json.loads(cli(experiments, rlake, "compare", "sweep", "ppo", "--json").stdout)
    first = rows[0]
    assert first["params"] == {"direction": "both", "fast": 5, "slow": 30} and first["swept"] == ["fast", "slow"]
    assert isinstance(first["total_return"], float) and first["symbol"] == "A"  # raw numbers in JSON
    assert [r["strategy"] for r in rows[-3:]] == ["policy", "buy_and_hold", "flat"]


def test_show_labels_the_metrics_of_a_train_experiment(rlake):
    r = cli(experiments, rlake, "show", "ppo")
    assert r.exit_code == 0, r.output
    for label in ("policy", "buy_and_hold", "flat"):
        assert re.search(rf"│\s+\d │ A\s+│ {label}\s+│", r.stdout), label


def test_cat_selects_columns_and_names_the_available_ones_for_an_unknown_one(rlake):
    metrics = "exp/sweep/metrics"
    rows = json.loads(cli(lake, rlake, "cat", metrics, "--limit", "2", "--columns", "symbol, sharpe", "--json").stdout)
    assert [list(r) for r in rows] == [["symbol", "sharpe"], ["symbol", "sharpe"]]
    narrow = cli(lake, rlake, "cat", metrics, "--limit", "2", "--columns", "combo,symbol")
    assert narrow.exit_code == 0 and narrow.stdout.splitlines()[1].split() == ["┃", "combo", "┃", "symbol", "┃"]

    bad = cli(lake, rlake, "cat", metrics, "--columns", "symbol,sharp")
    available = ", ".join(rlake.read(rlake.resolve(metrics)).column_names)
    assert bad.exit_code == 2
    assert bad.stderr == f"error: unknown column 'sharp' (did you mean 'sharpe'?); available: {available}\n"


def test_a_table_wider_than_the_terminal_is_shown_whole_one_row_per_block(rlake):
    r = cli(lake, rlake, "cat", "exp/sweep/metrics", "--limit", "2", columns=120)
    assert r.exit_code == 0 and "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 120
    names = rlake.read(rlake.resolve("exp/sweep/metrics")).column_names
    assert len(names) > 12
    for name in names:  # every column name in full, at the start of its own line, in each row's block
        assert len(re.findall(rf"^{name}\s", r.stdout, flags=re.M)) == 2
    assert re.search(r"^row 1 ─+$", r.stdout, flags=re.M) and re.search(r"^final_equity\s+\d+\.\d+", r.stdout, re.M)


def test_a_large_sweep_plots_the_curves_it_kept_and_says_how_many(rlake, tmp_path):
    spec = SWEEP.replace('name = "sweep"', 'name = "large"').replace(
        "fast = [5, 10, 20]\nslow = [30, 60, 90]",
        "fast = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\nslow = [20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40]",
    )
    create(rlake, parse_spec(spec + "[results]\nbest = 2\n"))
    execute(rlake, "large")
    report = plot(rlake, "large", str(tmp_path / "large.png"))
    kept = 2 * len({c.symbol for c in report.drawn})
    assert len(report.drawn) == kept and (tmp_path / "large.png").stat().st_size > 10_000
    assert f"equity kept for {kept} of {121 * kept // 2} by the spec's [results]" in report.selection


def test_a_portfolio_plots_its_exposure(rlake, tmp_path):
    spec = 'name = "mom"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "xs_momentum"\n'
    create(rlake, parse_spec(spec + "every = 24\n[sweep]\nlookback = [10, 30]\n"))
    execute(rlake, "mom")
    report = plot(rlake, "mom", str(tmp_path / "mom.png"))
    assert [c.symbol for c in report.drawn] == ["*", "*"] and (tmp_path / "mom.png").stat().st_size > 10_000


def test_compare_takes_any_runs_such_as_two_runs_of_one_experiment(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A",), bars=400, seed=3, step_s=3600), "ohlcv", name="px")
    exp, _ = create(lk, parse_spec(SWEEP))
    first = execute(lk, exp.id)
    second = execute(lk, exp.id, force=True)
    r = cli(experiments, lk, "compare", "--run", first.id[:10], "--run", second.id, "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["run"] for row in rows] == [first.id] * 9 + [second.id] * 9
    assert [row["total_return"] for row in rows[:9]] == [row["total_return"] for row in rows[9:]]
    refused = cli(experiments, lk, "compare")
    assert refused.exit_code == 2 and "name experiments to compare, or runs with --run ID" in refused.output
    missing = cli(experiments, lk, "compare", "--run", "ffffffff")
    assert missing.exit_code != 0 and "no run matches 'ffffffff'" in missing.output
    lk.close()
