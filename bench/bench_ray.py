"""Ray executor benchmark (issue #17): what a chunk costs on Ray against the local executor, and a
10,000-combination sweep through both on this machine.

One local Ray cluster for the whole bench (``ray.init(num_cpus=N)`` in this process, loopback only, started
before any timing; its start-up is printed apart). Each case is a whole ``experiments execute`` (forced, so
nothing is reused) of the same spec in the same lake, the local executor and Ray alternated, best of
``--repeat``. Both publish the same ids (checked).

* **Per-chunk overhead**: a sweep of the built-in ``sma_cross`` cut into many tiny chunks (one combination over
  every symbol each) through both executors (wall time per chunk of each), and the bare round trip of an
  empty task through the executor's ``map_unordered`` (bars put in the object store once, as for a sweep):
  what Ray adds to every chunk before any work.
* **10,000 combinations**: 100 fast x 100 slow windows over ``--symbols`` x ``--bars``, in the default chunks.
  On 2 cores no speed-up is expected: the local executor already runs its chunks on both cores, and Ray's
  workers share the same two.

    python bench/bench_ray.py [--bars 20000] [--symbols 2] [--repeat 3] [--cpus 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray process on 127.0.0.1, as in the tests

from bench._common import best_of, best_of_pair, machine, ms, print_rows  # noqa: E402
from bench.bench_plugins import sweep_spec  # noqa: E402


def empty_task(bars: object, k: int) -> int:
    """A chunk that does nothing: the round trip of a task."""
    return k


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--tiny-chunks", type=int, default=200, help="combinations (= chunks) of the overhead case")
    args = ap.parse_args()

    import ray

    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.experiments import sweep as sweep_mod
    from artifact_lake.projections import Lake

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    start = time.perf_counter() - t0
    symbols = tuple(f"S{i}" for i in range(args.symbols))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Lake.open(Path(tmp) / "lake") as lake:
        lake.publish(synthetic_ohlcv(symbols, bars=args.bars, seed=7), "ohlcv", name="px")

        def case(name: str, fast: list[int], slow: list[int], chunk_steps: int | None) -> tuple[float, float, int]:
            spec = sweep_spec(name, "sma_cross", fast, slow) + "[results]\nbest = 5\n"
            exp, _ = create(lake, parse_spec(spec), replace=True, max_combinations=len(fast) * len(slow))
            saved = sweep_mod.CHUNK_BAR_STEPS
            if chunk_steps is not None:
                sweep_mod.CHUNK_BAR_STEPS = chunk_steps
            try:
                ids: dict[str, dict[str, str]] = {}
                tasks = [0]

                def local() -> None:
                    ids["local"] = execute(lake, exp.id, force=True).results

                def on_ray() -> None:
                    run = execute(lake, exp.id, force=True, executor="ray")
                    ids["ray"] = run.results
                    tasks[0] = run.checks["sweep"]["executor"]["tasks"]

                local()  # warm: numba's cached code and the projection, for both
                on_ray()
                t_ray, t_local = best_of_pair(on_ray, local, args.repeat)
                assert ids["ray"] == ids["local"], "the executors published different ids"
                return t_local, t_ray, tasks[0]
            finally:
                sweep_mod.CHUNK_BAR_STEPS = saved

        import pyarrow.compute as pc

        from artifact_lake import sim
        from artifact_lake.experiments.ray_executor import RayExecutor, worker_env

        n = args.tiny_chunks
        pool = RayExecutor()  # on the cluster this process started
        table = lake.read("px")
        bars = {symbols[0]: sim.Bars.from_table(table.filter(pc.equal(table["symbol"], symbols[0])))}
        jobs = lambda: ((k, (k,)) for k in range(n))  # noqa: E731
        list(pool.map_unordered(empty_task, bars, jobs(), worker_env()))  # warm: workers started
        t_empty = best_of(lambda: list(pool.map_unordered(empty_task, bars, jobs(), worker_env())), args.repeat)
        rows.append((f"{n} empty tasks (bars put once)", ms(t_empty), "-", "-", f"{t_empty / n * 1000:.2f} ms a task"))
        short = max(2_000, args.bars // 10)
        lake.publish(synthetic_ohlcv(symbols, bars=short, seed=7), "ohlcv", name="px")
        t_local, t_ray, chunks = case("tiny", [5], list(range(20, 20 + n)), short * args.symbols)
        rows.append(
            (
                f"{n} combinations x {args.symbols} symbols x {short:,} bars in {chunks} one-combination chunks",
                ms(t_ray),
                f"{ms(t_local)} local",
                f"{t_ray / t_local:.2f}x",
                f"{t_ray / chunks * 1000:.1f} ms a chunk (local {t_local / chunks * 1000:.1f} ms)",
            )
        )
        lake.publish(synthetic_ohlcv(symbols, bars=args.bars, seed=7), "ohlcv", name="px")
        fast, slow = list(range(2, 102)), list(range(110, 210))
        t_local, t_ray, chunks = case("ten-thousand", fast, slow, None)
        rows.append(
            (
                f"10,000 combinations x {args.symbols} symbols x {args.bars:,} bars, {chunks} chunks",
                ms(t_ray),
                f"{ms(t_local)} local",
                f"{t_ray / t_local:.2f}x",
                "report (no speed-up on 2 cores)",
            )
        )
    ray.shutdown()
    print(f"\n{machine()}; Ray {ray.__version__}, a local cluster of {args.cpus} CPUs started in {start:.2f} s")
    print_rows(
        "Ray executor against the local executor (experiments execute, alternated, best of "
        f"{args.repeat}; driver peak RSS {peak_rss_mib():.0f} MiB)",
        ("case", "ray", "baseline", "ratio", "what Ray adds"),
        rows,
    )


if __name__ == "__main__":
    main()
