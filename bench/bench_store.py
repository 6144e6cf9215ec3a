"""Store benchmarks (issue #2): publish speed, dedup, find on a 1M-artifact manifest, lineage walks,
and `lake find` as a whole command. Prints a markdown table; results live in docs/benchmarks.md.

    python bench/bench_store.py             # 10M-row tables, 1M-artifact manifest
    python bench/bench_store.py --rows 1000000 --artifacts 100000   # quicker
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import blake3  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from artifact_lake.artifact_store import Lake  # noqa: E402
from artifact_lake.artifact_store import manifest as mf  # noqa: E402
from bench._common import best_of, best_of_pair, ms, percentile, print_table  # noqa: E402


def big_ohlcv(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    per = n // 4
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    spread = np.abs(rng.normal(0, 1e-3, n)) * close
    open_ = np.concatenate([[100.0], close[:-1]])
    ts = (1_704_067_200 + np.tile(np.arange(per, dtype=np.int64), 4) * 60) * 1_000_000
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "symbol": pa.array(np.repeat(["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"], per)),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": np.round(rng.lognormal(3, 0.6, n), 4),
        }
    )


def publish_benches(n: int, work: Path) -> list[tuple[str, str, str, str, str]]:
    table = big_ohlcv(n)
    rows = []
    lakes = iter(range(100))

    def fresh() -> Lake:
        d = work / f"lake{next(lakes)}"
        shutil.rmtree(d, ignore_errors=True)
        return Lake.open(d)

    holder: dict[str, Lake] = {}
    ours, base_write = best_of_pair(  # alternated: both see the same moments of a shared machine
        lambda: holder["l"].publish(table, "ohlcv"),
        lambda: pq.write_table(table, work / "base.parquet", compression="zstd"),
        repeat=3,
        setup_a=lambda: holder.__setitem__("l", fresh()),
    )
    rows.append(
        (
            f"publish in-memory {n:,}-row OHLCV",
            ms(ours),
            f"{ms(base_write)} pq.write_table zstd",
            f"{ours / base_write:.2f}x",
            "<= 1.2x",
        )
    )

    src = work / "src.parquet"
    pq.write_table(table, src, compression="zstd")

    def read_and_hash() -> None:
        pq.read_table(src)
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        h.update(src.read_bytes())

    first, base_read = best_of_pair(
        lambda: holder["l"].publish(src, "ohlcv"),
        read_and_hash,
        repeat=3,
        setup_a=lambda: holder.__setitem__("l", fresh()),
    )
    again = best_of(lambda: holder["l"].publish(src, "ohlcv"), repeat=5)
    rows.append(
        (
            f"publish {n:,}-row zstd Parquet file",
            ms(first),
            f"{ms(base_read)} read_table + blake3 of bytes",
            f"{first / base_read:.2f}x",
            "<= 2x",
        )
    )
    rows.append(
        ("re-publish the same bytes", ms(again), f"{ms(first)} first publish", f"{again / first:.3f}x", "<= 0.2x")
    )
    return rows


def build_manifest(lake: Lake, count: int) -> list[str]:
    """``count`` artifacts straight into SQLite (the objects are not needed to search the manifest)."""
    types = ["ohlcv", "alerts", "trades", "equity", "metrics", "tensors", "table", "quarantine"]
    now = mf.now_iso()
    ids = [blake3.blake3(str(i).encode()).hexdigest() for i in range(count)]
    with mf.immediate(lake.db):
        lake.db.executemany(
            "INSERT INTO artifacts (pk, id, type, schema_version, file_hash, rows, bytes, columns, meta, created)"
            " VALUES (?, ?, ?, 1, ?, 1, 1, '[]', ?, ?)",
            (
                (i + 1, ids[i], types[i % 8], ids[i], f'{{"symbol":"S{i // 8 % 1000}","source":"src{i % 7}"}}', now)
                for i in range(count)
            ),
        )
        lake.db.executemany(
            "INSERT INTO meta (key, value, artifact) VALUES (?, ?, ?)",
            (
                (k, v, i + 1)
                for i in range(count)
                for k, v in (("symbol", f"S{i // 8 % 1000}"), ("source", f"src{i % 7}"))
            ),
        )
    return ids


def manifest_benches(count: int, work: Path) -> list[tuple[str, str, str, str, str]]:
    rows = []
    root = work / "big-lake"
    lake = Lake.open(root)
    t0 = time.perf_counter()
    ids = build_manifest(lake, count)
    print(f"built a {count:,}-artifact manifest in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rng = random.Random(1)
    samples = []
    for _ in range(1000):
        sym = f"S{rng.randrange(1000)}"
        t0 = time.perf_counter()
        found = lake.find(type="ohlcv", meta={"symbol": sym}, limit=10)
        samples.append(time.perf_counter() - t0)
        assert found and all(a.type == "ohlcv" and a.meta["symbol"] == sym for a in found)
    rows.append(
        (
            f"find type+meta, {count:,} artifacts (p50)",
            ms(percentile(samples, 50)),
            f"p95 {ms(percentile(samples, 95))}",
            "-",
            "p50 <= 5 ms",
        )
    )

    # lineage: a chain of 50 edges, and a node with ~10,000 ancestors (100 layers of 100, 2 parents each)
    pk_of = {aid: i + 1 for i, aid in enumerate(ids)}
    chain = ids[:51]
    layers = [ids[100 + k * 100 : 200 + k * 100] for k in range(100)]
    sink = ids[20_000]
    with mf.immediate(lake.db):
        for child, parent in zip(chain, chain[1:], strict=False):
            mf.add_edges(lake.db, pk_of[child], [pk_of[parent]], None)
        mf.add_edges(lake.db, pk_of[sink], [pk_of[a] for a in layers[0]], None)
        for upper, lower in zip(layers, layers[1:], strict=False):
            for i, child in enumerate(upper):
                mf.add_edges(lake.db, pk_of[child], [pk_of[lower[i]], pk_of[lower[(i + 1) % 100]]], None)
    lin = lake.lineage(chain[0])
    assert len(lin.nodes) == 51
    assert len(lake.walk(chain[0])) == 50 and len(lake.walk(sink)) == 10_000

    def p50(fn, n):
        return ms(percentile([best_of(fn, repeat=1) for _ in range(n)], 50))

    rows.append(
        ("upstream walk, depth 50 (`Lake.walk`, p50)", p50(lambda: lake.walk(chain[0]), 200), "-", "-", "<= 1 ms")
    )
    rows.append(
        ("upstream walk, 10,000 ancestors (`Lake.walk`, p50)", p50(lambda: lake.walk(sink), 20), "-", "-", "<= 20 ms")
    )
    rows.append(
        (
            "  full graph, depth 50 (`Lake.lineage`: names, types, edges)",
            p50(lambda: lake.lineage(chain[0]), 200),
            "-",
            "-",
            "-",
        )
    )
    rows.append(
        (
            "  full graph, 10,000 ancestors, 19,900 edges (`Lake.lineage`)",
            p50(lambda: lake.lineage(sink), 20),
            "-",
            "-",
            "-",
        )
    )
    lake.close()

    def run_cli() -> None:
        subprocess.run(["lake", "--lake", str(root), "find", "--limit", "10"], check=True, capture_output=True)

    def bare_python() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    cli = [best_of(run_cli, repeat=1) for _ in range(10)]
    bare = [best_of(bare_python, repeat=1) for _ in range(10)]
    rows.append(
        (
            f"`lake find --limit 10`, whole command, {count:,} artifacts (median)",
            ms(percentile(cli, 50)),
            f"{ms(percentile(bare, 50))} bare `python -c pass`",
            f"{percentile(cli, 50) / percentile(bare, 50):.1f}x",
            "<= 0.3 s",
        )
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--artifacts", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        work = Path(tmp)
        rows = publish_benches(args.rows, work)
        rows += manifest_benches(args.artifacts, work)
    print_table("bench_store.py", rows)


if __name__ == "__main__":
    main()
