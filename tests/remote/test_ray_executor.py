"""The Ray executor (issue #17): a sweep's chunks as tasks on a real local Ray cluster, the same ids as a local run.

One cluster for the module (``ray.init`` in this process, 2 CPUs, loopback only, no dashboard), shut down at the
end. No mocks: the workers are Ray's own processes, loading the plugins the way the driver does.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import textwrap

import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import experiments
from artifact_lake.experiments import PluginError, create, execute, get_experiment, parse_spec, reproduce, runs_of
from artifact_lake.experiments import plugins as exp_plugins
from artifact_lake.experiments import sweep as sweep_mod
from artifact_lake.experiments.ray_executor import ExecutorError
from artifact_lake.projections import Lake
from tests.conftest import PYTHON, Stop, free_port, lake_state, subprocess_env

BARS = 1200
LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
SMA = """
name = "s"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
[execution]
fee_bps = 5.0
units = "fractional"
[sweep]
fast = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
slow = [20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40]
"""  # 132 combinations: the best 10 by Sharpe per symbol keep their equity

PLUGIN = '''
import numpy as np
from artifact_lake.sim import Bars, indicator, strategy


@indicator
def ray_momentum(bars: Bars, n: int = 10) -> np.ndarray:
    """The return over the last n bars."""
    c = bars.close
    out = np.full(len(c), np.nan)
    out[n:] = c[n:] / c[:-n] - 1.0
    return out


@strategy
def ray_breakout(bars: Bars, n: int = 10, k: float = 0.0) -> np.ndarray:
    """Long while the n-bar return is above k, flat once it is below -k."""
    m = ray_momentum(bars, n)
    out = np.full(len(m), np.nan)
    out[m > k] = 1.0
    out[m < -k] = 0.0
    return out
'''

USER = """
name = "u"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "ray_breakout"
[sweep]
n = [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
k = [0.0, 0.005, 0.01, 0.02]
[results]
best = 3
"""  # 44 combinations


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster in this process, on 127.0.0.1 only; its GCS address for a second driver."""
    # Ray reads this when it is imported: off, a node takes the loopback address and listens only there (Ray
    # turns --node-ip-address 127.0.0.1 into the machine's address); the drivers started below inherit it
    saved = os.environ.get(LOOPBACK)
    os.environ[LOOPBACK] = "0"
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        num_gpus=1,  # a logical GPU: Ray grants it to a task that asks; torch still finds no CUDA here
        include_dashboard=False,
        log_to_driver=False,  # worker output stays in Ray's logs, never in a command's --json
        logging_level=logging.WARNING,
    )
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), f"ray was imported before {LOOPBACK} was set: {address}"
        yield address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop(LOOPBACK, None)
        else:
            os.environ[LOOPBACK] = saved


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test's plugins leave the registry as they found it; LAKE_PLUGINS rules, not a CLI --plugins."""
    from artifact_lake.sim import plugins as registry

    monkeypatch.setattr(exp_plugins, "_configured", None)
    saved, loaded = dict(registry.REGISTRY), dict(exp_plugins._loaded_paths)
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)
    exp_plugins._loaded_paths.clear()
    exp_plugins._loaded_paths.update(loaded)


def _lake(root, spec: str) -> Lake:
    lk = Lake.open(root)
    lk.publish(synthetic_ohlcv(("A", "B"), bars=BARS, seed=11), "ohlcv", name="px")
    create(lk, parse_spec(spec))
    return lk


def _chunks_of(monkeypatch, combos: int) -> None:
    """Chunks of ``combos`` combinations (2 symbols of BARS bars), so a small sweep has several."""
    monkeypatch.setattr(sweep_mod, "CHUNK_BAR_STEPS", BARS * 2 * combos)


