"""Every Arrow type a `table` may carry either round-trips through the lake with one id, or is refused in one
line naming the column and its type (issue #12, item 5; docs/identity.md, "Types").

Round trip: publish -> verify clean -> read back -> publish again gives the same id (deduplicated).
"""

from __future__ import annotations

import decimal
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from artifact_lake.artifact_store import InvalidInput, Lake
from artifact_lake.schemas import ValidationError

SETTINGS = settings(
    max_examples=int(os.environ.get("TYPES_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ZONES = [None, "UTC", "Europe/Berlin", "+05:30"]
DAY_MS = 86_400_000


def round_trip(table: pa.Table) -> str:
    """Publish ``table`` into a fresh lake and check verify, read back and publish again; return the id."""
    with tempfile.TemporaryDirectory() as tmp, Lake.open(tmp) as lake:
        rec = lake.publish(table, "table")
        report = lake.verify()
        assert report.ok, [p.to_dict() for p in report.problems]
        back = lake.read(rec.id)
        again = lake.publish(back, "table")
        assert again.id == rec.id and again.deduplicated
        return rec.id


def assert_refused_naming_column(exc: Exception, table: pa.Table) -> None:
    message = str(exc)
    assert "\n" not in message, message
    named = [f for f in table.schema if f"column {f.name!r}" in message]
    assert named, message
    assert any(str(f.type) in message for f in named), message


# -- generated arrays -----------------------------------------------------------------------------------


def _leaf_types() -> st.SearchStrategy[pa.DataType]:
    return st.one_of(
        st.sampled_from(
            [
                pa.int8(),
                pa.int16(),
                pa.int32(),
                pa.int64(),
                pa.uint8(),
                pa.uint16(),
                pa.uint32(),
                pa.uint64(),
                pa.float16(),
                pa.float32(),
                pa.float64(),
                pa.bool_(),
                pa.string(),
                pa.large_string(),
                pa.binary(),
                pa.large_binary(),
                pa.binary(3),
                pa.date32(),
                pa.date64(),
                pa.time32("s"),
                pa.time32("ms"),
                pa.time64("us"),
                pa.time64("ns"),
                pa.null(),
                pa.decimal128(9, 2),
                pa.decimal128(38, 10),
                pa.decimal256(40, 5),
                pa.dictionary(pa.int32(), pa.string()),
                pa.dictionary(pa.int8(), pa.int64()),
            ]
        ),
        st.builds(pa.timestamp, st.sampled_from(["s", "ms", "us", "ns"]), st.sampled_from(ZONES)),
        st.builds(pa.duration, st.sampled_from(["s", "ms", "us", "ns"])),
    )


def _types() -> st.SearchStrategy[pa.DataType]:
    keys = st.sampled_from([pa.string(), pa.int64(), pa.large_string()])

    def nest(child: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
        return st.one_of(
            st.builds(pa.list_, child),
            st.builds(pa.large_list, child),
            st.builds(lambda t, k: pa.list_(t, k), child, st.integers(1, 3)),
            st.builds(
                lambda ts: pa.struct([pa.field(f"f{i}", t) for i, t in enumerate(ts)]),
                st.lists(child, min_size=1, max_size=3),
            ),
            st.builds(pa.map_, keys, child),
        )

    return st.recursive(_leaf_types(), nest, max_leaves=4)


def _mask(draw: st.DrawFn, n: int) -> np.ndarray | None:
    if not n or not draw(st.booleans()):
        return None
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)


def _bitmap(draw: st.DrawFn, n: int) -> pa.Array | None:
    mask = _mask(draw, n)
    return None if mask is None else pa.array(mask)


def _ints(draw: st.DrawFn, n: int, lo: int, hi: int) -> list[int]:
    return draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))


def _leaf(draw: st.DrawFn, t: pa.DataType, n: int) -> pa.Array:
    mask = _mask(draw, n)
    if pa.types.is_null(t):
        return pa.nulls(n)
    if pa.types.is_dictionary(t):
        values = _leaf(draw, t.value_type, draw(st.integers(1, 4)))
        indices = pa.array(_ints(draw, n, 0, len(values) - 1), t.index_type, mask=mask)
        return pa.DictionaryArray.from_arrays(indices, values)
    if pa.types.is_integer(t):
        info = np.iinfo(t.to_pandas_dtype())
        return pa.array(_ints(draw, n, int(info.min), int(info.max)), t, mask=mask)
    if pa.types.is_floating(t):
        width = t.bit_width // 8
        floats = draw(st.lists(st.floats(width=8 * width), min_size=n, max_size=n))
        return pa.array(np.array(floats, dtype=f"<f{width}"), t, mask=mask)
    if pa.types.is_boolean(t):
        return pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), t, mask=mask)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.array(draw(st.lists(st.text(max_size=6), min_size=n, max_size=n)), t, mask=mask)
    if pa.types.is_fixed_size_binary(t):
        size = t.byte_width
        return pa.array(draw(st.lists(st.binary(min_size=size, max_size=size), min_size=n, max_size=n)), t, mask=mask)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array(draw(st.lists(st.binary(max_size=6), min_size=n, max_size=n)), t, mask=mask)
    if pa.types.is_decimal(t):
        digits = st.integers(-(10**t.precision) + 1, 10**t.precision - 1)
        values = [decimal.Decimal(f"{v}e-{t.scale}") for v in draw(st.lists(digits, min_size=n, max_size=n))]
        return pa.array(values, t, mask=mask)
    if pa.types.is_date32(t):
        return pa.array(_ints(draw, n, -100_000, 100_000), pa.int32(), mask=mask).view(t)
    if pa.types.is_date64(t):
        days = _ints(draw, n, -100_000, 100_000)
        odd = draw(st.integers(0, 20)) == 0  # now and then a time of day, which date32 cannot hold
        values = [d * DAY_MS + (1234 if odd and i == 0 else 0) for i, d in enumerate(days)]
        return pa.array(values, pa.int64(), mask=mask).view(t)
    if pa.types.is_time32(t):
        top = 86_400 if t.unit == "s" else 86_400_000
        return pa.array(_ints(draw, n, 0, top - 1), pa.int32(), mask=mask).view(t)
    if pa.types.is_time64(t):
        top = 86_400 * (10**6 if t.unit == "us" else 10**9)
        return pa.array(_ints(draw, n, 0, top - 1), pa.int64(), mask=mask).view(t)
    if pa.types.is_timestamp(t) or pa.types.is_duration(t):
        # seconds now and then beyond what milliseconds can hold: refused, not stored wrong
        big = t.unit == "s" and draw(st.integers(0, 20)) == 0
        bound = 2**62 if big else 10**12
        return pa.array(_ints(draw, n, -bound, bound), pa.int64(), mask=mask).view(t)
    raise AssertionError(t)


