from __future__ import annotations

import pytest

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.experiments import SpecError, create, execute, parse_spec, reproduce
from artifact_lake.experiments.train import load_policy
from artifact_lake.projections import Lake

TRAIN = """
name = "ppo"
kind = "train"
seed = 3
[inputs]
ohlcv = ["px"]
[env]
symbol = "A"
window = 8
episode_length = 64
action_space = "multi_discrete"
[reward]
log_equity = 1.0
drawdown = 0.05
[execution]
fee_bps = 5.0
units = "fractional"
[trainer]
total_steps = 2048
n_envs = 4
n_steps = 128
hidden = [16, 16]
device = "cpu"
"""


@pytest.fixture
def tlake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A", "B"), bars=2500, seed=2), "ohlcv", name="px")
    yield lk
    lk.close()


def test_a_short_training_run_publishes_a_policy_and_reproduces_to_the_same_id(tlake):
    exp, _ = create(tlake, parse_spec(TRAIN))
    run = execute(tlake, exp.id)
    assert run.status == "succeeded" and run.device == "cpu"
    assert set(run.results) == {"policy", "training_curve", "metrics"}
    assert tlake.get(run.results["policy"]).type == "tensors"
    assert len(run.timings["sps"]) == 4 and "train" in run.timings  # wall clock lives in the run record only
    curve = tlake.read(run.results["training_curve"])
    assert curve.num_rows == 4 and "sps" not in curve.column_names
    metrics = {m["strategy"]: m for m in tlake.read(run.results["metrics"]).to_pylist()}
    assert set(metrics) == {"policy", "buy_and_hold", "flat"} and metrics["flat"]["final_equity"] == 10_000.0
    px = tlake.resolve("px")
    assert [a.id for a in tlake.parents(run.results["policy"])] == [px]
    report = reproduce(tlake, run.results["policy"])
    assert report.identical, report.to_dict()
    agent, meta, norm = load_policy(tlake, run.results["policy"])
    assert meta["hidden"] == [16, 16] and norm[0].shape == (6,)


def test_a_trained_policy_backtests_as_a_strategy(tlake):
    run = execute(tlake, create(tlake, parse_spec(TRAIN))[0].id)
    spec = f"""
kind = "backtest"
name = "policy-bt"
[inputs]
ohlcv = ["px"]
policy = ["{run.results["policy"][:10]}"]
[strategy]
name = "policy"
symbols = ["B"]
[execution]
fee_bps = 5.0
units = "fractional"
"""
    bt = execute(tlake, create(tlake, parse_spec(spec))[0].id)
    m = tlake.read(bt.results["metrics"]).to_pylist()
    assert [x["symbol"] for x in m] == ["B"] and m[0]["n_trades"] > 0
    assert set(tlake.parents(bt.results["trades"])[i].id for i in range(2)) == {
        tlake.resolve("px"),
        run.results["policy"],
    }
    assert reproduce(tlake, bt.results["equity"]).identical


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("window = 8", "windw = 8"), "unknown spec key env.'windw' (did you mean 'window'?)"),
        (("total_steps = 2048", "total_step = 2048"), "unknown spec key trainer.'total_step'"),
        (('device = "cpu"', 'device = "gpu"'), "trainer.device must be auto, cpu or cuda"),
        (("drawdown = 0.05", "sharpe = 1.0"), "unknown spec key reward.'sharpe'"),
        (('symbol = "A"', "symbol = 3"), "spec key 'env.symbol': must be str"),
        (
            ("[env]", "[strategy]\nname = 'sma_cross'\n[env]"),
            "train experiments take [env], [reward], [execution] and [trainer]",
        ),
    ],
)
def test_bad_train_specs_name_the_key(tlake, change, message):
    with pytest.raises(SpecError) as err:
        create(tlake, parse_spec(TRAIN.replace(*change)))
    assert message in str(err.value)


def test_a_policy_needs_a_policy_artifact(tlake):
    other = tlake.publish(synthetic_ohlcv(("C",), bars=10), "ohlcv").id
    spec = f'kind = "backtest"\n[inputs]\nohlcv = ["px"]\npolicy = ["{other}"]\n[strategy]\nname = "policy"\n'
    with pytest.raises(SpecError, match="is a 'ohlcv' artifact, not 'tensors'"):
        create(tlake, parse_spec(spec))
