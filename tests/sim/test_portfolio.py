"""Portfolio backtests (issue 14): hand-checked cases, accounting properties, determinism, JIT parity."""

from __future__ import annotations

import hashlib
import os
import subprocess

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.sim import Bars, Execution, Panel, equal_weight, run, run_portfolio, xs_momentum
from artifact_lake.sim import plugins as P
from tests.conftest import PYTHON, subprocess_env
from tests.sim._scenarios import random_bars

H = 3_600_000_000  # one hour in microseconds
NAN = np.nan


def bars(opens, closes, rows=None) -> Bars:
    o, c = np.asarray(opens, float), np.asarray(closes, float)
    t = np.arange(len(o), dtype=np.int64) * H if rows is None else np.asarray(rows, dtype=np.int64) * H
    return Bars.from_arrays(t, o, np.maximum(o, c), np.minimum(o, c), c, np.full(len(o), 1e6))


def test_sells_fill_before_buys_so_the_buy_gets_the_freed_cash():
    """Cash 1,000, fee 1 %, whole units. Hold B, then switch to A (column 0, before B in symbol order).

    bar 1 open: B 49 units at 20 (floor(1000 / 20.2)): notional 980, fee 9.80, cash 10.20.
    bar 3 open: sell B 49 at 40: 1960, fee 19.60, cash 1950.60; buy A floor(1950.60 / 10.1) = 193 at 10:
    notional 1930, fee 19.30, cash 1.30; equity 1.30 + 193 x 10 = 1931.30.
    Buying A first would have found 10.20 in cash: one unit."""
    a = bars([10, 10, 10, 10], [10, 10, 10, 10])
    b = bars([20, 20, 40, 40], [20, 20, 40, 40])
    panel = Panel.from_bars({"A": a, "B": b})
    w = np.full((4, 2), NAN)
    w[0] = [0.0, 1.0]
    w[2] = [1.0, 0.0]
    r = run_portfolio(panel, w, Execution(cash=1000, fee_bps=100, units="whole"))
    assert r.positions.tolist() == [[0, 0], [0, 49], [0, 49], [193, 0]]
    assert r.cash == pytest.approx([1000, 10.20, 10.20, 1.30], abs=1e-9)
    assert r.equity == pytest.approx([1000, 990.20, 1970.20, 1931.30], abs=1e-9)
    assert r.fills["symbol"].tolist() == [1, 1, 0]  # the sell of B comes before the buy of A
    assert r.fills["size"].tolist() == [49, -49, 193]
    assert r.fills["fees"] == pytest.approx([9.80, 19.60, 19.30], abs=1e-9)
    assert r.metrics["fees"] == pytest.approx(48.70, abs=1e-9)
    assert r.metrics["final_equity"] == pytest.approx(1931.30, abs=1e-9)
    assert r.metrics["n_fills"] == 3 and r.metrics["rebalances"] == 2


def test_a_missing_bar_is_not_traded_and_is_valued_at_the_last_close():
    """B has no bar at t2. Half and half at bar 1's open (A 50 at 10, B 25 at 20); the order to go flat at
    bar 2 sells A at 11 but skips B, which keeps its 25 units valued at its bar-1 close (21)."""
    a = bars([10, 10, 11, 12], [10, 11, 12, 13])
    b = bars([20, 20, 22], [20, 21, 24], rows=[0, 1, 3])
    panel = Panel.from_bars({"A": a, "B": b})
    assert panel.mask.tolist() == [[True, True], [True, True], [True, False], [True, True]]
    w = np.full((4, 2), NAN)
    w[0] = [0.5, 0.5]
    w[1] = [0.0, 0.0]
    r = run_portfolio(panel, w, Execution(cash=1000, units="fractional"))
    assert r.positions.tolist() == [[0, 0], [50, 25], [0, 25], [0, 25]]
    assert r.cash.tolist() == [1000, 0, 550, 550]
    assert r.equity.tolist() == [1000, 1075, 1075, 1150]
    assert r.metrics["skipped_orders"] == 1
    assert r.position_changes()["symbol"].tolist() == ["A", "B", "A"]


def test_fill_at_close_uses_the_decision_bar_close():
    a = bars([10, 10, 10], [10, 12, 15])
    panel = Panel.from_bars({"A": a})
    w = np.array([[NAN], [1.0], [NAN]])
    r = run_portfolio(panel, w, Execution(cash=1200, fill="close", units="fractional"))
    assert r.positions[:, 0].tolist() == [0, 100, 100]
    assert r.equity.tolist() == [1200, 1200, 1500]


