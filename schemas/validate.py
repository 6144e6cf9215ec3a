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

A schema file is refused when a check cannot apply to its columns' declared types: ``range`` and
``finite`` need integer or float columns and ``range`` bounds are numbers; ``increasing`` and ``compare``
also take timestamps and dates (``compare`` two columns of one type); ``non_empty`` needs strings; ``in_set`` values are of one kind
(strings, integers, floats or booleans) that fits the column, and ``unique`` or ``by`` columns hold plain
values (no lists, structs or maps).
"""

from __future__ import annotations

import difflib
import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._types import canonical_type, parse_type, storage_problem
from .errors import SchemaError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import pyarrow as pa

    from .registry import Schema

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def _kind(value: object) -> str:
    """The TOML kind of a value in a schema file, for messages and for matching a column type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _fits(kind: str, t: pa.DataType) -> bool:
    import pyarrow.types as pt

    if kind == "string":
        return bool(pt.is_string(t))
    if kind == "boolean":
        return bool(pt.is_boolean(t))
    if kind == "integer":
        return bool(pt.is_integer(t) or pt.is_floating(t) or pt.is_decimal(t))
    if kind == "float":
        return bool(pt.is_floating(t) or pt.is_decimal(t))
    return False


def check_definition(schema: Schema) -> None:
    """Refuse checks that name undeclared columns, carry malformed keys, or cannot apply to their columns'
    types (a string bound, a range over strings, ``in_set`` values of mixed kinds)."""
    import pyarrow as pa
    import pyarrow.types as pt

    types = {c.name: parse_type(c.type) for c in schema.columns}
    spelled = {c.name: c.type for c in schema.columns}  # as the schema file writes it, for messages

    def need(col: object, where: str, *, what: str = "", ok: Any = None) -> pa.DataType:
        if not isinstance(col, str) or col not in types:
            raise SchemaError(f"{where} names {col!r}, which is not a declared column")
        t = types[col]
        if ok is not None and not ok(t):
            raise SchemaError(f"{where}: column {col!r} is {spelled[col]}, but the check needs {what}")
        return t

    def names(p: Mapping[str, Any], key: str, where: str) -> list[Any]:
        cols = p.get(key)
        if not isinstance(cols, list) or not cols:
            raise SchemaError(f"{where}: {key!r} must be a non-empty list of column names")
        return cols

    def numeric(t: pa.DataType) -> bool:
        return bool(pt.is_integer(t) or pt.is_floating(t))

    def ordered(t: pa.DataType) -> bool:
        return numeric(t) or bool(pt.is_timestamp(t) or pt.is_date(t))

    def flat(t: pa.DataType) -> bool:
        return not (pt.is_nested(t) or pt.is_null(t))

    for chk in schema.checks:
        p = chk.params
        where = f"check {chk.kind}"
        if chk.kind == "increasing":
            need(p.get("column"), where, what="numbers or times", ok=ordered)
            by = p.get("by", [])
            if not isinstance(by, list):
                raise SchemaError(f"{where}: 'by' must be a list of column names")
            for b in by:
                need(b, where, what="plain values (no lists, structs or maps)", ok=flat)
        elif chk.kind == "compare":
            left = need(p.get("left"), where, what="numbers or times", ok=ordered)
            right = need(p.get("right"), where, what="numbers or times", ok=ordered)
            if not (numeric(left) and numeric(right)) and left != right:
                raise SchemaError(
                    f"{where}: cannot compare {p['left']!r} ({spelled[p['left']]}) with {p['right']!r}"
                    f" ({spelled[p['right']]})"
                )
            if p.get("op") not in _OPS:
                raise SchemaError(f"{where}: op must be one of {', '.join(_OPS)}")
        elif chk.kind == "in_set":
            t = need(p.get("column"), where, what="strings, numbers or booleans", ok=flat)
            values = p.get("values")
            if not isinstance(values, list) or not values:
                raise SchemaError(f"{where}: 'values' must be a non-empty list")
            kinds = {_kind(v) for v in values}
            if kinds == {"integer", "float"}:
                kinds = {"float"}
            if len(kinds) > 1:
                raise SchemaError(f"{where}: 'values' mixes {' and '.join(sorted(kinds))}; give one kind of value")
            kind = kinds.pop()
            if not _fits(kind, t):
                raise SchemaError(
                    f"{where}: column {p['column']!r} is {spelled[p['column']]}, but 'values' are {kind}s"
                )
            try:
                pa.array(values, type=t)
            except (pa.ArrowException, ValueError, OverflowError) as exc:
                raise SchemaError(
                    f"{where}: 'values' do not fit column {p['column']!r} ({spelled[p['column']]}): {_first_line(exc)}"
                ) from exc
        elif chk.kind == "range":
            for c in names(p, "columns", where):
                need(c, where, what="numbers", ok=numeric)
            bounds = [k for k in ("gt", "ge", "lt", "le") if k in p]
            if not bounds:
                raise SchemaError(f"{where}: give at least one bound (gt, ge, lt or le)")
            for k in bounds:
                if _kind(p[k]) not in ("integer", "float") or (isinstance(p[k], float) and math.isnan(p[k])):
                    raise SchemaError(f"{where}: bound {k!r} must be a number, not {p[k]!r} ({_kind(p[k])})")
        elif chk.kind == "finite":
            for c in names(p, "columns", where):
                need(c, where, what="numbers", ok=numeric)
        elif chk.kind == "non_empty":
            for c in names(p, "columns", where):
                need(c, where, what="strings", ok=pt.is_string)
        else:
            for c in names(p, "columns", where):
                need(c, where, what="plain values (no lists, structs or maps)", ok=flat)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _convert(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """``arr`` as the nested type ``target``, rebuilt level by level with safe casts of the leaves.

    pyarrow's own cast of nested arrays builds invalid arrays when a null-typed field sits under a list
    (pyarrow 26: ``list<struct<f: null>>``, even cast to its own type), so lists, maps and structs are taken
    apart and put back together here; offsets are recomputed from the lengths, so slices need no care.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = arr.type
    if pt.is_dictionary(t):
        return _convert(arr.dictionary_decode(), target)
    if not pt.is_nested(target):
        return arr.cast(target)
    mask = arr.is_null() if arr.null_count else None
    if pt.is_struct(target):
        children = [_convert(arr.field(i), f.type) for i, f in enumerate(target)]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pt.is_map(t):  # a map is a list of key/value structs
        entries = pa.struct([pa.field("key", t.key_type, nullable=False), pa.field("value", t.item_type)])
        arr = arr.view(pa.list_(entries))
    if pt.is_fixed_size_list(target):
        size = target.list_size
        values = arr.values.slice(arr.offset * size, len(arr) * size)
        return pa.FixedSizeListArray.from_arrays(_convert(values, target.value_type), type=target, mask=mask)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    ends = np.cumsum(lengths, dtype=np.int64)
    if len(ends) and ends[-1] > np.iinfo(np.int32).max:
        raise pa.ArrowInvalid(f"more than 2^31 list items do not fit in {target}")
    offsets = pa.array(np.concatenate([[0], ends]).astype(np.int32))
    values = arr.flatten()  # the items of the non-null lists, in order
    if pt.is_map(target):
        keys = _convert(values.field(0), target.key_type)
        items = _convert(values.field(1), target.item_type)
        return pa.MapArray.from_arrays(offsets, keys, items, mask=mask, type=target)
    return pa.ListArray.from_arrays(offsets, _convert(values, target.value_type), mask=mask, type=target)


def _canonical(arr: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    """``arr`` in its canonical type (see ``schemas._types``), or :class:`ValidationError` naming the column
    and its type when no artifact can hold it or a value would not survive the conversion."""
    import pyarrow as pa
    import pyarrow.types as pt

    problem = storage_problem(arr.type)
    if problem is not None:
        raise ValidationError(f"{source}: column {name!r} is {arr.type}: {problem}", column=name)
    canonical = canonical_type(arr.type)
    if canonical == arr.type:
        return arr
    try:
        if not pt.is_nested(canonical):
            return arr.cast(canonical)
        return pa.chunked_array([_convert(chunk, canonical) for chunk in arr.chunks], type=canonical)
    except pa.ArrowException as exc:
        raise ValidationError(
            f"{source}: column {name!r} is {arr.type}, which the lake stores as {canonical}, and a value does not"
            f" convert exactly ({_first_line(exc)})",
            column=name,
        ) from exc


def _cast_column(arr: pa.ChunkedArray, target: pa.DataType, name: str, source: str) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    arr = _canonical(arr, name, source)
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
        arr = _canonical(table.column(n), n, source)
        arrays.append(arr)
        fields.append(pa.field(n, arr.type))
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

    def describe(self, table: pa.Table, row: int, offset: int = 0) -> str:
        """The bad ``row`` of ``table`` in words; ``offset`` is the table's first row in its file (a batch of a
        file read in parts names the row of the file)."""
        value = _show(table.column(self.column)[row].as_py())
        text = f"column {self.column!r}, row {row + offset}: value {value} breaks {self.reason}"
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
        # nulls get a code of their own (a masked index would turn into NaN in numpy); one chunk, one
        # dictionary (pyarrow cannot unify the dictionaries of chunks that encoded a null)
        enc = pc.dictionary_encode(table.column(c).combine_chunks(), null_encoding="encode")
        idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes = codes * (len(enc.dictionary) + 1) + idx
    return codes


def _runs_of_groups(table: pa.Table, columns: list[str]) -> np.ndarray | None:
    """Whether each row agrees with the row before on ``columns`` (``n - 1`` flags), when every group of
    equal ``columns`` is one run of consecutive rows (as in a file sorted by them); None when a group comes
    back after another, or when equality is not plain (nulls; floats, where NaN == NaN for :func:`_codes`).

    One comparison of neighbours per column instead of hashing every value (``_codes``): where the groups
    are runs, rows are in the same group exactly where they agree with the row before.
    """
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.types as pt

    n = table.num_rows
    same = None
    for c in columns:
        arr = table.column(c)
        if arr.null_count or pt.is_floating(arr.type) or pt.is_dictionary(arr.type):
            return None
        eq = pc.equal(arr.slice(1), arr.slice(0, n - 1))
        same = eq if same is None else pc.and_(same, eq)
    if same is None:
        return np.ones(n - 1, dtype=bool)  # no columns: one group
    flags: np.ndarray = same.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(~flags) + 1  # first rows of the runs after the first
    if starts.size == 0:
        return flags
    if 2 * starts.size > n:
        return None  # mostly runs of one row: sorting the codes is no slower than checking the runs
    firsts = table.select(columns).take(np.concatenate([[0], starts]))
    if len(np.unique(_codes(firsts, columns))) != firsts.num_rows:
        return None  # a group has more than one run
    return flags


def find_violations(table: pa.Table, schema: Schema, *, ordered_by: Sequence[str] = ()) -> list[Violation]:
    """Every check's bad rows, in schema order. ``table`` must already be conformed.

    ``ordered_by`` is what the caller has made sure of, when it has: the rows are in the order of a stable
    sort by these columns (nulls last) and no two neighbours agree on all of them (nulls aside), as a file
    import's ``order_rows`` leaves them. An ``increasing`` check of exactly these columns (its ``by``
    columns, then its column) can then find nothing, and is skipped; every other check runs.
    """
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

    def add_unless(
        check: str, column: str, good: np.ndarray, reason: str, *cols: str, other: str | None = None
    ) -> None:
        """The rows where ``good`` is false are bad, nulls in ``cols`` aside (most tables: none, told in one pass)."""
        if not good.all():
            add(check, column, keep(~good, *cols), reason, other)

    for chk in schema.checks:
        p = chk.params
        if chk.kind == "finite":
            for c in p["columns"]:
                with np.errstate(invalid="ignore"):
                    add_unless("finite", c, np.isfinite(values(c).astype(np.float64, copy=False)), "finite", c)
        elif chk.kind == "range":
            for c in p["columns"]:
                vals = values(c)
                good = None
                words = []
                with np.errstate(invalid="ignore"):
                    for key, op, word in (
                        ("gt", ">", "> "),
                        ("ge", ">=", ">= "),
                        ("lt", "<", "< "),
                        ("le", "<=", "<= "),
                    ):
                        if key in p:
                            holds = _OPS[op](vals, p[key])
                            good = holds if good is None else good & holds
                            words.append(f"{c} {word}{p[key]}")
                if good is not None:
                    add_unless("range", c, good, " and ".join(words), c)
        elif chk.kind == "compare":
            left, right, op = p["left"], p["right"], p["op"]
            with np.errstate(invalid="ignore"):
                good = _OPS[op](values(left), values(right))
            add_unless("compare", left, good, f"{left} {op} {right}", left, right, other=right)
        elif chk.kind == "in_set":
            c = p["column"]
            value_set = pa.array(p["values"], type=table.column(c).type)
            inside = pc.is_in(table.column(c), value_set=value_set).to_numpy(zero_copy_only=False)
            shown = ", ".join(map(str, p["values"]))
            add("in_set", c, keep(~inside.astype(bool), c), f"one of {{{shown}}}")
        elif chk.kind == "non_empty":
            for c in p["columns"]:
                # empty, or white space only (utf8_is_space is false for ""): the strings trim to nothing
                col = table.column(c)
                blank = pc.or_(pc.equal(pc.binary_length(col), 0), pc.utf8_is_space(col))
                empty = blank.fill_null(False).to_numpy()
                add("non_empty", c, keep(empty, c), "not empty")
        elif chk.kind == "increasing":
            c = p["column"]
            by = list(p.get("by", []))
            if ordered_by and [*by, c] == list(ordered_by):
                continue  # strictly increasing within each group: the caller sorted and deduplicated the rows
            vals = values(c)
            n = len(vals)
            if n < 2:
                continue
            runs = _runs_of_groups(table, by)  # most tables: each group already is one run of rows
            if runs is not None:
                order = None
                sv, same = vals, runs
            else:
                codes = _codes(table, by)
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


def first_error(
    table: pa.Table, violations: list[Violation], schema: Schema, source: str, *, offset: int = 0, partial: bool = False
) -> ValidationError:
    """The error for the bad row with the lowest index, counting the others.

    ``table`` may be one batch of a file read in parts: ``offset`` is its first row in the file (messages
    and ``row`` name rows of the file), and ``partial`` says the rest of the file was not checked, so the
    count of other bad rows is a lower bound.
    """
    first = min(violations, key=lambda v: int(v.rows[0]))
    row = int(first.rows[0])
    total = sum(len(v.rows) for v in violations)
    more = f" ({'at least ' if partial else ''}{total - 1} more bad row(s))" if total > 1 else ""
    return ValidationError(
        f"{source}: type {schema.name!r}: {first.describe(table, row, offset)}{more}",
        column=first.column,
        row=row + offset,
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
