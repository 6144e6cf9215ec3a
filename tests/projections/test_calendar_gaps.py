"""Calendar-aware ``gaps`` and alert ``coverage`` (issue #16, item 6): only bars the market was open for count."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from artifact_lake.artifact_store.ingest import import_file
from artifact_lake.projections import Lake, projection_key
from artifact_lake.projections.coverage import coverage
from artifact_lake.projections.spec import get_spec

pytest.importorskip("exchange_calendars")
backtesting_test = pytest.importorskip("backtesting.test")
GOOG = Path(backtesting_test.__file__).parent / "GOOG.csv"
GAPS = "SELECT symbol, CAST(first_missing AS VARCHAR) AS f, CAST(last_missing AS VARCHAR) AS l, missing_bars FROM gaps"


def without(tmp_path: Path, day: str) -> Path:
    """GOOG.csv less the row of ``day`` (a real missing session), in a folder of its own (same file name)."""
    lines = GOOG.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(day)]
    assert len(kept) == len(lines) - 1
    out = tmp_path / "holed" / "GOOG.csv"
    out.parent.mkdir()
    out.write_text("".join(kept))
    return out


def test_goog_on_xnys_has_no_weekend_or_holiday_gaps_but_a_missing_session_is_one(tmp_path):
    with Lake.open(tmp_path / "a") as utc, Lake.open(tmp_path / "b") as nyse:
        art = import_file(utc, GOOG).id
        assert import_file(nyse, GOOG, calendar="XNYS").id == art  # the calendar is meta, not content
        p_utc = utc.projection("ohlcv", {"ohlcv": art})
        p_nyse = nyse.projection("ohlcv", {"ohlcv": art})
        assert p_utc.key != p_nyse.key  # same ids, another calendar: another build
        weekends = p_utc.arrow(GAPS).to_pylist()
        assert len(weekends) == 463  # the count: every weekend and holiday of 24/7 time
        assert weekends[0] == {
            "symbol": "GOOG",
            "f": "2004-08-21 00:00:00+00",
            "l": "2004-08-22 00:00:00+00",
            "missing_bars": 2,
        }
        assert p_nyse.arrow(GAPS).num_rows == 0

        # Wednesday 2010-03-10 taken out: one gap of one session; the weekend before it is still none
        holed = import_file(nyse, without(tmp_path, "2010-03-10"), calendar="XNYS").id
        assert nyse.projection("ohlcv", {"ohlcv": holed}).arrow(GAPS).to_pylist() == [
            {"symbol": "GOOG", "f": "2010-03-10 00:00:00+00", "l": "2010-03-10 00:00:00+00", "missing_bars": 1}
        ]


def test_goog_in_new_york_time_has_no_gaps_on_xnys(tmp_path):
    # dates read as midnight New York (04:00 or 05:00 UTC across DST): sessions are stamped the same way
    with Lake.open(tmp_path / "l") as lk:
        art = import_file(lk, GOOG, tz="America/New_York", calendar="XNYS").id
        assert lk.projection("ohlcv", {"ohlcv": art}).arrow(GAPS).num_rows == 0


def hourly(start: str, end: str) -> pa.Table:
    """XNYS-hour bars (14:30..20:30 UTC in winter) of one symbol from ``start`` to ``end`` (dates)."""
    import pandas as pd

    days = pd.bdate_range(start, end)
    ts = [d + pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(hours=h) for d in days for h in range(7)]
    n = len(ts)
    return pa.table(
        {
            "ts": pa.array([t.tz_localize("UTC") for t in ts], pa.timestamp("us", tz="UTC")),
            "symbol": ["X"] * n,
            "open": [1.0] * n,
            "high": [1.0] * n,
            "low": [1.0] * n,
            "close": [1.0] * n,
            "volume": [1.0] * n,
        }
    )


def alerts(*times: datetime) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array(list(times), pa.timestamp("us", tz="UTC")),
            "symbol": ["X"] * len(times),
            "side": ["buy"] * len(times),
            "source": ["s"] * len(times),
            "price": pa.array([None] * len(times), pa.float64()),
            "payload": pa.array([None] * len(times), pa.string()),
        }
    )


def test_friday_evening_alert_with_a_two_day_window_is_full_on_xnys(tmp_path):
    bars = hourly("2024-01-08", "2024-01-19")  # Monday 8th to Friday 19th (bdate_range keeps MLK day, Monday 15th)
    friday = datetime(2024, 1, 12, 22, 0, tzinfo=UTC)  # 17:00 in New York, the market closed
    late = datetime(2024, 1, 12, 20, 0, tzinfo=UTC)  # its window holds the last two bars of Friday
    with Lake.open(tmp_path / "a") as utc, Lake.open(tmp_path / "b") as nyse:
        o = utc.publish(bars, "ohlcv").id
        assert nyse.publish(bars, "ohlcv", meta={"calendar": "XNYS"}).id == o
        al = utc.publish(alerts(friday, late), "alerts").id
        nyse.publish(alerts(friday, late), "alerts")
        on_247 = utc.read(coverage(utc, [al], [o], before="1h", after="2d").id).to_pylist()
        on_xnys = nyse.read(coverage(nyse, [al], [o], before="1h", after="2d").id).to_pylist()
    assert [r["coverage"] for r in on_247] == ["partial", "none"]
    assert [(r["coverage"], r["bars"], r["expected_bars"]) for r in on_xnys] == [("full", 2, 2), ("full", 0, 0)]
    assert [json.loads(r["missing"]) for r in on_xnys] == [[], []]


def test_a_missing_session_hour_is_partial_with_its_range_on_xnys(tmp_path):
    bars = hourly("2024-01-08", "2024-01-19")
    keep = [i for i, t in enumerate(bars.column("ts").to_pylist()) if t != datetime(2024, 1, 16, 15, 30, tzinfo=UTC)]
    with Lake.open(tmp_path / "l") as lk:
        o = lk.publish(bars.take(keep), "ohlcv", meta={"calendar": "XNYS"}).id
        al = lk.publish(alerts(datetime(2024, 1, 12, 22, 0, tzinfo=UTC)), "alerts").id
        cov = coverage(lk, [al], [o], before="1h", after="4d")  # to Tuesday 22:00: Friday + Tuesday's 7 bars
        (row,) = lk.read(cov.id).to_pylist()
        gaps = lk.projection("ohlcv", {"ohlcv": o}).arrow(GAPS).to_pylist()
    # 13 bars in the window (the 7 of the holiday too), 7 open slots expected (Tuesday's), one of them missing
    assert (row["coverage"], row["bars"], row["expected_bars"]) == ("partial", 13, 7)
    assert json.loads(row["missing"]) == [["2024-01-16T15:30:00+00:00", "2024-01-16T15:30:00+00:00"]]
    assert gaps == [{"symbol": "X", "f": "2024-01-16 15:30:00+00", "l": "2024-01-16 15:30:00+00", "missing_bars": 1}]


def test_24_7_keys_leave_the_calendar_out(plake, ohlcv):
    spec = get_spec("ohlcv")
    ids = {"ohlcv": [plake.publish(ohlcv, "ohlcv").id]}
    params = spec.resolve_params({})
    assert projection_key(spec, params, ids) == projection_key(spec, params, ids, "24/7")
    assert projection_key(spec, params, ids, "XNYS") != projection_key(spec, params, ids)
    assert plake.projection("ohlcv", ids).key == projection_key(spec, params, ids)
