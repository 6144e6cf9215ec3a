"""``lake ingest alerts``: an alert feed into day-partitioned ``alerts`` artifacts, bad rows quarantined.

Each row is an alert (ts, symbol, side, source, optional price and payload). A row is quarantined, with
its reason, when it is a garbage line (a CSV line with the wrong number of fields, a JSON line that is not
an object), its ts does not parse, its side is not buy/sell (long/short are read as buy/sell), its symbol
is empty, its price is not a positive finite number, it repeats an earlier alert (same ts, symbol, side,
source), its ts lies after the feed's as-of time, or it breaks any other check of the ``alerts`` type. One
bad row never refuses the feed: the other rows go on. ``row`` in the quarantine is the row's 0-based index
among the feed's rows (garbage lines included).

The raw feed (without its garbage lines) is a ``table`` artifact; the alerts and the quarantine get edges
from it. Re-ingesting the same feed changes nothing (every artifact deduplicates).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import openlineage
from .._inputs import regular_file
from ..errors import InvalidInput
from ..lake import Lake
from .files import read_table

if TYPE_CHECKING:
    import pyarrow as pa

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


_EPOCH_TEXT = re.compile(r"^-?\d{9,}(\.\d+)?$")


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
        text = value.strip()
        if _EPOCH_TEXT.match(text):  # a feed mixing ISO and epoch times, read as text (CSV)
            return _parse_time(float(text) if "." in text else int(text))
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class _Garbage:
    """A source line that is no row at all."""

    reason: str
    text: str


@dataclass(frozen=True)
class _Feed:
    table: pa.Table
    """The feed as read, garbage lines left out: the raw artifact."""
    records: list[dict[str, Any] | _Garbage]
    """Every row of the source in order, garbage lines included."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_feed(path: Path) -> _Feed:
    """Read a feed like ``ingest file`` does (Parquet by its magic bytes, JSON lines by suffix, else CSV),
    setting garbage lines aside instead of refusing the file."""
    regular_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        table = read_table(path)
        return _Feed(table, list(table.to_pylist()))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return _read_json_lines(path)
    return _read_csv(path)


def _read_csv(path: Path) -> _Feed:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    skipped: list[tuple[int | None, str, str]] = []

    def skip(row: Any) -> str:
        where = f"line {row.number}" if row.number is not None else "a line"
        why = f"{where} has {row.actual_columns} field(s) where the header has {row.expected_columns}"
        skipped.append((row.number, row.text, why))
        return "skip"

    try:
        # one thread, so that the handler learns each skipped line's number
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=skip),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read it as CSV ({_first_line(exc)})") from exc
    records: list[dict[str, Any] | _Garbage] = list(table.to_pylist())
    for number, text, why in sorted(skipped, key=lambda s: (s[0] is None, s[0] or 0)):
        at = len(records) if number is None else min(max(number - 2, 0), len(records))  # line 1: the header
        records.insert(at, _Garbage(why, text))
    return _Feed(table, records)


