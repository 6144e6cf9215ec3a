"""Every ``--json`` output is strict JSON: NaN and infinities come out as ``null``, never as bare tokens."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import START_US
from artifact_lake.cli._render import emit_json, strict
from artifact_lake.cli.main import experiments, lake
from artifact_lake.experiments import create, execute, parse_spec
from artifact_lake.projections import Lake

ZERO_TRADES = """
name = "zero"
kind = "backtest"
[inputs]
ohlcv = ["flat"]
[strategy]
name = "sma_cross"
fast = 5
slow = 20
"""


def _refuse(token: str) -> None:
    raise AssertionError(f"non-strict JSON token {token}")


def loads(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as browsers, jq and most languages do."""
    return json.loads(text, parse_constant=_refuse)


@pytest.fixture
def zero_lake(tmp_path):
    """A lake with a constant price: the moving averages never cross, so the run has no trades and
    undefined ratios (Sharpe, Sortino, win rate, profit factor are NaN in the metrics artifact)."""
    n = 300
    ts = START_US + np.arange(n, dtype=np.int64) * 3_600_000_000
    flat = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "symbol": ["FLAT"] * n,
            **{k: np.full(n, 100.0) for k in ("open", "high", "low", "close")},
            "volume": np.full(n, 1.0),
        }
    )
    lk = Lake.open(tmp_path / "lake")
    lk.publish(flat, "ohlcv", name="flat")
    run = execute(lk, create(lk, parse_spec(ZERO_TRADES))[0].id)
    metrics = lk.read(run.results["metrics"]).to_pylist()
    assert metrics[0]["n_trades"] == 0 and math.isnan(metrics[0]["sharpe"])  # the premise of these tests
    yield lk, run
    lk.close()


def test_experiment_json_outputs_turn_nan_metrics_into_null(zero_lake, tmp_path):
    lk, run = zero_lake
    root = str(lk.root)

    def out(group, *args: str):
        r = CliRunner().invoke(group, ["--lake", root, *args, "--json"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return loads(r.stdout)

    shown = out(experiments, "show", "zero")
    assert shown["metrics"][0]["n_trades"] == 0
    assert shown["metrics"][0]["sharpe"] is None and shown["metrics"][0]["profit_factor"] is None
    assert shown["metrics"][0]["total_return"] == 0.0  # finite numbers stay numbers

    compared = out(experiments, "compare", "zero", "zero")
    assert len(compared) == 2 and all(r["sharpe"] is None for r in compared)
    assert compared[0]["params"] == {"direction": "long", "fast": 5, "slow": 20}

    listed = out(experiments, "list")
    assert listed[0]["name"] == "zero" and listed[0]["latest_run"]["status"] == "succeeded"

    plotted = out(experiments, "plot", "zero", "--out", str(tmp_path / "zero.png"))
    assert plotted["lines"] == 1 and plotted["drawn"][0]["sharpe"] is None

    rows = out(lake, "cat", run.results["metrics"])
    assert rows[0]["sharpe"] is None and rows[0]["sortino"] is None


def test_strict_converts_nested_and_numpy_non_finite_floats():
    value = {
        "a": float("nan"),
        "b": [1.5, float("inf"), (np.float64("-inf"), np.float32("nan"))],
        "c": np.array([1.0, np.nan]),
        "d": np.int64(3),
        "e": {"f": np.float64(2.5)},
        "g": "NaN",
    }
    assert strict(value) == {
        "a": None,
        "b": [1.5, None, [None, None]],
        "c": [1.0, None],
        "d": 3,
        "e": {"f": 2.5},
        "g": "NaN",
    }


def test_emit_json_prints_strict_json(capsys):
    emit_json({"sharpe": float("nan"), "cagr": float("inf"), "n": np.int64(2)})
    assert loads(capsys.readouterr().out) == {"sharpe": None, "cagr": None, "n": 2}


def test_query_json_to_a_file_is_strict_too(tmp_path, ohlcv):
    with Lake.open(tmp_path / "lk") as lk:
        lk.publish(ohlcv, "ohlcv", name="px")
    out = tmp_path / "q.json"
    sql = "SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, 1.5::DOUBLE AS c"
    r = CliRunner().invoke(
        lake, ["--lake", str(tmp_path / "lk"), "query", "--spec", "ohlcv", "--input", "ohlcv=px", sql,
               "--format", "json", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert loads(out.read_text()) == [{"a": None, "b": None, "c": 1.5}]
