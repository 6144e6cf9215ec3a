"""Freezing a raw spec (``create``): every key checked against the spec contract (:mod:`.spec`), the
strategy's parameters (a registered plugin's signature, or the lake's own kinds of work), the sweep counted
and capped, the combinations checked and the inputs frozen to full artifact ids.

Kept apart from :mod:`.spec` because it draws on the strategies, the plugin registry and the train rules,
which themselves read the spec contract: the spec module stays at the bottom of the package's imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from . import plugins
from .errors import SpecError
from .spec import (
    KINDS,
    MAX_COMBINATIONS,
    PORTFOLIO_KEYS,
    RESULTS_KEYS,
    STRATEGIES,
    TOP_KEYS,
    ExperimentSpec,
    _check_param,
    _check_value,
    _fail,
    _freeze_inputs,
    _unknown,
    check_experiment_name,
    input_symbols,
    plugin_params,
    results_metrics,
)
from .strategies import check_combo, portfolio_plugin
from .train import check_policy, freeze_train

if TYPE_CHECKING:
    from artifact_lake.artifact_store import Lake


def _section(raw: Any, name: str, keys: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """A spec section of known keys, each of its type (one line naming the first wrong key)."""
    if not isinstance(raw, Mapping):
        raise _fail(name, f"must be a table of keys ({', '.join(keys)})")
    for key, value in raw.items():
        if key not in keys:
            raise _unknown(f"{name}.", key, keys)
        _check_value(f"{name}.{key}", value, keys[key])
    return dict(raw)


def _freeze_portfolio(raw: Any) -> dict[str, Any]:
    """The ``[portfolio]`` section of a portfolio strategy's spec: direction (long or both) and min_trade."""
    if raw is None:
        return {}
    out = _section(raw, "portfolio", PORTFOLIO_KEYS)
    if out.get("direction", "long") not in ("long", "both"):
        raise _fail("portfolio.direction", f"must be long or both, not {out['direction']!r}")
    mt = out.get("min_trade", 0.0)
    if isinstance(mt, bool) or not (math.isfinite(mt) and 0 <= mt < 1):
        raise _fail("portfolio.min_trade", f"must be a fraction of equity in [0, 1), not {mt!r}")
    return out


