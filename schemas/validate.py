"""Conform tables to a schema (lossless casts, canonical encodings) and run its row checks.

Check kinds and their keys (schema files name them under ``[[checks]]``):

=============  ===========================  ====================================================
kind           keys                          a row is bad when
=============  ===========================  ====================================================
increasing     column, by (list, optional)   column does not strictly increase within its group
unique         columns                       an earlier row has the same values in ``columns``
compare        left, op, right               ``left op right`` is false (op: < <= > >=)
finite         columns                       a value is NaN or infinite
range          columns, gt/ge/lt/le          a value is outside the bounds
in_set         column, values                a value is not one of ``values``
non_empty      columns                       a string is empty or only white space
=============  ===========================  ====================================================

Nulls are only ever bad in columns not declared ``nullable``; value checks skip them.
Row numbers in messages are 0-based indices into the table as given.
"""

from __future__ import annotations

import difflib
import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._types import canonical_type, parse_type
from .errors import SchemaError, ValidationError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .registry import Schema

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def check_definition(schema: Schema) -> None:
    """Refuse checks that name undeclared columns or carry malformed keys."""
    declared = {c.name for c in schema.columns}

    def need(col: object, where: str) -> None:
        if not isinstance(col, str) or col not in declared:
            raise SchemaError(f"{where} names {col!r}, which is not a declared column")

    for chk in schema.checks:
        p = chk.params
        where = f"check {chk.kind}"
        if chk.kind == "increasing":
            need(p.get("column"), where)
            for b in p.get("by", []):
                need(b, where)
        elif chk.kind == "compare":
            need(p.get("left"), where)
            need(p.get("right"), where)
            if p.get("op") not in _OPS:
                raise SchemaError(f"{where}: op must be one of {', '.join(_OPS)}")
        elif chk.kind == "in_set":
            need(p.get("column"), where)
            if not isinstance(p.get("values"), list) or not p["values"]:
                raise SchemaError(f"{where}: 'values' must be a non-empty list")
        else:
            cols = p.get("columns")
            if not isinstance(cols, list) or not cols:
                raise SchemaError(f"{where}: 'columns' must be a non-empty list")
            for c in cols:
                need(c, where)


def _cast_column(arr: pa.ChunkedArray, target: pa.DataType, name: str, source: str) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    canonical = canonical_type(arr.type)
    if canonical != arr.type:
        arr = arr.cast(canonical)
    if arr.type == target:
        return arr
    src = arr.type

    def refuse(why: str) -> ValidationError:
        return ValidationError(
            f"{source}: column {name!r} is {src} but the schema declares {target}: {why}", column=name
        )

    if pt.is_null(src):
        return arr.cast(target)  # an all-null column fits any type; the null check decides
    if pt.is_timestamp(target):
        if not pt.is_timestamp(src):
            raise refuse("only timestamps convert to timestamps")
        if src.tz is None:
            raise refuse("the timestamps have no time zone; give them one (e.g. UTC) so the instant is certain")
    elif pt.is_string(target) or pt.is_binary(target) or pt.is_boolean(target):
        raise refuse("no lossless conversion")
    elif pt.is_string(src) or pt.is_binary(src) or pt.is_boolean(src) or pt.is_timestamp(src):
        raise refuse("no lossless conversion")
    try:
        # safe=True refuses overflow, truncation and ints too large for a float's 53-bit mantissa.
        return pc.cast(arr, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise refuse(f"the conversion would lose information ({exc})") from exc


def conform(table: pa.Table, schema: Schema, source: str = "input") -> pa.Table:
    """Return ``table`` with the schema's column order and types, or raise :class:`ValidationError`.

    Declared columns are cast when the cast is lossless (``float32`` -> ``float64``, ``timestamp[ms]``
    -> ``timestamp[us]``, any time zone -> UTC); encodings are made canonical everywhere.
    """
    import pyarrow as pa

    names = table.column_names
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValidationError(f"{source}: column {n!r} appears twice", column=n)
        seen.add(n)
    declared = [c.name for c in schema.columns]
    for c in schema.columns:
        if c.name not in seen:
            hint = difflib.get_close_matches(c.name, names, n=1)
            extra = f" (found {hint[0]!r}; rename it)" if hint else ""
            raise ValidationError(
                f"{source}: missing column {c.name!r} required by type {schema.name!r}{extra}", column=c.name
            )
    extras = [n for n in names if n not in declared]
    if extras and not schema.extra_columns:
        raise ValidationError(
            f"{source}: unexpected column {extras[0]!r}; type {schema.name!r} has columns {', '.join(declared)}",
            column=extras[0],
        )
    arrays = []
    fields = []
    for c in schema.columns:
        arr = _cast_column(table.column(c.name), parse_type(c.type), c.name, source)
        arrays.append(arr)
        fields.append(pa.field(c.name, arr.type, nullable=c.nullable))
    for n in extras:
        arr = table.column(n)
        canonical = canonical_type(arr.type)
        arrays.append(arr if canonical == arr.type else arr.cast(canonical))
        fields.append(pa.field(n, canonical))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


@dataclass(frozen=True)
class Violation:
    """Rows of one table that break one check."""

    check: str
    """The check kind (``not_null`` for nulls in a non-nullable column)."""
    column: str
    """The column at fault."""
    rows: np.ndarray
    """Sorted 0-based indices of the bad rows."""
    reason: str
    """What is wrong, without the row: e.g. ``low <= open``."""
    other: str | None = None
    """Second column shown in messages (``compare`` checks)."""

    def describe(self, table: pa.Table, row: int) -> str:
        value = _show(table.column(self.column)[row].as_py())
        text = f"column {self.column!r}, row {row}: value {value} breaks {self.reason}"
        if self.other is not None:
            text += f" ({self.other} is {_show(table.column(self.other)[row].as_py())})"
        return text


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes) and len(value) > 32:
        return repr(value[:32]) + "..."
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _np(arr: pa.ChunkedArray) -> np.ndarray:
    import pyarrow.types as pt

    if pt.is_timestamp(arr.type) or pt.is_date(arr.type):
        import pyarrow as pa

        arr = arr.cast(pa.int64())
    out: np.ndarray = arr.to_numpy()
    return out


