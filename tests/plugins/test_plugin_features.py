"""Registered indicators as RL features: a train run records their code identity and reproduce compares it."""

from __future__ import annotations

import pytest

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.experiments import CodeChanged, SpecError, create, execute, parse_spec, plugins, reproduce
from artifact_lake.projections import Lake
from tests.experiments.test_train import TRAIN

from .conftest import BOLLINGER, write
from .test_cli_plugins import _cli

FEATURES = TRAIN.replace("window = 8", 'window = 8\nfeatures = ["logret", "zscore(n=5)", "rsi(14)"]')


@pytest.fixture
def tlake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A", "B"), bars=2500, seed=2), "ohlcv", name="px")
    yield lk
    lk.close()


def test_a_train_run_with_an_indicator_feature_records_its_code(tlake, plugin_file):
    pytest.importorskip("torch")
    plugins.configure([str(plugin_file)])
    exp, _ = create(tlake, parse_spec(FEATURES))
    run = execute(tlake, exp.id)
    assert run.status == "succeeded"
    assert set(run.plugins) == {"zscore"}  # the built-in rsi is the code version, not a plugin
    rec = run.plugins["zscore"]
    assert rec["kind"] == "indicator" and rec["origin"] == f"file {plugin_file.resolve()}"
    assert rec["hash"] == plugins.closure(plugins.resolve("indicator", "zscore")).hash
    assert tlake.get(rec["source"]).type == "source"
    assert run.checks["plugins"]["zscore"]["cuts"] > 0  # the look-ahead guard ran over the indicator
    assert execute(tlake, exp.id).reused
    assert reproduce(tlake, run.results["policy"]).identical
    write(plugin_file, BOLLINGER.replace("sd > 0 else 0.0", "sd > 0 else 0.5"))
    with pytest.raises(CodeChanged) as err:  # reproduce compares the indicator's code like a strategy's
        reproduce(tlake, run.results["policy"])
    assert "+        out[i] = (c[i] - w.mean()) / sd if sd > 0 else 0.5" in err.value.changes[0]["diff"]
    again = execute(tlake, exp.id)  # edited code: a new run, not a reused one
    assert not again.reused and again.plugins["zscore"]["hash"] != rec["hash"]


def test_an_unknown_feature_is_refused_at_create(tlake):
    pytest.importorskip("torch")
    with pytest.raises(SpecError) as err:
        create(tlake, parse_spec(FEATURES))
    msg = str(err.value)
    assert msg.startswith("spec key 'env.features': unknown feature 'zscore'") and "\n" not in msg


def test_an_unknown_feature_is_refused_by_the_cli_in_one_line(tmp_path, plugin_file):
    pytest.importorskip("torch")
    import pyarrow.parquet as pq

    root = tmp_path / "cli-lake"
    pq.write_table(synthetic_ohlcv(("A",), bars=2500, seed=3), tmp_path / "px.parquet")
    lk = ["--lake", str(root)]
    assert _cli("lake", *lk, "publish", str(tmp_path / "px.parquet"), "--type", "ohlcv", "--name", "px").returncode == 0
    write(tmp_path / "spec.toml", FEATURES)
    refused = _cli("experiments", *lk, "create", str(tmp_path / "spec.toml"))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("error: spec key 'env.features': unknown feature 'zscore'")
    assert refused.stderr.count("\n") == 1
    ok = _cli("experiments", *lk, "--plugins", str(plugin_file), "create", str(tmp_path / "spec.toml"))
    assert ok.returncode == 0, ok.stderr


def test_a_policy_backtest_records_the_user_indicator_its_features_use(tlake, plugin_file):
    pytest.importorskip("torch")
    plugins.configure([str(plugin_file)])
    trained = execute(tlake, create(tlake, parse_spec(FEATURES))[0].id)
    spec = f"""
kind = "backtest"
name = "policy-features"
[inputs]
ohlcv = ["px"]
policy = ["{trained.results["policy"]}"]
[strategy]
name = "policy"
symbols = ["B"]
"""
    exp, _ = create(tlake, parse_spec(spec))
    bt = execute(tlake, exp.id)
    assert set(bt.plugins) == {"zscore"}
    assert bt.plugins["zscore"]["hash"] == trained.plugins["zscore"]["hash"]
    assert execute(tlake, exp.id).reused
    write(plugin_file, BOLLINGER.replace("sd > 0 else 0.0", "sd > 0 else 0.5"))
    with pytest.raises(CodeChanged):  # the features' code changed: the backtest is not the recorded one
        reproduce(tlake, bt.results["metrics"])
    assert not execute(tlake, exp.id).reused
