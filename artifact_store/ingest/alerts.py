"""``lake ingest alerts``: an alert feed into day-partitioned ``alerts`` artifacts, bad rows quarantined.

Each row is an alert (ts, symbol, side, source, optional price and payload). A row is quarantined, with
its reason, when its ts does not parse, its side is not buy/sell (long/short are read as buy/sell), its
symbol is empty, it repeats an earlier alert (same ts, symbol, side, source), or its ts lies after the
feed's as-of time. The raw feed is a ``table`` artifact; the alerts and the quarantine get edges from it.
Re-ingesting the same feed changes nothing (every artifact deduplicates).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import openlineage
from ..errors import InvalidInput
from ..lake import Lake
from .files import read_table

SIDES = {"buy": "buy", "sell": "sell", "long": "buy", "short": "sell"}
OPTIONAL = ("source", "price", "payload")


@dataclass(frozen=True)
class AlertIngest:
    source: str
    rows: int
    valid: int
    quarantined: int
    reasons: dict[str, int]
    raw_id: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    quarantine_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = value / 1000 if value > 1e11 else value  # epoch seconds or milliseconds
        try:
            return datetime.fromtimestamp(secs, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def _outputs(result: AlertIngest) -> list[openlineage.Ref]:
    out: list[openlineage.Ref] = [(result.raw_id, f"raw/alerts/{result.source}")]
    out += [(a["id"], f"alerts/{result.source}/{a['day']}") for a in result.alerts]
    if result.quarantine_id is not None:
        out.append((result.quarantine_id, f"quarantine/alerts/{result.source}"))
    return out


@openlineage.emits(
    lambda a: f"ingest/alerts/{a['source'] or Path(a['path']).stem}",
    inputs=lambda a: [openlineage.file_dataset(a["path"])],
    outputs=_outputs,
)
def ingest_alerts(lake: Lake, path: str | Path, *, source: str | None = None, as_of: str | None = None) -> AlertIngest:
    """Ingest an alert feed (CSV, Parquet or JSON lines)."""
    import pyarrow as pa

    p = Path(path)
    name = source or p.stem
    raw = read_table(p)
    for col in ("ts", "symbol", "side"):
        if col not in raw.column_names:
            raise InvalidInput(f"{p}: an alert feed needs a {col!r} column (it has {', '.join(raw.column_names)})")
    cutoff = _parse_time(as_of) if as_of else datetime.now(UTC)
    if cutoff is None:
        raise InvalidInput(f"--as-of: not an ISO time: {as_of!r}")
    extras = [c for c in raw.column_names if c not in ("ts", "symbol", "side", *OPTIONAL)]
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str, dict[str, Any]]] = []  # row, kind, reason, record
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(raw.to_pylist()):
        ts = _parse_time(row["ts"])
        symbol = (row.get("symbol") or "").strip() if isinstance(row.get("symbol"), str) else ""
        side = SIDES.get(str(row.get("side") or "").strip().lower())
        src = row.get("source") or name
        if ts is None:
            bad.append((i, "unparsable_ts", f"unparsable ts {row['ts']!r}", row))
            continue
        if not symbol:
            bad.append((i, "empty_symbol", "empty symbol", row))
            continue
        if side is None:
            bad.append((i, "unknown_side", f"unknown side {row.get('side')!r} (buy, sell, long or short)", row))
            continue
        if ts > cutoff:
            bad.append(
                (i, "future_ts", f"ts {ts.isoformat()} is in the future of the feed (as of {cutoff.isoformat()})", row)
            )
            continue
        key = (ts, symbol, side, src)
        if key in seen:
            bad.append((i, "duplicate", f"duplicate of row {seen[key]}", row))
            continue
        seen[key] = i
        payload = row.get("payload")
        if payload is None and extras:
            payload = json.dumps({c: row[c] for c in extras}, default=str, sort_keys=True)
        price = row.get("price")
        good.append(
            {
                "ts": ts,
                "symbol": symbol,
                "side": side,
                "source": str(src),
                "price": None if price is None else float(price),
                "payload": None if payload is None else str(payload),
            }
        )
    good.sort(key=lambda r: (r["ts"], r["symbol"], r["side"], r["source"]))
    schema = {
        "ts": pa.timestamp("us", tz="UTC"),
        "symbol": pa.string(),
        "side": pa.string(),
        "source": pa.string(),
        "price": pa.float64(),
        "payload": pa.string(),
    }
    days: dict[str, list[dict[str, Any]]] = {}
    for r in good:
        days.setdefault(r["ts"].strftime("%Y-%m-%d"), []).append(r)
    tables = {day: pa.Table.from_pylist(rows, schema=pa.schema(schema)) for day, rows in sorted(days.items())}
    # check everything before publishing anything
    from artifact_lake.schemas import conform, find_violations, first_error

    alerts_schema = lake.registry.get("alerts")
    for day, t in tables.items():
        c = conform(t, alerts_schema, f"{p} ({day})")
        v = find_violations(c, alerts_schema)
        if v:
            raise first_error(c, v, alerts_schema, f"{p} ({day})")
    raw_rec = lake.publish(raw, "table", name=f"raw/alerts/{name}", meta={"source_file": p.name})
    published = []
    for day, t in tables.items():
        rec = lake.publish(
            t, "alerts", name=f"alerts/{name}/{day}", inputs=[raw_rec.id], meta={"source": name, "day": day}
        )
        published.append({"day": day, "id": rec.id, "rows": rec.rows, "deduplicated": rec.deduplicated})
    q_id = None
    if bad:
        q = pa.table(
            {
                "row": pa.array([b[0] for b in bad], pa.int64()),
                "reason": pa.array([b[2] for b in bad], pa.string()),
                "record": pa.array([json.dumps(b[3], default=str, sort_keys=True) for b in bad], pa.string()),
            }
        )
        q_id = lake.publish(
            q, "quarantine", name=f"quarantine/alerts/{name}", inputs=[raw_rec.id], meta={"source": name}
        ).id
    reasons = Counter(b[1] for b in bad)
    return AlertIngest(
        name, raw.num_rows, len(good), len(bad), dict(sorted(reasons.items())), raw_rec.id, published, q_id
    )