def _read_json_lines(path: Path) -> _Feed:
    import pyarrow as pa
    import pyarrow.json as pjson

    try:
        table = pjson.read_json(path)
        return _Feed(table, list(table.to_pylist()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # a garbage line or values of mixed kinds: read line by line
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read it as JSON lines ({_first_line(exc)})") from exc
    records: list[dict[str, Any] | _Garbage] = []
    good: list[bytes] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            records.append(_Garbage(f"line {number} is not JSON ({exc})", line.decode("utf-8", "replace")))
            continue
        if not isinstance(obj, dict):
            records.append(_Garbage(f"line {number} is not a JSON object", line.decode("utf-8", "replace")))
            continue
        records.append(obj)
        good.append(line)
    if not good:
        return _Feed(pa.table({}), records)
    try:
        table = pjson.read_json(io.BytesIO(b"\n".join(good)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # values of mixed kinds in one column: keep those columns as text in the raw table, and parse the
        # rows from the JSON values themselves
        return _Feed(_mixed_table([r for r in records if isinstance(r, dict)]), records)
    rows = iter(table.to_pylist())
    return _Feed(table, [next(rows) if isinstance(r, dict) else r for r in records])


def _mixed_table(objects: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    names: dict[str, None] = {}
    for obj in objects:
        names.update(dict.fromkeys(obj))
    columns = {}
    for name in names:
        values = [obj.get(name) for obj in objects]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            columns[name] = pa.array([v if v is None or isinstance(v, str) else _json(v) for v in values], pa.string())
    return pa.table(columns)


def _json(value: Any) -> str:
    """Strict JSON (NaN and infinities as strings), ``str`` for anything JSON cannot hold."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), default=str, sort_keys=True, allow_nan=False)


def _price(value: Any) -> tuple[float | None, str | None]:
    """The alert's price (None when it has none), or why the row is refused."""
    if value is None:
        return None, None
    if isinstance(value, str) and not value.strip():
        return None, None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None, f"price {value!r} is not a number"
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None, f"price {value!r} is not a number"
    if not math.isfinite(number):
        return None, f"price {value!r} is not finite"
    if number <= 0:
        return None, f"price {value!r} is not above 0"
    return number, None


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

    from artifact_lake.schemas import conform, find_violations, first_error

    p = Path(path)
    name = source or p.stem
    feed = _read_feed(p)
    raw = feed.table
    for col in ("ts", "symbol", "side"):
        if col not in raw.column_names:
            raise InvalidInput(f"{p}: an alert feed needs a {col!r} column (it has {', '.join(raw.column_names)})")
    cutoff = _parse_time(as_of) if as_of else datetime.now(UTC)
    if cutoff is None:
        raise InvalidInput(f"--as-of: not an ISO time: {as_of!r}")
    # no wall-clock value may enter an artifact: the reason names the --as-of a user gave, never "now"
    when = f"as of {cutoff.isoformat()}" if as_of else "later than the time of ingest"
    extras = [c for c in raw.column_names if c not in ("ts", "symbol", "side", *OPTIONAL)]
    good: list[tuple[int, dict[str, Any]]] = []  # source row, alert
    bad: list[tuple[int, str, str, Any]] = []  # source row, kind, reason, record
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(feed.records):
        if isinstance(row, _Garbage):
            bad.append((i, "garbage", row.reason, {"line": row.text}))
            continue
        ts = _parse_time(row.get("ts"))
        symbol = (row.get("symbol") or "").strip() if isinstance(row.get("symbol"), str) else ""
        side = SIDES.get(str(row.get("side") or "").strip().lower())
        src = row.get("source") or name
        if ts is None:
            bad.append((i, "unparsable_ts", f"unparsable ts {row.get('ts')!r}", row))
            continue
        if not symbol:
            bad.append((i, "empty_symbol", "empty symbol", row))
            continue
        if side is None:
            bad.append((i, "unknown_side", f"unknown side {row.get('side')!r} (buy, sell, long or short)", row))
            continue
        price, why = _price(row.get("price"))
        if why is not None:
            bad.append((i, "bad_price", why, row))
            continue
        if ts > cutoff:
            bad.append((i, "future_ts", f"ts {ts.isoformat()} is in the future of the feed ({when})", row))
            continue
        key = (ts, symbol, side, src)
        if key in seen:
            bad.append((i, "duplicate", f"duplicate of row {seen[key]}", row))
            continue
        seen[key] = i
        payload = row.get("payload")
        if payload is None and extras:
            payload = _json({c: row.get(c) for c in extras})
        good.append(
            (
                i,
                {
                    "ts": ts,
                    "symbol": symbol,
                    "side": side,
                    "source": str(src),
                    "price": price,
                    "payload": None if payload is None else str(payload),
                },
            )
        )
    schema = pa.schema(
        {
            "ts": pa.timestamp("us", tz="UTC"),
            "symbol": pa.string(),
            "side": pa.string(),
            "source": pa.string(),
            "price": pa.float64(),
            "payload": pa.string(),
        }
    )
    alerts_schema = lake.registry.get("alerts")
    # Whatever else the alerts type refuses (a blank source, ...) is one bad row too, never the whole feed.
    if good:
        every = conform(pa.Table.from_pylist([g for _, g in good], schema=schema), alerts_schema, str(p))
        refused: dict[int, tuple[str, str]] = {}
        for found in find_violations(every, alerts_schema):
            for r in found.rows.tolist():
                value = every.column(found.column)[r].as_py()
                refused.setdefault(
                    int(r), (found.check, f"column {found.column!r}: value {value!r} breaks {found.reason}")
                )
        for r, (kind, why) in refused.items():
            i = good[r][0]
            bad.append((i, kind, why, feed.records[i]))
        good = [g for r, g in enumerate(good) if r not in refused]
    bad.sort(key=lambda b: b[0])
    alerts = sorted((g for _, g in good), key=lambda r: (r["ts"], r["symbol"], r["side"], r["source"]))
    days: dict[str, list[dict[str, Any]]] = {}
    for r in alerts:
        days.setdefault(r["ts"].strftime("%Y-%m-%d"), []).append(r)
    tables = {day: pa.Table.from_pylist(rows, schema=schema) for day, rows in sorted(days.items())}
    # check everything before publishing anything
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
                "record": pa.array([_json(b[3]) for b in bad], pa.string()),
            }
        )
        q_id = lake.publish(
            q, "quarantine", name=f"quarantine/alerts/{name}", inputs=[raw_rec.id], meta={"source": name}
        ).id
    reasons = Counter(b[1] for b in bad)
    return AlertIngest(
        name, len(feed.records), len(alerts), len(bad), dict(sorted(reasons.items())), raw_rec.id, published, q_id
    )
