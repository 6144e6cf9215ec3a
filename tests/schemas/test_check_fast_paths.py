"""The checks' fast paths (issue #16, import speed) find exactly what the plain rules say: ``increasing`` over
groups that are runs of rows (no sort), ``non_empty`` without trimming, the value checks that skip clean
columns, and ``ordered_by``, which skips only the ``increasing`` check the caller vouches for."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.schemas import Check, Column, Schema, find_violations


def schema(columns: list[tuple[str, str]], *checks: Check) -> Schema:
    cols = tuple(Column(name, type_, nullable=True) for name, type_ in columns)
    return Schema("t", 1, cols, tuple(checks), False, "", "", "")


def found(table: pa.Table, sch: Schema, **kw: object) -> list[tuple[str, str, list[int], str]]:
    return [(v.check, v.column, v.rows.tolist(), v.reason) for v in find_violations(table, sch, **kw)]


def chunked(table: pa.Table, size: int) -> pa.Table:
    return pa.Table.from_batches(table.to_batches(max_chunksize=size), schema=table.schema) if table.num_rows else table


def increasing_reference(keys: list[tuple[object, ...]], values: list[int | None]) -> tuple[list[int], list[int]]:
    """Duplicate and backward rows by the rule itself: each row against the row before it in its group (nulls
    form a group of their own; a null value compares as false), rows with a null in the key left out."""
    last: dict[tuple[object, ...], int | None] = {}
    dup, back = [], []
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        if k in last:
            prev = last[k]
            if v is not None and prev is not None and None not in k:
                if v == prev:
                    dup.append(i)
                elif v < prev:
                    back.append(i)
        last[k] = v
    return dup, back


by_value = {
    "string": st.one_of(st.none(), st.sampled_from(["A", "B", "C", ""])),
    "int64": st.one_of(st.none(), st.integers(-2, 2)),
    "float64": st.one_of(st.none(), st.sampled_from([0.5, 1.5, 2.5])),
}


@st.composite
def grouped_rows(draw: st.DrawFn) -> tuple[pa.Table, list[str]]:
    """Rows in runs of one group each (the usual file), some groups coming back after others, or shuffled."""
    types = draw(st.lists(st.sampled_from(sorted(by_value)), max_size=2))
    keys = draw(st.lists(st.tuples(*(by_value[t] for t in types)), min_size=1, max_size=4))
    runs = draw(st.lists(st.tuples(st.sampled_from(keys), st.integers(1, 6)), max_size=6))
    rows = [key for key, length in runs for _ in range(length)]
    if draw(st.booleans()):
        rows = draw(st.permutations(rows))
    n = len(rows)
    values = draw(st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=n, max_size=n))
    cols = {f"b{i}": pa.array([r[i] for r in rows], t) for i, t in enumerate(types)}
    table = pa.table({**cols, "v": pa.array(values, pa.int64())})
    return chunked(table, draw(st.integers(1, 8))), types


@settings(max_examples=400, deadline=None)
@given(grouped_rows())
def test_increasing_finds_what_the_rule_says(case):
    table, types = case
    by = [f"b{i}" for i in range(len(types))]
    sch = schema(
        [*((b, t) for b, t in zip(by, types, strict=True)), ("v", "int64")],
        Check("increasing", {"column": "v", "by": by}),
    )
    keys = list(zip(*(table.column(b).to_pylist() for b in by), strict=True)) if by else [()] * table.num_rows
    dup, back = increasing_reference(keys, table.column("v").to_pylist())
    got = {reason.split(" ")[0]: rows for _, _, rows, reason in found(table, sch)}
    assert got.get("no", []) == dup  # "no duplicate (...)"
    assert got.get("v", []) == back  # "v strictly increasing..."


def test_groups_chunked_with_nulls_in_each_chunk_are_checked():
    # one dictionary per chunk used to make pyarrow refuse to combine them ("cannot unify dictionaries with nulls")
    table = chunked(pa.table({"s": ["A", None, "A", None], "v": [2, 1, 1, 0]}), 2)
    sch = schema([("s", "string"), ("v", "int64")], Check("increasing", {"column": "v", "by": ["s"]}))
    assert found(table, sch) == [("increasing", "v", [2], "v strictly increasing within each s")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=" \t\n\x0b\x1c\x85\xa0\u2003\u3000\u200bab", max_size=4))))
def test_non_empty_flags_strings_that_trim_to_nothing(values):
    table = pa.table({"s": pa.array(values, pa.string())})
    sch = schema([("s", "string")], Check("non_empty", {"columns": ["s"]}))
    blank = [i for i, v in enumerate(values) if v is not None and v.strip() == ""]
    assert found(table, sch) == ([("non_empty", "s", blank, "not empty")] if blank else [])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(*[st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 1.0, 2.0, np.inf, np.nan]))] * 2),
        max_size=12,
    )
)
def test_value_checks_flag_exactly_the_bad_rows(rows):
    a = [r[0] for r in rows]
    b = [r[1] for r in rows]
    table = pa.table({"a": pa.array(a, pa.float64()), "b": pa.array(b, pa.float64())})
    sch = schema(
        [("a", "float64"), ("b", "float64")],
        Check("finite", {"columns": ["a"]}),
        Check("range", {"columns": ["a"], "gt": 0, "le": 1.5}),
        Check("compare", {"left": "a", "op": "<=", "right": "b"}),
    )

    def bad(test) -> list[int]:
        return [i for i, (x, y) in enumerate(rows) if x is not None and y is not None and not test(x, y)]

    def bad_a(test) -> list[int]:
        return [i for i, x in enumerate(a) if x is not None and not test(x)]

    expected = [
        ("finite", "a", bad_a(np.isfinite), "finite"),
        ("range", "a", bad_a(lambda x: x > 0 and x <= 1.5), "a > 0 and a <= 1.5"),
        ("compare", "a", bad(lambda x, y: x <= y), "a <= b"),
    ]
    assert found(table, sch) == [e for e in expected if e[2]]


def test_ordered_by_skips_only_the_increasing_check_it_names():
    table = pa.table({"s": ["A", "A", "B"], "v": [2, 1, 0], "w": [1, 1, -1]})
    sch = schema(
        [("s", "string"), ("v", "int64"), ("w", "int64")],
        Check("increasing", {"column": "v", "by": ["s"]}),
        Check("range", {"columns": ["w"], "ge": 0}),
    )
    everything = found(table, sch)
    assert [c for c, *_ in everything] == ["increasing", "range"]
    assert found(table, sch, ordered_by=("s", "v")) == everything[1:]
    assert found(table, sch, ordered_by=("v",)) == everything  # another key vouches for nothing
    assert found(table, sch, ordered_by=("v", "s")) == everything
