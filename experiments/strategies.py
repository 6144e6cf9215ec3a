"""From a spec's strategy parameters to the simulator's calls (sim stays free of the lake)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import SimError, SpecError

SIGNAL_STRATEGIES = ("sma_cross", "rsi_threshold", "breakout")


def check_combo(combo: dict[str, Any]) -> None:
    """Refuse a parameter combination the strategy cannot run, naming it (at create, not at execute)."""
    from artifact_lake import sim

    name = combo["name"]
    params = {k: v for k, v in combo.items() if k != "name"}
    try:
        if name in SIGNAL_STRATEGIES:
            probe = np.linspace(100.0, 101.0, 8)
            signals(name, params, probe, probe, probe)
            if params.get("direction", "long") not in ("long", "short", "both"):
                raise ValueError(f"direction must be long, short or both, not {params['direction']!r}")
        elif name == "alert_replay":
            sim.AlertPolicy.from_dict(policy_params(params, {}))
        elif name == "policy":
            pass  # checked when its tensors are loaded
    except (ValueError, TypeError) as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k != "symbols")
        raise SpecError(f"strategy {name!r} ({shown}): {exc}") from exc


def signals(name: str, params: dict[str, Any], high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    from artifact_lake import sim

    direction = params.get("direction", "long")
    if name == "sma_cross":
        return sim.sma_cross(close, params.get("fast", 10), params.get("slow", 20), direction)
    if name == "rsi_threshold":
        return sim.rsi_threshold(
            close, params.get("period", 14), params.get("lower", 30.0), params.get("upper", 70.0), direction
        )
    if name == "breakout":
        return sim.breakout(high, low, close, params.get("n", 20), direction)
    raise SimError(f"strategy {name!r} produces no per-bar signals")


def policy_params(params: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
    """The :class:`sim.AlertPolicy` of an alert_replay combo: strategy keys plus cash, fees and units."""
    keep = {k: v for k, v in params.items() if k not in ("name", "require_coverage")}
    for key in ("cash", "fee_bps", "slippage_bps", "units"):
        if key in execution:
            keep[key] = execution[key]
    if "units" not in keep:
        keep["units"] = "fractional"
    return keep
