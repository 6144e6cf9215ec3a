"""A run publishes all its results or none (issue #12, item 6): real processes killed with SIGKILL at every
step of publishing, a real full disk (RLIMIT_FSIZE), and a lake left behind by the previous version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.experiments import create, execute, parse_spec, runs_of, tracker
from artifact_lake.experiments.executor import compute, conform_results
from artifact_lake.projections import Lake
from tests.conftest import PYTHON, subprocess_env
from tests.experiments.test_experiments import SPEC

EXECUTE = (
    "import sys\n"
    "from artifact_lake.cli.main import experiments_main\n"
    "sys.argv = ['experiments', '--lake', sys.argv[1], 'execute', 'sma']\n"
    "experiments_main()\n"
)


@pytest.fixture
def root(tmp_path):
    with Lake.open(tmp_path / "lake") as lk:
        lk.publish(synthetic_ohlcv(("A", "B"), bars=1500, seed=3), "ohlcv", name="px")
        create(lk, parse_spec(SPEC))
    return tmp_path / "lake"


def _names(lk) -> list[str]:
    return [r[0] for r in lk.db.execute("SELECT DISTINCT name FROM names ORDER BY name")]


def _cli(root, *args):
    return CliRunner().invoke(exp_cli, ["--lake", str(root), *args])


@pytest.mark.parametrize("where", ["after-stage", "batch-after-stage", "batch-between-items", "before-commit"])
def test_a_run_killed_while_publishing_leaves_no_result_shows_interrupted_and_gc_cleans(root, where):
    proc = subprocess.run(
        [PYTHON, "-c", EXECUTE, str(root)],
        env=subprocess_env(ARTIFACT_LAKE_CRASH_AT=where),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Lake.open(root) as lk:
        assert _names(lk) == ["px"]  # not one result: no trades without equity, no edge from a dead run
        assert lk.db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == 1
        assert lk.db.execute("SELECT count(*) FROM edges").fetchone()[0] == 0
        listed = json.loads(_cli(root, "list", "--json").stdout)
        assert listed[0]["latest_run"]["status"] == "interrupted"  # the previous version said running, for ever
        shown = _cli(root, "show", "sma")
        assert shown.exit_code == 0 and "interrupted" in shown.stdout
        (dead,) = tracker.interrupted_runs(lk)
        assert dead.status == "interrupted" and dead.pid is not None and f"pid {dead.pid}" in dead.error
        # what the killed process left on disk (its run lock, staged files, objects renamed in) gc removes
        left = {p.kind for p in lk.verify().problems}
        assert "stale" in left and left <= {"stale", "orphan"}
        assert [r.id for r in tracker.mark_interrupted(lk)] == [dead.id]  # what `lake gc` records (wired by the CLI)
        assert tracker.interrupted_runs(lk) == [] and not (root / "tmp" / dead_lock(lk, dead.id)).exists()
        lk.gc(grace=0)
        # orphan objects go at once; staging files once they are a minute old (gc's own rule)
        assert {p.kind for p in lk.verify().problems} <= {"stale"}
        assert runs_of(lk.db, dead.experiment)[0].status == "interrupted"  # recorded now, not only shown
        run = execute(lk, "sma")
        assert run.status == "succeeded" and not run.reused
        for role, artifact_id in run.results.items():
            assert lk.runs_of(artifact_id) == [run.id] and lk.resolve(f"exp/sma/{role}") == artifact_id
    repro = _cli(root, "reproduce", "exp/sma/trades")
    assert repro.exit_code == 0, repro.output


def dead_lock(lk, run_id: str) -> str:
    return str(lk.db.execute("SELECT lock FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_live_run_is_never_taken_for_an_interrupted_one(root):
    proc = subprocess.Popen(
        [PYTHON, "-c", EXECUTE, str(root)],
        env=subprocess_env(ARTIFACT_LAKE_STALL_AT="after-stage"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not _stopped(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with Lake.open(root) as lk:
            (run,) = runs_of(lk.db, lk.db.execute("SELECT id FROM experiments").fetchone()[0])
            assert run.status == "running" and run.pid == proc.pid
            assert tracker.interrupted_runs(lk) == [] and tracker.mark_interrupted(lk) == []
            staged = sorted(p.name for p in (root / "tmp").iterdir())
            lk.gc()
            assert sorted(p.name for p in (root / "tmp").iterdir()) == staged  # its lock and staged file stay
            proc.kill()
            proc.wait(timeout=60)
            assert [r.id for r in tracker.interrupted_runs(lk)] == [run.id]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


FULL_DISK = (
    "import resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))\n" + EXECUTE
)


def test_a_full_disk_between_results_publishes_none_and_the_next_run_reproduces(tmp_path):
    """A real EFBIG (the file-size limit stands in for a full disk): trades (~190 kB) fit, equity (~1.5 MB)
    does not. The previous version published trades, recorded the run failed, and its edge then made
    `reproduce exp/sma/trades` fail for ever."""
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A", "B"), bars=20000, seed=3), "ohlcv", name="px")
        # an earlier experiment on the same input builds the projection, so the limited run only reads it
        warm = SPEC.replace('name = "sma"', 'name = "warm"').replace("fee_bps = 10.0", "fee_bps = 11.0")
        sizes = {role: lk.get(i).bytes for role, i in execute(lk, create(lk, parse_spec(warm))[0].id).results.items()}
        assert sizes["trades"] < 300_000 and sizes["equity"] > 1_000_000  # the premise of the limit
        create(lk, parse_spec(SPEC))
        before = _names(lk)
    proc = subprocess.run(
        [PYTHON, "-c", FULL_DISK, str(root)], env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: disk full while staging the object of exp/sma/equity") and "File too large" in line
    with Lake.open(root) as lk:
        assert _names(lk) == before  # no exp/sma/trades
        (run,) = runs_of(lk.db, lk.db.execute("SELECT id FROM experiments WHERE name = 'sma'").fetchone()[0])
        assert run.status == "failed" and "disk full" in run.error and run.results == {}
        assert lk.verify().ok and list((root / "tmp").iterdir()) == []
        done = execute(lk, "sma")
        assert done.status == "succeeded" and lk.runs_of(done.results["trades"]) == [done.id]
    repro = _cli(root, "reproduce", "exp/sma/trades")
    assert repro.exit_code == 0, repro.output


# The tracker tables as the previous version made them: no 'interrupted' status, no pid, host or lock.
OLD_RUNS = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL REFERENCES experiments(id),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    started TEXT, finished TEXT, duration REAL, code_version TEXT NOT NULL, git_commit TEXT, git_dirty INTEGER,
    environment TEXT NOT NULL, device TEXT NOT NULL, error TEXT,
    results TEXT NOT NULL DEFAULT '{}', timings TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID
"""


