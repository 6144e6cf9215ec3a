"""Sweep benchmark (issue #15): `experiments execute` of a sweep next to `sim.run_grid` of the same work, and how
wall time and peak RSS grow with the number of combinations.

Each case runs in its own process (its peak RSS is its own), ours and the baseline alternated ``--repeat`` times;
the table keeps the best wall time of each. The baseline is ``sim.run_grid`` on bars already in memory (the
metrics of every combination, nothing kept); ours is the whole ``execute`` call: verify the inputs, read the bars
through their projection, the metrics of every combination (chunked and staged), the best 10 per symbol run
again with per-bar equity and trades, every result checked and published with lineage.

    python bench/bench_sweeps.py [--bars 100000] [--combos 1000] [--repeat 3] [--growth 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# the user's numpy sma cross as a user would write it, and fast x slow sweeps of a given size
from bench.bench_plugins import PLUGIN, sweep_spec  # noqa: E402
from bench.bench_plugins import sweep as windows  # noqa: E402


def peak_rss() -> int:
    """This process's peak resident memory (bytes): VmHWM, which starts afresh at exec (getrusage's ru_maxrss
    keeps the high-water mark of the process that forked us, here the bench itself)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


LAUNCH = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""
"""Runs a command from a small process and prints its peak RSS: ru_maxrss of a child counts the memory of
the process that forked it, and the bench process is large."""


def child(mode: str, root: str, strategy: str, combos: int) -> None:
    """One measured call in this process; prints wall time, peak RSS and the run's timings as JSON."""
    from artifact_lake import sim
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    fast, slow = windows(combos)
    lake = Lake.open(root)
    out: dict[str, Any] = {}
    if mode == "grid":
        bars = sim.Bars.from_table(lake.read("px").drop_columns(["symbol"]))
        f = [a for a in fast for _ in slow]
        s = [b for _ in fast for b in slow]
        sim.run_grid(bars.slice(0, 1000), f[:2], s[:2])  # warm: numba's cached code loaded, as for ours
        t0 = time.perf_counter()
        sim.run_grid(bars, f, s)
        out["wall"] = time.perf_counter() - t0
    else:
        warm = sweep_spec("warm", strategy, [2, 3], list(range(10, 61)))  # 102 combinations: the chunked path
        execute(lake, create(lake, parse_spec(warm), replace=True)[0].id, force=True)  # warm caches, as for run_grid
        spec = sweep_spec(f"bench-{strategy}-{combos}", strategy, fast, slow)
        exp, _ = create(lake, parse_spec(spec), replace=True, max_combinations=combos)
        t0 = time.perf_counter()
        run = execute(lake, exp.id, force=True)
        out["wall"] = time.perf_counter() - t0
        out["timings"] = run.timings
        out["sweep"] = run.checks.get("sweep")
    out["rss"] = peak_rss()
    lake.close()
    print(json.dumps(out))


