"""The artifact id is a function of logical content only (DESIGN.md, Identity)."""

from __future__ import annotations

import io

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from artifact_lake.artifact_store import content_id
from artifact_lake.schemas import Registry, conform

TABLE = Registry().get("table")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
cells = {
    "i": st.one_of(st.none(), st.integers(-(2**62), 2**62)),
    "f": st.one_of(st.none(), floats),
    "s": st.one_of(st.none(), st.text(max_size=12)),
    "b": st.one_of(st.none(), st.booleans()),
    "l": st.one_of(st.none(), st.lists(st.integers(-5, 5), max_size=4)),
}
types = {"i": pa.int64(), "f": pa.float64(), "s": pa.string(), "b": pa.bool_(), "l": pa.list_(pa.int64())}


@st.composite
def tables(draw, min_rows=0):
    n = draw(st.integers(min_rows, 40))
    kinds = draw(st.lists(st.sampled_from(sorted(cells)), min_size=1, max_size=5))
    cols = {}
    for j, k in enumerate(kinds):
        cols[f"{k}{j}"] = pa.array(draw(st.lists(cells[k], min_size=n, max_size=n)), types[k])
    return pa.table(cols)


def cid(t: pa.Table) -> str:
    return content_id(conform(t, TABLE), "table", 1)


def via_parquet(t: pa.Table, **kw) -> pa.Table:
    buf = io.BytesIO()
    pq.write_table(t, buf, **kw)
    buf.seek(0)
    return pq.read_table(buf)


@SETTINGS
@given(tables(), st.sampled_from(["zstd", "snappy", "gzip", "none"]), st.integers(1, 50), st.booleans())
def test_parquet_encoding_does_not_change_the_id(t, compression, row_group, dictionary):
    again = via_parquet(t, compression=compression, row_group_size=row_group, use_dictionary=dictionary)
    assert cid(again) == cid(t)


@SETTINGS
@given(tables(min_rows=1), st.data())
def test_chunking_and_slicing_do_not_change_the_id(t, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, t.num_rows), max_size=4)))
    bounds = [0, *cuts, t.num_rows]
    pieces = [t.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    rechunked = pa.concat_tables(pieces)
    assert rechunked.column(0).num_chunks == len(pieces)
    assert cid(rechunked) == cid(t)
    # a slice of a bigger table (non-zero offsets in every buffer) has the id of the same rows built fresh
    start = data.draw(st.integers(0, t.num_rows - 1))
    sliced = t.slice(start)
    fresh = pa.Table.from_pylist(sliced.to_pylist(), schema=t.schema)
    assert cid(sliced) == cid(fresh)


@SETTINGS
@given(tables())
def test_string_encodings_are_one_identity(t):
    def recode(col: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
        if not pa.types.is_string(col.type):
            return col
        return col.cast(pa.large_string()) if kind == "large" else pc.dictionary_encode(col)

    for kind in ("large", "dict"):
        other = pa.table({n: recode(t.column(n), kind) for n in t.column_names})
        assert cid(other) == cid(t)


@SETTINGS
@given(tables(min_rows=1), st.data())
def test_any_changed_value_changes_the_id(t, data):
    name = data.draw(st.sampled_from(t.column_names))
    row = data.draw(st.integers(0, t.num_rows - 1))
    values = t.column(name).to_pylist()
    new = data.draw(cells[name[0]])
    old = values[row]
    same_float = isinstance(new, float) and isinstance(old, float) and (new == old or (np.isnan(new) and np.isnan(old)))
    assume(new != old and not same_float and not (new is None and old is None))
    if isinstance(new, float) and isinstance(old, float):
        assume(np.float64(new).tobytes() != np.float64(old).tobytes())
    values[row] = new
    changed = t.set_column(t.column_names.index(name), t.field(name), pa.array(values, t.field(name).type))
    assert cid(changed) != cid(t)


@SETTINGS
@given(tables(min_rows=2), st.data())
def test_row_order_column_names_and_types_change_the_id(t, data):
    i, j = data.draw(st.lists(st.integers(0, t.num_rows - 1), min_size=2, max_size=2, unique=True))
    assume(t.slice(i, 1).to_pylist() != t.slice(j, 1).to_pylist())
    order = list(range(t.num_rows))
    order[i], order[j] = order[j], order[i]
    assert cid(t.take(order)) != cid(t)
    renamed = t.rename_columns([f"x_{n}" for n in t.column_names])
    assert cid(renamed) != cid(t)


def test_type_and_schema_version_are_part_of_the_id():
    t = pa.table({"a": pa.array([1, 2, 3], pa.int64())})
    assert cid(t) != cid(pa.table({"a": pa.array([1, 2, 3], pa.int32())}))
    assert content_id(t, "table", 1) != content_id(t, "table", 2)
    assert content_id(t, "table", 1) != content_id(t, "other", 1)


def test_nan_payloads_are_one_value_but_negative_zero_is_not():
    quiet = np.array([np.nan], dtype=np.float64)
    odd = np.frombuffer(np.uint64(0x7FF8000000000001).tobytes(), dtype=np.float64)
    assert cid(pa.table({"f": quiet})) == cid(pa.table({"f": odd}))
    assert cid(pa.table({"f": [0.0]})) != cid(pa.table({"f": [-0.0]}))


def test_writers_pyarrow_polars_duckdb_agree(tmp_path, ohlcv):
    ohlcv_schema = Registry().get("ohlcv")
    ref = content_id(conform(ohlcv, ohlcv_schema), "ohlcv", 1)
    p_polars = tmp_path / "polars.parquet"
    pl.from_arrow(ohlcv).write_parquet(p_polars, row_group_size=77)
    p_duck = tmp_path / "duck.parquet"
    con = duckdb.connect()
    con.register("t", ohlcv)
    con.execute(f"COPY (SELECT * FROM t) TO '{p_duck}' (FORMAT parquet, ROW_GROUP_SIZE 100)")
    con.close()
    for p in (p_polars, p_duck):
        t = pq.read_table(p)
        assert content_id(conform(t, ohlcv_schema), "ohlcv", 1) == ref, p
    assert content_id(conform(pl.from_arrow(ohlcv).to_arrow(), ohlcv_schema), "ohlcv", 1) == ref
