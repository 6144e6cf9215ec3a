"""The trading environment: Gymnasium's checker, no look-ahead, equal to the backtest, vector = N singles."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.sim import Bars, EnvConfig, Execution, Market, TradingEnv, VectorTradingEnv, run


@pytest.fixture(scope="module")
def table():
    return synthetic_ohlcv(("A",), bars=3000, seed=5)


@pytest.mark.parametrize("space", ["multi_discrete", "discrete"])
def test_check_env_passes(table, space):
    check_env(TradingEnv(table, action_space=space, window=8, episode_length=64), skip_render_check=True)


def test_builds_from_pyarrow_polars_and_bars_with_defaults(table):
    import polars as pl

    a = TradingEnv(table)
    b = TradingEnv(pl.from_arrow(table))
    c = TradingEnv(Bars.from_table(table))
    for env in (a, b, c):
        assert env.observation_space.shape == (32 * 6 + 4,)
        assert env.action_space == gym.spaces.MultiDiscrete([3, 2, 3])
    np.testing.assert_array_equal(a.reset(seed=1)[0], b.reset(seed=1)[0])
    np.testing.assert_array_equal(a.reset(seed=1)[0], c.reset(seed=1)[0])
    with pytest.raises(ValueError, match="unknown reward 'sharpe'"):
        TradingEnv(table, reward={"sharpe": 1.0})
    with pytest.raises(ValueError, match="too few"):
        TradingEnv(table.slice(0, 100))


def test_changing_future_bars_leaves_past_observations_unchanged(table):
    cfg = EnvConfig(window=10, episode_length=200)
    base = Market(table, cfg)
    t0 = 1500
    close = table.column("close").to_numpy().copy()
    close[t0 + 1 :] *= 1.5  # a different future
    import pyarrow as pa

    changed = table.set_column(5, "close", pa.array(close))
    changed = changed.set_column(3, "high", pa.array(np.maximum(changed.column("high").to_numpy(), close)))
    other = Market(changed, cfg, norm=base.norm)  # the normaliser is fitted once and frozen
    for start in (9, 500, 1400, t0):
        e1 = TradingEnv(None, market=base, split="validation")
        e2 = TradingEnv(None, market=other, split="validation")
        o1 = e1.reset(options={"start": start})[0]
        o2 = e2.reset(options={"start": start})[0]
        np.testing.assert_array_equal(o1, o2)
    assert not np.array_equal(base.feats[t0 + 5], other.feats[t0 + 5])  # the future did change


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_episode_profit_equals_the_backtest_of_the_same_actions(table, seed):
    ex = Execution(cash=5000, fee_bps=10, slippage_bps=3, units="fractional")
    env = TradingEnv(
        table,
        episode_length=300,
        execution=ex,
        reward={"log_equity": 1.0, "dsr": 0.5, "drawdown": 0.2},
        presets=((None, None), (0.002, 0.004), (0.004, 0.002)),
    )
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    start = info["bar"]
    targets, sl, tp, equity = [], [], [], []
    done = False
    k = 0
    while not done:
        if k % 15 == 0:  # hold each action a while, so trades live long enough to meet their stops
            action = env.action_space.sample()
        k += 1
        obs, reward, term, trunc, info = env.step(action)
        targets.append(np.nan if info["target"] is None else info["target"])
        sl.append(np.nan if info["stop_loss"] is None else info["stop_loss"])
        tp.append(np.nan if info["take_profit"] is None else info["take_profit"])
        equity.append(info["equity"])
        done = term or trunc
    b = Bars.from_table(table)
    end = start + len(targets)
    part = b.slice(start, end + 1)
    pad = [np.nan]
    res = run(part, targets + pad, ex, mode="target", stop_loss=sl + pad, take_profit=tp + pad)
    np.testing.assert_array_equal(res.equity[1:], equity)  # every step, to the last bit
    assert len(res.trades) > 5 and set(res.trades["exit_reason"]) & {2, 3}  # stop presets fired


def test_reset_seed_fully_determines_an_episode(table):
    def episode(seed):
        env = TradingEnv(table, episode_length=50)
        env.action_space.seed(seed)
        out = [env.reset(seed=seed)[0]]
        for _ in range(50):
            o, r, *_ = env.step(env.action_space.sample())
            out.append(np.append(o, r))
        return out

    a, b, c = episode(4), episode(4), episode(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("space", ["multi_discrete", "discrete"])
def test_vector_env_equals_n_single_envs(table, space):
    n = 5
    kw = dict(window=8, episode_length=40, action_space=space)
    vec = VectorTradingEnv(table, n, **kw)
    sync = gym.vector.SyncVectorEnv([lambda: TradingEnv(table, **kw) for _ in range(n)])
    o1, _ = vec.reset(seed=11)
    o2, _ = sync.reset(seed=11)
    np.testing.assert_array_equal(o1, o2)
    vec.action_space.seed(3)
    for _ in range(130):  # several episodes: autoresets included
        a = vec.action_space.sample()
        r1 = vec.step(a)
        r2 = sync.step(a)
        for x, y in zip(r1[:4], r2[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    sync.close()


def test_gymnasium_make_builds_the_registered_envs(table):
    from artifact_lake.sim import ENV_ID

    env = gym.make(ENV_ID, data=table, window=8, episode_length=64)
    assert isinstance(env.unwrapped, TradingEnv)
    check_env(env.unwrapped, skip_render_check=True)  # gymnasium's advice: check the env under its wrappers
    direct = TradingEnv(table, window=8, episode_length=64)
    np.testing.assert_array_equal(env.reset(seed=4)[0], direct.reset(seed=4)[0])
    for action in (np.array([2, 0, 1]), np.array([0, 1, 2]), np.array([1, 0, 0])):
        got, want = env.step(action), direct.step(action)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1:4] == want[1:4]

    venv = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", data=table, window=8)
    assert isinstance(venv, VectorTradingEnv) and venv.num_envs == 3
    obs, _ = venv.reset(seed=1)
    assert obs.shape == (3, 8 * 6 + 4)
    venv.close()


def test_a_fresh_interpreter_finds_the_env_through_gymnasium_alone(tmp_path):
    import subprocess

    from tests.conftest import PYTHON, subprocess_env

    code = (
        "import gymnasium as gym\n"
        "from artifact_lake.artifact_store.samples import synthetic_ohlcv\n"
        "env = gym.make('artifact_lake.sim:ArtifactLake/Trading-v0', data=synthetic_ohlcv(('A',), bars=400, seed=1),"
        " window=8, episode_length=32)\n"
        "print(type(env.unwrapped).__name__, env.reset(seed=0)[0].shape)\n"
    )
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "TradingEnv (52,)"


@pytest.fixture
def zscore_indicator():
    """A test-registered indicator (removed from the registry afterwards)."""
    from artifact_lake.sim import indicator
    from artifact_lake.sim import plugins as registry

    def zscore(bars: Bars, n: int = 20) -> np.ndarray:
        c = bars.close
        out = np.full(len(c), np.nan)
        for i in range(n - 1, len(c)):
            w = c[i - n + 1 : i + 1]
            sd = w.std()
            out[i] = (c[i] - w.mean()) / sd if sd > 0 else 0.0
        return out

    saved = dict(registry.REGISTRY)
    indicator(zscore)
    yield zscore
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)


def test_a_registered_indicator_with_parameters_is_a_feature(table, zscore_indicator):
    from artifact_lake.sim.features import fit_normaliser, normalise

    cfg = EnvConfig(window=6, episode_length=100, features=("zscore(n=5)",))
    env = TradingEnv(table, config=cfg, split="validation")
    bars = Bars.from_table(table)
    raw = zscore_indicator(bars, 5)[:, None]
    mean, std = fit_normaliser(raw, env.market.train_end)  # fitted on the train split, then frozen
    np.testing.assert_array_equal(env.market.norm[0], mean)
    expected = normalise(raw, mean, std)
    np.testing.assert_array_equal(env.market.feats, expected)
    start = 1000
    obs, _ = env.reset(options={"start": start})
    np.testing.assert_array_equal(obs[:6], expected[start - 5 : start + 1, 0])
    positional = Market(table, EnvConfig(window=6, episode_length=100, features=("zscore(5)",)))
    np.testing.assert_array_equal(positional.feats, env.market.feats)


def test_builtin_features_take_parameters_and_keep_their_old_names(table):
    a = Market(table, EnvConfig(features=("rsi(14)", "sma(n=20)", "ema(50)", "vol(20)", "atr(14)")))
    b = Market(table, EnvConfig(features=("rsi", "sma20", "ema50", "vol", "atr")))
    np.testing.assert_array_equal(a.feats, b.feats)


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ("nope(3)", "unknown feature 'nope' (built-in: logret, vol"),
        ("zscore(n=[5])", "argument '[5]' is not a literal"),
        ("os.system('x')", "not a name or name(args)"),
        ("zscore(m=5)", "indicator 'zscore' has no parameter 'm'"),
        ("zscore(n='5')", "parameter 'n' must be int, not str '5'"),
        ("sma", "sma needs its window"),
    ],
)
def test_bad_features_are_refused_in_one_line(zscore_indicator, feature, message):
    with pytest.raises(ValueError) as err:
        EnvConfig(features=(feature,))
    assert message in str(err.value) and "\n" not in str(err.value)
    if feature.startswith("nope"):
        assert "indicators: zscore" in str(err.value)
