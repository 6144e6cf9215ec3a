from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.sim import Execution, run, run_grid, sma_cross
from tests.conftest import PYTHON, subprocess_env
from tests.sim._scenarios import digest, random_bars

executions = st.builds(
    Execution,
    fill=st.sampled_from(["next_open", "close"]),
    latency_bars=st.integers(0, 3),
    fee_bps=st.floats(0, 50),
    slippage_bps=st.floats(0, 30),
    stop_loss=st.one_of(st.none(), st.floats(0.005, 0.2)),
    take_profit=st.one_of(st.none(), st.floats(0.005, 0.3)),
    trailing_stop=st.one_of(st.none(), st.floats(0.005, 0.2)),
    sizing=st.sampled_from(["all_in", "fraction", "notional"]),
    size=st.floats(0.1, 1.0),
    units=st.sampled_from(["whole", "fractional"]),
    leverage=st.floats(0.5, 3),
    participation=st.one_of(st.none(), st.floats(0.01, 1)),
    remainder=st.sampled_from(["cancel", "carry"]),
    max_hold_bars=st.integers(0, 30),
    close_at_end=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 400), ex=executions, mode=st.sampled_from(["signal", "target"]))
def test_accounting_identity_final_equity_is_cash_plus_trade_pnl(seed, n, ex, mode):
    b = random_bars(seed, n)
    rng = np.random.default_rng(seed + 1)
    if ex.sizing == "notional":
        ex = Execution(**(ex.to_dict() | {"size": ex.size * ex.cash}))
    if mode == "signal":
        target = rng.choice([np.nan, np.nan, np.nan, -1.0, 0.0, 1.0], n)
    else:
        target = np.where(rng.random(n) < 0.3, np.round(rng.uniform(-1, 1, n), 2), np.nan)
    res = run(b, target, ex, mode=mode)
    final = res.metrics["final_equity"]
    assert final == pytest.approx(ex.cash + res.trades["pnl"].sum(), rel=1e-9, abs=1e-6)
    assert final == res.equity[-1]
    assert res.equity[-1] == pytest.approx(res.cash[-1] + res.position[-1] * b.close[-1], rel=1e-12, abs=1e-9)
    assert res.metrics["fees"] == pytest.approx(res.trades["fees"].sum(), rel=1e-9, abs=1e-9)
    closed = res.trades[res.trades["exit_idx"] >= 0]
    assert (closed["exit_idx"] >= closed["entry_idx"]).all()
    assert (res.trades["mae"] <= 0).all() and (res.trades["mfe"] >= 0).all()
    # n_trades counts closed trades (backtesting.py's "# Trades"); the position open at the end is apart
    assert res.metrics["n_trades"] == len(closed)
    assert res.metrics["open_trades"] == len(res.trades) - len(closed) == (res.position[-1] != 0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), ex=executions)
def test_same_inputs_give_byte_identical_outputs(seed, ex):
    b = random_bars(seed, 300)
    sig = sma_cross(b.close, 3, 12, "both")
    one, two = run(b, sig, ex), run(b, sig, ex)
    for a, c in ((one.trades, two.trades), (one.equity, two.equity), (one.position, two.position)):
        assert a.tobytes() == c.tobytes()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), ex=executions)
def test_a_sweep_combination_equals_the_same_run_alone(seed, ex):
    b = random_bars(seed, 500)
    fasts, slows = [2, 4, 5, 9], [10, 12, 30, 25]
    grid = run_grid(b, fasts, slows, ex, direction="both")
    for f, s, m in zip(fasts, slows, grid, strict=True):
        alone = run(b, sma_cross(b.close, f, s, "both"), ex).metrics
        assert {k: v for k, v in m.items() if k != "status"} == pytest.approx(alone, nan_ok=True, rel=0, abs=0)


def test_kernels_without_jit_equal_the_compiled_run():
    compiled = digest()
    env = subprocess_env(NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [PYTHON, "-m", "tests.sim._scenarios"],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == compiled


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 300), ex=executions)
def test_equity_and_excursions_follow_the_bars_a_trade_lived_through(seed, n, ex):
    """The kernel skips quiet bars (no order, no stop to check) and tracks excursions as a trade lives:
    every bar still obeys equity = cash + position x close, and each trade's MAE/MFE are those of its
    fills and of the bars it held through whole (from the entry bar if it filled at the open, to the exit
    bar if it exited at the close)."""
    scale = ex.cash if ex.sizing == "notional" else 1.0
    ex = Execution(**(ex.to_dict() | {"slippage_bps": 0.0, "participation": None, "size": ex.size * scale}))
    b = random_bars(seed, n)
    target = np.random.default_rng(seed + 2).choice([np.nan, np.nan, np.nan, -1.0, 0.0, 1.0], n)
    res = run(b, target, ex)
    assert (res.equity == res.cash + res.position * b.close).all()
    at_close_exits = {"max_hold", "end", "bankrupt"} | ({"signal"} if ex.fill == "close" else set())
    rows = res.trade_rows(b.ts)
    for k in range(len(res.trades)):
        entry, exit_ = int(rows["entry_idx"][k]), int(rows["exit_idx"][k])
        first = entry if ex.fill == "next_open" else entry + 1
        if exit_ < 0:
            last = n - 1
        else:
            last = exit_ if rows["exit_reason"][k] in at_close_exits else exit_ - 1
        px = [rows["entry_price"][k]] + ([rows["exit_price"][k]] if exit_ >= 0 else [])
        lo = min(px + list(b.low[first : last + 1]))
        hi = max(px + list(b.high[first : last + 1]))
        e = rows["entry_price"][k]
        if rows["side"][k] > 0:
            mae, mfe = min(lo / e - 1, 0.0), max(hi / e - 1, 0.0)
        else:
            mae, mfe = min(1 - hi / e, 0.0), max(1 - lo / e, 0.0)
        assert rows["mae"][k] == pytest.approx(mae, rel=1e-9, abs=1e-12)
        assert rows["mfe"][k] == pytest.approx(mfe, rel=1e-9, abs=1e-12)