def _offsets(draw: st.DrawFn, n: int) -> list[int]:
    lengths = _ints(draw, n, 0, 3)
    return [0, *np.cumsum(lengths).tolist()] if n else [0]


def _array(draw: st.DrawFn, t: pa.DataType, n: int) -> pa.Array:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = _offsets(draw, n)
        values = _array(draw, t.value_type, offsets[-1])
        cls = pa.ListArray if pa.types.is_list(t) else pa.LargeListArray
        kind = pa.int32() if pa.types.is_list(t) else pa.int64()
        return cls.from_arrays(pa.array(offsets, kind), values, mask=_bitmap(draw, n))
    if pa.types.is_fixed_size_list(t):
        values = _array(draw, t.value_type, n * t.list_size)
        return pa.FixedSizeListArray.from_arrays(values, t.list_size, mask=_bitmap(draw, n))
    if pa.types.is_map(t):
        offsets = _offsets(draw, n)
        keys = _leaf(draw, t.key_type, offsets[-1])
        keys = pc.fill_null(keys, "k" if not pa.types.is_integer(t.key_type) else 0)  # keys are never null
        items = _array(draw, t.item_type, offsets[-1])
        return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, items, mask=_bitmap(draw, n))
    if pa.types.is_struct(t):
        children = [_array(draw, f.type, n) for f in t]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=_bitmap(draw, n))
    return _leaf(draw, t, n)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 8))
    kinds = draw(st.lists(_types(), min_size=1, max_size=3))
    return pa.table({f"c{i}": _array(draw, t, n) for i, t in enumerate(kinds)})


EXPECTED_REFUSALS = ("does not convert exactly",)


