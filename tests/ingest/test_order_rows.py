"""Ordering an imported table: the cheap in-order check agrees with a real sort, and order_rows still sorts,
collapses exact duplicates and refuses conflicting ones."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.artifact_store import InvalidInput
from artifact_lake.artifact_store.ingest.mapping import _in_order, order_rows

rows = st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 5)), min_size=2, max_size=12)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_in_order_is_true_exactly_when_sorting_changes_nothing(data):
    table = pa.table({"symbol": [s for s, _ in data], "ts": [t for _, t in data]})
    order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("ts", "ascending")])
    assert _in_order(table, ["symbol", "ts"]) == table.take(order).equals(table)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 6)), min_size=2, max_size=12, unique=True))
def test_order_rows_sorts_by_the_key(data):
    table = pa.table({"symbol": [s for s, _ in data], "ts": [t for _, t in data], "v": [float(t) for _, t in data]})
    got = order_rows(table, ["symbol", "ts"], "f.csv")
    keys = list(zip(got.table.column("symbol").to_pylist(), got.table.column("ts").to_pylist(), strict=True))
    assert keys == sorted(data) and got.duplicates == 0
    assert got.reordered == (sorted(data) != data)


def test_exact_duplicates_collapse_and_conflicting_ones_are_refused():
    table = pa.table({"symbol": ["A", "A", "A"], "ts": [1, 1, 2], "v": [1.0, 1.0, 3.0]})
    got = order_rows(table, ["symbol", "ts"], "f.csv")
    assert got.duplicates == 1 and got.table.num_rows == 2 and not got.reordered
    bad = pa.table({"symbol": ["A", "A"], "ts": [1, 1], "v": [1.0, 2.0]})
    with pytest.raises(InvalidInput, match=r"f.csv: rows 0 and 1 are both symbol A, ts 1 with different values"):
        order_rows(bad, ["symbol", "ts"], "f.csv")
