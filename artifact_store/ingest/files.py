"""``lake ingest file``: CSV/TSV (gzip, zip), JSON lines or Parquet into a typed artifact.

Reading is :mod:`.sniff` (DuckDB's CSV sniffer plus overrides), column names and row order :mod:`.mapping`,
known layouts :mod:`.presets`. Every import counts its rows: read = stored + quarantined + duplicates dropped
(a file import refuses bad rows instead of quarantining them, so its quarantined count is 0).

The source file as read becomes a ``table`` artifact named ``raw/<file name>`` (folded into the name
alphabet by :func:`names.name_from_file`: ``my data.csv`` -> ``raw/my_data.csv``, ``données.csv`` ->
``raw/donnees.csv``; the file's own name stays in the meta ``source_file``); the curated artifact gets a
lineage edge from it. Everything is checked before anything is published, so a refused import leaves the
lake unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import openlineage
from .._inputs import regular_file
from ..errors import InvalidInput
from ..lake import Lake
from ..names import check_name, name_from_file
from .mapping import Ordered, order_key, order_rows, standard_mapping
from .presets import Preset, get_preset
from .sniff import CsvOptions, read_source

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.schemas import Schema

    from ..records import PublishResult

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
    format: str = "CSV"
    """The format the file was read as (``CSV``, ``CSV (zip: x.csv)``, ``JSON lines``, ``Parquet``)."""
    rows_read: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    sorted: bool = False
    """The rows were not in time order (newest first, say) and were sorted."""
    columns: dict[str, str] = field(default_factory=dict)
    """Renames applied, source column -> type column."""
    dropped: tuple[str, ...] = ()
    """Source columns left out of the typed artifact (the raw artifact keeps them)."""
    symbol: str | None = None
    """The symbol filled in for every row, when the file had none."""
    meta: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_table(path: Path) -> pa.Table:
    """A CSV, JSON lines or Parquet file as a pyarrow Table (see :func:`.sniff.read_source`)."""
    return read_source(path).table


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


# Formats tried when a time column is text that is not ISO: only unambiguous ones (a month name, or the
# dotted day.month.year of German-speaking exports); a day/month order a file does not reveal needs --ts-format.
FALLBACK_FORMATS = (
    "%d-%b-%y",
    "%d-%b-%Y",
    "%d %b %Y",
    "%b %d %Y",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
)


def _auto_unit(column: pa.ChunkedArray) -> str:
    """The epoch unit told by magnitude (Binance files: ms until 2025, us since)."""
    import pyarrow.compute as pc

    top = pc.max(pc.abs(column.cast("float64"))).as_py() or 0.0
    return "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"


def _strptime(column: pa.ChunkedArray, fmt: str) -> pa.ChunkedArray | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.strptime(column, format=fmt, unit="us", error_is_null=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def parse_ts(
    column: pa.ChunkedArray, *, tz: str | None, unit: str | None, where: str, ts_format: str | None = None
) -> pa.ChunkedArray:
    """Timestamps in UTC from epoch numbers (in ``unit``; ``auto`` by magnitude), text (ISO, ``ts_format``, or an
    unambiguous common format), timestamps or dates; naive times and dates (their midnight) are in ``tz``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = column.type
    if pt.is_integer(t) or pt.is_floating(t):
        if unit == "auto":
            unit = _auto_unit(column)
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
    if pt.is_string(t) or pt.is_large_string(t) or pt.is_string_view(t):
        column = column.cast(pa.string())
        if ts_format is not None:
            parsed = _strptime(column, ts_format)
            if parsed is None:
                bad = pc.is_null(pc.strptime(column, format=ts_format, unit="us", error_is_null=True))
                row = pc.index(pc.and_(bad, pc.is_valid(column)), True).as_py()
                value = column[row].as_py() if row >= 0 else None
                raise InvalidInput(
                    f"{where}: column 'ts', row {row}: {value!r} does not match --ts-format {ts_format!r}"
                )
            column = parsed
        else:
            try:
                return pc.cast(column, pa.timestamp("us", tz="UTC"))  # ISO strings with an offset
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
            try:
                column = pc.cast(column, pa.timestamp("us"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                for fmt in FALLBACK_FORMATS:
                    parsed = _strptime(column, fmt)
                    if parsed is not None:
                        column = parsed
                        break
                else:
                    raise InvalidInput(
                        f"{where}: column 'ts': cannot parse times ({str(exc).splitlines()[0]}); give their format"
                        " with --ts-format, e.g. --ts-format '%d/%m/%Y'"
                    ) from exc
        t = column.type
    if pt.is_date(t):
        column = column.cast(pa.timestamp("s"))
        t = column.type
    if pt.is_timestamp(t):
        if t.tz is None:
            try:
                column = pc.assume_timezone(column, timezone=tz or "UTC", ambiguous="raise", nonexistent="raise")
            except (pa.ArrowInvalid, ValueError) as exc:
                raise InvalidInput(
                    f"{where}: column 'ts': {str(exc).splitlines()[0]} (time zone {tz or 'UTC'})"
                ) from exc
        return column.cast(pa.timestamp(t.unit, tz="UTC"))
    raise InvalidInput(f"{where}: column 'ts' is {t}: give times as ISO strings, epoch numbers or timestamps")


def localize_file(path: str | Path, tz: str) -> pa.Table:
    """A Parquet file's table with every timestamp column without a zone read in ``tz`` and converted to UTC
    (``lake publish --tz``); refuses non-existent and ambiguous local times with the column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyarrow.types as pt

    p = regular_file(path)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{p}: cannot read it as Parquet ({str(exc).strip().splitlines()[0]})") from exc
    for i, f in enumerate(table.schema):
        if pt.is_timestamp(f.type) and f.type.tz is None:
            try:
                local = pc.assume_timezone(table.column(i), timezone=tz, ambiguous="raise", nonexistent="raise")
            except (pa.ArrowInvalid, ValueError) as exc:
                raise InvalidInput(f"{p}: column {f.name!r}: {str(exc).splitlines()[0]} (time zone {tz})") from exc
            table = table.set_column(i, f.name, local.cast(pa.timestamp(f.type.unit, tz="UTC")))
    return table


def _publish_pair(
    lake: Lake,
    raw: tuple[pa.Table, str, dict[str, Any]],
    typed: tuple[Ordered, Schema, str | None, dict[str, Any]],
    where: str,
) -> tuple[PublishResult, PublishResult]:
    """Publish the file as read, ``(table, name, meta)``, as a ``table`` artifact, and the typed table,
    ``(rows in the type's order, schema, name, meta)``, conformed, with a lineage edge from the first.

    What two :meth:`Lake.publish` calls record, in the same two transactions, but the two objects are
    written at once, a thread each, while this thread checks the typed table (its order, established by
    ``order_rows``, is not checked twice): the second core does not wait for the first object. Nothing is
    recorded unless the typed table passes its checks (also when the lake holds it already); content the
    lake holds intact is not written again.
    """
    from artifact_lake.schemas import conform, find_violations, first_error

    from .._stream import TablePart, stage_tables
    from ..hashing import DigestMemo, content_id
    from ..lake import _check_meta

    lake.require_writable("publish")
    raw_table, raw_name, raw_meta = raw
    ordered, schema, name, meta = typed
    table = conform(ordered.table, schema, where)  # lossless casts: the rows keep their order
    raw_schema = lake.registry.get("table")
    raw_table = conform(raw_table, raw_schema, where)
    raw_meta, meta = _check_meta(raw_meta), _check_meta(meta)
    memo = DigestMemo()  # the typed table's time and price columns mostly are the raw table's arrays
    raw_id = content_id(raw_table, raw_schema.name, raw_schema.version, memo=memo)
    typed_id = content_id(table, schema.name, schema.version, memo=memo)
    del memo
    parts: list[TablePart] = []
    if not lake.has_intact_object(raw_id):
        parts.append(TablePart(raw_table, raw_schema, where, raw_id))
    if not lake.has_intact_object(typed_id):
        parts.append(TablePart(table, schema, where, typed_id, ordered.key))
    else:  # not written again, but checked all the same: an import refuses bad rows
        bad = find_violations(table, schema, ordered_by=ordered.key)
        if bad:
            raise first_error(table, bad, schema, where)
    staged = {got.artifact_id: got for got in stage_tables(lake.root, parts)}

    def record(
        artifact_id: str, schema: Schema, name: str | None, parents: list[int], meta: dict[str, Any]
    ) -> PublishResult:
        got = staged.pop(artifact_id, None)
        if got is None:  # known content: only the name version, edges and new meta keys (as Lake.publish)
            return lake._record(lake._pk(artifact_id), name, parents, None, deduplicated=True, meta=meta)
        return lake._install(got, schema, where, name, parents, meta, None, None)

    try:
        raw_rec = record(raw_id, raw_schema, raw_name, [], raw_meta)
        rec = record(typed_id, schema, name, [lake._pk(raw_rec.id)], meta)
    finally:
        for got in staged.values():
            got.staged.discard()  # not installed: recording the first one failed
    return raw_rec, rec


def _outputs(result: FileImport) -> list[openlineage.Ref]:
    return [(result.raw_id, name_from_file("raw", Path(result.source).name)), (result.id, result.name)]


def _symbol_from_name(p: Path, preset: Preset | None) -> str:
    stem = p.name
    for suffix in (".gz", ".zip", ".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".parquet"):
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    return stem.split("-")[0] if preset is not None and preset.symbol_from_name else stem


def _adjust(table: pa.Table, column: str, where: str) -> pa.Table:
    """Scale open, high, low and close by ``column`` / close (Yahoo's adjusted prices)."""
    import pyarrow.compute as pc

    names = {c.lower(): c for c in table.column_names}
    if column not in table.column_names or "close" not in names:
        raise InvalidInput(
            f"{where}: adjusting needs columns {column!r} and 'Close' (it has {', '.join(table.column_names)})"
        )
    factor = pc.divide(table.column(column).cast("float64"), table.column(names["close"]).cast("float64"))
    for name in ("open", "high", "low", "close"):
        if name in names:
            i = table.column_names.index(names[name])
            table = table.set_column(i, names[name], pc.multiply(table.column(i).cast("float64"), factor))
    return table


@openlineage.emits(
    lambda a: f"ingest/file/{Path(a['path']).name}",
    inputs=lambda a: [openlineage.file_dataset(a["path"])],
    outputs=_outputs,
)
def import_file(
    lake: Lake,
    path: str | Path,
    type: str | None = None,  # noqa: A002
    *,
    mapping: dict[str, str] | None = None,
    tz: str | None = None,
    ts_unit: str | None = None,
    ts_format: str | None = None,
    symbol: str | None = None,
    name: str | None = None,
    csv: CsvOptions | None = None,
    preset: str | None = None,
    drop: tuple[str, ...] = (),
    keep_extra: bool = False,
    meta: dict[str, str] | None = None,
    calendar: str | None = None,
) -> FileImport:
    """Import a file as an artifact of ``type`` (default: the preset's, else ``ohlcv``), with lineage from the
    raw file's artifact. Nothing is published unless every row is good.

    Example: ``import_file(lake, "GOOG.csv", calendar="XNYS")`` reads backtesting.py's CSV (its unnamed index is
    ``ts``, ``Open`` is ``open``, the symbol ``GOOG`` comes from the file name).
    """
    import pyarrow as pa

    p = Path(path)
    where = str(p)
    if name is not None:
        check_name(name)
    pre = get_preset(preset) if preset is not None else None
    type = type or (pre.type if pre else "ohlcv")  # noqa: A001
    raw_name = name_from_file("raw", p.name)
    schema = lake.registry.get(type)
    cal_meta: dict[str, str] = {}
    if calendar is not None:
        from .calendars import check_calendar

        cal_meta["calendar"] = check_calendar(calendar)
    csv = csv or CsvOptions()
    if pre is not None:
        csv = CsvOptions(
            delimiter=csv.delimiter,
            decimal=csv.decimal,
            header=pre.header if csv.header is None else csv.header,
            columns=csv.columns or pre.columns,
            skip_rows=csv.skip_rows,
        )
    source = read_source(p, csv)
    raw = source.table
    table = raw
    if pre is not None and pre.adjust_by is not None:
        table = _adjust(table, pre.adjust_by, where)
    for col in drop:
        if col not in table.column_names:
            raise InvalidInput(
                f"{where}: --drop names column {col!r}, which the file lacks (it has {', '.join(table.column_names)})"
            )
    dropped = [c for c in table.column_names if c in drop or (pre is not None and c in pre.drop)]
    table = table.drop_columns(dropped)
    renames = standard_mapping(table, schema, {**(pre.mapping if pre else {}), **(mapping or {})}, where)
    table = table.rename_columns([renames.get(c, c) for c in table.column_names])
    if not schema.extra_columns:
        known = {c.name for c in schema.columns}
        extra = [c for c in table.column_names if c not in known and c != "symbol"]
        if extra and keep_extra:
            table = table.drop_columns(extra)
            dropped += extra
        elif extra:
            raise InvalidInput(
                f"{where}: column {extra[0]!r} is not a column of type {type!r} ({', '.join(sorted(known))}):"
                f" --map it to one, --drop it, or --keep-extra to keep it in the raw artifact only"
            )
    filled: str | None = None
    if symbol is not None or (schema.column("symbol") is not None and "symbol" not in table.column_names):
        filled = symbol if symbol is not None else _symbol_from_name(p, pre)
        col = pa.repeat(pa.scalar(filled, pa.string()), table.num_rows)
        table = (
            table.set_column(table.column_names.index("symbol"), "symbol", col)
            if "symbol" in table.column_names
            else table.append_column("symbol", col)
        )
    unit = ts_unit or (pre.ts_unit if pre else None)
    if "ts" in table.column_names:
        table = table.set_column(
            table.column_names.index("ts"),
            "ts",
            parse_ts(table.column("ts"), tz=tz, unit=unit, where=where, ts_format=ts_format),
        )
    ordered = order_rows(table, order_key(schema), where)
    all_meta = {**(meta or {}), **cal_meta, "source_file": p.name}
    raw_rec, rec = _publish_pair(
        lake, (raw, raw_name, {"source_file": p.name}), (ordered, schema, name, all_meta), where
    )
    return FileImport(
        str(p),
        raw_rec.id,
        rec.id,
        type,
        name,
        rec.rows,
        rec.deduplicated,
        format=source.format,
        rows_read=raw.num_rows,
        duplicates_dropped=ordered.duplicates,
        sorted=ordered.reordered,
        columns={k: v for k, v in renames.items() if k != v},
        dropped=tuple(dropped),
        symbol=filled,
        meta=all_meta,
    )