@SETTINGS
@given(tables())
def test_every_table_round_trips_with_one_id_or_is_refused_in_one_line(table):
    try:
        round_trip(table)
    except (InvalidInput, ValidationError) as exc:
        assert_refused_naming_column(exc, table)
        # only values a type cannot carry are refused
        assert any(why in str(exc) for why in EXPECTED_REFUSALS), str(exc)
        event("refused")
    else:
        event("round trip")


# -- each type on its own, values and nulls ---------------------------------------------------------------

EACH = {
    "int8": pa.array([1, None, -128], pa.int8()),
    "uint64": pa.array([2**64 - 1, None, 0], pa.uint64()),
    "float16": pa.array(np.array([1.5, np.nan, -0.0], np.float16), mask=np.array([False, False, True])),
    "float32": pa.array([1.5, None, float("inf")], pa.float32()),
    "bool": pa.array([True, None, False]),
    "string": pa.array(["a", None, ""]),
    "large_string": pa.array(["a", None, ""], pa.large_string()),
    "dictionary": pa.array(["a", None, "a"]).dictionary_encode(),
    "binary": pa.array([b"a", None, b""]),
    "date32": pa.array([1, None, -1], pa.date32()),
    "date64": pa.array([DAY_MS, None, -DAY_MS], pa.date64()),
    "time32[s]": pa.array([1, None, 86_399], pa.time32("s")),
    "time64[ns]": pa.array([1, None, 5], pa.time64("ns")),
    "timestamp[s]": pa.array([1, None, 1_700_000_000], pa.timestamp("s")),
    "timestamp[s, tz]": pa.array([1, None, 1_700_000_000], pa.timestamp("s", tz="Europe/Berlin")),
    "timestamp[ms]": pa.array([1, None, 3], pa.timestamp("ms")),
    "timestamp[us, tz]": pa.array([1, None, 3], pa.timestamp("us", tz="UTC")),
    "timestamp[ns, tz]": pa.array([1, None, 3], pa.timestamp("ns", tz="+05:30")),
    "duration[s]": pa.array([1, None, -3], pa.duration("s")),
    "decimal128": pa.array([decimal.Decimal("1.23"), None, decimal.Decimal("-0.01")], pa.decimal128(5, 2)),
    "decimal32": pa.array([decimal.Decimal("1.2"), None, decimal.Decimal("-0.1")], pa.decimal32(5, 1)),
    "decimal64": pa.array([decimal.Decimal("1.2"), None, decimal.Decimal("-0.1")], pa.decimal64(12, 1)),
    "fixed_size_binary": pa.array([b"ab", None, b"cd"], pa.binary(2)),
    "string_view": pa.array(["a", None, ""], pa.string_view()),
    "decimal256": pa.array([decimal.Decimal("1.23"), None, decimal.Decimal("-0.01")], pa.decimal256(50, 2)),
    "list": pa.array([[1, None], None, []], pa.list_(pa.int64())),
    "list<timestamp[s]>": pa.array([[1], None, []], pa.list_(pa.timestamp("s"))),
    "large_list": pa.array([[1, None], None, []], pa.large_list(pa.int64())),
    "fixed_size_list": pa.array([[1, 2], None, [3, None]], pa.list_(pa.int64(), 2)),
    "struct": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": None}]),
    "map": pa.array([[("k", 1), ("j", None)], None, []], pa.map_(pa.string(), pa.int64())),
    "map<string, list>": pa.array([[("k", [1])], None, [("z", None)]], pa.map_(pa.string(), pa.list_(pa.int64()))),
    "null": pa.nulls(3),
    "list<null>": pa.array([[None], None, []], pa.list_(pa.null())),
}


@pytest.mark.parametrize("kind", sorted(EACH))
def test_each_type_round_trips(kind):
    round_trip(pa.table({"x": EACH[kind], "n": pa.array([1, 2, 3])}))


def test_lists_and_seconds_read_back_as_stored():
    """A list of a trained policy and the times of an imported CSV: the id is the one verify recomputes."""
    table = pa.table(
        {"weights": pa.array([[0.5, -1.0], [2.0]], pa.list_(pa.float64())), "ts": pa.array([0, 60], pa.timestamp("s"))}
    )
    with tempfile.TemporaryDirectory() as tmp, Lake.open(tmp) as lake:
        rec = lake.publish(table, "table")
        assert lake.verify().ok
        back = lake.read(rec.id)
        assert back.schema.field("ts").type == pa.timestamp("ms")
        assert back.column("ts").to_pylist() == table.column("ts").to_pylist()


