"""Columns onto a type without ceremony, and rows into the type's order without losing any silently.

Standard names match case-insensitively (``Open`` -> ``open``, ``Adj_Close`` stays what it is); ``Date``,
``Datetime``, ``Time``, ``Timestamp`` and ``open_time`` name the time column ``ts``; an unnamed first column (a
pandas index written to CSV) or a pandas Parquet index holding times is ``ts``. ``--map`` wins over all of that.

Rows: a type whose checks say ``increasing ts by symbol`` gets its rows sorted by (symbol, ts) when the file is
in another order (newest first, say), stably; rows with the same key that are equal in every column collapse to
the first; rows with the same key and different values are an error that names both rows (0-based data rows of
the file).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.schemas import Schema

TS_ALIASES = frozenset({"ts", "date", "datetime", "date_time", "time", "timestamp", "open_time", "opentime"})
_UNNAMED = re.compile(r"^(|column0+|unnamed:_?0|__index_level_0__|index)$")


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _time_like(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    return bool(pt.is_timestamp(t) or pt.is_date(t) or pt.is_string(t) or pt.is_large_string(t))


def pandas_index(table: pa.Table) -> list[str]:
    """The columns a pandas ``to_parquet`` stored its index in (none when it stored no index)."""
    meta = (table.schema.metadata or {}).get(b"pandas")
    if not meta:
        return []
    try:
        index = json.loads(meta).get("index_columns", [])
    except ValueError:
        return []
    return [c for c in index if isinstance(c, str) and c in table.column_names]


def standard_mapping(table: pa.Table, schema: Schema, explicit: dict[str, str], where: str) -> dict[str, str]:
    """Every rename to apply, source -> type column: ``explicit`` (``--map``) first, then the standard names."""
    missing = [src for src in explicit if src not in table.column_names]
    if missing:
        raise InvalidInput(
            f"{where}: --map names column {missing[0]!r}, which the file lacks (it has {', '.join(table.column_names)})"
        )
    targets = {c.name for c in schema.columns}
    index = pandas_index(table)
    mapping = dict(explicit)
    auto: dict[str, str] = {}  # type column -> the source mapped to it automatically
    for i, col in enumerate(table.column_names):
        if col in explicit:
            continue
        n = _norm(col)
        dst: str | None = None
        if col in targets:
            dst = col
        elif n in targets:
            dst = n
        elif "ts" in targets and n in TS_ALIASES:
            dst = "ts"
        elif "ts" in targets and (i == 0 and _UNNAMED.match(n) or col in index) and _time_like(table.schema[i].type):
            dst = "ts"
        if dst is None or dst in explicit.values():
            continue
        if dst in auto:
            raise InvalidInput(
                f"{where}: columns {auto[dst]!r} and {col!r} both read as {dst!r}: --map one of them to {dst!r}"
                f" and --drop the other"
            )
        auto[dst] = col
        if dst != col:
            mapping[col] = dst
    return mapping


@dataclass(frozen=True)
class Ordered:
    """A table in its type's order: how many exact duplicates collapsed, and whether rows moved."""

    table: pa.Table
    duplicates: int
    reordered: bool
    key: tuple[str, ...] = ()
    """The key the rows are now in strictly increasing order of (sorted stably, nulls last, no two neighbours
    with one key, nulls aside): ``find_violations(..., ordered_by=key)`` need not check it again. Empty when
    no order was established (no key, or a key column missing)."""


def order_key(schema: Schema) -> list[str]:
    """The columns of the type's ``increasing`` check: its ``by`` columns, then the increasing one."""
    for check in schema.checks:
        if check.kind == "increasing":
            return [*check.params.get("by", []), str(check.params["column"])]
    return []


def _in_order(table: pa.Table, key: list[str]) -> bool:
    """Whether ``table``'s rows already are in ``key`` order (equal keys allowed), without sorting."""
    return _ties_in_order(table, key) is not None


def _ties_in_order(table: pa.Table, key: list[str]) -> pa.ChunkedArray | None:
    """For rows already in ``key`` order (equal keys allowed): whether each row's key equals the one before
    (``n - 1`` flags); None when the rows are out of order. Each row's key is compared with the one before,
    column by column (a later column decides only where earlier ones tie), without sorting."""
    import pyarrow.compute as pc

    n = table.num_rows
    tied = None
    for k in key:
        col = table.column(k)
        if col.null_count:
            return None  # nulls sort last: let the sort place them
        nxt, prev = col.slice(1), col.slice(0, n - 1)
        eq = pc.equal(nxt, prev)
        if not pc.all(eq).as_py():  # a column of one value (a symbol filled in) cannot step down
            down = pc.less(nxt, prev)
            if tied is not None:
                down = pc.and_(tied, down)
            if pc.any(down).as_py():
                return None
        tied = eq if tied is None else pc.and_(tied, eq)
    return tied


def order_rows(table: pa.Table, key: list[str], where: str) -> Ordered:
    """Sort ``table`` stably by ``key`` when it is out of order, collapse exact duplicates, refuse conflicting ones."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not key or any(k not in table.column_names for k in key):
        return Ordered(table, 0, False)
    if table.num_rows < 2:
        return Ordered(table, 0, False, tuple(key))
    same = _ties_in_order(table, key)  # one pass over the key columns; files are mostly in order already
    reordered = same is None
    order = None
    if reordered:
        rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
        with_row = table.append_column("__row", rows)
        order = pc.sort_indices(with_row, sort_keys=[*[(k, "ascending") for k in key], ("__row", "ascending")])
        table = table.take(order)
        for k in key:
            col = table.column(k)
            eq = pc.fill_null(pc.equal(col.slice(1), col.slice(0, table.num_rows - 1)), False)
            same = eq if same is None else pc.and_(same, eq)
    assert same is not None
    if not pc.any(same).as_py():
        return Ordered(table, 0, reordered, tuple(key))

    def source_row(i: int) -> int:
        return i if order is None else int(order[i].as_py())

    keep = [True] * table.num_rows
    first = 0
    for i in pc.indices_nonzero(same).to_pylist():
        j = i + 1  # row j has the key of row j - 1
        if keep[i]:
            first = i  # else row i collapsed into the run that starts at ``first``
        a, b = table.slice(first, 1).to_pylist()[0], table.slice(j, 1).to_pylist()[0]
        if a != b:
            diff = next(c for c in table.column_names if a[c] != b[c])
            at = ", ".join(f"{k} {a[k]}" for k in key)
            raise InvalidInput(
                f"{where}: rows {source_row(first)} and {source_row(j)} are both {at} with"
                f" different values (column {diff!r}: {a[diff]!r} vs {b[diff]!r}); remove one of them"
            )
        keep[j] = False
    return Ordered(table.filter(pa.array(keep)), keep.count(False), reordered, tuple(key))
