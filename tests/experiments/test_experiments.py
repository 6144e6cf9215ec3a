from __future__ import annotations

import json
import os
import shutil
import subprocess

import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import CorruptArtifact
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.artifact_store.samples import synthetic_alerts, synthetic_ohlcv
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.experiments import SimError, SpecError, create, execute, parse_spec, reproduce, runs_of
from artifact_lake.projections import Lake
from tests.conftest import subprocess_env

SPEC = """
name = "sma"
kind = "backtest"
seed = 7
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
direction = "long"
[execution]
fee_bps = 10.0
units = "fractional"
[sweep]
fast = [5, 10]
slow = [30, 60]
"""


@pytest.fixture
def elake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    bars = synthetic_ohlcv(("A", "B"), bars=1500, seed=3)
    lk.publish(bars, "ohlcv", name="px")
    lk.publish(synthetic_alerts(bars, 25, seed=2), "alerts", name="feed")
    yield lk
    lk.close()


def test_create_is_idempotent_and_freezes_inputs_to_ids(elake):
    px = elake.resolve("px")
    exp, created = create(elake, parse_spec(SPEC))
    again, created_again = create(elake, parse_spec(SPEC.replace('["px"]', f'["{px[:8]}"]')))
    assert created and not created_again and again.id == exp.id
    assert exp.spec.inputs == {"ohlcv": [px]}
    assert "slippage_bps" not in exp.spec.doc["execution"]  # only what the user wrote; defaults come from code


def test_execute_publishes_results_with_lineage_to_every_input_and_a_sweep(elake):
    exp, _ = create(elake, parse_spec(SPEC))
    run = execute(elake, "sma")
    assert run.status == "succeeded" and set(run.results) == {"trades", "equity", "metrics"}
    px = elake.resolve("px")
    for role, artifact_id in run.results.items():
        assert [a.id for a in elake.parents(artifact_id)] == [px]
        assert elake.runs_of(artifact_id) == [run.id]
        assert elake.resolve(f"exp/sma/{role}") == artifact_id
    metrics = elake.read(run.results["metrics"]).to_pylist()
    assert [(m["combo"], m["symbol"], m["fast"], m["slow"]) for m in metrics] == [
        (0, "A", 5, 30),
        (0, "B", 5, 30),
        (1, "A", 5, 60),
        (1, "B", 5, 60),
        (2, "A", 10, 30),
        (2, "B", 10, 30),
        (3, "A", 10, 60),
        (3, "B", 10, 60),
    ]
    for col in ("final_equity", "total_return", "n_trades", "max_drawdown", "sharpe"):
        assert col in metrics[0]
    rec = runs_of(elake.db, exp.id)[0]
    assert rec.code_version and rec.environment["python"] and rec.environment["libraries"]["numba"]
    assert rec.duration > 0 and rec.device == "cpu" and "simulate" in rec.timings
    assert execute(elake, "sma").reused
    forced = execute(elake, "sma", force=True)
    assert not forced.reused and forced.results == run.results  # deterministic: same ids


def test_a_failed_run_publishes_nothing_and_says_why(elake):
    before = elake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
    exp, _ = create(elake, parse_spec(SPEC))
    path = object_path(elake.root, elake.resolve("px"))
    os.chmod(path, 0o644)
    path.unlink()  # the input is lost after create: the run fails at its first step
    with pytest.raises(CorruptArtifact):
        execute(elake, exp.id)
    run = runs_of(elake.db, exp.id)[0]
    assert run.status == "failed" and "object" in run.error and run.results == {}
    assert elake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "backtest"', 'kind = "backtest"\nfoo = 1'), "unknown spec key 'foo'"),
        (("fee_bps = 10.0", "fees_bps = 10.0"), "unknown spec key execution.'fees_bps' (did you mean 'fee_bps'?)"),
        (('direction = "long"', "direction = 3"), "spec key 'strategy.direction': must be str, not int 3"),
        (('name = "sma_cross"', 'name = "sma_crosss"'), "unknown strategy 'sma_crosss' (did you mean 'sma_cross'?)"),
        (('ohlcv = ["px"]', 'ohlcv = ["nope"]'), "spec key 'inputs.ohlcv': no artifact matches 'nope'"),
        (('ohlcv = ["px"]', 'ohlcv = ["feed"]'), "spec key 'inputs.ohlcv': 'feed' is a 'alerts' artifact, not 'ohlcv'"),
        (('[inputs]\nohlcv = ["px"]', "[inputs]"), "spec key 'inputs.ohlcv': missing"),
        (
            ("fast = [5, 10]", "fast = [5, 100]"),
            "strategy 'sma_cross' (direction='long', fast=100, slow=30): fast (100) must be below slow (30)",
        ),
        (("fee_bps = 10.0", "fee_bps = -1.0"), "spec key 'execution': execution.fee_bps must be between 0 and 10000"),
        (("seed = 7", 'seed = "x"'), "spec key 'seed': must be int"),
    ],
)
def test_bad_specs_name_the_key(elake, change, message):
    with pytest.raises(SpecError) as err:
        create(elake, parse_spec(SPEC.replace(*change)))
    assert message in str(err.value) and err.value.exit_code == 2


def test_reproduce_is_identical_here_and_in_a_copied_lake(elake, tmp_path):
    run = execute(elake, create(elake, parse_spec(SPEC))[0].id)
    before = elake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
    report = reproduce(elake, run.results["trades"])
    assert report.identical and [a.role for a in report.artifacts] == ["equity", "metrics", "trades"]
    assert elake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == before  # nothing added
    assert len(runs_of(elake.db, run.experiment)) == 1
    copy = tmp_path / "elsewhere"
    elake.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(elake.root, copy)
    shutil.rmtree(copy / "projections")  # disposable: rebuilt from the objects
    with Lake.open(copy) as moved:
        assert reproduce(moved, run.results["metrics"][:10]).identical
        assert reproduce(moved, run.id).identical  # by run id too


