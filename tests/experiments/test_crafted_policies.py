"""A policy is a ``tensors`` artifact anyone can publish: crafted ones are refused before any allocation or
run, in one line naming the tensor or key, and no run is recorded for them (issue #12, item 14)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from artifact_lake.artifact_store.samples import synthetic_ohlcv  # noqa: E402
from artifact_lake.cli.main import experiments as exp_cli  # noqa: E402
from artifact_lake.experiments import SpecError, create, execute, parse_spec  # noqa: E402
from artifact_lake.experiments.spec import ExperimentSpec  # noqa: E402
from artifact_lake.experiments.tracker import ensure_tables, put_experiment  # noqa: E402
from artifact_lake.experiments.train import env_config  # noqa: E402
from artifact_lake.projections import Lake  # noqa: E402
from artifact_lake.sim.policy import to_rows  # noqa: E402
from artifact_lake.sim.ppo import Agent  # noqa: E402
from tests.conftest import lake_state  # noqa: E402

ENV = {"window": 4, "episode_length": 16, "action_space": "multi_discrete"}
META = {"env": ENV, "reward": {}, "execution": {}, "hidden": [8, 8]}


def _policy_rows(hidden=(8, 8)):
    cfg = env_config(dict(ENV), {}, {})
    obs_dim = cfg.window * len(cfg.features) + 4
    nvec = (3, len(cfg.sizes), len(cfg.presets))
    n = len(cfg.features)
    agent = Agent(obs_dim, nvec, hidden)
    return to_rows(agent, {"norm.mean": np.zeros(n), "norm.std": np.ones(n)})


def _table(rows):
    return pa.table(
        {
            "name": pa.array(rows["name"], pa.string()),
            "dtype": pa.array(rows["dtype"], pa.string()),
            "shape": pa.array(rows["shape"], pa.list_(pa.int64())),
            "data": pa.array(rows["data"], pa.binary()),
        }
    )


@pytest.fixture
def plake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A",), bars=400, seed=5), "ohlcv", name="px")
    yield lk
    lk.close()


def _spec(policy_id: str) -> str:
    return f"""
