"""From a spec's strategy parameters to the simulator's calls (sim stays free of the lake).

Every signal strategy, built-in or the user's, is a plugin of ``sim.plugins``: it is resolved by name among
the registered plugins (never imported from a spec), its combinations are checked by its optional ``check``,
and its output is held to the contract (one finite-or-NaN float per bar) by ``sim.plugins.check_output``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import plugins
from .errors import SpecError
from .spec import STRATEGIES

if TYPE_CHECKING:
    from artifact_lake.sim.plugins import Plugin

OWN_KINDS = ("alert_replay", "policy")
"""Strategy names that are kinds of work of the lake itself, not signal plugins."""


def signal_plugin(name: str) -> Plugin:
    """The registered strategy plugin ``name`` (entry points and ``LAKE_PLUGINS`` loaded first)."""
    plugins.load()
    return plugins.resolve("strategy", name)


def portfolio_plugin(name: Any) -> Plugin | None:
    """The registered ``portfolio_strategy`` plugin ``name``, or None (entry points and ``LAKE_PLUGINS`` loaded
    first): a spec's ``strategy.name`` picks the portfolio runner when it names one."""
    if not isinstance(name, str) or name in OWN_KINDS:
        return None
    plugins.load()
    from artifact_lake.sim import plugins as registry

    return registry.get("portfolio_strategy", name)


def strategy_defaults(name: str) -> dict[str, Any]:
    """Every parameter's default of strategy ``name`` (none for a name not registered)."""
    if name in STRATEGIES:
        return {k: d for k, (_, d) in STRATEGIES[name][1].items() if k != "symbols"}
    from artifact_lake.sim import plugins as registry

    found = registry.get("strategy", name) or registry.get("portfolio_strategy", name)
    return found.defaults() if found is not None else {}


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k != "symbols")


def check_combo(combo: dict[str, Any]) -> None:
    """Refuse a parameter combination the strategy cannot run, naming it (at create, not at execute)."""
    from artifact_lake import sim

    name = combo["name"]
    params = {k: v for k, v in combo.items() if k != "name"}
    try:
        if name == "alert_replay":
            sim.AlertPolicy.from_dict(policy_params(params, {}))
        elif name == "policy":
            pass  # checked when its tensors are loaded
        else:
            plugin = portfolio_plugin(name) or signal_plugin(name)
            if plugin.check is not None:
                plugin.check(**plugin.bind(params))
    except (ValueError, TypeError) as exc:
        raise SpecError(f"strategy {name!r} ({_shown(params)}): {exc}") from exc


def policy_params(params: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
    """The :class:`sim.AlertPolicy` of an alert_replay combo: strategy keys plus cash, fees and units."""
    keep = {k: v for k, v in params.items() if k not in ("name", "require_coverage")}
    for key in ("cash", "fee_bps", "slippage_bps", "units"):
        if key in execution:
            keep[key] = execution[key]
    if "units" not in keep:
        keep["units"] = "fractional"
    return keep
