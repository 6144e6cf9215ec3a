"""Start-up of the CLI: `lake --help` and `lake find`, ours against another checkout of the project (a git ref).

Usage: python bench/bench_startup.py [--baseline-ref REF] [--repeat N]

The baseline is the same commands from a git worktree of REF (default: the commit before the namespace move,
3b83ba1, whose packages were top-level `cli`, `artifact_store`, ...), run with that worktree on PYTHONPATH.
Each pair is timed alternately, best of N each, as whole processes (interpreter start included).
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

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline-ref", default="3b83ba1")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--artifacts", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline_ref], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            lake = Path(tmp) / "lake"
            # made in a child process: this one stays small, so a forked child's peak RSS is its own
            make = (
                "import sys\n"
                "from artifact_lake.artifact_store import Lake\n"
                "from artifact_lake.artifact_store.samples import synthetic_ohlcv\n"
                "t = synthetic_ohlcv(('A',), bars=20, seed=1)\n"
                "with Lake.open(sys.argv[1]) as lk:\n"
                "    for i in range(int(sys.argv[2])):\n"
                "        lk.publish(t.slice(0, 1 + i % 20), 'ohlcv', name=f'px/{i}', meta={'i': str(i)})\n"
            )
            subprocess.run([sys.executable, "-c", make, str(lake), str(args.artifacts)], check=True)
            # bytecode is cached as an installed package's is (PYTHONDONTWRITEBYTECODE would recompile each run)
            plain = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
            # ours as a wheel lays it out (artifact_lake/<folder>), found on PYTHONPATH like the baseline's folders,
            # so neither side pays for an editable install's import hook
            tree = Path(tmp) / "ours" / "artifact_lake"
            tree.mkdir(parents=True)
            for folder in ("schemas", "artifact_store", "projections", "experiments", "sim", "cli"):
                (tree / folder).symlink_to(ROOT / folder)
            ours_env = {**plain, "PYTHONPATH": str(tree.parent)}
            base_env = {**plain, "PYTHONPATH": str(base)}
            # what the `lake` console script runs, on both sides
            ours = [sys.executable, "-c", "from artifact_lake.cli.main import lake_main; lake_main()"]
            # the baseline's layout had a top-level `cli` package
            theirs = [sys.executable, "-c", "import importlib; importlib.import_module('cli.main').lake_main()"]
            cases = [
                ("`lake --help`", ["--help"]),
                ("`lake find --limit 10`", ["--lake", str(lake), "find", "--limit", "10"]),
                (
                    "`lake find --type ohlcv --limit 10 --json`",
                    ["--lake", str(lake), "find", "--type", "ohlcv", "--limit", "10", "--json"],
                ),  # noqa: E501
            ]
            rows = []
            for label, argv in cases:
                timed(ours + argv, ours_env, tmp), timed(theirs + argv, base_env, tmp)  # warm: bytecode written
                a, b = [], []
                for _ in range(args.repeat):
                    a.append(timed(ours + argv, ours_env, tmp))
                    b.append(timed(theirs + argv, base_env, tmp))
                (ta, _), (tb, _) = min(a), min(b)
                rows.append((
                    f"{label}, {args.artifacts:,} artifacts, whole process (peak RSS ours / baseline)",
                    f"{ms(ta)} ({max(r for _, r in a) / 1024:.0f} MiB)",
                    f"{ms(tb)} ({max(r for _, r in b) / 1024:.0f} MiB) at {args.baseline_ref}",
                    f"{ta / tb:.2f}x",
                    "<= 1.0x (no slower)",
                ))  # fmt: skip
            bare = min(timed([sys.executable, "-c", "pass"], plain, tmp) for _ in range(args.repeat))
            rows.append(("bare `python -c pass`", ms(bare[0]), "-", "-", "report"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    print_table("bench_startup.py", rows)


if __name__ == "__main__":
    main()
