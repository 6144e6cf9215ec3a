"""Bad input is one `error:` line, exit 2, lake unchanged (DESIGN.md, Trust model; issue #12, item 13):
nulls where a schema forbids them, epochs that are no time, and a lake's own schema files that cannot mean
what they say."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.schemas import SchemaError, load_schema_file
from tests.conftest import lake_state


@pytest.fixture
def root(tmp_path):
    with Lake.open(tmp_path / "lk") as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=5), "ohlcv", name="px")
    return tmp_path / "lk"


def refused(root, *args: str) -> str:
    """Run ``lake ARGS``; it must fail with one error line and exit 2 and leave the lake as it was."""
    before = lake_state(root)
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), *args])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert lake_state(root) == before
    return lines[0]


def test_a_null_in_a_non_nullable_column_names_its_row(root, tmp_path):
    bars = synthetic_ohlcv(("A",), bars=5)
    symbols = bars.column("symbol").to_pylist()
    symbols[3] = None
    path = tmp_path / "bars.parquet"
    pq.write_table(bars.set_column(bars.column_names.index("symbol"), "symbol", pa.array(symbols)), path)
    line = refused(root, "publish", str(path), "--type", "ohlcv")
    assert line.endswith("column 'symbol', row 3: value None breaks not null"), line


@pytest.mark.parametrize(("epoch", "unit"), [("1e30", "s"), ("inf", "ms"), ("-100000000000000000", "s")])
def test_an_epoch_that_is_no_time_is_refused_with_its_row(root, tmp_path, epoch, unit):
    src = tmp_path / "bars.csv"
    src.write_text(f"t,symbol,open,high,low,close,volume\n1700000000,A,1,1,1,1,1\n{epoch},A,1,1,1,1,1\n")
    line = refused(root, "ingest", "file", str(src), "--type", "ohlcv", "--map", "t=ts", "--ts-unit", unit)
    assert f"bars.csv: column 'ts', row 1: epoch {epoch if unit == 's' and '-' in epoch else ''}" in line, line
    assert f"(--ts-unit {unit}) is not a time" in line, line


SCHEMA_FILES = {
    "a string bound": (
        'name = "u"\nversion = 1\n[[columns]]\nname = "x"\ntype = "float64"\n'
        '[[checks]]\nkind = "range"\ncolumns = ["x"]\ngt = "0"\n',
        pa.table({"x": [1.0, 2.0]}),
        "check range: bound 'gt' must be a number, not '0' (string)",
    ),
    "mixed in_set values": (
        'name = "u"\nversion = 1\n[[columns]]\nname = "x"\ntype = "string"\n'
        '[[checks]]\nkind = "in_set"\ncolumn = "x"\nvalues = ["a", 1]\n',
        pa.table({"x": ["a", "b"]}),
        "check in_set: 'values' mixes integer and string; give one kind of value",
    ),
    "nullable as a string": (
        'name = "u"\nversion = 1\n[[columns]]\nname = "x"\ntype = "float64"\nnullable = "false"\n',
        pa.table({"x": [1.0, None]}),
        "columns[0] (x): 'nullable' must be true or false, not 'false'",
    ),
    "an unknown time zone": (
        'name = "u"\nversion = 1\n[[columns]]\nname = "ts"\ntype = "timestamp[us, tz=Mars/Olympus]"\n',
        pa.table({"ts": pa.array([0, 1], pa.timestamp("us", tz="UTC"))}),
        "unknown time zone 'Mars/Olympus'",
    ),
    "seconds": (
        'name = "u"\nversion = 1\n[[columns]]\nname = "ts"\ntype = "timestamp[s, tz=UTC]"\n',
        pa.table({"ts": pa.array([0, 1], pa.timestamp("s", tz="UTC"))}),
        "Parquet has no seconds unit",
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_FILES))
def test_a_lake_schema_file_that_cannot_mean_what_it_says_is_refused(root, tmp_path, case):
    text, table, says = SCHEMA_FILES[case]
    (root / "schemas" / "u.toml").write_text(text)
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    line = refused(root, "publish", str(path), "--type", "u")
    assert says in line and "u.toml" in line, line


@pytest.mark.parametrize(
    ("checks", "says"),
    [
        ('kind = "range"\ncolumns = ["s"]\nge = 0', "column 's' is string, but the check needs numbers"),
        ('kind = "range"\ncolumns = ["x"]\nge = true', "bound 'ge' must be a number, not True (boolean)"),
        ('kind = "range"\ncolumns = ["x"]', "give at least one bound"),
        ('kind = "finite"\ncolumns = ["s"]', "column 's' is string, but the check needs numbers"),
        ('kind = "non_empty"\ncolumns = ["x"]', "column 'x' is float64, but the check needs strings"),
        ('kind = "in_set"\ncolumn = "s"\nvalues = [1, 2]', "column 's' is string, but 'values' are integers"),
        ('kind = "in_set"\ncolumn = "i"\nvalues = [1, 300]', "'values' do not fit column 'i' (int8)"),
        (
            'kind = "compare"\nleft = "x"\nop = "<"\nright = "ts"',
            "cannot compare 'x' (float64) with 'ts' (timestamp[us, tz=UTC])",
        ),
        ('kind = "increasing"\ncolumn = "ts"\nby = "s"', "'by' must be a list of column names"),
        ('kind = "unique"\ncolumns = ["l"]', "column 'l' is list<int64>, but the check needs plain values"),
    ],
)
def test_checks_that_cannot_apply_to_their_columns_are_refused(tmp_path, checks, says):
    p = tmp_path / "u.toml"
    p.write_text(
        'name = "u"\nversion = 1\n'
        '[[columns]]\nname = "x"\ntype = "float64"\n[[columns]]\nname = "s"\ntype = "string"\n'
        '[[columns]]\nname = "i"\ntype = "int8"\n[[columns]]\nname = "l"\ntype = "list<int64>"\n'
        '[[columns]]\nname = "ts"\ntype = "timestamp[us, tz=UTC]"\n'
        f"[[checks]]\n{checks}\n"
    )
    with pytest.raises(SchemaError) as err:
        load_schema_file(p)
    assert says in str(err.value) and str(p) in str(err.value)


def test_a_well_formed_lake_schema_still_validates(tmp_path):
    """The stricter loader keeps what was right: typed in_set values, bounds and flags."""
    p = tmp_path / "fills.toml"
    p.write_text(
        'name = "fills"\nversion = 1\nextra_columns = false\n'
        '[[columns]]\nname = "qty"\ntype = "float64"\nnullable = true\n'
        '[[columns]]\nname = "side"\ntype = "int8"\n'
        '[[checks]]\nkind = "in_set"\ncolumn = "side"\nvalues = [1, -1]\n'
        '[[checks]]\nkind = "range"\ncolumns = ["qty"]\ngt = 0\nle = 1e6\n'
        '[[checks]]\nkind = "unique"\ncolumns = ["side", "qty"]\n'
    )
    schema = load_schema_file(p)
    from artifact_lake.schemas import bad_rows, conform

    table = conform(pa.table({"qty": [1.0, None, 2.0, 1.0], "side": pa.array([1, -1, 2, 1], pa.int8())}), schema)
    rows, reasons = bad_rows(table, schema)
    assert rows.tolist() == [2, 3]
    assert "breaks one of {1, -1}" in reasons[0] and "no duplicate (side, qty)" in reasons[1]
