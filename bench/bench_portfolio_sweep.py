"""Portfolio sweep benchmark (issue #14): peak memory of a sweep of the built-in `xs_momentum` must stay flat in
the number of combinations when `[results]` keeps per-bar outputs for a few of them only.

The sweep runs through the real experiments path: a lake in a temporary folder holds a synthetic panel (100
symbols x 100,000 one-minute bars by default, every symbol on every bar), and each case is `create` + `execute`
of a spec sweeping `lookback` over N values (top 10 symbols, rebalanced every 60 bars) with
`[results] equity = "best", best = 5`. Each case runs in a fresh process, which reports its own peak RSS
(VmHWM from /proc/self/status: it starts afresh at exec, unlike getrusage's ru_maxrss of a forked child). The
projection of the bars is built once before the cases, and each case first runs a tiny portfolio to load the
numba code, so every case carries the same fixed costs. `--equity all` measures the old behaviour (every
combination keeps its per-bar outputs) for contrast.

    python bench/bench_portfolio_sweep.py                                   # 100 x 100,000, N = 10, 50, 100
    python bench/bench_portfolio_sweep.py --symbols 20 --bars 20000 --combos 5,20   # quick
    python bench/bench_portfolio_sweep.py --equity best,all                # both, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, ms, print_rows  # noqa: E402
from bench.bench_sweeps import peak_rss  # noqa: E402

EVERY = 60
TOP_K = 10


def sweep_spec(name: str, combos: int, equity: str, best: int) -> str:
    """N combinations of xs_momentum (lookback 10, 20, ... bars) with a ``[results]`` section."""
    lookbacks = [10 * (i + 1) for i in range(combos)]
    results = f'equity = "{equity}"\nbest = {best}' if equity == "best" else 'equity = "all"'
    return f"""
kind = "backtest"
name = "{name}"
[inputs]
ohlcv = ["px"]
[strategy]
name = "xs_momentum"
every = {EVERY}
top_k = {TOP_K}
[execution]
fee_bps = 10.0
units = "fractional"
[results]
{results}
[sweep]
lookback = {lookbacks}
"""


def child(root: str, combos: int, equity: str, best: int) -> None:
    """One `create` + `execute` (forced) in this process; prints wall time, peak RSS and the run's numbers."""
    import numpy as np

    from artifact_lake import sim
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    tiny = sim.Panel.from_bars(
        {
            s: sim.Bars.from_arrays(
                np.arange(200, dtype=np.int64) * 60_000_000, *(np.full(200, 100.0 + j) for _ in range(4))
            )
            for j, s in enumerate("ABC")
        }
    )
    sim.run_portfolio(tiny, sim.xs_momentum(tiny, lookback=5, top_k=1, every=10))  # numba's code loaded
    lake = Lake.open(root)
    spec = sweep_spec(f"pf-{equity}-{combos}", combos, equity, best)
    exp, _ = create(lake, parse_spec(spec), replace=True)
    t0 = time.perf_counter()
    run = execute(lake, exp.id, force=True)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall": wall, "rss": peak_rss(), "timings": run.timings, "sweep": run.checks.get("sweep")}
    out["equity_rows"] = lake.read(run.results["equity"], columns=["combo"]).num_rows
    lake.close()
    print(json.dumps(out))


def measure(root: Path, combos: int, equity: str, best: int) -> dict[str, Any]:
    """One case in a fresh process (its peak RSS is its own)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [sys.executable, __file__, "--child", str(root), str(combos), equity, str(best)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--combos", default="10,50,100", help="combination counts, one case each")
    ap.add_argument("--equity", default="best", help="best, all, or best,all ([results] equity)")
    ap.add_argument("--best", type=int, default=5, help="[results] best")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], int(args.child[3]))
        return
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.projections import Lake

    print(machine())
    symbols = tuple(f"S{j:03d}" for j in range(args.symbols))
    with tempfile.TemporaryDirectory(prefix="bench-portfolio-sweep-") as tmp:
        root = Path(tmp) / "lake"
        t0 = time.perf_counter()
        with Lake.open(root) as lake:
            # one price per symbol: the synthetic default squares the symbol's index into its first price
            table = synthetic_ohlcv(symbols, bars=args.bars, seed=1, price0=tuple(100.0 for _ in symbols))
            lake.publish(table, "ohlcv", name="px")
            del table
            lake.projection("ohlcv", {"ohlcv": ["px"]})
        print(
            f"lake of {args.symbols} symbols x {args.bars:,} bars published and projected in {ms(time.perf_counter() - t0)}"
        )
        rows = []
        mib = 2**20
        for equity in args.equity.split(","):
            first: float | None = None
            for combos in [int(x) for x in args.combos.split(",") if x]:
                got = measure(root, combos, equity, args.best)
                first = first if first is not None else got["rss"]
                t = got["timings"]
                kept = got["sweep"]["kept"] if got["sweep"] else combos
                rows.append(
                    (
                        f"{combos} combos",
                        f"{equity}" + (f" {args.best}" if equity == "best" else ""),
                        str(kept),
                        ms(got["wall"]),
                        ms(got["wall"] / combos),
                        f"{got['rss'] / mib:,.0f} MiB",
                        f"{got['rss'] / first:.2f}x",
                        f"{got['equity_rows']:,}",
                        ", ".join(f"{k} {ms(t[k])}" for k in ("load", "weights", "simulate", "selection") if k in t),
                    )
                )
                print(" | ".join(rows[-1]), flush=True)
    print_rows(
        f"portfolio sweep: xs_momentum over {args.symbols} symbols x {args.bars:,} bars, top {TOP_K}, every {EVERY}"
        " bars (`experiments execute`, each case in a fresh process)",
        (
            "case",
            "[results] equity",
            "kept",
            "execute",
            "per combination",
            "peak RSS",
            "vs first",
            "equity rows",
            "phases",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