def test_from_table_builds_the_union_of_timestamps():
    t = pa.table(
        {
            "ts": pa.array([0, H, 2 * H, H, 3 * H], pa.int64()),
            "symbol": ["X", "X", "X", "Y", "Y"],
            "open": [1.0, 2, 3, 4, 5],
            "high": [1.0, 2, 3, 4, 5],
            "low": [1.0, 2, 3, 4, 5],
            "close": [1.0, 2, 3, 4, 5],
            "volume": [1.0, 1, 1, 1, 1],
        }
    )
    p = Panel.from_table(t)
    assert p.symbols == ("X", "Y") and p.ts.tolist() == [0, H, 2 * H, 3 * H]
    assert p.mask.tolist() == [[True, False], [True, True], [True, False], [False, True]]
    lc = p.last_close()
    assert np.isnan(lc[0, 1]) and lc[:, 0].tolist() == [1, 2, 3, 3] and lc[1:, 1].tolist() == [4, 4, 5]
    # computed once per panel (a sweep asks once per combination) and read-only, so no caller can change it
    assert p.last_close() is lc and not lc.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        lc[0, 0] = 9.0
    assert p.slice(1, 4).last_close()[:, 0].tolist() == [2, 3, 3]  # a slice is a panel of its own


def test_one_symbol_weight_one_equals_the_single_symbol_buy_and_hold():
    b = random_bars(3, 400)
    for ex in (
        Execution(fee_bps=20, slippage_bps=5),
        Execution(units="fractional", fee_bps=7),
        Execution(units="fractional"),
    ):
        target = np.full(len(b), NAN)
        target[0] = 1.0
        single = run(b, target, ex, mode="target")
        w = target[:, None].copy()
        port = run_portfolio(Panel.from_bars({"S": b}), w, ex)
        np.testing.assert_allclose(port.equity, single.equity, rtol=1e-9)
        np.testing.assert_allclose(port.positions[:, 0], single.position, rtol=1e-9)
        np.testing.assert_allclose(port.cash, single.cash, rtol=1e-9, atol=1e-9)
        for k in ("final_equity", "max_drawdown", "max_drawdown_bars", "mean_return", "std_return", "fees"):
            assert port.metrics[k] == pytest.approx(single.metrics[k], rel=1e-9, abs=1e-12), k


def random_panel(seed: int, n: int, m: int) -> Panel:
    rng = np.random.default_rng(seed)
    out = {}
    for j in range(m):
        b = random_bars(seed * 31 + j, n)
        keep = rng.random(n) < 0.85
        keep[rng.integers(0, n)] = True
        out[f"S{j}"] = b.slice(0, n) if keep.all() else Bars(*(getattr(b, f)[keep] for f in _BAR_FIELDS))
    return Panel.from_bars(out)


_BAR_FIELDS = ("ts", "open", "high", "low", "close", "volume")


def random_weights(seed: int, panel: Panel, short: bool) -> np.ndarray:
    rng = np.random.default_rng(seed + 7)
    n, m = panel.shape
    w = rng.uniform(-1 if short else 0, 1, (n, m)) / m * rng.uniform(0.5, 2)
    w[rng.random(n) < 0.7] = NAN
    w[rng.random((n, m)) < 0.1] = NAN
    return w


executions = st.builds(
    Execution,
    fill=st.sampled_from(["next_open", "close"]),
    latency_bars=st.integers(0, 2),
    fee_bps=st.floats(0, 50),
    slippage_bps=st.floats(0, 30),
    units=st.sampled_from(["whole", "fractional"]),
    leverage=st.floats(0.5, 3),
    participation=st.one_of(st.none(), st.floats(0.01, 1)),
)


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 150),
    m=st.integers(1, 5),
    ex=executions,
    short=st.booleans(),
    min_trade=st.sampled_from([0.0, 0.01, 0.1]),
)
def test_equity_is_cash_plus_positions_at_last_close_every_bar(seed, n, m, ex, short, min_trade):
    panel = random_panel(seed, n, m)
    w = random_weights(seed, panel, short)
    r = run_portfolio(panel, w, ex, direction="both" if short else "long", min_trade=min_trade)
    held = np.where(r.positions != 0, r.positions * np.nan_to_num(panel.last_close()), 0.0)
    np.testing.assert_allclose(r.equity, r.cash + held.sum(axis=1), rtol=1e-12, atol=1e-9)
    assert r.metrics["final_equity"] == r.equity[-1]
    assert r.metrics["fees"] == pytest.approx(r.fills["fees"].sum(), rel=1e-9, abs=1e-12)
    # a symbol never trades at a bar it does not have
    assert panel.mask[r.fills["bar"], r.fills["symbol"]].all()
    # positions change only through fills
    pos = np.zeros(panel.shape)
    np.add.at(pos, (r.fills["bar"], r.fills["symbol"]), r.fills["size"])
    np.testing.assert_allclose(np.cumsum(pos, axis=0), r.positions, atol=1e-9)
    if not short:
        assert (r.positions >= 0).all()
        if ex.leverage <= 1:
            assert (r.cash >= 0).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), ex=executions, short=st.booleans())
