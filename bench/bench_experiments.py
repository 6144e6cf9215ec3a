"""Experiment benchmarks (issue #5): the overhead of `experiments execute` around the kernel on a 1M-bar
backtest, and `reproduce` against the original execute.

    python bench/bench_experiments.py [--bars 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from artifact_lake.artifact_store.samples import synthetic_ohlcv  # noqa: E402
from artifact_lake.experiments import create, execute, parse_spec, reproduce  # noqa: E402
from artifact_lake.projections import Lake  # noqa: E402
from bench._common import best_of_pair, ms, print_table  # noqa: E402

SPEC = """
kind = "backtest"
name = "bench"
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
fast = 10
slow = 50
[execution]
fee_bps = 10.0
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exp-") as tmp:
        lake = Lake.open(Path(tmp) / "lake")
        lake.publish(synthetic_ohlcv(("BTC/USDT",), bars=args.bars, seed=1), "ohlcv", name="px")
        exp, _ = create(lake, parse_spec(SPEC))
        execute(lake, exp.id)  # warm: numba cache, projection built once
        runs = []
        for _ in range(3):
            lake.projections.drop()
            t0 = time.perf_counter()
            run = execute(lake, exp.id, force=True)
            runs.append((time.perf_counter() - t0, run))
        total, run = min(runs, key=lambda r: r[0])
        kernel = run.timings["simulate"] + run.timings["signals"]
        overhead = total - kernel
        rows = [
            (
                f"`experiments execute` overhead, {args.bars:,}-bar backtest (cold projection)",
                ms(overhead),
                f"{ms(kernel)} simulate (signals + kernel)",
                f"{overhead / kernel:.2f}x",
                "<= 0.5x",
            )
        ]
        parts = ", ".join(f"{k} {ms(v)}" for k, v in sorted(run.timings.items()))
        rows.append(("  where the time goes", parts, "", "", ""))
        warm, repro = best_of_pair(  # alternated: both see the same moments of a shared machine
            lambda: execute(lake, exp.id, force=True), lambda: reproduce(lake, run.results["metrics"]), repeat=3
        )
        rows.append(
            ("`experiments execute`, projection reused", ms(warm), ms(kernel), f"{(warm - kernel) / kernel:.2f}x", "-")
        )
        rows.append(
            (
                "`reproduce` of that run",
                ms(repro),
                f"{ms(warm)} execute (projection reused)",
                f"{repro / warm:.2f}x",
                "<= 1.1x",
            )
        )
        lake.close()
    print_table("bench_experiments.py", rows)


if __name__ == "__main__":
    main()