def test_a_builtin_sweep_on_ray_publishes_the_ids_of_a_local_run(cluster, tmp_path, monkeypatch):
    _chunks_of(monkeypatch, 20)  # 132 combinations: 7 chunks
    with _lake(tmp_path / "local", SMA) as lk:
        local = execute(lk, "s")
    with _lake(tmp_path / "ray", SMA) as lk:
        remote = execute(lk, "s", executor="ray")
        assert remote.results == local.results  # metrics, equity and trades: the very same artifacts
        sweep = remote.checks["sweep"]
        assert sweep["chunks"] == 7 and sweep["reused"] == 0 and sweep["kept"] == 20
        assert sweep["executor"] == {
            "name": "ray",
            "ray_version": __import__("ray").__version__,
            "address": "connected by the caller",
            "nodes": 1,
            "cpus": 2,
            "gpus": 1,
            "tasks": 7,
        }
        assert local.checks["sweep"]["executor"] == {"name": "local"}
        assert "ray_chunks" in remote.timings
        assert not list((lk.root / "tmp").glob("sweep-*"))  # published: the staged chunks are gone
        assert execute(lk, "s").reused  # the executor is no part of the experiment: a local call reuses it
        assert reproduce(lk, remote.results["metrics"]).identical


def test_chunks_a_local_run_staged_are_taken_by_a_ray_run_and_the_ids_do_not_change(cluster, tmp_path, monkeypatch):
    _chunks_of(monkeypatch, 20)  # 7 chunks

    def stop_after_three(done: int, total: int, what: str) -> None:
        if done >= 60:
            raise Stop(what)

    with _lake(tmp_path / "lake", SMA) as lk:
        with pytest.raises(Stop):
            execute(lk, "s", progress=stop_after_three)
        assert len(list((lk.root / "tmp").glob("sweep-*/chunk-*.parquet"))) == 3
        run = execute(lk, "s", executor="ray")
        assert run.checks["sweep"]["reused"] == 3 and run.checks["sweep"]["executor"]["tasks"] == 4
        assert reproduce(lk, run.results["metrics"]).identical  # a local rerun, no staged chunk: the same ids


def test_a_user_plugin_sweep_on_ray_publishes_the_ids_of_a_local_run(cluster, tmp_path, monkeypatch):
    plugin = tmp_path / "momentum.py"
    plugin.write_text(PLUGIN)
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin))
    _chunks_of(monkeypatch, 5)  # 44 combinations: 9 chunks
    with _lake(tmp_path / "local", USER) as lk:
        local = execute(lk, "u")
    with _lake(tmp_path / "ray", USER) as lk:
        remote = execute(lk, "u", executor="ray")
    assert remote.results == local.results
    assert remote.plugins == local.plugins  # the same code hashes and source artifacts
    assert remote.checks["sweep"]["executor"]["tasks"] == 9
    # the workers ran the look-ahead guard on every combination and symbol, and on the indicator once a symbol
    assert remote.checks["plugins"] == local.checks["plugins"]
    assert remote.checks["plugins"]["ray_breakout"]["combinations"] == 44 * 2
    assert remote.checks["plugins"]["ray_momentum"]["combinations"] == 2


DIES_ONCE = '''
import os
from pathlib import Path

import numpy as np
from artifact_lake.sim import Bars, strategy

MARK = Path(__file__).with_name("killed")


@strategy
def ray_dies_once(bars: Bars, n: int = 10) -> np.ndarray:
    """Long while the close is above its n-bar mean. The first call in a Ray worker SIGKILLs that worker."""
    if not MARK.exists() and Path("/proc/self/cmdline").read_bytes().startswith(b"ray::"):
        MARK.write_text(str(os.getpid()))
        os.kill(os.getpid(), 9)
    c = bars.close
    mean = np.convolve(c, np.ones(n) / n)[: len(c)]
    out = (c > mean).astype(np.float64)
    out[: n - 1] = np.nan
    return out
'''


def test_a_worker_killed_mid_task_is_retried_and_the_result_is_identical(cluster, tmp_path, monkeypatch):
    """A real kill: the plugin SIGKILLs the Ray worker running the first chunk; Ray retries the task on a new
    worker, and the published ids equal a local run's."""
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES_ONCE)
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin))
    _chunks_of(monkeypatch, 4)  # 12 combinations: 3 chunks
    spec = USER.replace('name = "ray_breakout"', 'name = "ray_dies_once"').split("[sweep]")[0]
    spec += "[sweep]\nn = [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]\n[results]\nbest = 2\n"
    with _lake(tmp_path / "local", spec) as lk:
        local = execute(lk, "u")  # in this process: nothing is killed
    assert not (tmp_path / "killed").exists()
    with _lake(tmp_path / "ray", spec) as lk:
        remote = execute(lk, "u", executor="ray")
    killed = int((tmp_path / "killed").read_text())
    assert killed != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # that worker is gone
    assert remote.status == "succeeded" and remote.results == local.results
    assert remote.checks["sweep"]["executor"]["tasks"] == 3  # the retry is Ray's, not a new task of ours


