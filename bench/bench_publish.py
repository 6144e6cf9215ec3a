"""Publish benchmarks (issue #15, item 3): a Parquet file is published as a stream of row groups.

    python bench/bench_publish.py --dvc /tmp/dvcvenv/bin/dvc              # 10M-row comparison; growth 1M, 10M, 100M
    python bench/bench_publish.py --dvc ... --growth 1000000,10000000     # without the 100M-row file

1. Whole commands, alternated, best of 3: ``lake publish FILE --type ohlcv`` (a fresh ``lake init`` lake each
   time) against ``dvc add FILE`` (a fresh ``dvc init --no-scm`` repository each time, the file copied into
   it untimed; dvc lives in a venv of its own: ``python -m venv /tmp/dvcvenv && /tmp/dvcvenv/bin/pip install
   dvc``), on a 10M-row OHLCV zstd Parquet file, with the peak resident memory of each command. Two files: a
   usual one (pyarrow's defaults: nullable columns, dictionary pages; re-encoded by the lake) and the lake's
   own object of the same rows (``lake get``; canonical, so its bytes are kept).
2. In-memory publish of the 10M-row table against ``pq.write_table(zstd)``, alternated.
3. Growth: ``lake publish`` of 1M, 10M and 100M-row files: wall time and peak resident memory.

Input files are generated under ``--work`` (default /tmp/bench-publish) row group by row group, so the
generator stays small too; they are kept there for the next run (``--clean`` removes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from artifact_lake.artifact_store import Lake  # noqa: E402
from bench._common import machine, ms  # noqa: E402

SYMBOLS = np.array(["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"])
ROW_GROUP = 1 << 20

# Runs one command in a fresh parent: its wall time and the peak resident memory of that command alone.
MEASURE = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    t0 = time.perf_counter()
    r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"{sys.argv[1:]} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    print(json.dumps({"wall": wall, "rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
    """
)


def ohlcv_part(start: int, n: int, rng: np.random.Generator, last: float) -> tuple[pa.Table, float]:
    """Rows ``start .. start+n`` of a 4-symbol minute-bar file, symbols interleaved row by row."""
    i = np.arange(start, start + n, dtype=np.int64)
    ts = (1_704_067_200 + (i // len(SYMBOLS)) * 60) * 1_000_000
    close = last * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[last], close[:-1]])
    spread = np.abs(rng.normal(0, 1e-3, n)) * close
    symbol = pa.DictionaryArray.from_arrays(pa.array((i % len(SYMBOLS)).astype(np.int32)), pa.array(SYMBOLS))
    table = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "symbol": symbol.cast(pa.string()),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": np.round(rng.lognormal(3, 0.6, n), 4),
        }
    )
    return table, float(close[-1])


def ohlcv_file(work: Path, rows: int) -> Path:
    """A zstd Parquet file of ``rows`` OHLCV rows written with pyarrow's defaults, made once and kept."""
    path = work / f"ohlcv-{rows}.parquet"
    if path.exists():
        return path
    part_path = path.with_suffix(".part")
    rng = np.random.default_rng(0)
    last = 100.0
    writer = None
    t0 = time.perf_counter()
    for start in range(0, rows, ROW_GROUP):
        table, last = ohlcv_part(start, min(ROW_GROUP, rows - start), rng, last)
        if writer is None:
            writer = pq.ParquetWriter(part_path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    part_path.rename(path)
    print(
        f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr
    )
    return path


def ohlcv_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    last = 100.0
    parts = []
    for start in range(0, rows, ROW_GROUP):
        table, last = ohlcv_part(start, min(ROW_GROUP, rows - start), rng, last)
        parts.append(table)
    return pa.concat_tables(parts).combine_chunks()


def measure(cmd: list[str], cwd: Path | None = None) -> tuple[float, int]:
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, cwd=cwd, check=False)
    if r.returncode:
        raise SystemExit(r.stderr.strip())
    got = json.loads(r.stdout)
    return float(got["wall"]), int(got["rss"])


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def lake_publish(work: Path, src: Path) -> tuple[float, int]:
    lake = fresh(work / "lake")
    subprocess.run(["lake", "--lake", str(lake), "init"], check=True, capture_output=True)
    return measure(["lake", "--lake", str(lake), "publish", str(src), "--type", "ohlcv"])


