"""``lake coverage``: for every alert, whether the OHLCV around it is there (full, partial, none) and which
bar ranges are missing, published as a ``table`` artifact with lineage from the alerts and OHLCV inputs.

On the OHLCV's trading calendar (meta ``calendar``) only the open slots count (:mod:`.calendars`): an alert on
Friday evening whose window holds no session is ``full``; 24/7 data expects every bar of the window."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import Lake


@dataclass(frozen=True)
class Coverage:
    id: str
    projection: str
    counts: dict[str, int]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def coverage(
    lake: Lake, alerts: list[str], ohlcv: list[str], *, before: str = "1h", after: str = "1d", name: str | None = None
) -> Coverage:
    """Publish the coverage of ``alerts`` by ``ohlcv`` within [ts - before, ts + after]."""
    import json

    import pyarrow as pa

    proj = lake.projection("alerts_ohlcv", {"alerts": alerts, "ohlcv": ohlcv}, {"before": before, "after": after})
    cov = proj.arrow(
        "SELECT c.alert, c.ts, c.symbol, c.side, c.window_start, c.window_end, c.bars, c.expected_bars, c.coverage,"
        " t.step_us FROM coverage c LEFT JOIN timeframes t USING (symbol) ORDER BY c.alert"
    ).to_pylist()
    present: dict[int, list[int]] = {}
    for row in proj.arrow("SELECT alert, epoch_us(ts) AS us FROM bars ORDER BY alert, ts").to_pylist():
        present.setdefault(row["alert"], []).append(row["us"])
    on_calendar = {r["alert"] for r in proj.arrow("SELECT alert FROM _windows WHERE cal").to_pylist()}
    slot_ranges: dict[int, list[list[str]]] = {}
    for row in proj.arrow(
        "SELECT alert, first_missing, last_missing FROM missing ORDER BY alert, first_missing"
    ).to_pylist():
        slot_ranges.setdefault(row["alert"], []).append(
            [row["first_missing"].isoformat(), row["last_missing"].isoformat()]
        )
    missing_col = []
    for c in cov:
        if c["alert"] in on_calendar:  # open slots of the trading calendar, ranged by the projection
            missing_col.append(json.dumps(slot_ranges.get(c["alert"], [])))
            continue
        step = c["step_us"]
        if not step:
            missing_col.append(json.dumps([[c["window_start"].isoformat(), c["window_end"].isoformat()]]))
            continue
        lo = -(-int(c["window_start"].timestamp() * 1e6) // step) * step
        hi = int(c["window_end"].timestamp() * 1e6) // step * step
        ranges = []
        expect = lo
        for us in present.get(c["alert"], []):
            if us > expect:
                ranges.append([_iso(expect), _iso(us - step)])
            expect = us + step
        if expect <= hi:
            ranges.append([_iso(expect), _iso(hi)])
        missing_col.append(json.dumps(ranges))
    table = pa.table(
        {
            "alert": pa.array([c["alert"] for c in cov], pa.int64()),
            "ts": pa.array([c["ts"] for c in cov], pa.timestamp("us", tz="UTC")),
            "symbol": pa.array([c["symbol"] for c in cov], pa.string()),
            "side": pa.array([c["side"] for c in cov], pa.string()),
            "window_start": pa.array([c["window_start"] for c in cov], pa.timestamp("us", tz="UTC")),
            "window_end": pa.array([c["window_end"] for c in cov], pa.timestamp("us", tz="UTC")),
            "coverage": pa.array([c["coverage"] for c in cov], pa.string()),
            "bars": pa.array([c["bars"] for c in cov], pa.int64()),
            "expected_bars": pa.array([c["expected_bars"] for c in cov], pa.int64()),
            "missing": pa.array(missing_col, pa.string()),
        }
    )
    inputs = sorted({i for ids in proj.inputs.values() for i in ids})
    rec = lake.publish(
        table,
        "table",
        name=name,
        inputs=inputs,
        meta={"kind": "coverage", "before": before, "after": after, "projection": proj.key},
    )
    counts = {k: sum(1 for c in cov if c["coverage"] == k) for k in ("full", "partial", "none")}
    return Coverage(rec.id, proj.key, counts, len(cov))
