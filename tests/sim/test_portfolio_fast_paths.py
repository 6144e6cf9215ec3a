"""The portfolio kernel's shortcuts (issue 14, speed) keep its results: rows with every bar valued at the closes,
gross exposure taken from the net one while every symbol is held long, the weights scanned once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.sim import Execution, Panel, equal_weight, run_portfolio
from tests.sim.test_portfolio import bars, random_panel, random_weights

NAN = np.nan
_FIELDS = ("open", "high", "low", "close", "volume")


def every_bar(panel: Panel) -> Panel:
    """The panel with no bar missing (a missing bar's prices set to 1)."""
    arrays = (np.nan_to_num(getattr(panel, f), nan=1.0) for f in _FIELDS)
    return Panel(panel.ts, panel.symbols, *arrays, mask=np.ones(panel.shape, dtype=np.bool_))


def exposures(r, panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """Gross and net exposure from the positions at the last close, summed in symbol order as the kernel does."""
    last = panel.last_close()
    n, m = panel.shape
    gross, net = np.zeros(n), np.zeros(n)
    for k in range(n):
        for j in range(m):
            q = r.positions[k, j]
            if q != 0.0:
                v = q * last[k, j]
                gross[k] += abs(v)
                net[k] += v
    return gross / r.equity, net / r.equity


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 120),
    m=st.integers(1, 5),
    short=st.booleans(),
    fill=st.sampled_from(["next_open", "close"]),
    missing=st.booleans(),
)
def test_exposures_are_the_positions_at_the_last_close(seed, n, m, short, fill, missing):
    panel = random_panel(seed, n, m)
    if not missing:  # the valuation at the closes, the last closes left stale
        panel = every_bar(panel)
    w = equal_weight(panel, every=7) if not short else random_weights(seed, panel, True)
    r = run_portfolio(panel, w, Execution(fill=fill, units="fractional"), direction="both" if short else "long")
    gross, net = exposures(r, panel)
    live = r.equity > 0
    assert np.array_equal(r.gross_exposure[live], gross[live])
    assert np.array_equal(r.net_exposure[live], net[live])


def test_a_negative_value_while_every_symbol_is_held_long_still_sums_gross_exposure():
    """A panel built by hand may hold a negative close: gross exposure is then no longer the net one."""
    p = bars([10, 10, 10, 10], [10, 10, 10, 10])
    panel = Panel.from_bars({"A": p, "B": p})
    close = panel.close.copy()
    close[2, 1] = -5.0
    panel = Panel(panel.ts, panel.symbols, panel.open, panel.high, panel.low, close, panel.volume, panel.mask)
    w = np.full((4, 2), NAN)
    w[0] = [0.5, 0.5]
    r = run_portfolio(panel, w, Execution(cash=1000, units="fractional"))
    assert r.positions[2].tolist() == [50, 50]
    assert r.equity[2] == 250.0  # 0 cash + 500 - 250
    assert r.gross_exposure[2] == 750.0 / 250.0 and r.net_exposure[2] == 250.0 / 250.0
    assert r.gross_exposure[3] == r.net_exposure[3] == 1.0


def test_rows_with_and_without_missing_bars_alternate_across_rebalances():
    """B misses bars 2 and 4; the book is valued at B's last close there, and rebalanced at it on bar 4 (B not
    traded), then valued at the closes again once every bar is back."""
    a = bars([10, 10, 11, 12, 13, 14], [10, 11, 12, 13, 14, 15])
    b = bars([20, 20, 22, 24], [20, 21, 23, 25], rows=[0, 1, 3, 5])
    panel = Panel.from_bars({"A": a, "B": b})
    w = np.full((6, 2), NAN)
    w[0] = [0.5, 0.5]
    w[3] = [0.25, 0.25]
    r = run_portfolio(panel, w, Execution(cash=1000, units="fractional"))
    gross, net = exposures(r, panel)
    assert np.array_equal(r.gross_exposure, gross) and np.array_equal(r.net_exposure, net)
    held = np.where(r.positions != 0, r.positions * panel.last_close(), 0.0).sum(axis=1)
    np.testing.assert_allclose(r.equity, r.cash + held, rtol=1e-12)
    assert r.positions[4, 1] == r.positions[3, 1]  # B has no bar at 4: its order is skipped
    assert r.metrics["skipped_orders"] == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({(3, 2): np.inf}, r"weights\[3, 2\] is infinite"),
        ({(3, 1): -0.1, (3, 2): np.inf}, r"weights\[3, 1\] = -0.1 is short"),
        ({(3, 2): -np.inf, (5, 0): -0.1}, r"weights\[3, 2\] is infinite"),
        ({(6, 0): -0.2}, r"weights\[6, 0\] = -0.2 is short"),
    ],
)
def test_the_first_bad_weight_in_row_order_is_reported(bad, message):
    panel = random_panel(5, 8, 3)
    w = np.full(panel.shape, NAN)
    w[3, 0] = 0.2  # a row holding an order, a bad weight after it
    for (i, j), v in bad.items():
        w[i, j] = v
    with pytest.raises(ValueError, match=message):
        run_portfolio(panel, w)