def dvc_add(work: Path, src: Path, dvc: str) -> tuple[float, int]:
    repo = fresh(work / "dvc-repo")
    repo.mkdir()
    subprocess.run([dvc, "init", "--no-scm", "-q"], check=True, cwd=repo)
    shutil.copyfile(src, repo / src.name)
    return measure([dvc, "add", src.name], cwd=repo)


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def versus_dvc(work: Path, rows: int, dvc: str, repeat: int) -> list[str]:
    usual = ohlcv_file(work, rows)
    canonical = work / f"ohlcv-{rows}-canonical.parquet"
    if not canonical.exists():
        lake = fresh(work / "lake")
        out = subprocess.run(
            ["lake", "--lake", str(lake), "publish", str(usual), "--type", "ohlcv"], check=True, capture_output=True
        )
        artifact_id = out.stdout.decode().split()[0]
        subprocess.run(
            ["lake", "--lake", str(lake), "get", artifact_id, "--out", str(canonical)], check=True, capture_output=True
        )
    dvc_version = subprocess.run([dvc, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    lines = [
        f"\n### `lake publish` vs `dvc add`, whole commands, {rows:,}-row OHLCV zstd Parquet, best of {repeat}\n",
        f"pyarrow {pa.__version__}, dvc {dvc_version}\n",
        "| file | lake publish | dvc add | ratio | lake peak RSS | dvc peak RSS | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, src in (("usual (re-encoded)", usual), ("canonical (bytes kept)", canonical)):
        ours: list[tuple[float, int]] = []
        theirs: list[tuple[float, int]] = []
        for _ in range(repeat):  # alternated: both see the same moments of a shared machine
            ours.append(lake_publish(work, src))
            theirs.append(dvc_add(work, src, dvc))
        a, b = min(w for w, _ in ours), min(w for w, _ in theirs)
        lines.append(
            f"| {label}, {src.stat().st_size / 1e6:,.0f} MB | {ms(a)} | {ms(b)} | {a / b:.2f}x"
            f" | {mb(max(r for _, r in ours))} | {mb(max(r for _, r in theirs))} | <= 1.0x, < 1 GiB |"
        )
        print(f"{label}: lake {[round(w, 2) for w, _ in ours]} dvc {[round(w, 2) for w, _ in theirs]}", file=sys.stderr)
    return lines


def in_memory(work: Path, rows: int, repeat: int) -> list[str]:
    table = ohlcv_table(rows)
    ours, base = [], []
    for _ in range(repeat):
        lake = Lake.open(fresh(work / "mem-lake"))
        t0 = time.perf_counter()
        lake.publish(table, "ohlcv")
        ours.append(time.perf_counter() - t0)
        lake.close()
        t0 = time.perf_counter()
        pq.write_table(table, work / "base.parquet", compression="zstd")
        base.append(time.perf_counter() - t0)
    a, b = min(ours), min(base)
    return [
        f"\n### In-memory publish, {rows:,}-row OHLCV table, alternated, best of {repeat}\n",
        "| case | ours | baseline | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| `Lake.publish(table)` | {ms(a)} | {ms(b)} `pq.write_table` zstd | {a / b:.2f}x | <= 1.0x |",
    ]


def growth(work: Path, sizes: list[int]) -> list[str]:
    lines = [
        "\n### Growth: `lake publish FILE --type ohlcv`, whole command, fresh lake, one run each\n",
        "| rows | file | wall | rows/s | peak RSS |",
        "| --- | --- | --- | --- | --- |",
    ]
    results = []
    for rows in sizes:
        src = ohlcv_file(work, rows)
        wall, rss = lake_publish(work, src)
        results.append((rows, wall, rss))
        lines.append(
            f"| {rows:,} | {src.stat().st_size / 1e6:,.0f} MB | {ms(wall)} | {rows / wall / 1e6:.2f}M | {mb(rss)} |"
        )
        print(lines[-1], file=sys.stderr)
        if rows >= 50_000_000:
            src.unlink()  # the big one is made for one run only
    # the step between the two largest sizes says whether time per row stays put (the smallest carries the
    # fixed start-up: interpreter, imports, the lake's files)
    (r0, w0, _), (r1, w1, _) = results[-2], results[-1]
    slope = (w1 - w0) / (r1 - r0)
    rss = [r for _, _, r in results]
    lines.append(
        f"\nVerdict: from {r0:,} to {r1:,} rows, time x{w1 / w0:.1f} for rows x{r1 / r0:.0f} "
        f"({'linear' if 0.7 < (w1 / w0) / (r1 / r0) < 1.3 else 'not linear'}: {slope * 1e9:.0f} ns a row, "
        f"about {max(0.0, w0 - slope * r0):.1f} s fixed); peak RSS {mb(min(rss))} to {mb(max(rss))} "
        f"({'flat: memory does not break' if max(rss) < 1.5 * min(rss) else 'grows with the file'})."
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dvc", default=os.environ.get("DVC", "/tmp/dvcvenv/bin/dvc"), help="dvc executable")
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the dvc and in-memory comparisons")
    ap.add_argument("--growth", default="1000000,10000000,100000000", help="comma-separated row counts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-publish"))
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: dvc, memory, growth")
    ap.add_argument("--clean", action="store_true", help="remove the generated files at the end")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    lines = [f"## Publish (`python bench/bench_publish.py`)\n\n{time.strftime('%Y-%m-%d')}, {machine()}"]
    if "dvc" not in skip:
        lines += versus_dvc(args.work, args.rows, args.dvc, args.repeat)
    if "memory" not in skip:
        lines += in_memory(args.work, args.rows, args.repeat)
    if "growth" not in skip:
        lines += growth(args.work, [int(float(s)) for s in args.growth.split(",")])
    print("\n".join(lines))
    if args.clean:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