def measure(mode: str, root: Path, strategy: str, combos: int, env: dict[str, str]) -> dict[str, Any]:
    """One case in its own process, on a fresh copy of the lake (so no result is deduplicated against an
    earlier repeat's; the ohlcv projection is in the copy, as it is on a lake that ran anything before)."""
    import shutil

    copy = root.with_name("run")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    try:
        cmd = [sys.executable, __file__, "--child", mode, str(copy), strategy, str(combos)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def timed_command(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (bytes) and stdout of one whole command (started from a small launcher)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LAUNCH, *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    rss, code = (int(x) for x in out.stderr.strip().splitlines()[-1].split())
    if code != 0:
        raise RuntimeError(f"{cmd} failed with {code}")
    return wall, rss, out.stdout


def single_runs(sizes: list[int], repeat: int) -> None:
    """`experiments execute` of one backtest as a whole command (warm numba cache, projection built), on a
    fresh copy of the lake each time (nothing deduplicated), next to the bare floors of a command."""
    import shutil

    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake
    from bench._common import ms, print_rows

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    exe = shutil.which("experiments") or "experiments"
    rows = []
    floors = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import artifact_lake.sim + numba start-up": [
            sys.executable,
            "-c",
            "import artifact_lake.sim as s, pyarrow as pa; s.warm(); pa.array([0.0])",
        ],
    }
    for name, cmd in floors.items():
        best = min(timed_command(cmd, env)[0] for _ in range(repeat))
        rows.append((name, ms(best), "", "", "", ""))
    with tempfile.TemporaryDirectory(prefix="bench-execute-") as tmp:
        for n in sizes:
            root = Path(tmp) / f"lake-{n}"
            with Lake.open(root) as lake:
                lake.publish(synthetic_ohlcv(("BTC/USDT",), bars=n, seed=1), "ohlcv", name="px")
                spec = 'kind = "backtest"\nname = "one"\n[inputs]\nohlcv = ["px"]\n'
                spec += '[strategy]\nname = "sma_cross"\nfast = 10\nslow = 50\n'
                create(lake, parse_spec(spec))
                execute(lake, "one")  # the projection built, numba's cache warm
            best: tuple[float, int, dict[str, Any]] | None = None
            for _ in range(repeat):
                copy = Path(tmp) / "run"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(root, copy)
                wall, rss, out = timed_command([exe, "--lake", str(copy), "execute", "one", "--force", "--json"], env)
                if best is None or wall < best[0]:
                    best = (wall, rss, json.loads(out))
            assert best is not None
            wall, rss, run = best
            t = run["timings"]
            covered = sum(t.values()) / run["duration"]
            top = ", ".join(f"{k} {ms(v)}" for k, v in sorted(t.items(), key=lambda kv: -kv[1])[:4])
            rows.append((f"{n:,} bars", ms(wall), ms(run["duration"]), f"{covered:.1%}", f"{rss / 2**20:.0f} MiB", top))
    print_rows(
        f"`experiments execute` of one backtest, whole command, best of {repeat}",
        ("case", "whole command", "execute call", "timings cover", "peak RSS", "largest phases"),
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--combos", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--growth", default="1000,10000,100000", help="combination counts for the growth table")
    ap.add_argument("--execute-bars", default="10000,100000,1000000", help="bar counts for the single-run table")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.projections import Lake
    from bench._common import machine, ms, print_table

    print(machine())
    if args.execute_bars:
        single_runs([int(x) for x in args.execute_bars.split(",")], args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench-sweeps-") as tmp:
        root = Path(tmp) / "lake"
        with Lake.open(root) as lake:
            lake.publish(synthetic_ohlcv(("BTC/USDT",), bars=args.bars, seed=1), "ohlcv", name="px")
            lake.projection("ohlcv", {"ohlcv": ["px"]})
        plugin = Path(tmp) / "my_strategies.py"
        plugin.write_text(PLUGIN)
        env = {**os.environ, "LAKE_PLUGINS": str(plugin)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cases = (("grid", "sma_cross"), ("execute", "sma_cross"), ("execute", "my_sma_cross"))
        best: dict[tuple[str, str], dict[str, Any]] = {}
        for _ in range(args.repeat):  # alternated: every case sees the same moments of a shared machine
            for case in cases:
                got = measure(*case[:1], root, case[1], args.combos, env)
                if case not in best or got["wall"] < best[case]["wall"]:
                    best[case] = got
        g, b, p = best[cases[0]], best[cases[1]], best[cases[2]]
        mib = 2**20
        rows = [
            (
                f"built-in sma_cross, {args.combos:,} combos x {args.bars:,} bars (`experiments execute`)",
                ms(b["wall"]),
                f"{ms(g['wall'])} sim.run_grid",
                f"{b['wall'] / g['wall']:.2f}x",
                "<= 1.5x",
            ),
            (
                "plugin my_sma_cross (numpy, no sweep fast path), same sweep",
                ms(p["wall"]),
                f"{ms(g['wall'])} sim.run_grid",
                f"{p['wall'] / g['wall']:.2f}x",
                "<= 2x",
            ),
            ("  plugin: its own signal code (run record)", ms(p["timings"]["signals"]), "", "", ""),
            ("  plugin: look-ahead guard", ms(p["timings"].get("lookahead_guard", 0.0)), "", "", ""),
            (
                "peak RSS: execute built-in / plugin / run_grid",
                f"{b['rss'] / mib:.0f} / {p['rss'] / mib:.0f} MiB",
                f"{g['rss'] / mib:.0f} MiB",
                "",
                "",
            ),
        ]
        print_table(f"sweeps, best of {args.repeat}, alternated", rows)
        print("\nbuilt-in timings:", json.dumps({k: round(v, 3) for k, v in b["timings"].items()}))
        print("plugin timings:", json.dumps({k: round(v, 3) for k, v in p["timings"].items()}))

        growth = []
        for combos in [int(x) for x in args.growth.split(",") if x]:
            ours = measure("execute", root, "sma_cross", combos, env)
            base = measure("grid", root, "sma_cross", combos, env)
            growth.append(
                (
                    f"{combos:,} combos x {args.bars:,} bars",
                    ms(ours["wall"]),
                    f"{ours['rss'] / mib:.0f} MiB",
                    ms(base["wall"]),
                    f"{base['rss'] / mib:.0f} MiB",
                    f"{ours['wall'] / base['wall']:.2f}x",
                    f"{ours['sweep']['chunks']} ({ours['sweep']['chunk_combinations']:,} each)",
                )
            )
        if growth:
            from bench._common import print_rows

            print_rows(
                "growth in combinations (built-in sma_cross; each once)",
                ("case", "execute", "peak RSS", "run_grid", "peak RSS", "ratio", "chunks"),
                growth,
            )


if __name__ == "__main__":
    main()
