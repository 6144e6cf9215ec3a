"""A file import publishes its raw and typed artifacts together (issue #16, import speed): the two objects are
written at once, the typed rows checked once, shared columns hashed once. Nothing of that may show: the ids,
bytes, names and lineage are those of the two plain publishes it replaces, a refused import changes nothing,
and the order ``order_rows`` vouches for is one the ``increasing`` check would pass."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.artifact_store import InvalidInput, Lake
from artifact_lake.artifact_store.hashing import DigestMemo, content_id
from artifact_lake.artifact_store.ingest import import_file
from artifact_lake.artifact_store.ingest.files import read_table
from artifact_lake.artifact_store.ingest.mapping import order_rows
from artifact_lake.schemas import Check, Column, Schema, ValidationError, find_violations
from tests.conftest import lake_state

T0 = 1_704_067_200  # 2024-01-01 UTC


def candles_csv(path, minutes: list[int], symbols: list[str] | None = None) -> None:
    lines = ["ts,symbol,open,high,low,close,volume" if symbols else "ts,open,high,low,close,volume"]
    for i, m in enumerate(minutes):
        ts = np.datetime_as_string(np.datetime64(T0 + 60 * m, "s")) + "Z"
        price = 100 + m % 7
        cells = [ts, *([symbols[i]] if symbols else []), price, price + 1, price - 1, price + 0.5, 10 + m % 3]
        lines.append(",".join(map(str, cells)))
    path.write_text("\n".join(lines) + "\n")


def plain_publishes(lake: Lake, path, symbol: str | None) -> tuple[str, str]:
    """What an import stored before it wrote both objects at once: two Lake.publish calls."""
    raw = read_table(path)
    typed = raw
    if symbol is not None:
        typed = typed.append_column("symbol", pa.array([symbol] * typed.num_rows, pa.string()))
    typed = typed.set_column(0, "ts", typed.column("ts").cast(pa.timestamp("us", tz="UTC")))
    typed = typed.take(pc.sort_indices(typed, [("symbol", "ascending"), ("ts", "ascending")]))
    keep = np.ones(typed.num_rows, dtype=bool)  # exact duplicates collapse to the first
    rows = typed.to_pylist()
    keep[1:] = [rows[i] != rows[i - 1] for i in range(1, len(rows))]
    typed = typed.filter(pa.array(keep))
    raw_rec = lake.publish(raw, "table", name=f"raw/{path.name}", meta={"source_file": path.name})
    rec = lake.publish(typed, "ohlcv", inputs=[raw_rec.id], meta={"source_file": path.name})
    return raw_rec.id, rec.id


def stored(lake: Lake, artifact_id: str) -> tuple[object, ...]:
    a = lake.get(artifact_id)
    return a.file_hash, a.rows, a.columns, a.meta, a.names, [p.id for p in lake.parents(artifact_id)]


@pytest.mark.parametrize(
    ("minutes", "symbols"),
    [
        (list(range(500)), None),  # in order
        (list(range(499, -1, -1)) + [3, 3], None),  # newest first, with exact duplicates
        ([m // 2 for m in range(600)], ["BTC" if i % 2 else "ETH" for i in range(600)]),  # two symbols interleaved
    ],
)
def test_an_import_stores_what_two_plain_publishes_store(tmp_path, minutes, symbols):
    src = tmp_path / "BTC.csv"
    candles_csv(src, minutes, symbols)
    symbol = None if symbols else "BTC"
    with Lake.open(tmp_path / "a") as a, Lake.open(tmp_path / "b") as b:
        got = import_file(a, src, symbol=symbol)
        want_raw, want = plain_publishes(b, src, symbol)
        assert (got.raw_id, got.id) == (want_raw, want)
        assert stored(a, got.raw_id) == stored(b, want_raw)
        assert stored(a, got.id) == stored(b, want)
        before = lake_state(a.root)
        again = import_file(a, src, symbol=symbol)
        assert (again.raw_id, again.id, again.deduplicated) == (got.raw_id, got.id, True)
        assert lake_state(a.root)["files"] == before["files"]  # nothing written again


def test_a_bad_row_leaves_the_lake_unchanged_when_the_raw_file_is_known(tmp_path):
    src = tmp_path / "BTC.csv"
    candles_csv(src, list(range(50)))
    with Lake.open(tmp_path / "lake") as lake:
        import_file(lake, src, symbol="BTC")
        before = lake_state(lake.root)
        # the raw artifact is known; its typed table under a blank symbol is not, and is refused
        with pytest.raises(ValidationError, match=r"BTC.csv: type 'ohlcv': column 'symbol', row 0: value ' ' breaks"):
            import_file(lake, src, symbol=" ")
        assert lake_state(lake.root) == before


# -- order_rows vouches only for an order the check would pass ----------------------------------------------
KEYED = Schema(
    "keyed",
    1,
    (Column("symbol", "string", nullable=True), Column("ts", "int64", nullable=True), Column("v", "float64")),
    (Check("increasing", {"column": "ts", "by": ["symbol"]}),),
    False,
    "",
    "",
    "",
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from(["A", "B"])), st.one_of(st.none(), st.integers(0, 5))),
        max_size=14,
    )
)
def test_the_order_order_rows_vouches_for_passes_the_increasing_check(rows):
    table = pa.table(
        {
            "symbol": pa.array([s for s, _ in rows], pa.string()),
            "ts": pa.array([t for _, t in rows], pa.int64()),
            "v": pa.array([1.0] * len(rows)),  # equal keys are exact duplicates: collapsed, never refused
        }
    )
    got = order_rows(table, ["symbol", "ts"], "f.csv")
    assert got.key == ("symbol", "ts")
    assert find_violations(got.table, KEYED) == []
    assert find_violations(got.table, KEYED, ordered_by=got.key) == []


def test_order_rows_vouches_for_nothing_without_its_key_columns():
    table = pa.table({"ts": [2, 1], "v": [1.0, 2.0]})
    assert order_rows(table, ["symbol", "ts"], "f.csv").key == ()
    clash = pa.table({"symbol": ["A", "A", "A"], "ts": [2, 1, 1], "v": [1.0, 1.0, 2.0]})
    with pytest.raises(InvalidInput, match=r"f: rows 1 and 2 are both symbol A, ts 1 with different values"):
        order_rows(clash, ["symbol", "ts"], "f")  # rows named as in the file, not as sorted


# -- shared columns are hashed once ----------------------------------------------------------------------
def test_a_digest_memo_changes_no_id():
    n = 1000
    ts = pa.array(T0 * 1_000_000 + np.arange(n) * 60_000_000, pa.timestamp("us", tz="Etc/UTC"))
    price = pa.array(np.where(np.arange(n) % 17 == 0, np.nan, np.arange(n) / 7))
    name = pa.array([None if i % 5 == 0 else f"s{i % 3}" for i in range(n)], pa.string())
    raw = pa.Table.from_batches(pa.table({"ts": ts, "price": price, "name": name}).to_batches(max_chunksize=300))
    typed = pa.table(
        {
            "ts": raw.column("ts").cast(pa.timestamp("us", tz="UTC")),  # same values, another zone: same memory
            "name": raw.column("name"),
            "price": raw.column("price"),
            "other": pa.concat_arrays([raw.column("price").combine_chunks().slice(1), pa.array([1.0])]),
            "when": raw.column("ts").cast(pa.int64()),  # same memory, hashed the same way, another type
        }
    )
    memo = DigestMemo()
    cases = [(raw, "table"), (typed, "typed"), (raw.slice(3), "table"), (typed.slice(5, 500), "x"), (typed, "y")]
    for table, type_name in cases:
        assert content_id(table, type_name, 1, memo=memo) == content_id(table, type_name, 1)


# -- the objects go to disk while they are written --------------------------------------------------------
def test_a_failed_flush_behind_the_writer_is_raised(tmp_path):
    import os
    import time

    from artifact_lake.artifact_store import _stream

    with open(tmp_path / "f", "wb") as f, _stream._flushed_behind(f.fileno()):
        f.write(b"x" * 1000)
        time.sleep(3 * _stream._FLUSH_EVERY_S)  # flushed behind, without error
    read, write = os.pipe()  # a pipe cannot be synced: the flush fails, and says so once the body is done
    try:
        with pytest.raises(OSError), _stream._flushed_behind(write):
            time.sleep(3 * _stream._FLUSH_EVERY_S)
    finally:
        os.close(read)
        os.close(write)