TRAIN_SWEEP = """
name = "t"
kind = "train"
[inputs]
ohlcv = ["px"]
[env]
symbol = "A"
window = 8
episode_length = 64
[trainer]
total_steps = 512
n_envs = 4
n_steps = 64
hidden = [8, 8]
[sweep]
seed = [1, 2, 3]
"""  # trainer.device is auto: a trial asks for a GPU where the cluster has one (this one has a logical GPU)


def test_a_train_sweep_on_ray_runs_a_trial_per_task_with_the_ids_of_a_local_run(cluster, tmp_path):
    with _lake(tmp_path / "local", TRAIN_SWEEP) as lk:
        local = execute(lk, "t")
        local_trials = {t["experiment"]: runs_of(lk.db, t["experiment"])[0].results for t in local.checks["trials"]}
    with _lake(tmp_path / "ray", TRAIN_SWEEP) as lk:
        remote = execute(lk, "t", executor="ray")
        assert remote.results == local.results  # the summary, which names every trial's policy id
        assert remote.checks["executor"]["name"] == "ray" and remote.checks["executor"]["tasks"] == 3
        assert remote.checks["executor"]["gpus"] == 1
        for t in remote.checks["trials"]:
            (run,) = runs_of(lk.db, t["experiment"])
            assert run.id == t["run"] and run.status == "succeeded" and run.device == "cpu"
            assert run.results == local_trials[t["experiment"]]  # policy, curve and metrics: the same ids
            assert run.checks["executor"]["name"] == "ray" and "task" in run.timings
            # each trial asked for a GPU and Ray granted the cluster's one; no CUDA here, so torch used the CPU
            assert run.checks["executor"]["task_gpus"] == ["0"]
        assert execute(lk, "t").reused  # the executor is no part of the sweep
        assert reproduce(lk, remote.results["metrics"]).identical
        trial = get_experiment(lk.db, "t.trial-2")
        assert execute(lk, trial.id).reused  # a trial Ray trained is a run like any other
        # a trial that trains on the CPU by its spec asks Ray for no GPU
        cpu_only = TRAIN_SWEEP.replace('name = "t"', 'name = "c"').replace("[sweep]", 'device = "cpu"\n[sweep]')
        create(lk, parse_spec(cpu_only.replace("seed = [1, 2, 3]", "seed = [4]")))
        on_cpu = execute(lk, "c", executor="ray")
        (run,) = runs_of(lk.db, on_cpu.checks["trials"][0]["experiment"])
        assert run.checks["executor"]["task_gpus"] == [] and run.device == "cpu"


def test_a_worker_running_other_plugin_code_than_the_driver_recorded_is_refused(cluster, tmp_path, monkeypatch):
    """The driver hashes the file; once the first chunk is back the file is edited, so the workers that run
    the next chunks load other code: they refuse, naming the plugin and both hashes."""
    plugin = tmp_path / "momentum.py"
    plugin.write_text(PLUGIN)
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin))
    _chunks_of(monkeypatch, 2)  # 22 chunks: more than the 4 in flight on 2 CPUs
    lk = _lake(tmp_path / "lake", USER)
    recorded = exp_plugins.closure(exp_plugins.resolve("strategy", "ray_breakout")).hash
    edited = PLUGIN.replace("flat once it is below -k", "flat once it is under -k")  # other code, same orders

    def edit_after_the_first_chunk(done: int, total: int, what: str) -> None:
        if plugin.read_text() != edited:
            plugin.write_text(edited)

    with pytest.raises(PluginError) as err:
        execute(lk, "u", executor="ray", progress=edit_after_the_first_chunk)
    exp_plugins.load()
    installed = exp_plugins.closure(exp_plugins.resolve("strategy", "ray_breakout")).hash
    assert installed != recorded
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"plugin 'ray_breakout' differs on a Ray worker: code {installed} there, {recorded}")
    assert "would break reproducibility" in message
    (run,) = runs_of(lk.db, get_experiment(lk.db, "u").id)
    assert run.status == "failed" and run.error == message and not run.results
    lk.close()


