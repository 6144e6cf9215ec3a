"""Ingestion benchmark (issue #7): backfill 1,000,000 1-minute candles from the local Binance-speaking
server through the real ccxt client; report candles/s and the time inside ccxt against our part
(validation, hashing, publishing).

    python bench/bench_ingest.py [--candles 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from artifact_lake.artifact_store import Lake  # noqa: E402
from artifact_lake.artifact_store.ingest import backfill  # noqa: E402
from bench._common import ms, print_table  # noqa: E402
from tests.fakes.binance import FakeBinance  # noqa: E402

T0 = 1_704_067_200_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--candles", type=int, default=1_000_000)
    args = ap.parse_args()
    end = T0 + args.candles * 60_000
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, FakeBinance(now_ms=end + 60_000) as fb:
        lake = Lake.open(Path(tmp) / "lake")
        t0 = time.perf_counter()
        rep = backfill(lake, "binance", ["BTC/USDT"], "1m", T0, end, partition="month", api_url=fb.url, rate_limit_ms=1)
        total = time.perf_counter() - t0
        info = rep.symbols["BTC/USDT"]
        assert info["candles"] == args.candles, info["candles"]
        lake.close()
    rows = [
        (
            f"backfill {args.candles:,} 1m candles, {info['pages']} pages, {len(info['partitions'])} month partitions",
            ms(total),
            f"{args.candles / total:,.0f} candles/s",
            "-",
            "report",
        ),
        (
            "  inside ccxt (requests, parsing, rate limit; includes the local server)",
            ms(rep.ccxt_seconds),
            "-",
            f"{rep.ccxt_seconds / total:.0%} of the total",
            "-",
        ),
        (
            "  our part (validation, hashing, publishing)",
            ms(rep.our_seconds),
            ms(rep.ccxt_seconds),
            f"{rep.our_seconds / rep.ccxt_seconds:.2f}x of ccxt",
            "<= 0.5x",
        ),
    ]
    print_table("bench_ingest.py", rows)


if __name__ == "__main__":
    main()
