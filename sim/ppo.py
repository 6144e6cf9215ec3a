"""Proximal Policy Optimization in torch, readable top to bottom (after cleanrl's ppo.py).

Clipped surrogate objective, generalised advantage estimation, minibatches over several epochs, an entropy
bonus, a clipped value loss, gradient-norm clipping and linear learning-rate annealing. One seeding block
at the top of :func:`train`; on the CPU ``torch.use_deterministic_algorithms(True)`` and a fixed thread
count make a run bit-identical on any machine; on CUDA the cuBLAS workspace is fixed as deterministic
algorithms require (the same GPU and driver then give the same run).

Truncated episodes (the episode length reached) bootstrap from the value of their last observation;
terminated ones (bankrupt) do not. Wall-clock figures (steps per second) go to the caller's ``progress``
and to the run record, never into the results, so that results depend on inputs, settings and code only.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class PPOConfig:
    """Trainer settings."""

    total_steps: int = 20_000
    """Environment steps in all (over every environment)."""
    n_envs: int = 8
    """Environments stepped together."""
    n_steps: int = 256
    """Steps per environment between updates (a rollout is n_envs x n_steps)."""
    n_epochs: int = 4
    """Passes over each rollout."""
    n_minibatches: int = 4
    """Minibatches per pass."""
    lr: float = 3e-4
    """Adam learning rate at the start."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """Surrogate clipping range."""
    clip_vloss: bool = True
    """Clip the value loss as the surrogate is clipped."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and of the value network."""
    seed: int = 0
    """Seed of every random draw of the run."""
    device: str = "auto"
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda``."""
    threads: int = 1
    """torch CPU threads; fixed so a CPU run is the same on any machine."""

    def __post_init__(self) -> None:
        for name in ("total_steps", "n_envs", "n_steps", "n_epochs", "n_minibatches", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"trainer.{name} must be a whole number >= 1")
        if (self.n_envs * self.n_steps) % self.n_minibatches:
            raise ValueError("trainer.n_envs x n_steps must divide into n_minibatches")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"trainer.device must be auto, cpu or cuda, not {self.device!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("trainer.hidden must list positive layer sizes")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layer(i: int, o: int, std: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(i, o)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def _mlp(i: int, hidden: tuple[int, ...], o: int, out_std: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [_layer(i, h), nn.Tanh()]
        i = h
    layers.append(_layer(i, o, out_std))
    return nn.Sequential(*layers)


class Agent(nn.Module):
    """Separate policy and value MLPs; the policy outputs one categorical per action dimension.

    The categoricals are handled together, padded to the widest with -inf logits: one log-softmax,
    Gumbel-max sampling and a gather, instead of a torch.distributions object per dimension per call
    (those cost more than the network itself on small batches).
    """

    _index: torch.Tensor
    _mask: torch.Tensor

    def __init__(self, obs_dim: int, nvec: tuple[int, ...], hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.nvec = tuple(int(n) for n in nvec)
        self.critic = _mlp(obs_dim, hidden, 1, 1.0)
        self.actor = _mlp(obs_dim, hidden, sum(self.nvec), 0.01)
        width = max(self.nvec)
        index = torch.zeros(len(self.nvec), width, dtype=torch.long)
        mask = torch.zeros(len(self.nvec), width, dtype=torch.bool)
        start = 0
        for k, n in enumerate(self.nvec):
            index[k, :n] = torch.arange(start, start + n)
            mask[k, :n] = True
            start += n
        self.register_buffer("_index", index, persistent=False)
        self.register_buffer("_mask", mask, persistent=False)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.critic(x).squeeze(-1)
        return out

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, dimensions, widest) log-probabilities; -inf where a dimension has fewer choices."""
        logits = self.actor(x)[..., self._index]
        logits = logits.masked_fill(~self._mask, float("-inf"))
        return torch.log_softmax(logits, dim=-1)

    def act(
        self, x: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log-probability, entropy, value); samples the action unless one is given."""
        logp = self.log_probs(x)
        if action is None:
            gumbel = -torch.log(-torch.log(torch.rand_like(logp).clamp_(1e-20, 1.0)))
            action = torch.argmax(logp + gumbel, dim=-1)
        chosen = torch.gather(logp, -1, action.unsqueeze(-1)).squeeze(-1).sum(-1)
        p = logp.exp()
        ent = -(p * logp.masked_fill(~self._mask, 0.0)).sum(-1).sum(-1)
        return action, chosen, ent, self.value(x)

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log-probability, value) for the rollout: no entropy, nothing kept for gradients."""
        logp = self.log_probs(x)
        gumbel = -torch.log(-torch.log(torch.rand_like(logp).clamp_(1e-20, 1.0)))
        action = torch.argmax(logp + gumbel, dim=-1)
        return action, torch.gather(logp, -1, action.unsqueeze(-1)).squeeze(-1).sum(-1), self.value(x)

    def greedy(self, x: torch.Tensor) -> torch.Tensor:
        """The most likely action (for evaluation and backtests)."""
        return torch.argmax(self.log_probs(x), dim=-1)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns for a (T, N) rollout.

    ``dones[t]`` says the observation at t started a new episode (the previous one ended at t-1).
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        nonterminal = 1.0 - (next_done if t == T - 1 else dones[t + 1])
        next_v = next_value if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_v * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def pick_device(device: str) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("trainer.device is cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class Training:
    """What :func:`train` returns: the agent, one row per update, and timings (not results)."""

    agent: Agent
    curve: list[dict[str, float]] = field(default_factory=list)
    sps: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


def seed_everything(seed: int, device: torch.device, threads: int) -> None:
    """The one seeding block: Python, numpy and torch, deterministic algorithms, a fixed thread count."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False


def train(envs: Any, config: PPOConfig, progress: Callable[[dict[str, float]], None] | None = None) -> Training:
    """Train an :class:`Agent` on a :class:`sim.VectorTradingEnv` made with ``same_step_reset=True``."""
    device = pick_device(config.device)
    seed_everything(config.seed, device, config.threads)
    n_envs = envs.num_envs
    if n_envs != config.n_envs:
        raise ValueError(f"the vector env has {n_envs} environments but trainer.n_envs is {config.n_envs}")
    obs_dim = envs.single_observation_space.shape[0]
    space = envs.single_action_space
    discrete = not hasattr(space, "nvec")
    nvec = (int(space.n),) if discrete else tuple(int(n) for n in space.nvec)
    agent = Agent(obs_dim, nvec, config.hidden).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.lr, eps=1e-5, foreach=True)

    T, N = config.n_steps, n_envs
    batch = T * N
    minibatch = batch // config.n_minibatches
    updates = max(1, config.total_steps // batch)
    # rollout buffers in numpy (cheap writes per step), handed to torch without a copy after the rollout
    obs_buf = np.zeros((T, N, obs_dim), dtype=np.float32)
    act_buf = np.zeros((T, N, len(nvec)), dtype=np.int64)
    logp_buf = np.zeros((T, N), dtype=np.float32)
    rew_buf = np.zeros((T, N), dtype=np.float32)
    done_buf = np.zeros((T, N), dtype=np.float32)
    val_buf = np.zeros((T, N), dtype=np.float32)

    obs_np, _ = envs.reset(seed=config.seed)
    next_done = np.zeros(N, dtype=np.float32)
    ep_return = np.zeros(N)
    out = Training(agent=agent, device=device.type)
    started = time.perf_counter()
    steps = 0
    for update in range(1, updates + 1):
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.lr * (1.0 - (update - 1.0) / updates)
        t_update = time.perf_counter()
        finished: list[float] = []
        for t in range(T):
            obs_buf[t] = obs_np
            done_buf[t] = next_done
            with torch.inference_mode():
                action, logp, value = agent.sample(torch.as_tensor(obs_np, device=device))
            a = action.cpu().numpy()
            act_buf[t] = a
            logp_buf[t] = logp.cpu().numpy()
            val_buf[t] = value.cpu().numpy()
            if discrete:
                a = a[:, 0]
            obs_np, reward, term, trunc, info = envs.step(a)
            steps += N
            reward = reward.astype(np.float64)
            ep_return += reward
            if "done" in info:
                # truncated episodes continue in value: bootstrap from their last observation
                trunc_idx = np.flatnonzero(trunc)
                if trunc_idx.size:
                    with torch.inference_mode():
                        final_v = agent.value(torch.as_tensor(info["final_obs"][trunc_idx], device=device))
                    reward[trunc_idx] += config.gamma * final_v.cpu().numpy().astype(np.float64)
                for j in np.flatnonzero(info["done"]):
                    finished.append(float(ep_return[j]))
                    ep_return[j] = 0.0
            rew_buf[t] = reward
            next_done = (term | trunc).astype(np.float32)

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(device)

        with torch.no_grad():
            next_value = agent.value(torch.as_tensor(obs_np, device=device))
            adv, ret = compute_gae(
                tensor(rew_buf),
                tensor(val_buf),
                tensor(done_buf),
                next_value,
                tensor(next_done),
                config.gamma,
                config.gae_lambda,
            )

        b_obs = tensor(obs_buf).reshape(batch, obs_dim)
        b_act = tensor(act_buf).reshape(batch, len(nvec))
        b_logp, b_adv, b_ret, b_val = (x.reshape(batch) for x in (tensor(logp_buf), adv, ret, tensor(val_buf)))
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
        n_mb = 0
        for _ in range(config.n_epochs):
            order = torch.randperm(batch, device=device)
            for start in range(0, batch, minibatch):
                idx = order[start : start + minibatch]
                _, new_logp, entropy, new_val = agent.act(b_obs[idx], b_act[idx])
                log_ratio = new_logp - b_logp[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    clipfrac = ((ratio - 1.0).abs() > config.clip_coef).float().mean()
                mb_adv = b_adv[idx]
                if config.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)
                ).mean()
                if config.clip_vloss:
                    v_clipped = b_val[idx] + torch.clamp(new_val - b_val[idx], -config.clip_coef, config.clip_coef)
                    v_loss = 0.5 * torch.max((new_val - b_ret[idx]) ** 2, (v_clipped - b_ret[idx]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((new_val - b_ret[idx]) ** 2).mean()
                ent = entropy.mean()
                loss = pg_loss - config.ent_coef * ent + config.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                optimizer.step()
                for key, val in (
                    ("policy_loss", pg_loss),
                    ("value_loss", v_loss),
                    ("entropy", ent),
                    ("approx_kl", approx_kl),
                    ("clipfrac", clipfrac),
                ):
                    stats[key] += float(val.detach())
                n_mb += 1
        row = {
            "update": float(update),
            "steps": float(steps),
            "episodic_return": float(np.mean(finished)) if finished else float("nan"),
            "episodes": float(len(finished)),
            "lr": float(optimizer.param_groups[0]["lr"]),
        }
        row.update({k: v / n_mb for k, v in stats.items()})
        out.curve.append(row)
        sps = T * N / max(time.perf_counter() - t_update, 1e-9)
        out.sps.append(sps)
        if progress is not None:
            progress(row | {"sps": sps, "updates": float(updates)})
    out.seconds = time.perf_counter() - started
    return out
