"""``kind = "train"`` experiments: a PPO policy trained on one symbol's frozen OHLCV, published as a
``tensors`` artifact (plain tensors, never a pickle) with its training curve and validation metrics; and
the ``policy`` strategy, which backtests a stored policy like any other strategy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from artifact_lake.schemas.errors import MissingExtra

from . import plugins
from ._inputs import bars_by_symbol
from .errors import SimError, SpecError
from .spec import _check_value, _unknown, check_symbols, input_symbols

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.artifact_store import Lake as StoreLake
    from artifact_lake.projections import Lake

    from .spec import ExperimentSpec

ENV_KEYS = {"symbol", "window", "features", "action_space", "episode_length", "train_fraction", "sizes", "presets"}
REWARD_KEYS = {"log_equity", "dsr", "drawdown", "turnover", "dsr_eta"}
VALIDATION_METRICS = (
    "final_equity",
    "total_return",
    "max_drawdown",
    "sharpe",
    "sortino",
    "win_rate",
    "exposure",
    "turnover",
    "fees",
    "n_trades",
    "open_trades",
)
"""The metrics of each strategy on the validation split (a train run's ``metrics``), in their column order."""
COUNTS = ("n_trades", "open_trades")


def require_torch(feature: str = "training and policy backtests") -> None:
    """torch is the ``rl`` extra: without it, one line naming the install instead of an ImportError."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise MissingExtra("rl", feature, "torch") from exc


SWEEP_SECTIONS = ("trainer", "reward", "env", "execution")
"""A train sweep's keys: ``seed`` and ``<section>.<key>`` of these sections (``env.symbol`` excepted)."""


def freeze_train(raw: Mapping[str, Any], doc: dict[str, Any], lake: StoreLake, freeze_inputs: Any) -> dict[str, Any]:
    """Check a train spec's sections (each unknown key named) and freeze its inputs. A ``[sweep]`` of seeds or
    hyperparameters makes a trial sweep (:mod:`.trials`): every trial's settings are checked here too."""
    require_torch()
    if "strategy" in raw:
        raise SpecError("spec key 'strategy': train experiments take [env], [reward], [execution] and [trainer]")
    sections = {key: dict(raw.get(key) or {}) for key in SWEEP_SECTIONS}
    for key in ("env", "reward", "trainer"):
        allowed = _section_keys(key)
        for k in sections[key]:
            if k not in allowed:
                raise _unknown(f"{key}.", k, allowed)
    if "symbol" in sections["env"]:
        _check_value("env.symbol", sections["env"]["symbol"], (str,))
    _check_settings(sections, int(doc["seed"]), "spec")
    doc.update(sections)
    sweep = _freeze_sweep(raw.get("sweep"), sections)
    if "seed" in sweep and "seed" in sections["trainer"]:
        raise SpecError(
            "spec key 'trainer.seed': it overrides the top-level seed, so every trial of sweep.seed would train"
            " with it; remove trainer.seed"
        )
    if sweep:
        from .spec import MAX_COMBINATIONS, ExperimentSpec, check_experiment_name

        doc["sweep"] = sweep
        spec = ExperimentSpec(dict(doc))
        if spec.n_combos > MAX_COMBINATIONS:
            raise SpecError(f"spec key 'sweep': {spec.n_combos:,} trials, more than the limit of {MAX_COMBINATIONS:,}")
        check_experiment_name(trial_name(spec, spec.n_combos - 1))
        for k, combo in enumerate(spec.iter_combos()):
            trial = trial_doc(spec, k, combo)
            _check_settings({key: trial[key] for key in SWEEP_SECTIONS}, int(trial["seed"]), f"sweep trial {k}")
    doc["inputs"] = freeze_inputs(raw.get("inputs"), ("ohlcv",), lake)
    env = sections["env"]
    if "symbol" in env:
        check_symbols(lake, doc["inputs"]["ohlcv"], [env["symbol"]], "env.symbol")
    else:
        there = input_symbols(lake, doc["inputs"]["ohlcv"])
        if len(there) != 1:
            raise SpecError(
                f"spec key 'env.symbol': the ohlcv inputs hold {', '.join(there)}; name the one to train on"
            )
    return doc


def _check_settings(sections: Mapping[str, dict[str, Any]], seed: int, where: str) -> None:
    """The environment, reward, execution and trainer settings build (one line naming what is wrong); their
    keys were checked against :func:`_section_keys` first."""
    from artifact_lake.sim import Execution

    for k, v in sections["reward"].items():
        _check_value(f"reward.{k}", v, (int, float))
    if "features" in sections["env"]:
        feature_plugins(sections["env"])
    try:
        Execution.from_dict(sections["execution"])
        env_config(sections["env"], sections["reward"], sections["execution"])
        ppo_config(sections["trainer"], seed)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"{where}: {exc}") from exc


