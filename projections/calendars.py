"""Trading calendars of ``ohlcv`` artifacts: which one a set of artifacts carries, and how many bars a year has.

An ``ohlcv`` artifact carries its calendar in the meta key ``calendar`` (``lake ingest file --calendar XNYS``);
none means ``24/7``. Calendars come from the ``exchange_calendars`` library, imported only on this path.

Bars per year (used to annualise Sharpe and Sortino):
* ``24/7``: None here; the simulator divides a year of 365.25 days by the bar spacing.
* an exchange: sessions per year x bars per session, where sessions per year is the mean number of sessions in
  the years 2015-2024 rounded to a whole number (XNYS: 252) and bars per session the median open time of a
  session (lunch breaks left out) over the bar length; bars of a day or more count one per session, and bars
  longer than a week count by calendar time. A fixed decade keeps the number the same whatever day it runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from artifact_lake.artifact_store.ingest.calendars import ALWAYS_OPEN

from .errors import ProjectionError

if TYPE_CHECKING:
    from artifact_lake.artifact_store import Lake

_YEARS = ("2015-01-01", "2024-12-31", 10)
DAY_SECONDS = 86_400.0


def calendar_of(lake: Lake, ohlcv_ids: Sequence[str]) -> str:
    """The one calendar the ``ohlcv`` artifacts carry (``24/7`` when none says otherwise); mixed ones are an error."""
    found = {str(lake.get(i).meta.get("calendar") or ALWAYS_OPEN): i for i in ohlcv_ids}
    if len(found) > 1:
        detail = ", ".join(f"{i[:12]}: {c}" for c, i in sorted(found.items()))
        raise ProjectionError(f"the ohlcv inputs carry different calendars ({detail}): use one calendar per experiment")
    return next(iter(found), ALWAYS_OPEN)


@functools.cache
def _calendar(name: str) -> Any:
    import warnings

    import exchange_calendars as xcals

    start, end, _ = _YEARS
    with warnings.catch_warnings():  # pandas' deprecation notices about exchange_calendars' own code
        warnings.simplefilter("ignore")
        return xcals.get_calendar(name, start=start, end=end)


def sessions_per_year(name: str) -> int:
    """Whole sessions a year of an exchange calendar (mean of 2015-2024)."""
    return round(len(_calendar(name).sessions) / _YEARS[2])


def session_seconds(name: str) -> float:
    """Median seconds a session is open, breaks left out."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = _calendar(name).schedule
        open_s = (sched["close"] - sched["open"]).dt.total_seconds()
        if "break_start" in sched and sched["break_start"].notna().any():
            open_s = open_s - (sched["break_end"] - sched["break_start"]).dt.total_seconds().fillna(0.0)
        return float(np.median(open_s.to_numpy()))


def periods_per_year(calendar: str, bar_seconds: float) -> float | None:
    """Bars a year has on ``calendar`` for bars ``bar_seconds`` apart; None for ``24/7`` (bar spacing decides)."""
    if calendar == ALWAYS_OPEN or not (bar_seconds > 0 and math.isfinite(bar_seconds)):
        return None
    if bar_seconds >= 7 * DAY_SECONDS:
        return 365.25 * DAY_SECONDS / bar_seconds
    if bar_seconds >= DAY_SECONDS * 0.99:  # daily bars (a weekend makes some steps longer, never the median)
        return float(sessions_per_year(calendar))
    return sessions_per_year(calendar) * max(1.0, round(session_seconds(calendar) / bar_seconds))