def test_a_lake_of_the_previous_version_with_a_dead_runs_result_is_repaired(tmp_path):
    """The previous version left a `running` run for ever and an edge from it to the trades it published; a
    later successful run deduplicated the trades and the edge kept the dead run, so reproduce refused them."""
    with Lake.open(tmp_path / "lake") as lk:
        lk.publish(synthetic_ohlcv(("A", "B"), bars=1500, seed=3), "ohlcv", name="px")
        lk.db.execute(
            "CREATE TABLE experiments (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,"
            " spec TEXT NOT NULL, created TEXT NOT NULL) WITHOUT ROWID"
        )
        lk.db.execute(OLD_RUNS)
        exp, _ = create(lk, parse_spec(SPEC))
        dead = "d" * 32
        lk.db.execute(
            "INSERT INTO runs (id, experiment, status, started, code_version, environment, device)"
            " VALUES (?, ?, 'running', '2025-01-01T00:00:00.000000Z', 'old', '{}', 'cpu')",
            (dead, exp.id),
        )
        trades = conform_results(lk, compute(lk, exp.spec).tables)["trades"]
        lk.publish(trades, "trades", name="exp/sma/trades", inputs=["px"], run=dead)
        assert [r.id for r in tracker.interrupted_runs(lk)] == [dead]  # the table was brought up to date
        assert [r.id for r in tracker.mark_interrupted(lk)] == [dead]
        run = execute(lk, "sma")
        trades_id = run.results["trades"]
        assert lk.resolve("exp/sma/trades") == trades_id and lk.runs_of(trades_id) == [run.id]
    repro = _cli(tmp_path / "lake", "reproduce", "exp/sma/trades")
    assert repro.exit_code == 0, repro.output


