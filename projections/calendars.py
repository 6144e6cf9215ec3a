"""Trading calendars of ``ohlcv`` artifacts: which one a set of artifacts carries, and how many bars a year has.

An ``ohlcv`` artifact carries its calendar in the meta key ``calendar`` (``lake ingest file --calendar XNYS``);
none means ``24/7``. Calendars come from the ``exchange_calendars`` library, imported only on this path.

Bars per year (used to annualise Sharpe and Sortino):
* ``24/7``: None here; the simulator divides a year of 365.25 days by the bar spacing.
* an exchange: sessions per year x bars per session, where sessions per year is the mean number of sessions in
  the years 2015-2024 rounded to a whole number (XNYS: 252) and bars per session the median open time of a
  session (lunch breaks left out) over the bar length; bars of a day or more count one per session, and bars
  longer than a week count by calendar time. A fixed decade keeps the number the same whatever day it runs.

Open slots (what ``gaps`` and alert ``coverage`` count, :func:`open_slots`): the bar start times at which a
symbol's market is open, numbered in order. Intraday bars: every time on the bars' own grid (the first bar's
phase, the bar length) whose bar overlaps a session, breaks left out. Daily bars (one to seven days): one slot
per session, stamped like the data (midnight UTC when the first bar is, else the first bar's wall time in the
exchange's zone). Bars of a week or more, and ``24/7`` data, have no slots: their gaps are counted by time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from artifact_lake.artifact_store.ingest.calendars import ALWAYS_OPEN

from .errors import ProjectionError

if TYPE_CHECKING:
    import pyarrow as pa

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


SLOT_COLUMNS = ("symbol", "slot_us", "slot")
"""Columns of the open-slots table handed to a build as ``_open_slots``: symbol, slot start (us), slot number."""
_WEEK_US = 7 * 86_400_000_000
_DAY_US = 86_400_000_000


@functools.cache
def _calendar_span(name: str, first_year: int, last_year: int) -> Any:
    import warnings

    import exchange_calendars as xcals

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return xcals.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
        except (ValueError, KeyError, xcals.errors.CalendarError) as exc:
            raise ProjectionError(f"calendar {name!r} has no sessions for {first_year}-{last_year}: {exc}") from exc


def _mode_step(ts: Any) -> int | None:
    """The most common step between bars (ties: the smaller), as the ``timeframes`` relation counts it."""
    import numpy as np

    if len(ts) < 2:
        return None
    values, counts = np.unique(np.diff(ts), return_counts=True)
    return int(values[np.argmax(counts)])  # np.unique sorts, so the first maximum is the smaller step


def _symbol_slots(name: str, ts: Any, step: int, pad_us: int) -> Any:
    """Slot start times (int64 us, sorted) of one symbol's bars ``ts`` (sorted, unique) on calendar ``name``."""
    import warnings

    import numpy as np
    import pandas as pd

    lo, hi = int(ts[0]) - pad_us, int(ts[-1]) + pad_us
    first = pd.Timestamp(lo - _DAY_US, unit="us", tz="UTC").year
    last = pd.Timestamp(hi + _DAY_US, unit="us", tz="UTC").year
    cal = _calendar_span(name, first, last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = cal.schedule

        def us(col: str) -> Any:
            return sched[col].astype("datetime64[us, UTC]").to_numpy().astype("datetime64[us]").astype(np.int64)

        if step >= _DAY_US * 0.99:
            day = sched.index.to_numpy().astype("datetime64[us]").astype(np.int64)
            lead = pd.Timestamp(int(ts[0]), unit="us", tz="UTC")
            if int(ts[0]) % _DAY_US == 0:
                slots = day
            else:  # the first bar's wall time in the exchange's zone, on every session
                local = lead.tz_convert(cal.tz)
                wall = local - local.normalize()
                stamped = (pd.DatetimeIndex(sched.index).tz_localize(cal.tz) + wall).tz_convert("UTC")
                slots = stamped.to_numpy().astype("datetime64[us]").astype(np.int64)
        else:
            opens, closes = us("open"), us("close")
            if sched["break_start"].notna().any():
                has = sched["break_start"].notna().to_numpy()
                bs, be = us("break_start"), us("break_end")
                starts = np.concatenate([opens, be[has]])
                ends = np.concatenate([np.where(has, bs, closes), closes[has]])
            else:
                starts, ends = opens, closes
            phase = int(ts[0]) % step
            begin = starts - ((starts - phase) % step)  # the grid time whose bar holds the open
            counts = -(-(ends - begin) // step)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            slots = np.unique(np.repeat(begin, counts) + offsets * step)
    slots = np.sort(np.asarray(slots, dtype=np.int64))
    return slots[(slots >= lo) & (slots <= hi)]


def open_slots(name: str, bars: pa.Table, *, timeframe_us: int | None = None, pad_us: int = 0) -> pa.Table:
    """The open slots (:data:`SLOT_COLUMNS`) of every symbol of ``bars`` (columns ``symbol``, ``ts``) on
    calendar ``name``, from its first bar less ``pad_us`` to its last bar plus ``pad_us``; empty for ``24/7``.

    ``timeframe_us`` fixes the bar length; else each symbol's most common step between bars.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pa.schema([("symbol", pa.string()), ("slot_us", pa.int64()), ("slot", pa.int64())])
    if name == ALWAYS_OPEN or bars.num_rows == 0:
        return schema.empty_table()
    ts_all = pc.cast(bars.column("ts"), pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    syms = bars.column("symbol").to_numpy(zero_copy_only=False)
    parts = []
    for symbol in sorted(set(syms.tolist())):
        ts = np.unique(ts_all[syms == symbol])
        step = timeframe_us or _mode_step(ts)
        if step is None or step <= 0 or step >= _WEEK_US:
            continue
        slots = _symbol_slots(name, ts, step, pad_us)
        parts.append(
            pa.table(
                {
                    "symbol": pa.array([symbol] * len(slots), pa.string()),
                    "slot_us": pa.array(slots, pa.int64()),
                    "slot": pa.array(np.arange(len(slots), dtype=np.int64)),
                },
                schema=schema,
            )
        )
    return pa.concat_tables(parts) if parts else schema.empty_table()