def _freeze_sweep(raw: Any, sections: Mapping[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """A train ``[sweep]`` flattened to ``seed`` and ``section.key`` lists (TOML's ``trainer.lr = [...]`` and
    ``"trainer.lr" = [...]`` are the same key)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError("spec key 'sweep': must be a table of lists (seed, trainer.KEY, reward.KEY, env.KEY, ...)")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    out: dict[str, list[Any]] = {}
    for key, values in flat.items():
        section, _, field = key.partition(".")
        if key != "seed" and (section not in SWEEP_SECTIONS or not field or key == "env.symbol"):
            raise SpecError(
                f"unknown spec key 'sweep.{key}': a train sweep takes seed and trainer.KEY, reward.KEY, env.KEY or"
                " execution.KEY (not env.symbol: one experiment trains on one symbol)"
            )
        allowed = _section_keys(section)
        if key != "seed" and field not in allowed:
            raise _unknown(f"sweep.{section}.", field, allowed)
        if not isinstance(values, list) or not values:
            raise SpecError(f"spec key 'sweep.{key}': must be a non-empty list of values")
        if key == "seed":
            for v in values:
                _check_value("sweep.seed", v, (int,))
        if key == "trainer.seed":
            raise SpecError("spec key 'sweep.trainer.seed': sweep the top-level seed (sweep.seed)")
        if len({_kind(v) for v in values}) > 1:
            raise SpecError(
                f"spec key 'sweep.{key}': mixes {' and '.join(sorted({_kind(v) for v in values}))} values ({values!r});"
                " give one kind"
            )
        if len({_json_key(v) for v in values}) != len(values):
            raise SpecError(
                f"spec key 'sweep.{key}': the same value twice ({values!r}) would train the same trial twice"
            )
        out[key] = values
    return out


def _section_keys(section: str) -> set[str]:
    """The keys a train spec's section takes."""
    from artifact_lake.sim import Execution
    from artifact_lake.sim.ppo import PPOConfig

    dataclass = {"trainer": PPOConfig, "execution": Execution}.get(section)
    if dataclass is not None:
        return {f.name for f in fields(dataclass)}
    return {"env": ENV_KEYS, "reward": REWARD_KEYS}.get(section, set())


def _kind(value: Any) -> str:
    """What a swept value is, for the sweep's summary column: bool, number, string, list or table."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def trial_name(spec: ExperimentSpec, k: int) -> str:
    """Trial ``k`` of a train sweep is the train experiment ``<name>.trial-<k>``."""
    return f"{spec.name}.trial-{k}"


def trial_doc(spec: ExperimentSpec, k: int, combo: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of trial ``k`` (``combo``: its swept values): the sweep's spec without ``[sweep]``, with those
    values in their sections and the name :func:`trial_name`. A plain train spec, executable alone."""
    doc = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in spec.doc.items() if key != "sweep"
    }
    doc["name"] = trial_name(spec, k)
    for key, value in combo.items():
        if key == "seed":
            doc["seed"] = value
        else:
            section, _, field = key.partition(".")
            doc[section] = {**doc.get(section, {}), field: value}
    return doc


def feature_plugins(env: Mapping[str, Any], key: str = "env.features") -> list[Any]:
    """The user indicators (not built-ins) ``env.features`` names, registered plugins loaded first; a feature
    that is neither a built-in nor a registered indicator is a one-line :class:`SpecError` naming it."""
    from artifact_lake.sim.features import indicator_plugins

    feats = env.get("features")
    if feats is None:
        return []
    if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
        raise SpecError(f"spec key {key!r}: must be a list of feature strings, not {feats!r}")
    plugins.load()
    try:
        return [p for p in indicator_plugins(feats) if not p.builtin]
    except ValueError as exc:
        raise SpecError(f"spec key {key!r}: {exc}") from exc


def guard_features(market: Any, symbol: str, log: plugins.GuardLog) -> None:
    """The look-ahead guard over every user indicator the environment's features compute, on its bars."""
    from artifact_lake.sim.features import resolve_features
    from artifact_lake.sim.plugins import check_output

    t0 = time.perf_counter()
    for f in resolve_features(market.config.features):
        plugin = f.plugin()
        if plugin is None or plugin.builtin:
            continue
        b = market.bars
        full = check_output(plugin, plugin(b, f.params), len(b), f.params)
        log.add(plugin.name, len(plugins.guard(plugin, b, f.params, full, f"; {symbol}")["cuts"]))
    log.seconds += time.perf_counter() - t0


def env_config(env: dict[str, Any], reward: dict[str, Any], execution: dict[str, Any]) -> Any:
    from artifact_lake.sim import EnvConfig
    from artifact_lake.sim.features import BUILTINS, parse_feature

    feats = env.get("features") or []
    if any(not isinstance(f, str) or parse_feature(f)[0].rstrip("0123456789") not in BUILTINS for f in feats):
        plugins.load()  # a registered indicator as a feature: the user's plugins must be registered first
    kw = {k: v for k, v in env.items() if k != "symbol"}
    weights = {k: float(v) for k, v in reward.items() if k != "dsr_eta"} or {"log_equity": 1.0}
    kw["reward"] = weights
    if "dsr_eta" in reward:
        kw["dsr_eta"] = float(reward["dsr_eta"])
    kw["execution"] = execution
    return EnvConfig.from_kwargs(**kw)


def ppo_config(trainer: dict[str, Any], seed: int) -> Any:
    require_torch()
    from artifact_lake.sim.ppo import PPOConfig

    kw = dict(trainer)
    if "hidden" in kw:
        kw["hidden"] = tuple(kw["hidden"])
    kw.setdefault("seed", seed)
    return PPOConfig(**kw)


def train_bars(lake: Lake, spec: ExperimentSpec) -> dict[str, Any]:
    """The one symbol's bars a train spec trains on (verified reads of its frozen inputs)."""
    symbol = spec.doc["env"].get("symbol")
    bars = bars_by_symbol(lake, spec.inputs["ohlcv"], [symbol] if symbol else [])
    if len(bars) != 1:
        raise SpecError(f"spec key 'env.symbol': the ohlcv inputs hold {', '.join(bars)}; name the one to train on")
    return bars


def _market(bars: Mapping[str, Any], spec: ExperimentSpec) -> tuple[str, Any]:
    from artifact_lake.sim import Market

    symbol, b = next(iter(bars.items()))
    try:
        return symbol, Market(b, env_config(spec.doc["env"], spec.doc["reward"], spec.doc["execution"]))
    except ValueError as exc:
        raise SimError(str(exc)) from exc


def compute_train(
    lake: Lake,
    spec: ExperimentSpec,
    progress: Any,
    timings: dict[str, Any],
    log: plugins.GuardLog | None = None,
) -> dict[str, pa.Table]:
    """Train ``spec``'s policy on its frozen bars: ``policy``, ``training_curve`` and ``metrics`` tables."""
    t0 = time.perf_counter()
    bars = train_bars(lake, spec)
    timings["load"] = time.perf_counter() - t0
    return train_tables(bars, spec, progress, timings, log)


def train_tables(
    bars: Mapping[str, Any],
    spec: ExperimentSpec,
    progress: Any,
    timings: dict[str, Any],
    log: plugins.GuardLog | None = None,
) -> dict[str, pa.Table]:
    """:func:`compute_train` on bars already read (one symbol's): what a Ray trial runs."""
    import pyarrow as pa

    from artifact_lake.sim import VectorTradingEnv

    require_torch()
    from artifact_lake.sim.policy import backtest, to_rows
    from artifact_lake.sim.ppo import train

    symbol, market = _market(bars, spec)
    if log is not None:
        guard_features(market, symbol, log)
    config = ppo_config(spec.doc["trainer"], int(spec.doc["seed"]))
    envs = VectorTradingEnv(None, config.n_envs, market=market, same_step_reset=True)

    def report(row: dict[str, float]) -> None:
        if progress is not None:
            ret = row["episodic_return"]
            label = f"update {int(row['update'])}/{int(row['updates'])}  {row['sps']:,.0f} steps/s  return {ret:+.4f}"
            progress(int(row["update"]), int(row["updates"]), label)

    t0 = time.perf_counter()
    try:
        result = train(envs, config, report)
    except ValueError as exc:
        raise SimError(str(exc)) from exc
    timings["train"] = time.perf_counter() - t0
    timings["sps"] = [round(s, 1) for s in result.sps]
    timings["device"] = result.device
    agent = result.agent.to("cpu")
    rows = to_rows(agent, {"norm.mean": market.norm[0], "norm.std": market.norm[1]})
    policy = pa.table(
        {
            "name": pa.array(rows["name"], pa.string()),
            "dtype": pa.array(rows["dtype"], pa.string()),
            "shape": pa.array(rows["shape"], pa.list_(pa.int64())),
            "data": pa.array(rows["data"], pa.binary()),
        }
    )
    curve = pa.Table.from_pylist(result.curve)
    # validation: the greedy policy on bars it never trained on, beside buy-and-hold and staying flat
    start, _, end = market.start_range("validation")
    t0 = time.perf_counter()
    metrics = []
    for combo, (name, res) in enumerate(
        (
            ("policy", backtest(agent, market, start, end)),
            ("buy_and_hold", _constant(market, start, end, 1.0)),
            ("flat", _constant(market, start, end, 0.0)),
        )
    ):
        m = {"combo": combo, "symbol": symbol, "strategy": name, "split": "validation"}
        m.update({k: (int if k in COUNTS else float)(res.metrics[k]) for k in VALIDATION_METRICS})
        metrics.append(m)
    timings["validate"] = time.perf_counter() - t0
    return {"policy": policy, "training_curve": curve, "metrics": pa.Table.from_pylist(metrics)}


def _constant(market: Any, start: int, end: int, target: float) -> Any:
    from artifact_lake.sim import run

    part = market.bars.slice(start, end + 1)
    tg = np.full(end - start + 1, np.nan)
    tg[0] = target
    return run(part, tg, market.config.execution, mode="target")


def policy_meta(spec: ExperimentSpec) -> dict[str, Any]:
    return {
        "env": spec.doc["env"],
        "reward": spec.doc["reward"],
        "execution": spec.doc["execution"],
        "hidden": list(ppo_config(spec.doc["trainer"], int(spec.doc["seed"])).hidden),
    }


MAX_HIDDEN = 1 << 16
"""Widest hidden layer a stored policy may declare (its tensors must still match it exactly)."""


def _policy_settings(policy_id: str, meta: Mapping[str, Any]) -> tuple[Any, int, tuple[int, ...], tuple[int, ...]]:
    """(env config, obs_dim, nvec, hidden) a policy's meta describes, each key checked; nothing allocated."""
    where = f"policy {policy_id[:12]}"
    if "env" not in meta or "hidden" not in meta:
        raise SpecError(f"artifact {policy_id[:12]} is a tensors artifact but not a policy (its meta lacks env/hidden)")
    hidden = meta["hidden"]
    if (
        not isinstance(hidden, list)
        or not hidden
        or not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= MAX_HIDDEN for h in hidden)
    ):
        raise SpecError(f"{where}: meta key 'hidden' must list layer sizes from 1 to {MAX_HIDDEN}, not {hidden!r}")
    for key in ("env", "reward", "execution"):
        if not isinstance(meta.get(key, {}), dict):
            raise SpecError(f"{where}: meta key {key!r} must be a table, not {meta[key]!r}")
    try:
        cfg = env_config(dict(meta["env"]), dict(meta.get("reward", {})), dict(meta.get("execution", {})))
    except (ValueError, TypeError) as exc:
        raise SpecError(f"{where}: meta key 'env': {exc}") from exc
    nvec: tuple[int, ...] = (3, len(cfg.sizes), len(cfg.presets))
    if cfg.action_space == "discrete":
        nvec = (3 * len(cfg.sizes) * len(cfg.presets),)
    obs_dim = cfg.window * len(cfg.features) + 4
    return cfg, obs_dim, nvec, tuple(hidden)


