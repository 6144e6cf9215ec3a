from __future__ import annotations

import numpy as np
import pytest
import torch

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.sim import EnvConfig, Market, VectorTradingEnv
from artifact_lake.sim.policy import from_rows, load_agent, to_rows
from artifact_lake.sim.ppo import PPOConfig, compute_gae, train


def reference_gae(rewards, values, dones, next_value, next_done, gamma, lam):
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            nd = next_done[n] if t == T - 1 else dones[t + 1, n]
            nv = next_value[n] if t == T - 1 else values[t + 1, n]
            delta = rewards[t, n] + gamma * nv * (1 - nd) - values[t, n]
            last = delta + gamma * lam * (1 - nd) * last
            adv[t, n] = last
    return adv


def test_gae_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    T, N = 17, 3
    r, v = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    d = (rng.random((T, N)) < 0.2).astype(float)
    nv, nd = rng.normal(size=N), np.array([0.0, 1.0, 0.0])
    adv, ret = compute_gae(*(torch.tensor(x, dtype=torch.float64) for x in (r, v, d, nv, nd)), 0.97, 0.9)
    np.testing.assert_allclose(adv.numpy(), reference_gae(r, v, d, nv, nd, 0.97, 0.9), rtol=1e-12)
    np.testing.assert_allclose(ret.numpy(), adv.numpy() + v)


def _train(seed=0, steps=2048):
    market = Market(synthetic_ohlcv(("A",), bars=2500, seed=1), EnvConfig(window=8, episode_length=64))
    envs = VectorTradingEnv(None, 4, market=market, same_step_reset=True)
    return market, train(envs, PPOConfig(total_steps=steps, n_envs=4, n_steps=128, hidden=(16, 16), seed=seed))


def test_a_short_cpu_run_is_bit_identical_and_logs_a_curve():
    _, a = _train()
    _, b = _train()
    _, c = _train(seed=1)
    pa_, pb, pc = ([p.detach().numpy().tobytes() for p in x.agent.parameters()] for x in (a, b, c))
    assert pa_ == pb and pa_ != pc
    assert [r["update"] for r in a.curve] == [1.0, 2.0, 3.0, 4.0]
    for key in ("steps", "episodic_return", "policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"):
        assert key in a.curve[0]
    assert a.curve == b.curve and len(a.sps) == 4 and all(s > 0 for s in a.sps)


def test_policies_round_trip_through_tensors_without_pickle():
    market, result = _train(steps=512)
    rows = to_rows(result.agent, {"norm.mean": market.norm[0], "norm.std": market.norm[1]})
    assert all(isinstance(d, bytes) for d in rows["data"])
    arrays = from_rows(rows)
    agent = load_agent(arrays, market.obs_dim, market.nvec, (16, 16))
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(5, market.obs_dim)), dtype=torch.float32)
    assert torch.equal(agent.greedy(x), result.agent.greedy(x))
    np.testing.assert_array_equal(arrays["norm.std"], market.norm[1])
    rows["data"][0] = rows["data"][0][:-4]
    with pytest.raises(ValueError, match=r"tensor param\.critic\.0\.weight: \d+ bytes do not hold shape"):
        from_rows(rows)
    with pytest.raises(ValueError, match="missing or has the wrong shape"):
        load_agent(arrays, market.obs_dim + 1, market.nvec, (16, 16))


def test_bad_trainer_settings_are_named():
    with pytest.raises(ValueError, match="trainer.device must be auto, cpu or cuda"):
        PPOConfig(device="tpu")
    with pytest.raises(ValueError, match="must divide into n_minibatches"):
        PPOConfig(n_envs=3, n_steps=5, n_minibatches=4)