def _cli(*args: str):
    return CliRunner().invoke(experiments, list(args), catch_exceptions=False)


def test_the_cli_runs_a_sweep_on_ray_end_to_end(cluster, tmp_path, monkeypatch):
    _chunks_of(monkeypatch, 40)  # 4 chunks
    with _lake(tmp_path / "local", SMA) as lk:
        local = execute(lk, "s")
    _lake(tmp_path / "ray", SMA).close()
    r = _cli("--lake", str(tmp_path / "ray"), "execute", "s", "--executor", "ray", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "succeeded" and out["results"] == local.results
    assert out["executor"]["name"] == "ray" and out["executor"]["tasks"] == 4
    r = _cli("--lake", str(tmp_path / "ray"), "execute", "s", "--executor", "ray", "--json")
    assert json.loads(r.stdout)["reused"] is True


def test_a_second_driver_connects_to_the_cluster_by_its_address(cluster, tmp_path):
    """A separate process, as on a laptop driving a cluster: --ray-address, the run records its kind only."""
    with _lake(tmp_path / "local", SMA) as lk:
        local = execute(lk, "s")  # one chunk here: the ids do not depend on the chunking either
    _lake(tmp_path / "ray", SMA).close()
    code = textwrap.dedent(
        """
        import sys
        from artifact_lake.cli.main import experiments_main
        from artifact_lake.experiments import sweep
        sweep.CHUNK_BAR_STEPS = 1200 * 2 * 50
        sys.argv[0] = "experiments"
        experiments_main()
        """
    )
    args = ["--lake", str(tmp_path / "ray"), "execute", "s", "--executor", "ray", "--ray-address", cluster, "--json"]
    r = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["results"] == local.results
    assert out["executor"]["address"] == "gcs" and out["executor"]["tasks"] == 3
    assert cluster not in r.stdout  # the address itself is not recorded


def test_without_an_address_the_cli_starts_a_local_cluster_and_stops_it(cluster, tmp_path):
    with _lake(tmp_path / "local", SMA) as lk:
        local = execute(lk, "s")
    _lake(tmp_path / "ray", SMA).close()
    args = ["experiments", "--lake", str(tmp_path / "ray"), "execute", "s", "--executor", "ray", "--json"]
    env = subprocess_env()
    env.pop("RAY_ADDRESS", None)
    code = "import sys\nfrom artifact_lake.cli.main import experiments_main\nexperiments_main()\n"
    r = subprocess.run([PYTHON, "-c", code, *args[1:]], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["results"] == local.results
    assert out["executor"]["address"] == "local" and out["executor"]["tasks"] == 1


def test_without_the_extra_the_ray_executor_is_one_line_and_the_lake_is_unchanged(tmp_path):
    _lake(tmp_path / "lake", SMA).close()
    before = lake_state(tmp_path / "lake")
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as on a machine without the extra
        "from artifact_lake.cli.main import experiments_main\n"
        "sys.argv[0] = 'experiments'\n"
        "experiments_main()\n"
    )
    args = ["--lake", str(tmp_path / "lake"), "execute", "s", "--executor", "ray"]
    r = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        'error: the ray executor needs ray, which is not installed: pip install "artifact-lake[ray]"'
    ]
    assert lake_state(tmp_path / "lake") == before


PORTFOLIO = """
name = "p"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "xs_momentum"
every = 20
[sweep]
lookback = [5, 10, 20]
top_k = [1, 2]
[results]
best = 2
"""  # 6 combinations; the best 2 by Sharpe keep equity, fills and positions