def test_same_inputs_give_byte_identical_outputs(seed, ex, short):
    panel = random_panel(seed, 120, 4)
    w = random_weights(seed, panel, short)
    d = "both" if short else "long"
    one, two = run_portfolio(panel, w, ex, direction=d), run_portfolio(panel, w, ex, direction=d)
    for f in ("equity", "cash", "positions", "gross_exposure", "net_exposure", "fills"):
        assert getattr(one, f).tobytes() == getattr(two, f).tobytes()
    assert repr(one.metrics) == repr(two.metrics)


def digest() -> str:
    """A fixed set of portfolio runs, hashed; compared compiled and under NUMBA_DISABLE_JIT=1."""
    h = hashlib.sha256()
    panel = random_panel(11, 200, 4)
    cases = [
        (equal_weight(panel, every=10), Execution(fee_bps=20), "long"),
        (xs_momentum(panel, lookback=5, top_k=2, every=7), Execution(units="fractional", slippage_bps=5), "long"),
        (random_weights(3, panel, True), Execution(fill="close", leverage=2, participation=0.3), "both"),
    ]
    for w, ex, d in cases:
        r = run_portfolio(panel, w, ex, direction=d, min_trade=0.01)
        for a in (r.equity, r.cash, r.positions, r.gross_exposure, r.net_exposure, r.fills):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(sorted(r.metrics.items())).encode())
    return h.hexdigest()


def test_kernel_without_jit_equals_the_compiled_run():
    env = subprocess_env(NUMBA_DISABLE_JIT="1")
    code = "import sys; from tests.sim.test_portfolio import digest; sys.stdout.write(digest())"
    out = subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == digest()


def test_leverage_caps_gross_exposure_and_long_only_refuses_short_weights():
    """Weights 1 and 1 with leverage 1.5: scaled to 0.75 each, 75 units at 10 per symbol, cash -500 (the
    floor is -(1.5 - 1) x 1,000)."""
    flat = bars([10, 10, 10], [10, 10, 10])
    panel = Panel.from_bars({"A": flat, "B": flat})
    w = np.array([[1.0, 1.0], [NAN, NAN], [NAN, NAN]])
    r = run_portfolio(panel, w, Execution(cash=1000, units="fractional", leverage=1.5))
    assert r.positions[1].tolist() == [75, 75] and r.cash[1] == -500
    assert r.gross_exposure[1] == 1.5 and r.net_exposure[1] == 1.5
    with pytest.raises(ValueError, match="short but direction is 'long'"):
        run_portfolio(panel, -w)
    with pytest.raises(ValueError, match="stop_loss does not apply"):
        run_portfolio(panel, w, Execution(stop_loss=0.1))


def test_builtins_are_registered_portfolio_strategies_and_keep_the_output_contract():
    panel = random_panel(2, 100, 6)
    for name, values in (("xs_momentum", {"lookback": 5, "top_k": 2, "every": 10}), ("equal_weight", {})):
        plugin = P.get("portfolio_strategy", name)
        assert plugin is not None and plugin.builtin
        w = P.check_weights(plugin, plugin(panel, values), panel.shape, values)
        rows = ~np.isnan(w).all(axis=1)
        assert (np.nansum(w[rows], axis=1) <= 1 + 1e-12).all()
    w = xs_momentum(panel, lookback=5, top_k=2, every=10)
    assert ((w > 0).sum(axis=1)[~np.isnan(w).all(axis=1)] <= 2).all()
    with pytest.raises(ValueError, match="top_k"):
        xs_momentum(panel, top_k=0)
