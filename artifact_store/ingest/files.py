"""``lake ingest file``: CSV or Parquet into a typed artifact, with column mapping and time parsing.

The source file as read becomes a ``table`` artifact named ``raw/<file name>`` (folded into the name
alphabet by :func:`names.name_from_file`: ``my data.csv`` -> ``raw/my_data.csv``, ``données.csv`` ->
``raw/donnees.csv``; the file's own name stays in the meta ``source_file``); the curated artifact gets a
lineage edge from it. Everything is checked before anything is published, so a refused import leaves the
lake unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import openlineage
from .._inputs import regular_file
from ..errors import InvalidInput
from ..lake import Lake
from ..names import check_name, name_from_file

if TYPE_CHECKING:
    import pyarrow as pa

TS_UNITS = ("s", "ms", "us", "ns")


@dataclass(frozen=True)
class FileImport:
    source: str
    raw_id: str
    id: str
    type: str
    name: str | None
    rows: int
    deduplicated: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_table(path: Path) -> pa.Table:
    """A CSV or Parquet file as a pyarrow Table (chosen by the file's first bytes, not its name)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    regular_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        if magic == b"PAR1":
            return pq.read_table(path)
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            import pyarrow.json as pjson

            return pjson.read_json(path)
        return pcsv.read_csv(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read it as CSV or Parquet ({str(exc).splitlines()[0]})") from exc


# The largest epoch magnitude per unit: a time whose microseconds fit in int64 (about 292,000 years).
_EPOCH_LIMIT = {"s": (2**63 - 1) // 1_000_000, "ms": (2**63 - 1) // 1_000, "us": 2**63 - 1, "ns": 2**63 - 1}


def _check_epoch(column: pa.ChunkedArray, unit: str, where: str) -> None:
    """Refuse, with its row, the first epoch number that is no time (NaN, infinite, or too far away)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    limit = _EPOCH_LIMIT[unit]
    if pt.is_floating(column.type):
        values = column.cast(pa.float64())
        bad = pc.or_(pc.invert(pc.is_finite(values)), pc.greater(pc.abs(values), float(limit)))
    else:
        wide = column.cast(pa.decimal128(20, 0))  # every int64 and uint64 value, exactly
        bad = pc.greater(pc.abs(wide), pa.scalar(limit, pa.decimal128(20, 0)))
    bad = pc.fill_null(bad, False)
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise InvalidInput(
            f"{where}: column 'ts', row {row}: epoch {column[row].as_py()!r} (--ts-unit {unit}) is not a time"
            f" (at most {limit:.3g} {unit} from 1970)"
        )


def parse_ts(column: pa.ChunkedArray, *, tz: str | None, unit: str | None, where: str) -> pa.ChunkedArray:
    """Timestamps in UTC from integers (epoch in ``unit``), ISO strings or timestamps; naive times are in ``tz``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = column.type
    if pt.is_integer(t) or pt.is_floating(t):
        if unit not in TS_UNITS:
            raise InvalidInput(f"{where}: column 'ts' holds numbers: give --ts-unit {'|'.join(TS_UNITS)}")
        _check_epoch(column, unit, where)
        if pt.is_floating(t):
            scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}[unit]
            column = pc.cast(pc.round(pc.multiply(column, scale)), pa.int64())
            unit = "us"
        return pc.cast(column.cast(pa.int64()).cast(pa.timestamp(unit)), pa.timestamp(unit)).cast(
            pa.timestamp(unit, tz="UTC")
        )
    if pt.is_string(t) or pt.is_large_string(t):
        try:
            parsed = pc.cast(column, pa.timestamp("us", tz="UTC"))  # ISO strings with an offset
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            try:
                column = pc.cast(column, pa.timestamp("us"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidInput(f"{where}: column 'ts': cannot parse times ({str(exc).splitlines()[0]})") from exc
            t = column.type
        else:
            return parsed
    if pt.is_timestamp(t):
        if t.tz is None:
            try:
                column = pc.assume_timezone(column, timezone=tz or "UTC", ambiguous="raise", nonexistent="raise")
            except (pa.ArrowInvalid, ValueError) as exc:
                raise InvalidInput(
                    f"{where}: column 'ts': {str(exc).splitlines()[0]} (time zone {tz or 'UTC'})"
                ) from exc
        return column.cast(pa.timestamp(t.unit, tz="UTC"))
    if pt.is_date(t):
        return column.cast(pa.timestamp("s")).cast(pa.timestamp("s", tz="UTC"))
    raise InvalidInput(f"{where}: column 'ts' is {t}: give times as ISO strings, epoch numbers or timestamps")


def apply_mapping(table: pa.Table, mapping: dict[str, str], where: str) -> pa.Table:
    missing = [src for src in mapping if src not in table.column_names]
    if missing:
        raise InvalidInput(
            f"{where}: --map names column {missing[0]!r}, which the file lacks (it has {', '.join(table.column_names)})"
        )
    return table.rename_columns([mapping.get(c, c) for c in table.column_names])


def _outputs(result: FileImport) -> list[openlineage.Ref]:
    return [(result.raw_id, name_from_file("raw", Path(result.source).name)), (result.id, result.name)]


@openlineage.emits(
    lambda a: f"ingest/file/{Path(a['path']).name}",
    inputs=lambda a: [openlineage.file_dataset(a["path"])],
    outputs=_outputs,
)
def import_file(
    lake: Lake,
    path: str | Path,
    type: str,  # noqa: A002
    *,
    mapping: dict[str, str] | None = None,
    tz: str | None = None,
    ts_unit: str | None = None,
    symbol: str | None = None,
    name: str | None = None,
) -> FileImport:
    """Import a CSV or Parquet file as an artifact of ``type``, with lineage from the raw file's artifact."""
    import pyarrow as pa

    from artifact_lake.schemas import conform, find_violations, first_error

    p = Path(path)
    where = str(p)
    if name is not None:
        check_name(name)
    raw_name = name_from_file("raw", p.name)
    schema = lake.registry.get(type)
    raw = read_table(p)
    table = apply_mapping(raw, mapping or {}, where)
    if symbol is not None:
        col = pa.array([symbol] * table.num_rows, pa.string())
        table = (
            table.set_column(table.column_names.index("symbol"), "symbol", col)
            if "symbol" in table.column_names
            else table.append_column("symbol", col)
        )
    if "ts" in table.column_names:
        table = table.set_column(
            table.column_names.index("ts"), "ts", parse_ts(table.column("ts"), tz=tz, unit=ts_unit, where=where)
        )
    conformed = conform(table, schema, where)
    bad = find_violations(conformed, schema)
    if bad:
        raise first_error(conformed, bad, schema, where)
    raw_rec = lake.publish(raw, "table", name=raw_name, meta={"source_file": p.name})
    rec = lake.publish(conformed, type, name=name, inputs=[raw_rec.id], meta={"source_file": p.name})
    return FileImport(str(p), raw_rec.id, rec.id, type, name, rec.rows, rec.deduplicated)
