"""Train experiments that sweep seeds or hyperparameters (issue #17): every trial is an experiment of its own,
with its own run record and results; the sweep's run publishes a row per trial with lineage to them. Local
executor here; the same sweep on a real Ray cluster is in tests/remote/test_ray_executor.py."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import experiments
from artifact_lake.experiments import (
    SimError,
    SpecError,
    create,
    execute,
    get_experiment,
    parse_spec,
    reproduce,
    runs_of,
)
from artifact_lake.projections import Lake
from tests.conftest import Stop, lake_state

SWEEP = """
name = "ppo"
kind = "train"
seed = 3
[inputs]
ohlcv = ["px"]
[env]
symbol = "A"
window = 8
episode_length = 64
[execution]
fee_bps = 5.0
units = "fractional"
[trainer]
total_steps = 1024
n_envs = 4
n_steps = 128
hidden = [16, 16]
device = "cpu"
[sweep]
seed = [1, 2]
trainer.lr = [0.0003, 0.001]
"""  # 4 trials: (seed, lr) in sorted key order


@pytest.fixture
def tlake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A", "B"), bars=2500, seed=2), "ohlcv", name="px")
    yield lk
    lk.close()


def test_each_trial_is_an_experiment_with_its_own_run_and_the_sweep_sums_them_up(tlake):
    exp, _ = create(tlake, parse_spec(SWEEP))
    run = execute(tlake, exp.id)
    assert run.status == "succeeded" and set(run.results) == {"metrics"}
    trials = run.checks["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2, 3] and not any(t["reused"] for t in trials)
    table = tlake.read(run.results["metrics"]).to_pylist()
    assert [(r["seed"], r["trainer.lr"]) for r in table] == [(1, 0.0003), (1, 0.001), (2, 0.0003), (2, 0.001)]
    policies = set()
    for k, (row, rec) in enumerate(zip(table, trials, strict=True)):
        trial = get_experiment(tlake.db, f"ppo.trial-{k}")
        assert trial.id == row["experiment"] == rec["experiment"]
        assert trial.spec.doc["seed"] == row["seed"] and trial.spec.doc["trainer"]["lr"] == row["trainer.lr"]
        assert "sweep" not in trial.spec.doc and trial.spec.doc["trainer"]["total_steps"] == 1024
        (trial_run,) = runs_of(tlake.db, trial.id)
        assert trial_run.id == rec["run"] and trial_run.status == "succeeded"
        assert set(trial_run.results) == {"policy", "training_curve", "metrics"}
        assert trial_run.results["policy"] == row["policy"]
        own = {m["strategy"]: m for m in tlake.read(trial_run.results["metrics"]).to_pylist()}["policy"]
        assert own["final_equity"] == row["final_equity"] and own["sharpe"] == row["sharpe"]
        policies.add(row["policy"])
        # lineage: the sweep's metrics <- every result of every trial (and the frozen input)
        parents = {a.id for a in tlake.parents(run.results["metrics"])}
        assert set(trial_run.results.values()) <= parents and tlake.resolve("px") in parents
    assert len(policies) == 4  # other seeds and learning rates train other policies


def test_the_sweep_and_a_trial_reproduce_to_the_same_ids_and_a_second_execute_reuses_everything(tlake):
    exp, _ = create(tlake, parse_spec(SWEEP.replace("trainer.lr = [0.0003, 0.001]", "")))
    run = execute(tlake, exp.id)
    again = execute(tlake, exp.id)
    assert again.reused and again.results == run.results
    report = reproduce(tlake, run.results["metrics"])  # every trial trained again, nothing written
    assert report.identical, report.to_dict()
    trial = run.checks["trials"][1]
    assert reproduce(tlake, trial["run"]).identical
    forced = execute(tlake, exp.id, force=True)  # every trial trained again, as new runs: the same ids
    assert forced.id != run.id and forced.results == run.results
    assert all(len(runs_of(tlake.db, t["experiment"])) == 2 for t in forced.checks["trials"])


def test_a_sweep_stopped_between_trials_trains_only_the_rest_when_run_again(tlake):
    exp, _ = create(tlake, parse_spec(SWEEP))

    def stop_at_the_third(done: int, total: int, what: str) -> None:
        if what.startswith("trial 3/4"):
            raise Stop(what)

    with pytest.raises(Stop):
        execute(tlake, exp.id, progress=stop_at_the_third)
    (failed,) = runs_of(tlake.db, exp.id)
    assert failed.status == "failed" and not failed.results  # the sweep published nothing
    done = [runs_of(tlake.db, get_experiment(tlake.db, f"ppo.trial-{k}").id) for k in range(4)]
    assert [len(r) and r[0].status for r in done] == ["succeeded", "succeeded", "failed", 0]
    run = execute(tlake, exp.id)
    assert [t["reused"] for t in run.checks["trials"]] == [True, True, False, False]
    whole = Lake.open(tlake.root.parent / "other")
    whole.publish(synthetic_ohlcv(("A", "B"), bars=2500, seed=2), "ohlcv", name="px")
    other = execute(whole, create(whole, parse_spec(SWEEP))[0].id)
    assert other.results == run.results  # resumed or in one go: the same sweep


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("trainer.learning_rate = [0.1]", "unknown spec key sweep.trainer.'learning_rate' (known: "),
        ('env.symbol = ["A", "B"]', "'sweep.env.symbol'"),
        ("fast = [1, 2]", "unknown spec key 'sweep.fast'"),
        ("seed = []", "spec key 'sweep.seed': must be a non-empty list of values"),
        ("seed = [1, 1]", "the same value twice"),
        ('seed = ["one"]', "spec key 'sweep.seed': must be int"),
        ("trainer.n_envs = [4, 0]", "sweep trial 1:"),
        ("trainer.lr = [0.001, true]", "spec key 'sweep.trainer.lr': mixes bool and number values"),
    ],
)
def test_bad_train_sweeps_are_one_line_and_the_lake_is_unchanged(tlake, sweep, message):
    before = lake_state(tlake.root)
    spec = SWEEP.split("[sweep]")[0] + "[sweep]\n" + sweep + "\n"
    with pytest.raises(SpecError) as err:
        create(tlake, parse_spec(spec))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert lake_state(tlake.root) == before


def test_the_cli_executes_a_trial_sweep_and_lists_its_trials(tlake, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.replace("trainer.lr = [0.0003, 0.001]", ""), encoding="utf-8")
    runner = CliRunner()
    lake = ["--lake", str(tlake.root)]
    assert runner.invoke(experiments, [*lake, "create", str(path)]).exit_code == 0
    result = runner.invoke(experiments, [*lake, "execute", "ppo", "--json"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(experiments, [*lake, "list"])
    assert "ppo.trial-0" in listed.output and "ppo.trial-1" in listed.output
    shown = runner.invoke(experiments, [*lake, "show", "ppo"], env={"COLUMNS": "160"})
    assert shown.exit_code == 0 and "exp/ppo.trial-1/policy" in shown.output  # lineage to the trials' results
    png = tmp_path / "ppo.png"
    plotted = runner.invoke(experiments, [*lake, "plot", "ppo", "--out", str(png), "--json", "--max-lines", "1"])
    assert plotted.exit_code == 0, plotted.output
    out = json.loads(plotted.stdout)
    assert out["selection"] == "1 of 2 trials: the 1 best by total return (--max-lines)"
    assert len(out["left_out"]) == 1 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    compared = runner.invoke(experiments, [*lake, "compare", "ppo", "--json"])
    assert [r["params"]["seed"] for r in json.loads(compared.stdout)] == [1, 2]  # each trial's own settings


def test_a_seed_sweep_refuses_a_trainer_seed_that_would_override_it(tlake):
    spec = SWEEP.replace("[trainer]\n", "[trainer]\nseed = 7\n").replace("trainer.lr = [0.0003, 0.001]", "")
    before = lake_state(tlake.root)
    with pytest.raises(SpecError, match="spec key 'trainer.seed': it overrides the top-level seed"):
        create(tlake, parse_spec(spec))
    assert lake_state(tlake.root) == before


def test_a_cuda_trainer_on_a_machine_without_cuda_is_one_line_before_a_run_is_recorded(tlake):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = SWEEP.split("[sweep]")[0].replace('device = "cpu"', 'device = "cuda"')
    exp, _ = create(tlake, parse_spec(spec))
    with pytest.raises(SimError, match="spec key 'trainer.device': trainer.device is cuda but no CUDA device"):
        execute(tlake, exp.id)
    assert runs_of(tlake.db, exp.id) == []
