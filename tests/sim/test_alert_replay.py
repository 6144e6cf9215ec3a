from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.sim import AlertPolicy, Bars, alert_replay
from tests.sim._scenarios import random_bars

MIN = 60_000_000


def flat(prices_open, high=None, low=None, close=None, start=0):
    o = np.asarray(prices_open, float)
    n = len(o)
    c = o.copy() if close is None else np.asarray(close, float)
    h = np.maximum(o, c) if high is None else np.maximum.reduce([np.asarray(high, float), o, c])
    lo = np.minimum(o, c) if low is None else np.minimum.reduce([np.asarray(low, float), o, c])
    return Bars.from_arrays(start + np.arange(n, dtype=np.int64) * MIN, o, h, lo, c, np.full(n, 1e6))


def test_entry_is_the_first_bar_strictly_after_the_alert_plus_latency():
    b = {"X": flat([100, 101, 102, 103, 104, 105])}
    r = alert_replay(b, [MIN, MIN + 1], ["X", "X"], ["buy", "buy"], AlertPolicy(latency_bars=1, max_concurrent=5))
    a = r["alerts"]
    assert a["entry_ts"].tolist() == [3 * MIN, 3 * MIN]  # bar 2 is the first strictly after, +1 latency
    assert a["entry_price"].tolist() == [103, 103]
    assert a["exit_reason"].tolist() == ["end", "end"] and a["exit_price"].tolist() == [105, 105]


def test_take_profit_ladder_closes_in_parts_and_the_stop_wins_ties():
    b = {"X": flat([100, 100, 100, 100, 100], high=[100, 100, 101.5, 100, 103], low=[100, 100, 100, 100, 100])}
    pol = AlertPolicy(take_profit=(0.01, 0.03), take_profit_sizes=(0.5, 0.5), stop_loss=0.05)
    r = alert_replay(b, [0], ["X"], ["buy"], pol)["alerts"]
    # bar 2 reaches +1 % (half out at 101), bar 4 reaches +3 % (rest at 103)
    assert r["exit_reason"].tolist() == ["take_profit"] and r["exit_price"][0] == pytest.approx(102)
    assert r["return"][0] == pytest.approx(0.02) and r["bars_to_exit"][0] == 3
    tie = {"X": flat([100, 100, 100], high=[100, 100, 106], low=[100, 100, 94])}
    r2 = alert_replay(tie, [0], ["X"], ["sell"], AlertPolicy(take_profit=(0.05,), stop_loss=0.05))["alerts"]
    assert r2["exit_reason"].tolist() == ["stop_loss"] and r2["exit_price"][0] == pytest.approx(105)
    assert r2["return"][0] == pytest.approx(-0.05) and r2["mae"][0] == pytest.approx(-0.05)


def test_capacity_cap_and_unknown_symbols_and_alerts_after_the_data():
    b = {"X": flat([100] * 10), "Y": flat([50] * 10)}
    ts = [0, 0, 0, 20 * MIN, 0]
    syms = ["X", "Y", "X", "X", "Z"]
    r = alert_replay(b, ts, syms, ["buy"] * 5, AlertPolicy(max_concurrent=2, max_hold_bars=3))
    assert r["alerts"]["status"].tolist() == ["filled", "filled", "capacity", "no_data", "no_data"]
    assert r["unknown_symbols"] == ["Z"]


def test_size_is_a_fraction_of_equity_at_entry_and_cash_limits_it():
    b = {"X": flat([100] * 6)}
    r = alert_replay(b, [0, MIN, 2 * MIN], ["X"] * 3, ["buy"] * 3, AlertPolicy(size=0.6, max_concurrent=5))["alerts"]
    assert r["units"][0] == pytest.approx(60)  # 0.6 x 10,000 / 100
    assert r["units"][1] == pytest.approx(40)  # 0.6 x 10,000 wanted, 4,000 cash left
    assert r["status"][2] == "no_cash"


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 500),
    k=st.integers(1, 60),
    cap=st.integers(1, 8),
    fee=st.floats(0, 30),
    tp=st.sampled_from([(), (0.01,), (0.005, 0.02)]),
    sl=st.one_of(st.none(), st.floats(0.002, 0.05)),
)
def test_portfolio_equity_is_cash_plus_alert_pnl(seed, k, cap, fee, tp, sl):
    bars = {"A": random_bars(seed, 300), "B": random_bars(seed + 7, 250)}
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 320, k)) * 3_600_000_000
    syms = rng.choice(["A", "B"], k)
    sides = rng.choice(["buy", "sell"], k)
    pol = AlertPolicy(
        take_profit=tp, stop_loss=sl, max_concurrent=cap, fee_bps=fee, max_hold_bars=int(rng.integers(0, 40))
    )
    r = alert_replay(bars, ts, syms, sides, pol)
    filled = r["alerts"]["status"] == "filled"
    assert r["equity"][-1] == pytest.approx(pol.cash + r["alerts"]["pnl"][filled].sum(), rel=1e-9)
    assert r["open"].max() <= cap
    assert (r["alerts"]["mae"][filled] <= 0).all() and (r["alerts"]["mfe"][filled] >= 0).all()