def test_list_ids_did_not_move_and_lists_stored_before_verify_clean():
    """Lists kept their ids: an object written before (``list<element: ...>`` as read back) hashes to them."""
    import io

    import pyarrow.parquet as pq

    from artifact_lake.artifact_store import content_id
    from artifact_lake.schemas import Registry, conform

    table = conform(pa.table({"list": pa.array([[1], None, []])}), Registry().get("table"))
    assert content_id(table, "table", 1) == "3634b369563151224ae80fa37c45039162bea890f403d2e95889d58d639c6852"
    for writer in ({}, {"use_compliant_nested_type": False}):
        buf = io.BytesIO()
        pq.write_table(table, buf, **writer)
        back = pq.read_table(io.BytesIO(buf.getvalue()))
        assert content_id(back, "table", 1) == content_id(table, "table", 1)


REFUSED = {
    "struct without fields": (pa.array([{}, {}], pa.struct([])), "a struct without fields cannot be stored"),
    "interval": (pa.array([(1, 2, 3), None], pa.month_day_nano_interval()), "cannot be stored in an artifact"),
    "union": (
        pa.UnionArray.from_sparse(pa.array([0, 0], pa.int8()), [pa.array([1, 2])]),
        "cannot be stored in an artifact",
    ),
    "run-end encoded": (pc.run_end_encode(pa.array([1, 1])), "cannot be stored in an artifact"),
    "list_view": (pa.array([[1], [2]], pa.list_view(pa.int64())), "cast it to list first"),
    "unknown zone": (pa.array([0, 1], pa.timestamp("us", tz="Mars/Olympus")), "unknown time zone 'Mars/Olympus'"),
    "date64 with a time of day": (pa.array([DAY_MS + 1, 0], pa.date64()), "stores as date32[day]"),
    "seconds beyond milliseconds": (pa.array([2**62, 0], pa.timestamp("s")), "stores as timestamp[ms]"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_types_the_lake_cannot_hold_are_refused_in_one_line(kind, tmp_path):
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from artifact_lake.cli.main import lake as lake_cli
    from tests.conftest import lake_state

    arr, says = REFUSED[kind]
    table = pa.table({"x": pa.array([1, 2]), "bad": arr})
    with Lake.open(tmp_path / "lk") as lake, pytest.raises((InvalidInput, ValidationError)) as info:
        lake.publish(table, "table")
    assert says in str(info.value)
    assert_refused_naming_column(info.value, table)
    try:
        pq.write_table(table, tmp_path / "bad.parquet")
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return  # Parquet cannot carry this type either: nothing to give the CLI
    if pq.read_schema(tmp_path / "bad.parquet").field("bad").type != arr.type:
        return  # the Parquet writer already changed it (date64 is written as date32)
    before = lake_state(tmp_path / "lk")
    r = CliRunner().invoke(
        lake_cli, ["--lake", str(tmp_path / "lk"), "publish", str(tmp_path / "bad.parquet"), "--type", "table"]
    )
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "'bad'" in lines[0], r.stderr
    assert lake_state(tmp_path / "lk") == before


def test_maps_inside_lists_hash_by_their_values_whatever_their_slicing():
    """A map two lists deep is hashed from a slice of its map array (offsets into shared entries, null-typed
    values among them): it round-trips with one id, the id of the same values built afresh. Hypothesis found
    a refusal ("array slice would exceed array length") and an abort here when the map was hashed through a
    view of the sliced array."""
    for value_type in (pa.null(), pa.int8()):
        t = pa.list_(pa.list_(pa.map_(pa.string(), value_type)))
        row = [[], [None, [("", None), ("f", None), ("x", None)], []], [[("q", None)]], []]
        table = pa.table({"c": pa.array([row, None, [[None]], row], type=t)}).slice(2, 2)  # maps before it
        fresh = pa.table({"c": pa.array(table.column("c").to_pylist(), type=t)})
        assert round_trip(table) == round_trip(fresh)
