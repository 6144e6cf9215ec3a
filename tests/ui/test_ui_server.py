"""``lake ui`` over HTTP: every page and its JSON, keyset paging, read-only, values as parameters."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .conftest import Server, start_ui, stop


def test_every_page_renders_and_has_json(server: Server) -> None:
    exps = server.json("/experiments.json")
    assert isinstance(exps, dict)
    names = {row["experiment"]["name"] for row in exps["experiments"]}
    assert {"demo-sma", "demo-alerts"} <= names
    sma = next(r for r in exps["experiments"] if r["experiment"]["name"] == "demo-sma")
    assert sma["run"]["status"] == "succeeded" and sma["headline"]["combinations"] == 12
    exp = server.json("/experiment/demo-sma.json")
    assert isinstance(exp, dict)
    assert exp["swept"] == ["fast", "slow"] and len(exp["heatmap"]["xs"]) == 2
    run = exp["run"]["id"]
    metrics_id = exp["run"]["results"]["metrics"]
    for path in (
        "/",
        "/artifacts",
        "/experiments",
        "/experiment/demo-sma",
        f"/artifact/{metrics_id}",
        f"/run/{run}",
        "/compare?exp=demo-sma&exp=demo-alerts",
    ):
        status, body, ctype = server.get(path)
        assert status == 200 and ctype.startswith("text/html"), path
        assert b"http://" not in body.replace(server.url.encode(), b""), f"{path} names an outside URL"
    art = server.json(f"/artifact/{metrics_id}.json")
    assert isinstance(art, dict)
    assert art["artifact"]["type"] == "metrics" and art["made_by"] == run
    assert any(n["type"] == "ohlcv" for n in art["lineage"]["nodes"])
    overview = server.json("/index.json")
    assert isinstance(overview, dict) and overview["total"]["artifacts"] >= 8
    eq = server.json(f"/data/equity.json?run={run}&symbol=BTC/USDT&combo=1")
    assert isinstance(eq, dict) and eq["series"][0]["combo"] == 1 and len(eq["ts"]) > 100
    status, body, _ = server.get(f"/artifact/{metrics_id}/download.parquet")
    assert status == 200 and body[:4] == b"PAR1"
    status, body, _ = server.get(f"/artifact/{metrics_id}/download.csv")
    assert status == 200 and body.splitlines()[0].startswith(b'"combo"')


def test_keyset_pages_cover_every_artifact_once(server: Server) -> None:
    seen: list[str] = []
    for sort in ("newest", "largest"):
        seen = []
        path = f"/artifacts.json?sort={sort}"
        while True:
            page = server.json(path)
            assert isinstance(page, dict)
            seen += [r["id"] for r in page["rows"]]
            if not page["next"]:
                break
            path = page["next_url"].replace("/artifacts?", "/artifacts.json?")
        assert len(seen) == len(set(seen))
    total = server.json("/index.json")
    assert isinstance(total, dict) and len(seen) == total["total"]["artifacts"]


def test_typed_values_reach_sql_as_parameters(server: Server) -> None:
    from urllib.parse import urlencode

    evil = "x' OR 1=1 --"
    page = server.json("/artifacts.json?" + urlencode({"name": evil, "meta": f"role={evil}", "type": evil}))
    assert isinstance(page, dict) and page["rows"] == []
    page = server.json("/artifacts.json?meta=role%3Dmetrics&type=metrics")
    assert isinstance(page, dict) and len(page["rows"]) == 3  # the demo's three experiments
    status, body, _ = server.get("/artifact/nope.json")
    assert status == 404 and "error" in json.loads(body)


def test_manifest_is_never_written(server: Server) -> None:
    before = (server.lake / "manifest.sqlite").stat().st_mtime_ns
    server.get("/experiments")
    server.get("/artifacts?type=ohlcv")
    assert (server.lake / "manifest.sqlite").stat().st_mtime_ns == before


def test_serves_a_lake_on_a_read_only_mount(demo_lake: Path, tmp_path: Path) -> None:
    """A real read-only bind mount (needs root; skipped with the reason where the machine refuses it)."""
    import subprocess

    import pytest

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with sqlite3.connect(demo_lake / "manifest.sqlite") as db:  # merge the WAL, as a clean close leaves it
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    done = subprocess.run(["mount", "--bind", str(demo_lake), str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a bind mount here ({done.stderr.strip() or 'mount failed'})")
    try:
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here ({done.stderr.strip()})")
        srv = start_ui(mnt)
        try:
            page = srv.json("/experiments.json")
            assert isinstance(page, dict) and len(page["experiments"]) == 3
            exp = srv.json("/experiment/demo-sma.json")
            assert isinstance(exp, dict) and exp["heatmap"] is not None
        finally:
            stop(srv.proc)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_binds_loopback_by_default(server: Server) -> None:
    import socket

    assert server.proc.pid > 0
    addresses = {str(a[4][0]) for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for address in addresses - {"127.0.0.1"}:
        if address.startswith("127."):
            continue
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((address, server.port)) != 0, f"lake ui answers on {address}"


def test_plugin_run_shows_its_recorded_source(server: Server) -> None:
    """demo-bollinger ran the demo_bollinger plugin: its run and experiment pages list the recorded files."""
    exp = server.json("/experiment/demo-bollinger.json")
    assert isinstance(exp, dict)
    run = exp["run"]
    sources = {s["plugin"]: s for s in exp["sources"]}
    assert "demo_bollinger" in sources
    item = sources["demo_bollinger"]
    assert item["hash"] == run["plugins"]["demo_bollinger"]["hash"] and item["kind"] == "strategy"
    files = [f for s in exp["sources"] for f in s["files"]]
    assert any(f["path"].endswith("demo_strategies.py") and "def demo_bollinger" in f["text"] for f in files)
    page = server.json(f"/run/{run['id']}.json")
    assert isinstance(page, dict) and page["sources"] == exp["sources"]
    for path in (f"/run/{run['id']}", "/experiment/demo-bollinger"):
        status, body, _ = server.get(path)
        assert status == 200 and b'id="plugin-sources"' in body, path
        assert b"def demo_bollinger" in body and item["hash"][:16].encode() in body
    sma = server.json("/experiment/demo-sma.json")
    assert isinstance(sma, dict) and sma["sources"] == []  # built-in strategies only


def test_reproduce_reports_progress(server: Server) -> None:
    import time
    import urllib.request

    exp = server.json("/experiment/demo-sma.json")
    assert isinstance(exp, dict)
    request = urllib.request.Request(server.url + "/reproduce", data=f"ref={exp['run']['id']}".encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as r:  # 303 to /reproduce/JOB.json
        job = json.loads(r.read())["job"]
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        seen.append(job["progress"])
        time.sleep(0.05)
        polled = server.json(f"/reproduce/{job['id']}.json")
        assert isinstance(polled, dict)
        job = polled["job"]
    assert job["state"] == "identical", job
    done = job["progress"]
    assert done["total"] > 0 and done["step"] == done["total"] and done["label"]
    assert all(0 <= p["step"] <= p["total"] for p in seen)
    status, body, _ = server.get(f"/reproduce/{job['id']}")
    assert status == 200 and b'id="verdict"' in body


def test_a_train_sweep_page_links_each_trial_to_its_own_experiment(tmp_path: Path) -> None:
    """The sweep's rows are trials, experiments of their own: the metrics table and the heatmap open them."""
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    spec = """
name = "ppo"
kind = "train"
[inputs]
ohlcv = ["px"]
[env]
window = 8
episode_length = 64
[trainer]
total_steps = 512
n_envs = 4
n_steps = 64
hidden = [8, 8]
device = "cpu"
[sweep]
seed = [1, 2]
"""
    with Lake.open(tmp_path / "lake") as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=1500, seed=3), "ohlcv", name="px")
        run = execute(lk, create(lk, parse_spec(spec))[0].id)
        trials = [t["experiment"] for t in run.checks["trials"]]
    server = start_ui(tmp_path / "lake")
    try:
        status, body, _ = server.get("/experiment/ppo")
        assert status == 200
        for trial in trials:
            assert f'href="/experiment/{trial}"'.encode() in body
        status, body, _ = server.get(f"/experiment/{trials[1]}")
        assert status == 200 and b"ppo.trial-1" in body
    finally:
        stop(server.proc)
