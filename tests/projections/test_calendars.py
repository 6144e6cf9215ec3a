"""Trading calendars (issue #16): bars a year per calendar, and metrics annualised by them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from artifact_lake.artifact_store.ingest import import_file
from artifact_lake.experiments import create, execute, parse_spec
from artifact_lake.projections import ProjectionError
from artifact_lake.projections.calendars import calendar_of, periods_per_year

pytest.importorskip("exchange_calendars")
backtesting_test = pytest.importorskip("backtesting.test")
GOOG = Path(backtesting_test.__file__).parent / "GOOG.csv"

SPEC = """
name = "{name}"
kind = "backtest"
[inputs]
ohlcv = ["{ref}"]
[strategy]
name = "sma_cross"
fast = 10
slow = 30
[execution]
units = "fractional"
{extra}
"""


def test_bars_a_year():
    assert periods_per_year("24/7", 86_400.0) is None
    assert periods_per_year("XNYS", 86_400.0) == 252
    assert periods_per_year("XNYS", 60.0) == 252 * 390  # 6.5 h sessions of 1-minute bars
    assert periods_per_year("XNYS", 3_600.0) == 252 * 6  # 6.5 bars a session, rounded to whole bars
    assert periods_per_year("XNYS", 7 * 86_400.0) == pytest.approx(365.25 / 7)


def sharpe(plake, name: str, ref: str, extra: str = "") -> float:
    create(plake, parse_spec(SPEC.format(name=name, ref=ref, extra=extra)))
    run = execute(plake, name)
    return float(plake.read(run.results["metrics"]).column("sharpe")[0].as_py())


def test_goog_on_xnys_is_annualised_by_252_sessions(plake):
    utc = import_file(plake, GOOG, name="goog-247")
    nyse = import_file(plake, GOOG, name="goog-xnys", calendar="XNYS")
    assert utc.id == nyse.id  # the calendar lives in the meta, not in the content
    assert calendar_of(plake, [nyse.id]) == "XNYS"
    # one artifact, two names: the meta is the artifact's, so both runs see XNYS
    s_nyse = sharpe(plake, "xnys", "goog-xnys")
    s_override = sharpe(plake, "override", "goog-xnys", "periods_per_year = 365.25")
    assert math.isfinite(s_nyse) and s_nyse != 0
    assert s_nyse / s_override == pytest.approx(math.sqrt(252 / 365.25))


def test_mixed_calendars_are_refused(plake, tmp_path):
    a = import_file(plake, GOOG, calendar="XNYS")
    other = tmp_path / "GOOG2.csv"
    other.write_text(GOOG.read_text().replace("2004-08-19,100,", "2004-08-19,100.5,", 1))
    b = import_file(plake, other, calendar="XLON")
    with pytest.raises(ProjectionError, match="the ohlcv inputs carry different calendars"):
        calendar_of(plake, [a.id, b.id])
