"""Portfolio benchmark (issue 14): 50 symbols x 100,000 bars, equal weights rebalanced every 24 bars, against a
bare numba loop written here with the same accounting (next-open fills, sells before buys, fees, fractional
units, per-bar equity / cash / positions), alternated best-of-N; plus peak memory of one call.

    python bench/bench_portfolio.py                       # full size
    python bench/bench_portfolio.py --symbols 10 --bars 20000 --repeat 3   # quicker
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from artifact_lake.sim import Bars, Execution, Panel, equal_weight, run_portfolio  # noqa: E402
from bench._common import best_of_pair, ms, print_table  # noqa: E402


def make_panel(m: int, n: int, seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    out = {}
    for j in range(m):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        open_ = np.concatenate([[100.0], close[:-1]])
        out[f"S{j:03d}"] = Bars.from_arrays(
            np.arange(n, dtype=np.int64) * 60_000_000,
            open_,
            np.maximum(open_, close),
            np.minimum(open_, close),
            close,
            rng.lognormal(3, 0.5, n),
        )
    return Panel.from_bars(out)


@njit(cache=True)
def bare_loop_nb(open_, close, weights, cash0, fee, equity_out, cash_out, positions_out):
    """The baseline: every bar present, next-open fills, fractional units, fee on notional, sells before
    buys with the buy capped by cash; per-bar equity, cash and positions. No caps, no records, no metrics."""
    n, m = close.shape
    pos = np.zeros(m)
    want = np.empty(m)
    cash = cash0
    for k in range(n):
        r = k - 1
        if r >= 0 and not math.isnan(weights[r, 0]):
            eq = cash
            for j in range(m):
                eq += pos[j] * open_[k, j]
            for j in range(m):
                want[j] = weights[r, j] * eq / open_[k, j] - pos[j]
            for j in range(m):
                d = want[j]
                if d < 0.0:
                    cash -= d * open_[k, j] - d * open_[k, j] * fee
                    pos[j] += d
            for j in range(m):
                d = want[j]
                if d > 0.0:
                    p = open_[k, j]
                    if d * p * (1.0 + fee) > cash:
                        d = max(cash, 0.0) / (p * (1.0 + fee))
                    cash -= d * p + d * p * fee
                    pos[j] += d
        eq = cash
        for j in range(m):
            eq += pos[j] * close[k, j]
            positions_out[k, j] = pos[j]
        equity_out[k] = eq
        cash_out[k] = cash
    return cash


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    panel = make_panel(a.symbols, a.bars)
    w = equal_weight(panel, every=a.every)
    ex = Execution(units="fractional", fee_bps=10)
    n, m = panel.shape
    eq, cash, pos = np.empty(n), np.empty(n), np.empty((n, m))
    o, c = np.ascontiguousarray(panel.open), np.ascontiguousarray(panel.close)

    def ours() -> None:
        run_portfolio(panel, w, ex)

    def bare() -> None:  # fresh outputs per call, as ours allocates them
        nonlocal eq, cash, pos
        eq, cash, pos = np.empty(n), np.empty(n), np.empty((n, m))
        bare_loop_nb(o, c, w, ex.cash, 0.001, eq, cash, pos)

    t0 = time.perf_counter()
    ours()
    bare()
    first = time.perf_counter() - t0
    res = run_portfolio(panel, w, ex)
    bare()
    gap = abs(res.equity[-1] - eq[-1]) / eq[-1]
    t_ours, t_bare = best_of_pair(ours, bare, repeat=a.repeat)

    tracemalloc.start()
    ours()
    peak_ours = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    outputs = (eq.nbytes + cash.nbytes + pos.nbytes) * 1.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    print_table(
        f"Portfolio: {m} symbols x {n:,} bars, rebalance every {a.every} bars (fee 10 bps, fractional)",
        [
            ("one backtest", ms(t_ours), ms(t_bare), f"{t_ours / t_bare:.2f}x", "<= 2x"),
            ("peak memory of one call (tracemalloc)", f"{peak_ours / 2**20:.0f} MiB", "-", "-", "-"),
            ("baseline's outputs", "-", f"{outputs / 2**20:.0f} MiB", "-", "-"),
            ("process peak RSS", f"{rss:.0f} MiB", "-", "-", "-"),
            ("first calls (compile or cache load)", ms(first), "-", "-", "-"),
        ],
    )
    print(f"\nfinal equity: ours {res.equity[-1]:.6f}, bare loop {eq[-1]:.6f}, relative gap {gap:.2e}")


if __name__ == "__main__":
    main()
