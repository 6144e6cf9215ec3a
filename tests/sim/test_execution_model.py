"""The execution model, bar by bar, on hand-made prices where every number can be checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from artifact_lake.sim import Bars, Execution, run
from artifact_lake.sim.records import EXIT_REASONS

NAN = np.nan


def bars(o, h=None, lo=None, c=None, v=None):
    o = np.asarray(o, float)
    n = len(o)
    h = o * 1.0 if h is None else np.asarray(h, float)
    lo = o * 1.0 if lo is None else np.asarray(lo, float)
    c = o * 1.0 if c is None else np.asarray(c, float)
    return Bars.from_arrays(
        np.arange(n, dtype=np.int64) * 60_000_000, o, np.maximum.reduce([h, o, c]), np.minimum.reduce([lo, o, c]), c, v
    )


def reasons(res):
    return [EXIT_REASONS[r] for r in res.trades["exit_reason"]]


def test_next_open_fill_whole_units_fees_on_notional():
    b = bars([100, 101, 102, 110, 111], c=[100.5, 101.5, 105, 110.5, 111.5])
    res = run(b, [1, NAN, 0, NAN, NAN], Execution(cash=1000, fee_bps=100))
    (t,) = res.trades
    assert (t["entry_idx"], t["exit_idx"]) == (1, 3)
    assert t["entry_price"] == 101 and t["exit_price"] == 110
    assert t["size"] == 9  # floor(1000 / (101 * 1.01)) = floor(9.80)
    fees = 9 * 101 * 0.01 + 9 * 110 * 0.01
    assert t["fees"] == pytest.approx(fees)
    assert t["pnl"] == pytest.approx(9 * (110 - 101) - fees)
    assert res.metrics["final_equity"] == pytest.approx(1000 + t["pnl"])
    assert res.position.tolist() == [0, 9, 9, 0, 0]


def test_close_fill_and_latency():
    b = bars([100, 101, 102, 103, 104], c=[100.5, 101.5, 102.5, 103.5, 104.5])
    at_close = run(b, [1, NAN, NAN, NAN, NAN], Execution(cash=1000, fill="close", units="fractional"))
    assert at_close.trades["entry_idx"][0] == 0 and at_close.trades["entry_price"][0] == 100.5
    late = run(b, [1, NAN, NAN, NAN, NAN], Execution(cash=1000, latency_bars=2))
    assert late.trades["entry_idx"][0] == 3 and late.trades["entry_price"][0] == 103
    late_close = run(b, [1, NAN, NAN, NAN, NAN], Execution(cash=1000, fill="close", latency_bars=1))
    assert late_close.trades["entry_price"][0] == 101.5


def test_slippage_moves_fills_against_the_trader_both_ways():
    b = bars([100, 100, 100, 100])
    res = run(b, [-1, NAN, 0, NAN], Execution(cash=1000, slippage_bps=50, units="fractional"))
    (t,) = res.trades
    assert t["side"] == -1
    assert t["entry_price"] == pytest.approx(99.5) and t["exit_price"] == pytest.approx(100.5)
    assert t["pnl"] == pytest.approx(-t["size"] * 1.0)


def test_stop_loss_fills_at_the_stop_or_at_the_open_when_gapped():
    ex = Execution(cash=1000, units="fractional", stop_loss=0.05)
    inside = run(bars([100, 100, 99, 99], lo=[100, 100, 90, 99]), [1, NAN, NAN, NAN], ex)
    assert reasons(inside) == ["stop_loss"] and inside.trades["exit_price"][0] == pytest.approx(95)
    gapped = run(bars([100, 100, 90, 90]), [1, NAN, NAN, NAN], ex)
    assert reasons(gapped) == ["stop_loss"] and gapped.trades["exit_price"][0] == 90
    assert gapped.trades["exit_idx"][0] == 2


def test_stop_wins_when_stop_and_take_profit_share_a_bar():
    ex = Execution(cash=1000, units="fractional", stop_loss=0.05, take_profit=0.05)
    res = run(bars([100, 100, 100, 100], h=[100, 100, 106, 100], lo=[100, 100, 94, 100]), [1, NAN, NAN, NAN], ex)
    assert reasons(res) == ["stop_loss"] and res.trades["exit_price"][0] == pytest.approx(95)
    tp = run(bars([100, 100, 100, 100], h=[100, 100, 106, 100]), [1, NAN, NAN, NAN], ex)
    assert reasons(tp) == ["take_profit"] and tp.trades["exit_price"][0] == pytest.approx(105)


def test_trailing_stop_follows_the_best_price_and_short_stops_mirror():
    ex = Execution(cash=1000, units="fractional", trailing_stop=0.1)
    b = bars([100, 100, 120, 115, 100], h=[100, 100, 130, 120, 105])
    res = run(b, [1, NAN, NAN, NAN, NAN], ex)
    # best high 130 puts the stop at 117; bar 3 opens at 115, below it: filled at that open
    assert reasons(res) == ["trailing_stop"] and res.trades["exit_price"][0] == 115
    assert res.trades["exit_idx"][0] == 3 and res.trades["mfe"][0] == pytest.approx(0.3)
    short = run(
        bars([100, 100, 100, 100], h=[100, 100, 104, 100]),
        [-1, NAN, NAN, NAN],
        Execution(cash=1000, units="fractional", stop_loss=0.03),
    )
    assert reasons(short) == ["stop_loss"] and short.trades["exit_price"][0] == pytest.approx(103)
    # the excursion counts only while the trade was open: the stop filled at 103 before the high of 104
    assert short.trades["pnl"][0] < 0 and short.trades["mae"][0] == pytest.approx(-0.03)


def test_participation_cap_cancels_or_carries_the_rest():
    b = bars([10] * 6, v=[100, 100, 100, 100, 100, 100])
    ex = dict(cash=10_000, units="whole", participation=0.5)
    cancel = run(b, [1, NAN, NAN, NAN, NAN, NAN], Execution(**ex))
    assert cancel.position.tolist() == [0, 50, 50, 50, 50, 50]
    carry = run(b, [1, NAN, NAN, NAN, NAN, NAN], Execution(**ex, remainder="carry"))
    # all in: floor(10000 / 10) = 1000 units, 50 per bar
    assert carry.position.tolist() == [0, 50, 100, 150, 200, 250]
    assert len(carry.trades) == 1 and carry.trades["size"][0] == 250


def test_sizing_fraction_notional_and_leverage_cap():
    b = bars([100, 100, 100])
    frac = run(b, [1, NAN, NAN], Execution(cash=1000, sizing="fraction", size=0.5, units="fractional"))
    assert frac.trades["size"][0] == pytest.approx(5)
    notional = run(b, [1, NAN, NAN], Execution(cash=1000, sizing="notional", size=300))
    assert notional.trades["size"][0] == 3
    capped = run(b, [1, NAN, NAN], Execution(cash=1000, sizing="notional", size=5000, leverage=2))
    assert capped.trades["size"][0] == 20
    levered = run(b, [1, NAN, NAN], Execution(cash=1000, leverage=3))
    assert levered.trades["size"][0] == 29  # floor(3000 * (1 - eps) / 100), not 30: backtesting.py's epsilon


def test_reversal_closes_then_opens_and_max_hold_exits_at_the_close():
    b = bars([100, 100, 110, 110, 120, 120], c=[100, 100, 110, 111, 120, 121])
    rev = run(b, [1, NAN, -1, NAN, NAN, NAN], Execution(cash=1000, units="fractional"))
    assert rev.trades["side"].tolist() == [1, -1] and reasons(rev)[0] == "signal"
    assert rev.trades["exit_idx"][0] == rev.trades["entry_idx"][1] == 3
    held = run(b, [1, NAN, NAN, NAN, NAN, NAN], Execution(cash=1000, max_hold_bars=2))
    assert reasons(held) == ["max_hold"] and held.trades["exit_idx"][0] == 3 and held.trades["exit_price"][0] == 111


def test_target_mode_rebalances_to_fractions_of_equity():
    b = bars([100, 100, 100, 100])
    res = run(b, [1.0, 0.5, -0.5, 0.0], Execution(cash=1000, units="fractional"), mode="target")
    assert res.position[1] == pytest.approx(10) and res.position[2] == pytest.approx(5)
    assert res.position[3] == pytest.approx(-5)
    assert res.trades["side"].tolist() == [1, -1]


def test_bankruptcy_stops_the_run():
    b = bars([100, 100, 300, 300])
    res = run(b, [-1, NAN, NAN, NAN], Execution(cash=1000, leverage=1))
    assert res.status == 1 and reasons(res) == ["bankrupt"]
    assert res.position[-1] == 0 and res.equity[-1] == res.equity[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fill="open"), "execution.fill must be one of next_open, close"),
        (dict(fee_bps=-1), "execution.fee_bps must be between 0 and 10000"),
        (dict(stop_loss=1.5), "execution.stop_loss must be below 1"),
        (dict(latency_bars=-1), "execution.latency_bars must be a whole number >= 0"),
        (dict(units="lots"), "execution.units must be one of fractional, whole"),
        (dict(cash=0), "execution.cash must be a positive number"),
    ],
)
def test_bad_execution_settings_name_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Execution(**kwargs)
    with pytest.raises(ValueError, match="unknown execution setting 'fees_bps' \\(did you mean 'fee_bps'\\?\\)"):
        Execution.from_dict({"fees_bps": 1})


def test_bad_bars_name_the_argument():
    ts = np.arange(3, dtype=np.int64)
    ok = np.ones(3)
    with pytest.raises(ValueError, match="close has 2 values but ts has 3"):
        Bars.from_arrays(ts, ok, ok, ok, ok[:2])
    with pytest.raises(ValueError, match=r"open\[1\] is nan"):
        Bars.from_arrays(ts, [1, np.nan, 1], ok, ok, ok)
    with pytest.raises(ValueError, match=r"low\[2\] is -1.0"):
        Bars.from_arrays(ts, ok, ok, [1, 1, -1], ok)
    with pytest.raises(ValueError, match=r"ts must strictly increase: ts\[2\] = 1 follows 1"):
        Bars.from_arrays([0, 1, 1], ok, ok, ok, ok)
    b = Bars.from_arrays(ts, ok, ok, ok, ok)
    with pytest.raises(ValueError, match="target has"):
        run(b, [1, 0])
    with pytest.raises(ValueError, match="in signal mode target values must be -1, 0, 1 or NaN"):
        run(b, [0.5, 0, 0])
