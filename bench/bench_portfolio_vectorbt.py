"""Portfolio peer check (issue #14): the same target weights through ``sim.run_portfolio`` and vectorbt's
cash-sharing ``Portfolio.from_orders`` (``size_type="targetpercent"``, ``call_seq="auto"``, fills at the next
bar's open, fractional units, equal fees); the largest relative gap in per-bar equity, and the time of each
(alternated, best of N). Needs vectorbt (the ``bench`` extra; a venv of its own is fine).

    python bench/bench_portfolio_vectorbt.py [--symbols 100] [--bars 100000] [--every 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from artifact_lake.sim import Execution, equal_weight, run_portfolio  # noqa: E402
from bench._common import best_of_pair, machine, ms, print_table  # noqa: E402
from bench.bench_portfolio import make_panel  # noqa: E402


def main() -> None:
    import pandas as pd
    import vectorbt as vbt

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    panel = make_panel(a.symbols, a.bars)
    n, m = panel.shape
    idx, cols = pd.RangeIndex(n), list(panel.symbols)
    close, price = pd.DataFrame(panel.close, idx, cols), pd.DataFrame(panel.open, idx, cols)
    rows = []
    for label, fee_bps, scale in (
        ("no fees, fully invested", 0.0, 1.0),
        ("10 bps, 99 % invested (fees never exceed cash)", 10.0, 0.99),
        ("10 bps, fully invested", 10.0, 1.0),
    ):
        w = equal_weight(panel, every=a.every) * scale
        ex = Execution(units="fractional", fee_bps=fee_bps)
        size = np.full((n, m), np.nan)
        size[1:] = w[:-1]  # the weights of bar i fill at bar i + 1's open, as ours (fill = next_open)
        kw = {
            "close": close,
            "price": price,
            "size": pd.DataFrame(size, idx, cols),
            "size_type": "targetpercent",
            "fees": fee_bps / 10_000,
            "init_cash": ex.cash,
            "cash_sharing": True,
            "group_by": True,
            "call_seq": "auto",
        }
        ours = run_portfolio(panel, w, ex).equity
        theirs = vbt.Portfolio.from_orders(**kw).value().to_numpy()
        gap = float(np.max(np.abs(theirs - ours) / ours))
        t_ours, t_vbt = best_of_pair(
            lambda w=w, ex=ex: run_portfolio(panel, w, ex),
            lambda kw=kw: vbt.Portfolio.from_orders(**kw).value(),
            repeat=a.repeat,
        )
        rows.append((f"{label}: largest relative equity gap", f"{gap:.1e}", "-", "-", "<= 1e-9"))
        rows.append((f"{label}: time", ms(t_ours), f"{ms(t_vbt)} vectorbt", f"{t_vbt / t_ours:.0f}x faster", ">= 10x"))
    print(machine(), "vectorbt", vbt.__version__)
    print_table(f"portfolio vs vectorbt, {a.symbols} symbols x {a.bars:,} bars, every {a.every} bars", rows)


if __name__ == "__main__":
    main()
