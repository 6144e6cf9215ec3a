"""Simulator benchmarks (issue #4): one 10M-bar backtest and a 1,000-combination SMA grid, against a bare
numba loop written here as the baseline and against vectorbt (bench extra), plus first-call cost.

    python bench/bench_sim.py                # full size
    python bench/bench_sim.py --bars 1000000 --grid-bars 20000 --combos 100   # quicker
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from artifact_lake.sim import Bars, Execution, run, run_grid, sma_cross  # noqa: E402
from artifact_lake.sim import kernels as K  # noqa: E402
from bench._common import best_of_pair, ms, print_table  # noqa: E402


def make_bars(n: int, seed: int = 0) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 5e-4, n)) * close
    return Bars.from_arrays(
        np.arange(n, dtype=np.int64) * 60_000_000,
        open_,
        np.maximum(open_, close) + spread,
        np.minimum(open_, close) - spread,
        close,
        rng.lognormal(3, 0.5, n),
    )


@njit(cache=True)
def bare_loop_nb(open_, close, target, cash0, fee, equity, cash_out, position_out):
    """The baseline: next-open fills, all-in whole units, fee on notional, and the same per-bar outputs
    (equity, cash, position). No stops, no trade records, no metrics."""
    cash = cash0
    pos = 0.0
    pending = np.nan
    for i in range(close.shape[0]):
        if not math.isnan(pending):
            p = open_[i]
            if pending > 0 and pos == 0.0:
                units = math.floor(cash / (p * (1.0 + fee)))
                cash -= units * p * (1.0 + fee)
                pos = units
            elif pending == 0 and pos > 0.0:
                cash += pos * p * (1.0 - fee)
                pos = 0.0
            pending = np.nan
        if not math.isnan(target[i]):
            pending = target[i]
        equity[i] = cash + pos * close[i]
        cash_out[i] = cash
        position_out[i] = pos
    return cash + pos * close[-1]


@njit(cache=True, parallel=True)
def bare_grid_nb(open_, close, fasts, slows, cash0, fee):
    out = np.empty(fasts.shape[0])
    for j in prange(fasts.shape[0]):
        tgt = K.cross_targets_nb(K.rolling_mean_nb(close, fasts[j]), K.rolling_mean_nb(close, slows[j]), 1)
        eq = np.empty(close.shape[0])
        out[j] = bare_loop_nb(open_, close, tgt, cash0, fee, eq, eq, eq)
    return out


def vectorbt_single(bars: Bars, target: np.ndarray) -> float:
    import pandas as pd
    import vectorbt as vbt

    entries = pd.Series(target == 1).shift(1, fill_value=False).values
    exits = pd.Series(target == 0).shift(1, fill_value=False).values
    t0 = time.perf_counter()
    pf = vbt.Portfolio.from_signals(bars.open, entries, exits, fees=0.002, init_cash=10_000, size_granularity=1)
    pf.final_value()
    return time.perf_counter() - t0


def vectorbt_grid(bars: Bars, fasts: np.ndarray, slows: np.ndarray, chunk: int = 100) -> float:
    import pandas as pd
    import vectorbt as vbt

    close = pd.Series(bars.close)
    t0 = time.perf_counter()
    for a in range(0, len(fasts), chunk):
        f, s = fasts[a : a + chunk], slows[a : a + chunk]
        fast = vbt.MA.run(close, window=list(f), short_name="fast")
        slow = vbt.MA.run(close, window=list(s), short_name="slow")
        entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
        exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
        pf = vbt.Portfolio.from_signals(
            pd.Series(bars.open), entries.values, exits.values, fees=0.002, init_cash=10_000, size_granularity=1
        )
        pf.final_value()
    return time.perf_counter() - t0


def first_call() -> tuple[float, float]:
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np\n"
        "from artifact_lake.sim import Bars, Execution, run, sma_cross\n"
        "t1 = time.perf_counter()\n"
        "n = 1000; c = 100 + np.sin(np.arange(n) / 20)\n"
        "b = Bars.from_arrays(np.arange(n) * 60_000_000, c, c + 1, c - 1, c, np.ones(n))\n"
        "run(b, sma_cross(b.close, 5, 20), Execution(fee_bps=20))\n"
        "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    imp, call = (float(x) for x in out.stdout.split())
    return imp, call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=10_000_000)
    ap.add_argument("--grid-bars", type=int, default=100_000)
    ap.add_argument("--combos", type=int, default=1000)
    ap.add_argument("--no-vectorbt", action="store_true")
    args = ap.parse_args()
    rows = []

    bars = make_bars(args.bars)
    target = sma_cross(bars.close, 10, 50)
    ex = Execution(cash=10_000, fee_bps=20)
    outs = [np.empty(len(bars)) for _ in range(3)]
    run(make_bars(1000), sma_cross(make_bars(1000).close, 10, 50), ex)  # compile (or load the cache)
    bare_loop_nb(bars.open[:10], bars.close[:10], target[:10], 10_000.0, 0.002, *(o[:10] for o in outs))

    def bare() -> float:
        # fresh outputs each time, as run() allocates its own
        return bare_loop_nb(bars.open, bars.close, target, 10_000.0, 0.002, *(np.empty(len(bars)) for _ in range(3)))

    ours, base = best_of_pair(lambda: run(bars, target, ex), bare, repeat=9)
    res = run(bars, target, ex)
    assert math.isclose(res.metrics["final_equity"], bare(), rel_tol=1e-9), "the baseline must do the same accounting"
    rows.append(
        (
            f"backtest, {args.bars:,} bars, precomputed signals (`sim.run`)",
            ms(ours),
            f"{ms(base)} bare numba loop",
            f"{ours / base:.2f}x",
            "<= 1.5x",
        )
    )
    if not args.no_vectorbt:
        vbt_t = min(vectorbt_single(bars, target) for _ in range(2))
        rows.append(
            (
                "  vs vectorbt `Portfolio.from_signals`",
                ms(ours),
                ms(vbt_t),
                f"{vbt_t / ours:.1f}x faster",
                ">= 20x faster",
            )
        )

    gb = make_bars(args.grid_bars, seed=1)
    rng = np.random.default_rng(2)
    fasts = rng.integers(2, 50, args.combos)
    slows = fasts + rng.integers(5, 150, args.combos)
    run_grid(make_bars(500), fasts[:4], slows[:4], ex)
    bare_grid_nb(gb.open[:100], gb.close[:100], fasts[:2], slows[:2], 10_000.0, 0.002)
    g_ours, g_base = best_of_pair(
        lambda: run_grid(gb, fasts, slows, ex),
        lambda: bare_grid_nb(gb.open, gb.close, fasts, slows, 10_000.0, 0.002),
        5,
    )
    rows.append(
        (
            f"SMA grid, {args.combos:,} combos x {args.grid_bars:,} bars, signals included (`sim.run_grid`)",
            ms(g_ours),
            f"{ms(g_base)} bare numba grid",
            f"{g_ours / g_base:.2f}x",
            "<= 2x",
        )
    )
    if not args.no_vectorbt:
        g_vbt = vectorbt_grid(gb, fasts, slows)
        rows.append(
            (
                "  vs vectorbt (MA.run + from_signals, 100 combos a call)",
                ms(g_ours),
                ms(g_vbt),
                f"{g_vbt / g_ours:.1f}x faster",
                ">= 20x faster",
            )
        )
    imp, call = first_call()
    rows.append(
        ("first call in a fresh process, warm numba cache: import artifact_lake.sim", ms(imp), "-", "-", "report")
    )
    rows.append(("  then a 1,000-bar backtest (cache load + run)", ms(call), "-", "-", "report"))
    print_table("bench_sim.py", rows)


if __name__ == "__main__":
    main()
