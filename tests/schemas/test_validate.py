from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from artifact_lake.schemas import Registry, SchemaError, UnknownType, ValidationError, bad_rows, conform, validate


@pytest.fixture
def reg():
    return Registry()


def _set(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    idx = table.column_names.index(column)
    return table.set_column(idx, table.field(column), pa.array(values, table.field(column).type))


@pytest.mark.parametrize(
    ("column", "row", "value", "expected"),
    [
        ("low", 5, 1e9, "column 'low', row 5: value 1000000000.0 breaks low <= open"),
        ("high", 7, 0.5, "column 'high', row 7: value 0.5 breaks high >= open"),
        ("open", 3, -1.0, "column 'open', row 3: value -1.0 breaks"),
        ("close", 4, math.nan, "column 'close', row 4: value nan breaks finite"),
        ("volume", 9, -2.0, "column 'volume', row 9: value -2.0 breaks volume >= 0"),
        ("symbol", 2, "  ", "column 'symbol', row 2: value '  ' breaks not empty"),
        ("close", 6, None, "column 'close', row 6: value None breaks not null"),
    ],
)
def test_each_ohlcv_check_names_column_row_and_value(reg, ohlcv, column, row, value, expected):
    bad = _set(ohlcv, column, row, value)
    with pytest.raises(ValidationError) as err:
        validate(bad, reg.get("ohlcv"), "f.parquet")
    assert str(err.value).startswith("f.parquet: type 'ohlcv': ")
    assert expected in str(err.value)
    assert err.value.row == row


def test_duplicate_and_out_of_order_timestamps_are_told_apart(reg, ohlcv):
    ts = ohlcv.column("ts").to_pylist()
    dup = _set(ohlcv, "ts", 11, ts[10])
    with pytest.raises(ValidationError, match=r"row 11: .* breaks no duplicate \(symbol, ts\)"):
        validate(dup, reg.get("ohlcv"))
    back = _set(ohlcv, "ts", 11, ts[3])
    with pytest.raises(ValidationError, match=r"row 11: .* breaks ts strictly increasing within each symbol"):
        validate(back, reg.get("ohlcv"))


def test_interleaved_symbols_are_checked_per_symbol(reg, ohlcv):
    # rows ordered by time first, symbols interleaved: still strictly increasing per symbol
    order = np.lexsort(
        (ohlcv.column("symbol").to_numpy(zero_copy_only=False), ohlcv.column("ts").cast(pa.int64()).to_numpy())
    )
    interleaved = ohlcv.take(order)
    validate(interleaved, reg.get("ohlcv"))
    ts = interleaved.column("ts").to_pylist()
    broken = _set(interleaved, "ts", 40, ts[0])  # row 40 goes back in time for its symbol
    with pytest.raises(ValidationError, match="row 40"):
        validate(broken, reg.get("ohlcv"))


def test_missing_and_unexpected_columns(reg, ohlcv):
    with pytest.raises(
        ValidationError, match=r"missing column 'volume' required by type 'ohlcv' \(found 'vol'; rename it\)"
    ):
        validate(ohlcv.rename_columns(["ts", "symbol", "open", "high", "low", "close", "vol"]), reg.get("ohlcv"))
    with pytest.raises(ValidationError, match="unexpected column 'extra'"):
        validate(ohlcv.append_column("extra", pa.array([1] * len(ohlcv))), reg.get("ohlcv"))


def test_lossless_casts_are_applied_and_lossy_ones_refused(reg, ohlcv):
    schema = reg.get("ohlcv")
    ms = ohlcv.set_column(0, "ts", ohlcv.column("ts").cast(pa.timestamp("ms", tz="UTC")))
    berlin = ohlcv.set_column(0, "ts", ohlcv.column("ts").cast(pa.timestamp("us", tz="Europe/Berlin")))
    f32 = ohlcv.set_column(6, "volume", pa.array(np.arange(len(ohlcv), dtype=np.float32)))
    for t in (ms, berlin, f32):
        out = conform(t, schema)
        assert out.schema.field("ts").type == pa.timestamp("us", tz="UTC")
        assert out.schema.field("volume").type == pa.float64()
    naive = ohlcv.set_column(0, "ts", ohlcv.column("ts").cast(pa.timestamp("us")))
    with pytest.raises(ValidationError, match="column 'ts' is timestamp.* no time zone"):
        conform(naive, schema)
    text = ohlcv.set_column(2, "open", pa.array(["1.0"] * len(ohlcv)))
    with pytest.raises(ValidationError, match="column 'open' is string but the schema declares double"):
        conform(text, schema)
    ns = ohlcv.set_column(
        0, "ts", pa.array(ohlcv.column("ts").cast(pa.int64()).to_numpy() * 1000 + 1, pa.timestamp("ns", tz="UTC"))
    )
    with pytest.raises(ValidationError, match="would lose information"):
        conform(ns, schema)


def test_float_to_int_only_when_whole_and_big_ints_not_to_float(reg):
    metrics = reg.get("metrics")
    base = {
        "combo": [0, 1],
        "symbol": ["A", "A"],
        "final_equity": [1.0, 2.0],
        "total_return": [0.0, 0.1],
        "max_drawdown": [0.0, 0.0],
        "sharpe": [0.0, 1.0],
    }
    ok = conform(pa.table(base | {"n_trades": pa.array([3.0, 4.0])}), metrics)
    assert ok.column("n_trades").to_pylist() == [3, 4]
    with pytest.raises(ValidationError, match="column 'n_trades'.*lose information"):
        conform(pa.table(base | {"n_trades": pa.array([3.5, 4.0])}), metrics)
    with pytest.raises(ValidationError, match="final_equity.*would lose information.*9007199254740993"):
        conform(pa.table(base | {"n_trades": [1, 2], "final_equity": pa.array([2**53 + 1, 1])}), metrics)


def test_alert_checks(reg):
    ts = pa.array([0, 1, 1, 2], pa.timestamp("s", tz="UTC"))
    t = pa.table(
        {
            "ts": ts,
            "symbol": ["A", "A", "A", "B"],
            "side": ["buy", "hold", "hold", "sell"],
            "source": ["x"] * 4,
            "price": [1.0, None, None, -3.0],
            "payload": [None] * 4,
        }
    )
    rows, reasons = bad_rows(conform(t, reg.get("alerts")), reg.get("alerts"))
    assert rows.tolist() == [1, 2, 3]
    assert "breaks one of {buy, sell}" in reasons[0]
    assert "breaks one of {buy, sell}" in reasons[1]  # the first reason found is kept
    assert "price > 0" in reasons[2]


def test_unknown_type_suggests(reg):
    with pytest.raises(UnknownType, match="unknown artifact type 'ohlvc'; did you mean 'ohlcv'"):
        reg.get("ohlvc")


def test_lake_schema_dir_adds_types_but_cannot_redefine(tmp_path):
    d = tmp_path / "schemas"
    d.mkdir()
    (d / "fills.toml").write_text(
        'name = "fills"\nversion = 2\n[[columns]]\nname = "qty"\ntype = "float64"\n'
        '[[checks]]\nkind = "range"\ncolumns = ["qty"]\ngt = 0\n'
    )
    reg = Registry(d)
    assert reg.get("fills").version == 2
    with pytest.raises(ValidationError, match="qty > 0"):
        validate(pa.table({"qty": [1.0, 0.0]}), reg.get("fills"))
    (d / "ohlcv.toml").write_text('name = "ohlcv"\nversion = 9\n')
    with pytest.raises(SchemaError, match="built in and cannot be redefined"):
        Registry(d)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nversion = 1\ncolums = []\n', "unknown key 'colums' in the top level (did you mean 'columns'?)"),
        ('name = "y"\nversion = 1\n', "'name' is 'y' but the file is named 'x.toml'"),
        ('name = "x"\nversion = 1\n[[columns]]\nname = "a"\ntype = "float65"\n', "unknown column type 'float65'"),
        (
            'name = "x"\nversion = 1\n[[checks]]\nkind = "finite"\ncolumns = ["nope"]\n',
            "names 'nope', which is not a declared column",
        ),
        ('name = "x"\nversion = 1\n[[checks]]\nkind = "uniq"\n', "unknown kind 'uniq' (did you mean 'unique'?)"),
    ],
)
def test_malformed_schema_files_are_named(tmp_path, text, message):
    from artifact_lake.schemas import load_schema_file

    p = tmp_path / "x.toml"
    p.write_text(text)
    with pytest.raises(SchemaError) as err:
        load_schema_file(p)
    assert message in str(err.value)
    assert str(p) in str(err.value)
