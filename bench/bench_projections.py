"""Projection benchmarks (issue #3, #15 item 4): the `ohlcv` projection build against a plain DuckDB
``CREATE TABLE AS ... ORDER BY`` over the same files, run alternately (best of N each), a cache hit through the
API, and a growth table: build wall time, rows/s and peak RSS at several sizes, each build in a subprocess of
its own (peak RSS: the child's VmHWM), the plain CTAS beside it.

    python bench/bench_projections.py                                  # 10M-row ratio, growth 1M..100M
    python bench/bench_projections.py --growth 1000000,10000000        # a quicker growth table
    python bench/bench_projections.py --growth ""                      # the ratio only

Data: ``--parts`` artifacts per size (at most 10M rows each, 4 symbols, split by time, so they do not overlap;
about one bar in 10,000 is missing, so ``gaps`` has rows), generated and published one part at a time: the
generator's memory does not grow with the size. Everything lives under ``--work`` (default: a folder in the
system's temporary directory), never in the repository; each size's lake is removed after it is measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from artifact_lake.artifact_store.objects import object_path  # noqa: E402
from artifact_lake.projections import Lake  # noqa: E402
from artifact_lake.projections._sandbox import memory_limit  # noqa: E402
from artifact_lake.projections.build import STORAGE_VERSION  # noqa: E402
from bench._common import best_of_pair, machine, ms, percentile, print_table  # noqa: E402

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
MAX_PART_ROWS = 10_000_000
MINUTE_US = 60_000_000


def part_table(k: int, rows: int) -> pa.Table:
    """Part ``k`` of a split by time: ``rows`` one-minute bars of each of 4 symbols' share, sorted by (symbol,
    ts); parts never overlap (part k starts after every bar part k-1 can hold), a bar in 10,000 is missing."""
    rng = np.random.default_rng(k)
    per = rows // len(SYMBOLS)
    n = per * len(SYMBOLS)
    steps = np.where(rng.random(n) < 1e-4, 2, 1).astype(np.int64)
    steps.reshape(len(SYMBOLS), per)[:, 0] = 0
    start = 1_704_067_200_000_000 + k * 2 * per * MINUTE_US
    ts = start + np.cumsum(steps.reshape(len(SYMBOLS), per), axis=1).reshape(-1) * MINUTE_US
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    spread = np.abs(rng.normal(0, 1e-3, n)) * close
    open_ = np.concatenate([[100.0], close[:-1]])
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "symbol": pa.array(np.repeat(SYMBOLS, per)),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": np.round(rng.lognormal(3, 0.6, n), 4),
        }
    )


def make_lake(root: Path, rows: int, parts: int) -> list[str]:
    """A lake at ``root`` holding ``rows`` rows in ``parts`` ohlcv artifacts (ids in ``root/ids.json``)."""
    per = rows // parts
    if per > MAX_PART_ROWS:
        raise SystemExit(f"{rows:,} rows in {parts} parts is over {MAX_PART_ROWS:,} rows a part: give more --parts")
    ids_file = root / "ids.json"
    if ids_file.exists():
        ids: list[str] = json.loads(ids_file.read_text())
        return ids
    lake = Lake.open(root)
    try:
        ids = [lake.publish(part_table(k, per), "ohlcv").id for k in range(parts)]
    finally:
        lake.close()
    ids_file.write_text(json.dumps(ids))
    return ids


def build_ours(lake: Lake, ids: list[str]) -> None:
    lake.projections.drop()
    lake.projection("ohlcv", {"ohlcv": ids})


def build_plain(root: Path, ids: list[str], db: Path, *, like_ours: bool = False) -> None:
    """The baseline: DuckDB's own Parquet reader, defaults (memory limit, spill beside the file), one sort.

    ``like_ours``: in the projection's storage format (``STORAGE_VERSION``, which DuckDB 1.x clients read)
    and under its memory limit, to tell what those cost from what the build adds."""
    files = [str(object_path(root, i)) for i in ids]
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    config = {"storage_compatibility_version": STORAGE_VERSION, "memory_limit": memory_limit()} if like_ours else {}
    con = duckdb.connect(str(db), config=config)
    con.execute(f"CREATE TABLE ohlcv AS SELECT * FROM read_parquet({files!r}) ORDER BY symbol, ts")
    con.execute("CHECKPOINT")
    con.close()


def child(kind: str, root: Path) -> None:
    """One build in this process (the growth table's subprocess): prints its wall time as JSON."""
    ids = json.loads((root / "ids.json").read_text())
    if kind == "ours":
        import pyarrow.dataset  # noqa: F401 - a process's first import, not the build's time

        lake = Lake.open(root)
        lake.projections.drop()
        t0 = time.perf_counter()
        lake.projection("ohlcv", {"ohlcv": ids})
        wall = time.perf_counter() - t0
        lake.projections.drop()
        lake.close()
    else:
        db = root.parent / f"{root.name}-plain.duckdb"
        t0 = time.perf_counter()
        build_plain(root, ids, db)
        wall = time.perf_counter() - t0
        db.unlink()
    print(json.dumps({"wall": wall, "peak_rss": peak_rss()}))


def peak_rss() -> int:
    """This process's peak resident set (VmHWM) in bytes. Not ``ru_maxrss`` of the child from ``wait4``: Linux
    carries the parent's high-water mark into a forked child, so small builds would show the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(kind: str, root: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one build in a fresh subprocess."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--lake", str(root)], stdout=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} build of {root} failed (exit {proc.returncode})")
    got = json.loads(proc.stdout)
    return float(got["wall"]), int(got["peak_rss"])


def ratio_rows(work: Path, rows: int, parts: int, repeat: int) -> list[tuple[str, str, str, str, str]]:
    root = work / f"lake-{rows}"
    ids = make_lake(root, rows, parts)
    lake = Lake.open(root)
    db = work / "plain.duckdb"
    cpu: dict[str, list[float]] = {"ours": [], "plain": []}

    def with_cpu(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            fn()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)

        return run

    ours, base = best_of_pair(
        with_cpu("ours", lambda: build_ours(lake, ids)),
        with_cpu("plain", lambda: build_plain(root, ids, db)),
        repeat=repeat,
    )
    ours2, like = best_of_pair(
        lambda: build_ours(lake, ids), lambda: build_plain(root, ids, db, like_ours=True), repeat=repeat
    )
    db.unlink(missing_ok=True)
    cpu_ours, cpu_base = min(cpu["ours"]), min(cpu["plain"])
    out = [
        (
            f"build `ohlcv` projection, {parts} artifacts, {rows:,} rows (verify, overlap check, gaps), "
            f"best of {repeat}, alternating",
            ms(ours),
            f"{ms(base)} plain CTAS ORDER BY",
            f"{ours / base:.2f}x",
            "<= 1.3x",
        ),
        (
            "the same runs, CPU time (user + sys, all threads; best of each)",
            ms(cpu_ours),
            f"{ms(cpu_base)} plain CTAS ORDER BY",
            f"{cpu_ours / cpu_base:.2f}x",
            "-",
        ),
        (
            f"the same build, against the plain CTAS in the projection's format ({STORAGE_VERSION}) and memory limit",
            ms(ours2),
            f"{ms(like)} plain CTAS ORDER BY, {STORAGE_VERSION}, {memory_limit()}",
            f"{ours2 / like:.2f}x",
            "-",
        ),
    ]
    hits = []
    for _ in range(50):
        t0 = time.perf_counter()
        p = lake.projection("ohlcv", {"ohlcv": ids})
        hits.append(time.perf_counter() - t0)
        assert p.reused
    out.append(
        ("cache hit, same key (`lake.projection`, p50)", ms(percentile(hits, 50)), "-", "-", "<= 50 ms"),
    )
    lake.projections.drop()
    lake.close()
    return out


def growth(work: Path, sizes: list[int], parts: int, repeat: int, keep: bool) -> list[tuple[str, ...]]:
    rows_out: list[tuple[str, ...]] = []
    for n in sizes:
        root = work / f"lake-{n}"
        t0 = time.perf_counter()
        make_lake(root, n, parts)
        made = time.perf_counter() - t0
        times: dict[str, list[float]] = {"ours": [], "plain": []}
        rss: dict[str, int] = {"ours": 0, "plain": 0}
        for _ in range(1 if n >= 100_000_000 else repeat):  # the largest size runs once
            for kind in ("ours", "plain"):
                wall, peak = measure(kind, root)
                times[kind].append(wall)
                rss[kind] = max(rss[kind], peak)
        ours, base = min(times["ours"]), min(times["plain"])
        rows_out.append(
            (
                f"{n:,}",
                ms(ours),
                f"{n / ours / 1e6:.2f} M",
                f"{rss['ours'] / 2**30:.2f} GiB",
                ms(base),
                f"{rss['plain'] / 2**30:.2f} GiB",
                f"{ours / base:.2f}x",
            )
        )
        print(f"  {n:,} rows: ours {ours:.2f} s, plain {base:.2f} s (data made in {made:.1f} s)", flush=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return rows_out


def print_growth(rows: list[tuple[str, ...]], parts: int) -> None:
    header = (
        "rows",
        "build (wall)",
        "rows/s",
        "peak RSS",
        "plain CTAS (wall)",
        "plain peak RSS",
        "ratio",
    )
    print("\n### bench_projections.py: growth of the `ohlcv` build\n")
    print(f"{machine()}; {parts} artifacts per size; DuckDB {duckdb.__version__}, memory_limit {memory_limit()}\n")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the ratio case (0: skip it)")
    ap.add_argument("--parts", type=int, default=10, help="artifacts per size (each at most 10M rows)")
    ap.add_argument("--repeat", type=int, default=5, help="alternating runs of ours and the plain CTAS")
    ap.add_argument("--growth", default="1000000,10000000,30000000,100000000", help="sizes, comma separated")
    ap.add_argument("--growth-repeat", type=int, default=2, help="subprocess runs per size (100M and up: 1)")
    ap.add_argument("--work", type=Path, default=None, help="data folder (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated lakes")
    ap.add_argument("--child", choices=("ours", "plain"), help=argparse.SUPPRESS)
    ap.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.lake)
        return
    sizes = [int(s) for s in args.growth.split(",") if s.strip()]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-proj-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.rows:
            rows = ratio_rows(work, args.rows, args.parts, args.repeat)
            if not args.keep and args.rows not in sizes:  # else the growth table uses it (and removes it)
                shutil.rmtree(work / f"lake-{args.rows}", ignore_errors=True)
            print_table("bench_projections.py", rows)
        if sizes:
            print_growth(growth(work, sizes, args.parts, args.growth_repeat, args.keep), args.parts)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
