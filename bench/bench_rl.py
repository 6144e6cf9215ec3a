"""RL benchmarks (issue #6): the vectorised env (1,024 envs), a single env through Gymnasium wrappers, and
our PPO against Stable-Baselines3's PPO (bench extra) with the same network, settings, env and threads.

    python bench/bench_rl.py [--ppo-steps 8192]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from artifact_lake.artifact_store.samples import synthetic_ohlcv  # noqa: E402
from artifact_lake.sim import EnvConfig, Market, TradingEnv, VectorTradingEnv  # noqa: E402
from artifact_lake.sim.ppo import PPOConfig, train  # noqa: E402
from bench._common import best_of_pair, print_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ppo-steps", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="PPO runs of each trainer, alternated")
    args = ap.parse_args()
    table = synthetic_ohlcv(("A",), bars=50_000, seed=1)
    market = Market(table, EnvConfig())
    rows = []

    vec = VectorTradingEnv(None, 1024, market=market)
    vec.reset(seed=0)
    acts = np.random.default_rng(0).integers(0, [3, 2, 3], size=(100, 1024, 3))
    vec.step(acts[0])
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for k in range(100):
            vec.step(acts[k])
        best = min(best, time.perf_counter() - t0)
    vsps = 100 * 1024 / best
    rows.append(("vector env, 1,024 envs, random actions", f"{vsps:,.0f} steps/s", "-", "-", ">= 1,000,000"))

    env = gym.wrappers.RecordEpisodeStatistics(
        gym.wrappers.OrderEnforcing(gym.wrappers.PassiveEnvChecker(TradingEnv(None, market=market)))
    )
    env.reset(seed=0)
    single = np.random.default_rng(1).integers(0, [3, 2, 3], size=(50_000, 3))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for a in single:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        best = min(best, time.perf_counter() - t0)
    ssps = len(single) / best
    rows.append(
        ("single env through Gymnasium wrappers, random actions", f"{ssps:,.0f} steps/s", "-", "-", ">= 100,000")
    )

    # both trainers are warmed up first (torch's one-time start-up, imports), then timed
    warm = PPOConfig(total_steps=256, n_envs=1, n_steps=256, n_minibatches=4, device="cpu", threads=args.threads)
    train(VectorTradingEnv(None, 1, market=market, same_step_reset=True), warm)
    torch.set_num_threads(args.threads)
    cfg = PPOConfig(
        total_steps=args.ppo_steps,
        n_envs=1,
        n_steps=2048,
        n_epochs=10,
        n_minibatches=32,
        hidden=(64, 64),
        device="cpu",
        threads=args.threads,
    )
    from stable_baselines3 import PPO

    model = PPO(
        "MlpPolicy",
        TradingEnv(None, market=market),
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh},
        seed=0,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=256)
    torch.set_num_threads(args.threads)
    t_ours, t_sb3 = best_of_pair(  # alternated: both see the same moments of a shared machine
        lambda: train(VectorTradingEnv(None, 1, market=market, same_step_reset=True), cfg),
        lambda: model.learn(total_timesteps=args.ppo_steps, reset_num_timesteps=True),
        repeat=args.repeat,
    )
    ours, sb3 = args.ppo_steps / t_ours, args.ppo_steps / t_sb3
    rows.append(
        (
            f"PPO on the CPU, 2x64 MLP, 2,048 steps/update, {args.ppo_steps:,} steps, {args.threads} thread(s)",
            f"{ours:,.0f} steps/s",
            f"{sb3:,.0f} steps/s Stable-Baselines3",
            f"{ours / sb3:.2f}x",
            ">= 2x",
        )
    )
    print_table("bench_rl.py", rows)


if __name__ == "__main__":
    main()