def _policy_arrays(
    lake: StoreLake, policy_id: str
) -> tuple[dict[str, Any], Any, int, tuple[int, ...], tuple[int, ...], dict[str, np.ndarray]]:
    from artifact_lake.sim.policy import check_rows, param_shapes

    meta = lake.get(policy_id).meta
    cfg, obs_dim, nvec, hidden = _policy_settings(policy_id, meta)
    expected = param_shapes(obs_dim, nvec, hidden)
    n_features = len(cfg.features)
    expected |= {"norm.mean": (n_features,), "norm.std": (n_features,)}
    try:
        arrays = check_rows(lake.read(policy_id).to_pydict(), expected)
        if not (arrays["norm.std"] > 0).all():
            raise ValueError("tensor norm.std: must be > 0")
    except ValueError as exc:
        raise SpecError(f"policy {policy_id[:12]}: {exc}") from exc
    return meta, cfg, obs_dim, nvec, hidden, arrays


def check_policy(lake: StoreLake, policy_ids: list[str], execution: Mapping[str, Any]) -> None:
    """Refuse a ``tensors`` input that is not a policy this code can run (with the spec's ``execution``), in
    one line naming the tensor or meta key, before a network is built: so before any large allocation and
    before a run is recorded."""
    require_torch()
    if len(policy_ids) != 1:
        raise SpecError(f"spec key 'inputs.policy': a policy backtest takes one policy, not {len(policy_ids)}")
    meta = _policy_arrays(lake, policy_ids[0])[0]
    _backtest_config(meta, execution)