def test_reproduce_after_a_change_of_simulator_defaults_reports_the_difference(elake, monkeypatch):
    from artifact_lake import sim

    run = execute(elake, create(elake, parse_spec(SPEC))[0].id)
    defaults = list(sim.Execution.__init__.__defaults__)
    names = [f.name for f in sim.Execution.__dataclass_fields__.values()]
    defaults[names.index("slippage_bps")] = 7.0  # the spec does not set slippage: the code's default applies
    monkeypatch.setattr(sim.Execution.__init__, "__defaults__", tuple(defaults))
    report = reproduce(elake, run.results["metrics"])
    assert not report.identical
    trades = next(a for a in report.artifacts if a.role == "trades")
    assert not trades.identical and "entry_price" in trades.columns and trades.first_row == 0
    assert "row 0:" in trades.detail
    r = CliRunner().invoke(lake_cli, ["--lake", str(elake.root), "reproduce", run.results["metrics"]])
    assert r.exit_code == 1 and "DIFFERENT" in r.stdout
    assert r.stderr.strip() == f"error: reproduced results differ from run {run.id[:12]}"


def test_reproduce_refuses_missing_or_corrupt_inputs(elake):
    run = execute(elake, create(elake, parse_spec(SPEC))[0].id)
    px = elake.resolve("px")
    path = object_path(elake.root, px)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match=f"input {px} is corrupt"):
        reproduce(elake, run.results["metrics"])
    path.unlink()
    r = CliRunner().invoke(exp_cli, ["--lake", str(elake.root), "reproduce", run.results["metrics"]])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: input {px} has no object file")


def test_alert_replay_experiment_and_required_coverage(elake):
    spec = """
kind = "backtest"
name = "alerts"
[inputs]
ohlcv = ["px"]
alerts = ["feed"]
[strategy]
name = "alert_replay"
take_profit = [0.003]
stop_loss = 0.003
max_hold_bars = 30
[sweep]
max_concurrent = [1, 5]
"""
    run = execute(elake, create(elake, parse_spec(spec))[0].id)
    assert set(run.results) == {"alert_results", "equity", "metrics"}
    per_alert = elake.read(run.results["alert_results"])
    assert per_alert.num_rows == 50 and set(per_alert.column("status").to_pylist()) <= {"filled", "capacity", "no_data"}
    m = elake.read(run.results["metrics"]).to_pylist()
    assert [x["max_concurrent"] for x in m] == [1, 5] and m[0]["n_trades"] <= m[1]["n_trades"]
    # an alert at the very end of the data has no bars after it: required coverage refuses the run
    late = pa.table(
        {
            "ts": pa.array([2_000_000_000_000_000], pa.timestamp("us", tz="UTC")),
            "symbol": ["A"],
            "side": ["buy"],
            "source": ["x"],
            "price": [None],
            "payload": [None],
        }
    )
    elake.publish(late, "alerts", name="late")
    strict = (
        spec.replace('["feed"]', '["late"]')
        .replace("max_hold_bars = 30", "max_hold_bars = 30\nrequire_coverage = true")
        .replace('name = "alerts"', 'name = "alerts-strict"')
    )
    with pytest.raises(SpecError, match="has none OHLCV coverage"):
        execute(elake, create(elake, parse_spec(strict))[0].id)


def test_sim_errors_are_lake_errors(elake):
    exp, _ = create(elake, parse_spec(SPEC))
    assert issubclass(SimError, Exception) and SimError.exit_code == 2
    assert exp.kind == "backtest"


def test_cli_end_to_end_in_a_real_process(elake, tmp_path):
    spec_file = tmp_path / "sma.toml"
    spec_file.write_text(SPEC)
    root = str(elake.root)

    def run(*args):
        return subprocess.run(
            ["experiments", "--lake", root, *args], capture_output=True, text=True, env=subprocess_env(), timeout=300
        )

    created = run("create", str(spec_file), "--json")
    assert created.returncode == 0, created.stderr
    exp_id = json.loads(created.stdout)["id"]
    executed = run("execute", exp_id[:8], "--json")
    assert executed.returncode == 0, executed.stderr
    out = json.loads(executed.stdout)
    assert out["status"] == "succeeded" and set(out["results"]) == {"trades", "equity", "metrics"}
    assert out["experiment"] == exp_id and len(out["run"]) == 32
    repro = run("reproduce", out["results"]["equity"], "--json")
    assert repro.returncode == 0 and json.loads(repro.stdout)["identical"] is True
    listed = json.loads(run("list", "--json").stdout)
    assert listed[0]["id"] == exp_id and listed[0]["latest_run"]["status"] == "succeeded"
    shown = json.loads(run("show", "sma", "--json").stdout)
    assert len(shown["metrics"]) == 8
    compared = json.loads(run("compare", "sma", "sma", "--json").stdout)
    assert len(compared) == 16
    png = tmp_path / "eq.png"
    plotted = run("plot", "sma", "--out", str(png), "--json")
    assert plotted.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"
    bad = run("create", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and bad.stderr.startswith(f"error: {tmp_path / 'missing.toml'}: cannot read the spec")
    nope = run("execute", "nope")
    assert nope.returncode == 2 and nope.stderr == "error: no experiment matches 'nope' (see: experiments list)\n"