def _freeze_results(raw: Any, params: Mapping[str, Any], spec: ExperimentSpec, *, portfolio: bool) -> dict[str, Any]:
    """The ``[results]`` section (signal and portfolio strategies): equity all or best, best, by, ascending, pin."""
    metrics = results_metrics(portfolio)
    out = _section(raw, "results", RESULTS_KEYS)
    if out.get("equity", "best") not in ("all", "best"):
        raise _fail("results.equity", f"must be all or best, not {out['equity']!r}")
    if out.get("best", 0) < 0:
        raise _fail("results.best", f"must be a whole number >= 0, not {out['best']!r}")
    if out.get("by", "sharpe") not in metrics:
        import difflib

        hint = difflib.get_close_matches(out["by"], metrics, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f" (one of {', '.join(metrics)})"
        raise _fail("results.by", f"{out['by']!r} is no {'portfolio ' if portfolio else ''}metric{extra}")
    for i, pin in enumerate(out.get("pin", [])):
        key = f"results.pin[{i}]"
        if not isinstance(pin, Mapping) or not pin:
            raise _fail(key, f"must be a table of strategy parameters, such as {{fast = 10}}, not {pin!r}")
        for name, value in pin.items():
            if name not in params or name == "symbols":
                raise _unknown(f"{key}.", name, {k for k in params if k != "symbols"})
            _check_param(f"{key}.{name}", value, params[name][0])
        if not any(all(combo.get(k) == v for k, v in pin.items()) for combo in spec.iter_combos()):
            shown = ", ".join(f"{k} = {v!r}" for k, v in pin.items())
            raise _fail(key, f"{{{shown}}} matches no combination of the sweep")
    return out


def freeze(
    raw: Mapping[str, Any], lake: Lake, *, name: str | None = None, max_combinations: int | None = None
) -> ExperimentSpec:
    """Check every key of a raw spec and freeze its inputs to full artifact ids."""
    from artifact_lake.sim import Execution

    doc: dict[str, Any] = {}
    for key in raw:
        if key not in TOP_KEYS:
            raise _unknown("", key, TOP_KEYS)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    doc["kind"] = kind
    if name is not None or raw.get("name") is not None:
        nm = name if name is not None else raw.get("name")
        _check_value("name", nm, (str,))
        check_experiment_name(str(nm))
        doc["name"] = nm
    seed = raw.get("seed", 0)
    _check_value("seed", seed, (int,))
    doc["seed"] = seed
    if kind == "train":
        return ExperimentSpec(freeze_train(raw, doc, lake, _freeze_inputs))
    for key in ("env", "reward", "trainer"):
        if key in raw:
            raise _fail(key, 'belongs to kind = "train" specs')
    strategy = dict(raw.get("strategy") or {})
    sname = strategy.pop("name", None)
    if sname in STRATEGIES:
        roles, params = STRATEGIES[sname]
        plugin = None
    elif (found := portfolio_plugin(sname)) is not None:
        plugin = found
        roles, params = ("ohlcv",), plugin_params(plugin)
        doc_portfolio = _freeze_portfolio(raw.get("portfolio"))
        if doc_portfolio:
            doc["portfolio"] = doc_portfolio
    else:
        plugins.load()
        from artifact_lake.sim import plugins as registry

        known = {*STRATEGIES, *(p.name for p in registry.plugins("portfolio_strategy"))}
        plugin = plugins.resolve("strategy", sname, extra_known=known)
        roles, params = ("ohlcv",), plugin_params(plugin)
    if "portfolio" in raw and "portfolio" not in doc:
        if portfolio_plugin(sname) is None:
            raise _fail("portfolio", "belongs to portfolio strategies (registered with @portfolio_strategy)")
    for key, value in strategy.items():
        if key not in params:
            raise _unknown("strategy.", key, params)
        _check_param(f"strategy.{key}", value, params[key][0])
    doc["strategy"] = {"name": sname, **strategy}
    execution = dict(raw.get("execution") or {})
    known_exec = {f.name for f in fields(Execution)}
    for key in execution:
        if key not in known_exec:
            raise _unknown("execution.", key, known_exec)
    try:
        Execution.from_dict(execution)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"spec key 'execution': {exc}") from exc
    doc["execution"] = execution
    sweep = dict(raw.get("sweep") or {})
    for key, values in sweep.items():
        if key not in params:
            raise _unknown("sweep.", key, params)
        if not isinstance(values, list) or not values:
            raise _fail(f"sweep.{key}", "must be a non-empty list of values")
        for v in values:
            _check_param(f"sweep.{key}", v, params[key][0])
    if plugin is not None:
        for p in plugin.params:
            if p.required and p.name not in strategy and p.name not in sweep:
                raise _fail(f"strategy.{p.name}", f"missing: {sname!r} needs it ({p.describe()}, no default)")
    limit = MAX_COMBINATIONS if max_combinations is None else max_combinations
    count = math.prod(len(v) for v in sweep.values())
    if count > limit:
        shown = " x ".join(f"{len(sweep[k])} {k}" for k in sorted(sweep))
        raise _fail(
            "sweep",
            f"{shown} make {count:,} combinations, more than the limit of {limit:,}"
            " (raise it with --max-combinations, or sweep fewer values)",
        )
    if sweep:
        doc["sweep"] = sweep
    wanted: dict[str, list[str]] = {}
    for key, lists in (
        ("strategy.symbols", [strategy.get("symbols", [])]),
        ("sweep.symbols", sweep.get("symbols", [])),
    ):
        for symbols in lists:
            if not all(isinstance(x, str) and x for x in symbols) or len(set(symbols)) != len(symbols):
                raise _fail(key, f"must list distinct symbol names, not {symbols!r}")
            seen = wanted.setdefault(key, [])
            seen += [x for x in symbols if x not in seen]
    doc["inputs"] = _freeze_inputs(raw.get("inputs"), roles, lake)
    there = input_symbols(lake, doc["inputs"]["ohlcv"]) if any(wanted.values()) else []
    for key, symbols in wanted.items():
        missing = [x for x in symbols if x not in there]
        if missing:
            raise _fail(key, f"{', '.join(missing)} not in the ohlcv inputs ({', '.join(there)})")
    spec = ExperimentSpec(doc)
    for combo in spec.iter_combos():
        check_combo(combo)
    if "results" in raw:
        if sname in STRATEGIES:
            raise _fail("results", "chooses what a sweep of a signal or portfolio strategy keeps; this one keeps all")
        doc["results"] = _freeze_results(raw["results"], params, spec, portfolio=portfolio_plugin(sname) is not None)
        spec = ExperimentSpec(doc)
    if sname == "policy":
        check_policy(lake, doc["inputs"]["policy"], execution)
    return spec