PORTFOLIO_PLUGIN = '''
import numpy as np
from artifact_lake.sim import Panel, portfolio_strategy


@portfolio_strategy
def ray_tilt(panel: Panel, n: int = 10, every: int = 20) -> np.ndarray:
    """Every `every` bars, equal weights in the symbols whose close rose over the last n bars."""
    c = panel.last_close()
    first = panel.bars(panel.symbols[0])  # the panel's own API works on a worker as here (symbols a tuple)
    out = np.full(panel.shape, np.nan)
    for i in range(max(n, len(panel) - len(first)), len(panel), every):
        up = c[i] > c[i - n]
        out[i] = np.where(up, 1.0 / max(int(up.sum()), 1), 0.0)
    return out
'''


def test_a_portfolio_sweep_on_ray_publishes_the_ids_of_a_local_run(cluster, tmp_path, monkeypatch):
    _chunks_of(monkeypatch, 2)  # 6 combinations in chunks of 2: 3 tasks
    with _lake(tmp_path / "local", PORTFOLIO) as lk:
        local = execute(lk, "p")
    with _lake(tmp_path / "ray", PORTFOLIO) as lk:
        remote = execute(lk, "p", executor="ray")
    assert remote.results == local.results  # metrics of all 6; equity, fills, positions of the 2 kept
    assert local.checks["sweep"]["executor"] == {"name": "local"}
    ray_side = remote.checks["sweep"]["executor"]
    assert ray_side["name"] == "ray" and ray_side["tasks"] == 3 and remote.checks["sweep"]["chunk_combinations"] == 2
    assert remote.checks["sweep"]["kept"] == 2 and "ray_chunks" in remote.timings


def test_a_user_portfolio_plugin_on_ray_is_guarded_on_the_workers_with_a_local_runs_ids(cluster, tmp_path, monkeypatch):
    plugin = tmp_path / "tilt.py"
    plugin.write_text(PORTFOLIO_PLUGIN)
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin))
    _chunks_of(monkeypatch, 3)
    spec = PORTFOLIO.replace('name = "xs_momentum"', 'name = "ray_tilt"').split("[sweep]")[0]
    spec += "[sweep]\nn = [3, 5, 8, 13, 21, 34]\n[results]\nbest = 1\n"
    with _lake(tmp_path / "local", spec) as lk:
        local = execute(lk, "p")
    with _lake(tmp_path / "ray", spec) as lk:
        remote = execute(lk, "p", executor="ray")
    assert remote.results == local.results and remote.plugins == local.plugins
    assert remote.checks["plugins"] == local.checks["plugins"]  # the guard ran on every combination, there
    assert remote.checks["plugins"]["ray_tilt"]["combinations"] == 6
    assert remote.checks["sweep"]["executor"]["tasks"] == 2


TRAIN_ALONE = TRAIN_SWEEP.split("[sweep]")[0].replace('name = "t"', 'name = "one"')


def test_work_without_chunks_to_ship_is_refused_before_a_run_is_recorded(tmp_path):
    pytest.importorskip("ray")
    lk = _lake(tmp_path / "lake", TRAIN_ALONE)  # one training run: nothing a cluster could take
    before = lake_state(lk.root)
    with pytest.raises(ExecutorError) as err:
        execute(lk, "one", executor="ray")
    assert str(err.value).startswith("--executor ray: a train run runs only locally")
    with pytest.raises(ExecutorError, match="--ray-address needs --executor ray"):
        execute(lk, "one", ray_address="auto")
    with pytest.raises(ExecutorError, match="unknown executor 'dask' \\(known: local, ray\\)"):
        execute(lk, "one", executor="dask")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(ExecutorError, match=f"--ray-address {nobody}: no Ray cluster answers there"):
        execute(lk, "one", executor="ray", ray_address=nobody)
    assert lake_state(lk.root) == before
    r = _cli("--lake", str(lk.root), "execute", "one", "--executor", "ray")
    assert r.exit_code == 2 and r.stderr.startswith("error: --executor ray: a train run runs only locally")
    # at most 100 combinations and no [results]: every combination keeps its equity, nothing is chunked
    few = SMA.replace('name = "s"', 'name = "few"').split("[sweep]")[0] + "[sweep]\nfast = [3, 5]\nslow = [20, 30]\n"
    create(lk, parse_spec(few))
    run = execute(lk, "few", executor="ray")
    assert run.checks["executor"] == {"name": "local", "requested": "ray", "why": "no chunked sweep"}
    lk.close()
