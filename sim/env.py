"""Gymnasium trading environments over one symbol's OHLCV, scored by the simulator's execution model.

* Observation: the last ``window`` rows of causal features (:mod:`sim.features`, normalised with
  statistics of the training split), then the agent's state: position as a fraction of equity, the open
  trade's unrealised return, bars in the position (over the episode length) and drawdown.
* Action: ``MultiDiscrete([3, len(sizes), len(presets)])`` (direction short/flat/long, size, stop preset) by
  default. ``action_space="discrete"`` flattens it into ``Discrete(3 * sizes * presets)``: one categorical
  over every combination. MultiDiscrete factorises the policy (fewer outputs, shared structure, but the
  parts are chosen independently); Discrete can express any joint preference at the price of more outputs.
* Reward: a weighted sum from the catalogue ``log_equity`` (log equity change, the default), ``dsr``
  (differential Sharpe ratio), ``drawdown`` (penalty: the current drawdown) and ``turnover`` (penalty: the
  change of the position fraction).
* Episodes: ``episode_length`` steps from a start drawn with the env's seeded RNG inside the training split
  (``train_fraction`` of the bars); ``split="validation"`` runs one episode over the bars after it, never seen
  in training. ``reset(seed=...)`` fully determines an episode. Orders fill at the next bar's open.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from . import env_kernels as EK
from .engine import Bars, Execution
from .features import DEFAULT_FEATURES, check_features, fit_normaliser, normalise, raw_features
from .records import UNITS

REWARDS = ("log_equity", "dsr", "drawdown", "turnover")


@dataclass(frozen=True)
class EnvConfig:
    """Settings of a trading environment; every field has a default."""

    window: int = 32
    """Bars of features in each observation."""
    features: tuple[str, ...] = DEFAULT_FEATURES
    """Feature specs, ``name`` or ``name(args)``: built-ins, then registered indicators (see sim.features)."""
    episode_length: int = 256
    """Steps per training episode."""
    train_fraction: float = 0.8
    """Share of the bars (from the start) that training episodes are drawn from; the rest is validation."""
    sizes: tuple[float, ...] = (0.5, 1.0)
    """Position sizes (fractions of equity) the size action chooses from."""
    presets: tuple[tuple[float | None, float | None], ...] = ((None, None), (0.01, 0.02), (0.02, 0.04))
    """(stop-loss, take-profit) pairs the third action chooses from; None is off."""
    action_space: str = "multi_discrete"
    """``multi_discrete`` or ``discrete``."""
    reward: dict[str, float] = field(default_factory=lambda: {"log_equity": 1.0})
    """Weights of the reward catalogue: log_equity, dsr, drawdown, turnover."""
    dsr_eta: float = 0.01
    """Adaptation rate of the differential Sharpe ratio's moving moments."""
    execution: Execution = field(default_factory=Execution)
    """Cash, fees, slippage, leverage and units; fills are always at the next bar's open."""

    def __post_init__(self) -> None:
        check_features(self.features)
        if self.window < 1 or self.episode_length < 1:
            raise ValueError("window and episode_length must be >= 1")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], not {self.train_fraction!r}")
        if not self.sizes or any(not 0 < s <= 1 for s in self.sizes):
            raise ValueError(f"sizes must be fractions in (0, 1], not {self.sizes!r}")
        if not self.presets:
            raise ValueError("presets needs at least one (stop-loss, take-profit) pair")
        if self.action_space not in ("multi_discrete", "discrete"):
            raise ValueError(f"action_space must be multi_discrete or discrete, not {self.action_space!r}")
        for k in self.reward:
            if k not in REWARDS:
                raise ValueError(f"unknown reward {k!r} (one of {', '.join(REWARDS)})")
        if self.execution.fill != "next_open" or self.execution.latency_bars:
            raise ValueError("the environment fills at the next bar's open, with no latency")

    @classmethod
    def from_kwargs(cls, **kw: Any) -> EnvConfig:
        if "execution" in kw and isinstance(kw["execution"], dict):
            kw["execution"] = Execution.from_dict(kw["execution"])
        for key in ("features", "sizes"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "presets" in kw:
            kw["presets"] = tuple(
                (None if a is None else float(a), None if b is None else float(b)) for a, b in kw["presets"]
            )
        unknown = set(kw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown environment setting(s): {', '.join(sorted(unknown))}")
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["execution"] = self.execution.to_dict()
        return d


class Market:
    """Bars, normalised features and the splits, shared by every environment over the same data."""

    def __init__(self, data: Any, config: EnvConfig, norm: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        bars = data if isinstance(data, Bars) else Bars.from_table(data)
        self.bars = bars
        self.config = config
        self.ohlcv = np.ascontiguousarray(np.stack([bars.open, bars.high, bars.low, bars.close, bars.volume]))
        raw = raw_features(bars, config.features)
        n = len(bars)
        self.train_end = int(n * config.train_fraction)
        self.norm = norm if norm is not None else fit_normaliser(raw, self.train_end)
        self.feats = normalise(raw, *self.norm, clip=EK.FEATURE_BOUND)
        ex = config.execution
        w = config.reward
        self.params = np.array(
            [
                ex.cash,
                ex.fee_bps / 1e4,
                ex.slippage_bps / 1e4,
                ex.leverage,
                getattr(UNITS, ex.units),
                w.get("log_equity", 0.0),
                w.get("dsr", 0.0),
                w.get("drawdown", 0.0),
                w.get("turnover", 0.0),
                config.dsr_eta,
            ]
        )
        self.sizes = np.array(config.sizes, dtype=np.float64)
        self.preset_sl = np.array([np.nan if a is None else a for a, _ in config.presets])
        self.preset_tp = np.array([np.nan if b is None else b for _, b in config.presets])
        self.obs_dim = config.window * len(config.features) + EK.N_AGENT
        self.nvec = (3, len(config.sizes), len(config.presets))
        if self.train_end - config.episode_length <= config.window:
            raise ValueError(
                f"{n} bars are too few: the training split ({self.train_end} bars) must hold a window of "
                f"{config.window} plus an episode of {config.episode_length}"
            )

    def start_range(self, split: str) -> tuple[int, int, int]:
        """(lowest start, highest start + 1, last bar an episode may reach) of a split."""
        c = self.config
        if split == "train":
            return c.window - 1, self.train_end - c.episode_length, self.train_end - 1
        start = max(self.train_end - 1, c.window - 1)
        return start, start + 1, len(self.bars) - 1

    def reset_env(
        self,
        j: int,
        start: int,
        split: str,
        bk: np.ndarray,
        ts: np.ndarray,
        es: np.ndarray,
        obs: np.ndarray,
        end: int | None = None,
    ) -> None:
        """Put environment ``j`` of the state arrays at bar ``start`` of ``split``; its episode ends at
        ``end`` when given (a backtest's own range), else after an episode length (training) or at the
        split's last bar."""
        _, _, last = self.start_range(split)
        if end is None:
            length = self.config.episode_length if split == "train" else last - start
            end = min(last, start + length)
        EK.reset_nb(j, start, end, self.ohlcv, self.feats, self.config.window, bk, ts, es,
                    self.params, float(self.config.episode_length), obs)  # fmt: skip

    def step_envs(
        self,
        state: tuple[np.ndarray, np.ndarray, np.ndarray],
        actions: Any,
        obs: np.ndarray,
        out: tuple[np.ndarray, ...],
        active: np.ndarray,
    ) -> None:
        """Step every active environment of ``state`` (book, trade, env arrays) once; ``out`` receives
        reward, terminated, truncated, equity, target and stops."""
        bk, ts, es = state
        step: Any = EK.step_nb  # a numba dispatcher: its arity is only known at run time
        step(self.ohlcv, self.feats, self.config.window, bk, ts, es, self.decode(actions), self.sizes,
                   self.preset_sl, self.preset_tp, self.params, float(self.config.episode_length), obs, *out,
                   active)  # fmt: skip

    def observation_space(self) -> spaces.Box:
        n_feat = self.obs_dim - EK.N_AGENT
        low = np.concatenate([np.full(n_feat, -EK.FEATURE_BOUND), [-EK.AGENT_BOUND, -EK.AGENT_BOUND, 0.0, -1.0]])
        high = np.concatenate(
            [np.full(n_feat, EK.FEATURE_BOUND), [EK.AGENT_BOUND, EK.AGENT_BOUND, EK.AGENT_BOUND, 0.0]]
        )
        return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def action_space(self) -> spaces.Space[Any]:
        if self.config.action_space == "discrete":
            return spaces.Discrete(int(np.prod(self.nvec)))
        return spaces.MultiDiscrete(np.array(self.nvec, dtype=np.int64))

    def decode(self, actions: np.ndarray) -> np.ndarray:
        """Actions as (N, 3) int64 rows of (direction, size, preset)."""
        a = np.asarray(actions, dtype=np.int64)
        if self.config.action_space == "discrete":
            a = a.reshape(-1)
            n_s, n_p = self.nvec[1], self.nvec[2]
            return np.ascontiguousarray(np.stack([a // (n_s * n_p), (a // n_p) % n_s, a % n_p], axis=1))
        return np.ascontiguousarray(a.reshape(-1, 3))


def _config(config: EnvConfig | None, kwargs: dict[str, Any]) -> EnvConfig:
    if config is None:
        return EnvConfig.from_kwargs(**kwargs)
    return replace(config, **kwargs) if kwargs else config


class TradingEnv(gym.Env[np.ndarray, Any]):
    """One environment over one symbol's bars (a pyarrow Table, polars DataFrame or :class:`sim.Bars`).

    Example::

        env = TradingEnv(table, window=32, episode_length=256, reward={"log_equity": 1.0, "drawdown": 0.1})
        obs, info = env.reset(seed=7)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        data: Any,
        *,
        split: str = "train",
        config: EnvConfig | None = None,
        norm: tuple[np.ndarray, np.ndarray] | None = None,
        market: Market | None = None,
        **kwargs: Any,
    ) -> None:
        if split not in ("train", "validation"):
            raise ValueError(f"split must be train or validation, not {split!r}")
        self.market = market or Market(data, _config(config, kwargs), norm)
        self.config = self.market.config
        self.split = split
        self.observation_space = self.market.observation_space()
        self.action_space = self.market.action_space()
        self._bk, self._ts, self._es = EK.new_state(1)
        self._obs = np.zeros((1, self.market.obs_dim), dtype=np.float32)
        self._out = (
            np.zeros(1),
            np.zeros(1, dtype=np.bool_),
            np.zeros(1, dtype=np.bool_),
            np.zeros(1),
            np.zeros(1),
            np.zeros((1, 2)),
            np.ones(1, dtype=np.bool_),
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        lo, hi, _ = self.market.start_range(self.split)
        start = int(options["start"]) if options and "start" in options else int(self.np_random.integers(lo, hi))
        end = int(options["end"]) if options and "end" in options else None
        m = self.market
        m.reset_env(0, start, self.split, self._bk, self._ts, self._es, self._obs, end)
        return self._obs[0].copy(), {"bar": start, "equity": float(m.params[0])}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        m = self.market
        reward, term, trunc, equity, target, stops, active = self._out
        m.step_envs((self._bk, self._ts, self._es), action, self._obs, self._out[:6], active)

        def opt(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        info = {
            "equity": float(equity[0]),
            "bar": int(self._es[0, EK.ES_T]),
            "target": opt(target[0]),
            "stop_loss": opt(stops[0, 0]),
            "take_profit": opt(stops[0, 1]),
        }
        return self._obs[0].copy(), float(reward[0]), bool(term[0]), bool(trunc[0]), info


class VectorTradingEnv(gym.vector.VectorEnv[np.ndarray, Any, Any]):
    """``num_envs`` environments over the same bars, stepped by one numba kernel; identical, step for step,
    to ``gymnasium.vector.SyncVectorEnv`` over ``num_envs`` :class:`TradingEnv` (next-step autoreset)."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        data: Any,
        num_envs: int = 8,
        *,
        split: str = "train",
        config: EnvConfig | None = None,
        norm: tuple[np.ndarray, np.ndarray] | None = None,
        market: Market | None = None,
        same_step_reset: bool = False,
        **kwargs: Any,
    ) -> None:
        """``same_step_reset=True`` resets a finished env within the step that finished it (its last
        observation goes to ``info["final_obs"]``, rows where ``info["done"]``): what the trainer uses."""
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        self.same_step_reset = same_step_reset
        if same_step_reset:
            self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.market = market or Market(data, _config(config, kwargs), norm)
        self.config = self.market.config
        self.split = split
        self.num_envs = num_envs
        self.single_observation_space = self.market.observation_space()
        self.single_action_space = self.market.action_space()
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._bk, self._ts, self._es = EK.new_state(num_envs)
        self._obs = np.zeros((num_envs, self.market.obs_dim), dtype=np.float32)
        self._reward = np.zeros(num_envs)
        self._term = np.zeros(num_envs, dtype=np.bool_)
        self._trunc = np.zeros(num_envs, dtype=np.bool_)
        self._equity = np.zeros(num_envs)
        self._target = np.zeros(num_envs)
        self._stops = np.zeros((num_envs, 2))
        self._needs_reset = np.zeros(num_envs, dtype=np.bool_)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]

    def _reset_one(self, j: int) -> None:
        lo, hi, _ = self.market.start_range(self.split)
        self.market.reset_env(
            j, int(self._rngs[j].integers(lo, hi)), self.split, self._bk, self._ts, self._es, self._obs
        )

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            seeds = seed if isinstance(seed, list) else [seed + j for j in range(self.num_envs)]
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        for j in range(self.num_envs):
            self._reset_one(j)
        self._needs_reset[:] = False
        return self._obs.copy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        m = self.market
        resetting = np.flatnonzero(self._needs_reset)
        for j in resetting:
            self._reset_one(int(j))
        active = ~self._needs_reset
        self._reward[:] = 0.0
        self._term[:] = False
        self._trunc[:] = False
        m.step_envs((self._bk, self._ts, self._es), actions, self._obs,
                    (self._reward, self._term, self._trunc, self._equity, self._target, self._stops), active)  # fmt: skip
        done = self._term | self._trunc
        info: dict[str, Any] = {"equity": self._equity.copy()}
        if self.same_step_reset:
            if done.any():
                info["final_obs"] = self._obs.copy()
                info["done"] = done.copy()
                for j in np.flatnonzero(done):
                    self._reset_one(int(j))
        else:
            self._needs_reset = done
        return self._obs.copy(), self._reward.copy(), self._term.copy(), self._trunc.copy(), info


ENV_ID = "ArtifactLake/Trading-v0"


def register() -> None:
    """Register :data:`ENV_ID` with Gymnasium (done on ``import artifact_lake.sim``).

    ``gymnasium.make("ArtifactLake/Trading-v0", data=table, window=32)`` builds a :class:`TradingEnv` and
    ``gymnasium.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point", data=table)`` a
    :class:`VectorTradingEnv`; from a fresh interpreter, ``gymnasium.make("artifact_lake.sim:ArtifactLake/Trading-v0",
    ...)`` imports this package first. Episodes end by the env's own ``episode_length``, so no TimeLimit is added.
    """
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point=f"{__name__}:TradingEnv",
            vector_entry_point=f"{__name__}:VectorTradingEnv",
        )