def _codes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Integer group codes, equal exactly when the rows agree on ``columns``."""
    import numpy as np
    import pyarrow.compute as pc

    codes = np.zeros(table.num_rows, dtype=np.int64)
    for c in columns:
        enc = pc.dictionary_encode(table.column(c)).combine_chunks()
        idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes = codes * (len(enc.dictionary) + 1) + idx
    return codes


def find_violations(table: pa.Table, schema: Schema) -> list[Violation]:
    """Every check's bad rows, in schema order. ``table`` must already be conformed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out: list[Violation] = []
    arrays: dict[str, np.ndarray] = {}

    def values(name: str) -> np.ndarray:
        """Each column converted to numpy once, however many checks read it."""
        if name not in arrays:
            arrays[name] = _np(table.column(name))
        return arrays[name]

    def add(check: str, column: str, bad: np.ndarray, reason: str, other: str | None = None) -> None:
        rows = np.flatnonzero(bad)
        if rows.size:
            out.append(Violation(check, column, rows, reason, other))

    valid: dict[str, np.ndarray] = {}
    for c in schema.columns:
        arr = table.column(c.name)
        if arr.null_count:
            isnull = arr.is_null().to_numpy()
            valid[c.name] = ~isnull
            if not c.nullable:
                add("not_null", c.name, isnull, "not null")

    def ok(*cols: str) -> np.ndarray | None:
        masks = [valid[c] for c in cols if c in valid]
        if not masks:
            return None
        both: np.ndarray = np.logical_and.reduce(masks)
        return both

    def keep(bad: np.ndarray, *cols: str) -> np.ndarray:
        v = ok(*cols)
        return bad if v is None else bad & v

    for chk in schema.checks:
        p = chk.params
        if chk.kind == "finite":
            for c in p["columns"]:
                with np.errstate(invalid="ignore"):
                    add("finite", c, keep(~np.isfinite(values(c).astype(np.float64, copy=False)), c), "finite")
        elif chk.kind == "range":
            for c in p["columns"]:
                vals = values(c)
                bad = np.zeros(len(vals), dtype=bool)
                words = []
                with np.errstate(invalid="ignore"):
                    for key, op, word in (
                        ("gt", ">", "> "),
                        ("ge", ">=", ">= "),
                        ("lt", "<", "< "),
                        ("le", "<=", "<= "),
                    ):
                        if key in p:
                            bad |= ~_OPS[op](vals, p[key])
                            words.append(f"{c} {word}{p[key]}")
                add("range", c, keep(bad, c), " and ".join(words))
        elif chk.kind == "compare":
            left, right, op = p["left"], p["right"], p["op"]
            with np.errstate(invalid="ignore"):
                bad = ~_OPS[op](values(left), values(right))
            add("compare", left, keep(bad, left, right), f"{left} {op} {right}", other=right)
        elif chk.kind == "in_set":
            c = p["column"]
            inside = pc.is_in(table.column(c), value_set=pa.array(p["values"])).to_numpy(zero_copy_only=False)
            shown = ", ".join(map(str, p["values"]))
            add("in_set", c, keep(~inside.astype(bool), c), f"one of {{{shown}}}")
        elif chk.kind == "non_empty":
            for c in p["columns"]:
                length = pc.utf8_length(pc.utf8_trim_whitespace(table.column(c)))
                empty = pc.equal(length, 0).fill_null(False).to_numpy()
                add("non_empty", c, keep(empty, c), "not empty")
        elif chk.kind == "increasing":
            c = p["column"]
            by = list(p.get("by", []))
            vals = values(c)
            n = len(vals)
            if n < 2:
                continue
            codes = _codes(table, by) if by else np.zeros(n, dtype=np.int64)
            if np.all(codes[1:] >= codes[:-1]):
                order = None
                sv, sc = vals, codes
            else:
                order = np.lexsort((np.arange(n), codes))  # stable: original order within each group
                sv, sc = vals[order], codes[order]
            same = sc[1:] == sc[:-1]
            diff_bad = same & (sv[1:] <= sv[:-1])
            dup = np.zeros(n, dtype=bool)
            back = np.zeros(n, dtype=bool)
            dup[1:] = diff_bad & (sv[1:] == sv[:-1])
            back[1:] = diff_bad & (sv[1:] < sv[:-1])
            if order is not None:
                dup_o = np.zeros(n, dtype=bool)
                back_o = np.zeros(n, dtype=bool)
                dup_o[order] = dup
                back_o[order] = back
                dup, back = dup_o, back_o
            group = f" within each {', '.join(by)}" if by else ""
            key = ", ".join(by + [c])
            add("increasing", c, keep(dup, c, *by), f"no duplicate ({key})")
            add("increasing", c, keep(back, c, *by), f"{c} strictly increasing{group}")
        elif chk.kind == "unique":
            cols = list(p["columns"])
            n = table.num_rows
            if n < 2:
                continue
            codes = _codes(table, cols)
            order = np.argsort(codes, kind="stable")
            sc = codes[order]
            dup_sorted = np.zeros(n, dtype=bool)
            dup_sorted[1:] = sc[1:] == sc[:-1]
            dup = np.zeros(n, dtype=bool)
            dup[order] = dup_sorted
            add("unique", cols[-1], keep(dup, *cols), f"no duplicate ({', '.join(cols)})")
    return out


