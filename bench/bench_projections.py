"""Projection benchmarks (issue #3): build of the ohlcv projection over 10 artifacts (10M rows) against a
plain DuckDB CREATE TABLE AS ... ORDER BY over the same files, and a cache hit through the API.

    python bench/bench_projections.py [--rows 10000000] [--parts 10]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402

from artifact_lake.artifact_store.objects import object_path  # noqa: E402
from artifact_lake.projections import Lake  # noqa: E402
from bench._common import best_of, ms, percentile, print_table  # noqa: E402
from bench.bench_store import big_ohlcv  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--parts", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-proj-") as tmp:
        lake = Lake.open(Path(tmp) / "lake")
        table = big_ohlcv(args.rows)  # 4 symbols, split by time into parts: no overlaps
        per = args.rows // args.parts
        ids = []
        order = pa.compute.sort_indices(table, [("ts", "ascending"), ("symbol", "ascending")])
        by_time = table.take(order)
        for k in range(args.parts):
            part = by_time.slice(k * per, per).sort_by([("symbol", "ascending"), ("ts", "ascending")])
            ids.append(lake.publish(part, "ohlcv").id)
        del table, by_time
        files = [str(object_path(lake.root, i)) for i in ids]

        def plain() -> None:
            db = Path(tmp) / "plain.duckdb"
            db.unlink(missing_ok=True)
            con = duckdb.connect(str(db))
            con.execute(f"CREATE TABLE ohlcv AS SELECT * FROM read_parquet({files!r}) ORDER BY symbol, ts")
            con.execute("CHECKPOINT")
            con.close()

        def ours() -> None:
            lake.projections.drop()
            lake.projection("ohlcv", {"ohlcv": ids})

        base = best_of(plain, repeat=3)
        build = best_of(ours, repeat=3)
        rows = [
            (
                f"build `ohlcv` projection, {args.parts} artifacts, {args.rows:,} rows (with gaps, verify)",
                ms(build),
                f"{ms(base)} plain CTAS ORDER BY",
                f"{build / base:.2f}x",
                "<= 1.15x",
            )
        ]
        hits = []
        for _ in range(50):
            t0 = time.perf_counter()
            p = lake.projection("ohlcv", {"ohlcv": ids})
            hits.append(time.perf_counter() - t0)
            assert p.reused
        rows.append(
            (
                "cache hit, same key (`lake.projection`, p50)",
                ms(percentile(hits, 50)),
                f"p95 {ms(percentile(hits, 95))}",
                "-",
                "<= 50 ms",
            )
        )
        lake.close()
        shutil.rmtree(Path(tmp) / "lake", ignore_errors=True)
    print_table("bench_projections.py", rows)


if __name__ == "__main__":
    main()