def _backtest_config(meta: Mapping[str, Any], execution: Mapping[str, Any]) -> Any:
    """The environment a policy backtest runs: the policy's, with the spec's execution settings on top."""
    merged = {**meta.get("execution", {}), **execution}
    try:
        return env_config(dict(meta["env"]), dict(meta.get("reward", {})), merged)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"spec key 'execution': this policy cannot run with it: {exc}") from exc


def load_policy(lake: Lake, policy_id: str) -> tuple[Any, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """The agent, its settings and its normalisation statistics, from a ``tensors`` artifact: no code runs."""
    require_torch()
    from artifact_lake.sim.policy import load_agent

    meta, _, obs_dim, nvec, hidden, arrays = _policy_arrays(lake, policy_id)
    try:
        agent = load_agent(arrays, obs_dim, nvec, hidden)
    except ValueError as exc:
        raise SpecError(f"policy {policy_id[:12]}: {exc}") from exc
    return agent, meta, (arrays["norm.mean"], arrays["norm.std"])


def policy_backtests(lake: Lake, spec: ExperimentSpec, bars: dict[str, Any]) -> list[tuple[str, Any]]:
    """(symbol, sim.Result) of the stored policy run greedily over each symbol's whole bars."""
    from artifact_lake.sim import Market, run

    require_torch()
    from artifact_lake.sim.policy import rollout

    policy_id = spec.inputs["policy"][0]
    agent, meta, norm = load_policy(lake, policy_id)
    cfg = _backtest_config(meta, spec.doc.get("execution", {}))
    out = []
    for symbol, b in bars.items():
        market = Market(b, cfg, norm=norm)
        start = cfg.window - 1  # the first bar with a full observation window; no orders before it
        targets, sl, tp, _ = rollout(agent, market, start, len(b) - 1)
        n = len(b)
        full = [np.full(n, np.nan) for _ in range(3)]
        for arr, part in zip(full, (targets, sl, tp), strict=True):
            arr[start:] = part
        try:
            out.append((symbol, run(b, full[0], cfg.execution, mode="target", stop_loss=full[1], take_profit=full[2])))
        except ValueError as exc:
            raise SimError(f"policy backtest on {symbol}: {exc}") from exc
    return out