def test_the_run_lock_is_released_and_removed_when_a_run_ends(root):
    with Lake.open(root) as lk:
        run = execute(lk, "sma")
        assert run.status == "succeeded" and run.pid == os.getpid() and run.host
        assert list((root / "tmp").iterdir()) == [] and tracker.interrupted_runs(lk) == []


def test_a_lake_where_nothing_ran_has_no_interrupted_runs_and_gains_no_tables(lake):
    assert tracker.interrupted_runs(lake) == [] and tracker.mark_interrupted(lake) == []
    assert lake.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0] == 0


def test_publish_many_is_one_transaction_and_a_failure_inside_it_leaves_the_lake_as_it_was(lake, ohlcv):
    from artifact_lake.artifact_store.batch import Item, publish_many
    from tests.conftest import lake_state

    px = lake.publish(ohlcv, "ohlcv", name="px").id
    items = [
        Item(ohlcv.slice(0, 100), "ohlcv", name="part/a", inputs=[px], meta={"k": 1}),
        Item(ohlcv.slice(100, 100), "ohlcv", name="part/b", inputs=[px]),
        Item(ohlcv, "ohlcv", name="part/all", inputs=[]),  # known content: a new name only
    ]
    before = lake_state(lake.root)

    def refuse(results):
        assert [r.deduplicated for r in results] == [False, False, True]  # everything written, not committed
        raise RuntimeError("the caller's own rows failed")

    with pytest.raises(RuntimeError, match="the caller's own rows failed"):
        publish_many(lake, items, run="r" * 32, in_transaction=refuse)
    assert lake_state(lake.root) == before  # no row, no object, no staging file
    seen = []
    done = publish_many(lake, items, run="r" * 32, in_transaction=seen.append)
    assert [r.name for r in done] == ["part/a", "part/b", "part/all"] and seen == [done]
    assert done[2].id == px and lake.runs_of(done[0].id) == ["r" * 32] and lake.verify().ok


def test_lake_verify_reports_an_interrupted_run_and_lake_gc_records_it(root):
    from artifact_lake.cli.main import lake as lake_cli

    proc = subprocess.run(
        [PYTHON, "-c", EXECUTE, str(root)], env=subprocess_env(ARTIFACT_LAKE_CRASH_AT="before-commit"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run = CliRunner().invoke
    report = json.loads(run(lake_cli, ["--lake", str(root), "verify", "--json"]).stdout)
    (dead,) = [p for p in report["problems"] if p["kind"] == "run"]
    assert "interrupted" in dead["detail"]
    dry = json.loads(run(lake_cli, ["--lake", str(root), "gc", "--dry-run", "--json"]).stdout)
    assert dry["interrupted"] == [dead["subject"]]
    done = json.loads(run(lake_cli, ["--lake", str(root), "gc", "--grace", "0", "--json"]).stdout)
    assert done["interrupted"] == [dead["subject"]]
    again = json.loads(run(lake_cli, ["--lake", str(root), "verify", "--json"]).stdout)
    assert not [p for p in again["problems"] if p["kind"] == "run"]
    with Lake.open(root) as lk:
        assert runs_of(lk.db, dead_experiment(lk, dead["subject"]))[0].status == "interrupted"


def dead_experiment(lk, run_id: str) -> str:
    return str(lk.db.execute("SELECT experiment FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