kind = "backtest"
[inputs]
ohlcv = ["px"]
policy = ["{policy_id}"]
[strategy]
name = "policy"
"""


def _runs(lk) -> int:
    ensure_tables(lk.db)
    return int(lk.db.execute("SELECT count(*) FROM runs").fetchone()[0])


def _row(rows, name):
    return rows["name"].index(name)


def _set(name, **fields):
    def change(rows, meta):
        i = _row(rows, name)
        for k, v in fields.items():
            rows[k][i] = v

    return change


def _drop(name):
    def change(rows, meta):
        i = _row(rows, name)
        for k in rows:
            del rows[k][i]

    return change


def _meta(**changes):
    def change(rows, meta):
        for key, value in changes.items():
            if key in ENV:
                meta["env"][key] = value
            else:
                meta[key] = value

    return change


def _nan(rows, meta):
    i = _row(rows, "param.actor.2.weight")
    arr = np.frombuffer(rows["data"][i], "<f4").copy()
    arr[3] = np.nan
    rows["data"][i] = arr.tobytes()


W = "param.critic.0.weight"
CRAFTED = [
    pytest.param(_set(W, shape=[9, 28]), f"tensor {W}: 896 bytes do not hold shape [9, 28]", id="short-bytes-shape"),
    pytest.param(_set(W, shape=[28, 8]), f"tensor {W}: shape [28, 8], expected [8, 28]", id="wrong-shape"),
    pytest.param(_set(W, data=b"\0" * 100), f"tensor {W}: 100 bytes do not hold shape [8, 28]", id="short-bytes"),
    pytest.param(_drop("param.actor.4.bias"), "tensor param.actor.4.bias: missing", id="missing-tensor"),
    pytest.param(_drop("norm.std"), "tensor norm.std: missing", id="missing-norm"),
    pytest.param(_set(W, shape=[-8, -28]), f"tensor {W}: shape [-8, -28] has a negative size", id="negative-shape"),
    pytest.param(_set(W, data=pickle.dumps(np.zeros((8, 28), np.float32))), f"tensor {W}: ", id="pickle-bytes"),
    pytest.param(
        _meta(hidden=[200000, 200000]), "meta key 'hidden' must list layer sizes from 1 to 65536", id="huge-hidden"
    ),
    pytest.param(
        _meta(hidden=[60000, 60000]),
        f"tensor {W}: shape [8, 28], expected [60000, 28] from the policy's settings",
        id="large-hidden-checked-against-stored-shapes",
    ),
    pytest.param(_meta(hidden="8,8"), "meta key 'hidden' must list layer sizes", id="hidden-string"),
    pytest.param(_meta(window=0), "meta key 'env': window and episode_length must be >= 1", id="window-0"),
    pytest.param(_nan, "tensor param.actor.2.weight: holds NaN or infinite values", id="nan-weights"),
    pytest.param(_set(W, dtype="float64"), f"tensor {W}: 896 bytes do not hold shape [8, 28] of float64", id="dtype"),
]


@pytest.mark.parametrize(("craft", "says"), CRAFTED)
def test_a_crafted_policy_is_refused_at_create_in_one_line_and_nothing_runs(plake, craft, says):
    rows = _policy_rows()
    meta = copy.deepcopy(META)
    craft(rows, meta)
    policy = plake.publish(_table(rows), "tensors", meta=meta).id
    with pytest.raises(SpecError) as err:
        create(plake, parse_spec(_spec(policy)))
    assert says in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2
    assert _runs(plake) == 0
    # the same through the CLI: one line, exit 2, lake unchanged
    spec_file = plake.root.parent / "policy.toml"
    spec_file.write_text(_spec(policy))
    before = lake_state(plake.root)
    r = CliRunner().invoke(exp_cli, ["--lake", str(plake.root), "create", str(spec_file)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and says in r.stderr
    assert lake_state(plake.root) == before


def test_a_crafted_policy_of_an_experiment_recorded_unchecked_is_refused_before_a_run(plake):
    """An experiment recorded without create's checks (an older version, the Python API): execute refuses
    the policy before it records a run."""
    rows = _policy_rows()
    _drop("param.actor.4.bias")(rows, META)
    policy = plake.publish(_table(rows), "tensors", meta=META).id
    doc = {"kind": "backtest", "seed": 0, "inputs": {"ohlcv": [plake.resolve("px")], "policy": [policy]}}
    doc |= {"strategy": {"name": "policy"}, "execution": {}}
    exp, _ = put_experiment(plake.db, ExperimentSpec(doc))
    with pytest.raises(SpecError, match="tensor param.actor.4.bias: missing"):
        execute(plake, exp.id)
    assert _runs(plake) == 0


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_well_formed_policy_loads_and_backtests_float16_included(plake, dtype):
    rows = _policy_rows()
    for i, name in enumerate(rows["name"]):
        if name.startswith("param.") and dtype == "float16":
            arr = np.frombuffer(rows["data"][i], "<f4").astype("<f2")
            rows["dtype"][i], rows["data"][i] = "float16", arr.tobytes()
    policy = plake.publish(_table(rows), "tensors", meta=META).id
    run = execute(plake, create(plake, parse_spec(_spec(policy)))[0].id)
    assert run.status == "succeeded" and set(run.results) == {"trades", "equity", "metrics"}


def test_param_shapes_are_the_agents_own():
    from artifact_lake.sim.policy import param_shapes

    cfg = env_config(dict(ENV), {}, {})
    obs_dim = cfg.window * len(cfg.features) + 4
    for nvec, hidden in (((3, 2, 2), (8, 8)), ((12,), (5,)), ((3, 1, 4), (7, 3, 2))):
        agent = Agent(obs_dim, nvec, hidden)
        want = {f"param.{k}": tuple(v.shape) for k, v in agent.state_dict().items()}
        assert param_shapes(obs_dim, nvec, hidden) == want