def first_error(table: pa.Table, violations: list[Violation], schema: Schema, source: str) -> ValidationError:
    """The error for the bad row with the lowest index, counting the others."""
    first = min(violations, key=lambda v: int(v.rows[0]))
    row = int(first.rows[0])
    total = sum(len(v.rows) for v in violations)
    more = f" ({total - 1} more bad row(s))" if total > 1 else ""
    return ValidationError(
        f"{source}: type {schema.name!r}: {first.describe(table, row)}{more}", column=first.column, row=row
    )


def validate(table: pa.Table, schema: Schema, source: str = "input") -> pa.Table:
    """Conform ``table`` and run every check; raise on the first bad row (lowest index)."""
    table = conform(table, schema, source)
    violations = find_violations(table, schema)
    if violations:
        raise first_error(table, violations, schema, source)
    return table


def bad_rows(table: pa.Table, schema: Schema) -> tuple[np.ndarray, list[str]]:
    """For quarantine: indices of bad rows of a conformed table and one reason for each."""
    import numpy as np

    reasons: dict[int, str] = {}
    for v in find_violations(table, schema):
        for r in v.rows.tolist():
            reasons.setdefault(int(r), v.describe(table, int(r)))
    rows = np.array(sorted(reasons), dtype=np.int64)
    return rows, [reasons[int(r)] for r in rows]
