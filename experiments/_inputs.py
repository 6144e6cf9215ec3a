"""A run's inputs as the simulator takes them: the frozen artifacts verified, then read back through their
projection as one ``sim.Bars`` per symbol (rows ordered by symbol, then time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SpecError

if TYPE_CHECKING:
    from artifact_lake.projections import Lake

    from .spec import ExperimentSpec


def verify_inputs(lake: Lake, spec: ExperimentSpec) -> None:
    from artifact_lake.projections.build import _verify_inputs

    _verify_inputs(lake, [i for ids in spec.inputs.values() for i in ids])


def bars_by_symbol(lake: Lake, ohlcv_ids: list[str], only: list[str]) -> dict[str, Any]:
    from artifact_lake import sim

    proj = lake.projection("ohlcv", {"ohlcv": ohlcv_ids})
    symbols = proj.arrow("SELECT DISTINCT symbol FROM ohlcv ORDER BY symbol").column("symbol").to_pylist()
    missing = [s for s in only if s not in symbols]
    if missing:
        raise SpecError(
            f"spec key 'strategy.symbols': {', '.join(missing)} not in the ohlcv inputs ({', '.join(symbols)})"
        )
    out = {}
    for s in only or symbols:
        # the projection stores rows sorted by (symbol, ts) and scans keep that order; Bars refuses any
        # other order (ts must strictly increase), so a change here could not go unnoticed
        bars = proj.arrow("SELECT ts, open, high, low, close, volume FROM ohlcv WHERE symbol = ?", [s])
        out[s] = sim.Bars.from_table(bars)
    return out


def annualised(lake: Lake, spec: ExperimentSpec, bars: dict[str, Any], execution: Any) -> Any:
    """``execution`` with its bars a year from the inputs' trading calendar, unless the spec sets them
    (``[execution] periods_per_year``); 24/7 data keeps None: the simulator uses the bar spacing."""
    import dataclasses

    from artifact_lake.projections.calendars import calendar_of, periods_per_year
    from artifact_lake.sim.engine import bar_seconds

    if execution.periods_per_year is not None or not bars:
        return execution
    calendar = calendar_of(lake, spec.inputs["ohlcv"])
    first = bars[min(bars)]
    ppy = periods_per_year(calendar, bar_seconds(first.ts)) if len(first) > 1 else None
    return dataclasses.replace(execution, periods_per_year=ppy)
