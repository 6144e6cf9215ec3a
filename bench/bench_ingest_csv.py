"""CSV import benchmark (issue #16): ``lake ingest file`` of an OHLCV CSV against DuckDB's own ``read_csv`` of
that file into an Arrow table plus a publish of that table (``Lake.publish``, what ``lake publish`` runs).

Each side runs in a child process (start-up included on both sides) into a fresh lake; the two alternate
(ours, baseline, ours, ...) and the best of ``--repeat`` runs counts. Peak RSS is the child's ``ru_maxrss``
read with ``os.wait4``, CPU its user + system time (all threads): on a machine that others load, the time
ratio swings with their load and drifts towards the CPU ratio. Target: ours <= 1.3x the baseline.

    python bench/bench_ingest_csv.py [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ms, print_table  # noqa: E402

T0_US = 1_704_067_200_000_000  # 2024-01-01 UTC

OURS = """
import sys
from artifact_lake.cli.main import lake_main
sys.argv = ["lake", "--lake", sys.argv[2], "ingest", "file", sys.argv[1], "--symbol", "BTC"]
lake_main()
"""

BASELINE = """
import sys
import duckdb
from artifact_lake.artifact_store import Lake
table = duckdb.sql(
    "SELECT ts, 'BTC' AS symbol, open, high, low, close, volume FROM read_csv(?)", params=[sys.argv[1]]
).to_arrow_table()
lake = Lake.open(sys.argv[2])
lake.publish(table, "ohlcv")
lake.close()
"""


def write_csv(path: Path, rows: int) -> None:
    """``rows`` one-minute candles as ``ts,open,high,low,close,volume`` (ISO times with Z), seeded."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(7)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, rows)))
    opn = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 5e-4, rows)) * close
    ts = pa.array(T0_US + np.arange(rows, dtype=np.int64) * 60_000_000, pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "ts": pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ"),
            "open": np.round(opn, 4),
            "high": np.round(np.maximum(opn, close) + spread, 4),
            "low": np.round(np.minimum(opn, close) - spread, 4),
            "close": np.round(close, 4),
            "volume": np.round(rng.exponential(10.0, rows), 3),
        }
    )
    pacsv.write_csv(table, path)


def run_child(code: str, csv: Path, lake: Path) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of ``python -c code csv lake``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(csv), str(lake)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit {proc.returncode}: {code.strip().splitlines()[-2]}")
    return took, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-csv-") as tmp:
        csv = Path(tmp) / "BTC.csv"
        write_csv(csv, args.rows)
        size = csv.stat().st_size
        ours_t, base_t, ours_rss, base_rss, ours_cpu, base_cpu = [], [], [], [], [], []
        sides = ((OURS, ours_t, ours_rss, ours_cpu, "ours"), (BASELINE, base_t, base_rss, base_cpu, "base"))
        for i in range(args.repeat):
            for code, times, rss, cpu, tag in sides:
                took, peak, used = run_child(code, csv, Path(tmp) / f"lake-{tag}-{i}")
                times.append(took)
                rss.append(peak)
                cpu.append(used)
    ours, base = min(ours_t), min(base_t)
    mib = 1024 * 1024
    print_table(
        f"CSV import: {args.rows:,} rows ({size / mib:.0f} MiB), best of {args.repeat}, alternated",
        [
            ("time", ms(ours), ms(base), f"{ours / base:.2f}x", "<= 1.3x"),
            ("CPU (user + system)", ms(min(ours_cpu)), ms(min(base_cpu)), f"{min(ours_cpu) / min(base_cpu):.2f}x", "-"),
            (
                "peak RSS",
                f"{max(ours_rss) / mib:.0f} MiB",
                f"{max(base_rss) / mib:.0f} MiB",
                f"{max(ours_rss) / max(base_rss):.2f}x",
                "-",
            ),
        ],
    )


if __name__ == "__main__":
    main()
