"""Plugin benchmark (issue #13): a user's strategy plugin swept through `experiments execute`, next to the same
sweep of the built-in ``sma_cross``, with peak RSS and the look-ahead guard's share of the run.

The plugin computes what ``sma_cross`` computes (crossings of two trailing means), written as a user would:
numpy, one call per combination, no sweep fast path. Each variant runs in its own process (so peak RSS is its
own), alternated ``--repeat`` times; the table keeps the best wall time of each.

    python bench/bench_plugins.py [--bars 100000] [--combos 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PLUGIN = '''
import numpy as np
from artifact_lake.sim import Bars, strategy


def _sma(c: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(c), np.nan)
    s = np.cumsum(c)
    out[n - 1 :] = (s[n - 1 :] - np.concatenate(([0.0], s[:-n]))) / n
    return out


@strategy
def my_sma_cross(bars: Bars, fast: int = 10, slow: int = 20) -> np.ndarray:
    """Long when the fast mean crosses above the slow one, flat when it crosses below."""
    f, s = _sma(bars.close, fast), _sma(bars.close, slow)
    out = np.full(len(f), np.nan)
    up = (f[:-1] < s[:-1]) & (f[1:] > s[1:])
    down = (f[:-1] > s[:-1]) & (f[1:] < s[1:])
    out[1:][up] = 1.0
    out[1:][down] = 0.0
    return out
'''


def sweep(combos: int) -> tuple[list[int], list[int]]:
    """``fast`` and ``slow`` lists whose product is ``combos`` (every fast below every slow)."""
    nf = max(1, int(math.sqrt(combos) * 0.8))
    while combos % nf:
        nf -= 1
    ns = combos // nf
    fast = list(range(2, 2 + nf))
    return fast, list(range(fast[-1] + 1, fast[-1] + 1 + ns))


def sweep_spec(name: str, strategy: str, fast: list[int], slow: list[int]) -> str:
    """The spec of a fast x slow sweep of ``strategy`` over the lake's ``px``."""
    return f"""
kind = "backtest"
name = "{name}"
[inputs]
ohlcv = ["px"]
[strategy]
name = "{strategy}"
[sweep]
fast = {fast}
slow = {slow}
"""


def child(root: str, strategy: str, combos: int) -> None:
    """One `experiments execute` of the sweep (forced, so nothing is reused); prints its numbers as JSON."""
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    spec = sweep_spec(f"bench-{strategy}", strategy, *sweep(combos))
    lake = Lake.open(root)
    exp, _ = create(lake, parse_spec(spec), replace=True)
    t0 = time.perf_counter()
    run = execute(lake, exp.id, force=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall": wall, "rss": rss, "timings": run.timings, "checks": run.checks}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--combos", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.projections import Lake
    from bench._common import ms, print_table

    with tempfile.TemporaryDirectory(prefix="bench-plugins-") as tmp:
        root = Path(tmp) / "lake"
        Lake.open(root).publish(synthetic_ohlcv(("BTC/USDT",), bars=args.bars, seed=1), "ohlcv", name="px")
        plugin = Path(tmp) / "my_strategies.py"
        plugin.write_text(PLUGIN)
        env = {**os.environ, "LAKE_PLUGINS": str(plugin)}
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):  # alternated: both see the same moments of a shared machine
            for name in ("sma_cross", "my_sma_cross"):
                cmd = [sys.executable, __file__, "--child", str(root), name, str(args.combos)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                if name not in best or got["wall"] < best[name]["wall"]:
                    best[name] = got
    b, p = best["sma_cross"], best["my_sma_cross"]
    pt = p["timings"]
    guard = pt.get("lookahead_guard", 0.0)
    rows = [
        (f"built-in sma_cross, {args.combos:,} combos x {args.bars:,} bars", ms(b["wall"]), "", "", ""),
        (
            "plugin my_sma_cross (numpy), same sweep",
            ms(p["wall"]),
            ms(b["wall"]),
            f"{p['wall'] / b['wall']:.2f}x",
            "≤ 2x",
        ),
        (
            "peak RSS plugin / built-in",
            f"{p['rss'] / 2**20:.0f} MiB",
            f"{b['rss'] / 2**20:.0f} MiB",
            f"{p['rss'] / b['rss']:.2f}x",
            "",
        ),
        ("plugin: signals / simulate (run record)", ms(pt["signals"]), ms(pt["simulate"]), "", ""),
        ("plugin: look-ahead guard share of the run", ms(guard), ms(p["wall"]), f"{guard / p['wall']:.1%}", "small"),
    ]
    print_table(
        f"plugin sweep vs built-in ({args.combos:,} combinations, {args.bars:,} bars, best of {args.repeat})", rows
    )
    print("\nguard checked:", json.dumps(p["checks"].get("plugins")))


if __name__ == "__main__":
    main()
