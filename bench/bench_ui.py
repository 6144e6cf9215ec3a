"""``lake ui`` on a large lake: server time per page and the experiments list painted in Chromium.

    python bench/bench_ui.py                 # 100,000 artifacts, 2,000 runs (200 experiments x 10)
    python bench/bench_ui.py --artifacts 20000 --runs 400

The lake is the demo lake (real objects, so artifact and experiment pages read real tables) plus manifest rows
written straight into SQLite: ``artifacts`` as in ``bench_store.build_manifest`` and experiments whose runs
point at the demo sweep's results. The server is a real ``lake ui`` process; "server" is the request's time on
loopback (urllib, keep-alive off), p50 and p95 of 20 after 2 warm-up requests. Targets: p50 <= 100 ms every
page; the experiments list painted (first contentful paint) <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ms, percentile, print_table  # noqa: E402
from bench.bench_store import build_manifest  # noqa: E402

TARGET_S = 0.100
PAINT_S = 0.300


def build(root: Path, artifacts: int, runs: int) -> None:
    from artifact_lake.artifact_store import manifest as mf
    from artifact_lake.projections import Lake

    subprocess.run([sys.executable, "-m", "artifact_lake.cli", "demo", "--lake", str(root), "--json"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    with Lake.open(root) as lake:
        start = lake.db.execute("SELECT max(pk) FROM artifacts").fetchone()[0]
        tmp = Lake.open(Path(tempfile.mkdtemp()) / "x")
        ids = build_manifest(tmp, artifacts)
        rows = tmp.db.execute("SELECT * FROM artifacts").fetchall()
        metas = tmp.db.execute("SELECT key, value, artifact FROM meta").fetchall()
        tmp.close()
        src = lake.db.execute("SELECT * FROM experiments WHERE name = 'demo-sma'").fetchone()
        run = lake.db.execute("SELECT * FROM runs WHERE experiment = ?", (src["id"],)).fetchone()
        per = 10
        with mf.immediate(lake.db):
            lake.db.executemany(
                "INSERT INTO artifacts (pk, id, type, schema_version, file_hash, rows, bytes, columns, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((r["pk"] + start, *tuple(r)[1:]) for r in rows),
            )
            lake.db.executemany("INSERT INTO meta VALUES (?, ?, ?)", ((k, v, a + start) for k, v, a in metas))
            lake.db.executemany(
                "INSERT INTO names (name, version, artifact, created) VALUES (?, 1, ?, ?)",
                ((f"bench/{i % 1000}/{ids[i][:8]}", i + 1 + start, mf.now_iso()) for i in range(0, artifacts, 4)),
            )
            for e in range(runs // per):
                exp_id = f"{e:064x}"
                lake.db.execute(
                    "INSERT INTO experiments (id, name, kind, spec, created) VALUES (?, ?, ?, ?, ?)",
                    (
                        exp_id,
                        f"bench-{e:04d}",
                        src["kind"],
                        src["spec"],
                        f"2025-01-01T00:{e // 60 % 60:02d}:{e % 60:02d}Z",
                    ),
                )
                cols = [c for c in run.keys() if c not in ("id", "experiment", "started")]
                for k in range(per):
                    lake.db.execute(
                        f"INSERT INTO runs (id, experiment, started, {', '.join(cols)})"
                        f" VALUES (?, ?, ?, {', '.join('?' * len(cols))})",
                        (f"{e:016x}{k:016x}", exp_id, f"2025-01-01T01:{k:02d}:00Z", *(run[c] for c in cols)),
                    )


def serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "artifact_lake.cli", "--lake", str(root), "ui", "--port", str(port)])
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("lake ui did not start")


def timed(url: str, n: int = 20) -> tuple[float, float]:
    samples = []
    for i in range(n + 2):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
        if i >= 2:
            samples.append(time.perf_counter() - t0)
    return percentile(samples, 50), percentile(samples, 95)


def painted(url: str) -> float:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", args=args)
        page = ctx.new_page()
        best = []
        for _ in range(5):
            page.goto(url + "/experiments")
            fcp = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
                " ?? performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
            )
            best.append(float(fcp) / 1000)
        ctx.close()
    return percentile(best, 50)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifacts", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    root = work / "lake"
    t0 = time.perf_counter()
    build(root, args.artifacts, args.runs)
    print(
        f"built {args.artifacts:,} artifacts and {args.runs:,} runs in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    proc, url = serve(root)
    try:
        page = json.loads(urllib.request.urlopen(url + "/experiment/demo-sma.json").read())
        run, metrics = page["run"]["id"], page["run"]["results"]["metrics"]
        pages = {
            "overview": "/",
            "artifacts (newest)": "/artifacts",
            "artifacts page 2 (keyset)": "/artifacts?after=" + str(args.artifacts - 40),
            "artifacts by type, largest": "/artifacts?type=metrics&sort=largest",
            "artifacts by meta": "/artifacts?meta=symbol%3DS7",
            "artifacts by name glob": "/artifacts?name=bench/7/*",
            "artifact (metrics)": f"/artifact/{metrics}",
            "experiments": "/experiments",
            "experiments.json": "/experiments.json",
            "experiment": "/experiment/demo-sma",
            "equity data": f"/data/equity.json?run={run}&symbol=BTC/USDT",
            "run": f"/run/{run}",
            "compare": "/compare?exp=demo-sma&exp=bench-0001",
        }
        rows = []
        for label, path in pages.items():
            p50, p95 = timed(url + path)
            rows.append((label, f"p50 {ms(p50)}", f"p95 {ms(p95)}", "ok" if p50 <= TARGET_S else "SLOW", "<= 100 ms"))
        paint = painted(url)
        rows.append(
            (
                "experiments list painted (FCP, Chromium)",
                ms(paint),
                "",
                "ok" if paint <= PAINT_S else "SLOW",
                "<= 300 ms",
            )
        )
        rows.append(("server peak RSS", f"{rss_kb(proc.pid) / 1024:.0f} MiB", "", "", ""))
        print_table(f"lake ui: {args.artifacts:,} artifacts, {args.runs:,} runs", rows)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        os.environ.pop("_", None)


if __name__ == "__main__":
    main()
