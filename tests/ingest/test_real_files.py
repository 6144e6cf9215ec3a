"""Real files in (issue #16): backtesting.py's CSVs, matplotlib's msft.csv, and files written in the documented
layouts of Binance's public klines (zipped), Yahoo and a semicolon + decimal-comma export. Each imports with at
most one flag, the counts add up, and the same candles from two layouts are one artifact."""

from __future__ import annotations

import gzip
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.ingest import import_file
from artifact_lake.cli.main import lake as lake_cli
from tests.conftest import lake_state

backtesting_test = pytest.importorskip("backtesting.test")
matplotlib = pytest.importorskip("matplotlib")

BT = Path(backtesting_test.__file__).parent
MSFT = Path(matplotlib.get_data_path()) / "sample_data" / "msft.csv"


def goog_rows(n: int | None = None) -> list[list[str]]:
    lines = (BT / "GOOG.csv").read_text().splitlines()[1:]
    return [line.split(",") for line in lines[:n]]


def yahoo(path: Path, rows: list[list[str]]) -> Path:
    """Yahoo's layout: Date,Open,High,Low,Close,Adj Close,Volume (here Adj Close = Close / 2)."""
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    lines += [f"{d},{o},{h},{lo},{c},{float(c) / 2},{v}" for d, o, h, lo, c, v in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def german(path: Path, rows: list[list[str]]) -> Path:
    """A European export: ';' between fields, ',' for decimals, '.' for thousands, dd.mm.yyyy dates."""

    def num(x: str) -> str:
        whole, _, frac = x.partition(".")
        grouped = f"{int(whole):,}".replace(",", ".")
        return f"{grouped},{frac}" if frac else grouped

    lines = ["Date;Open;High;Low;Close;Volume"]
    for d, o, h, lo, c, v in rows:
        y, m, dd = d.split("-")
        lines.append(";".join([f"{dd}.{m}.{y}", num(o), num(h), num(lo), num(c), num(v)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def klines(path: Path, *, bars: int = 500, unit: str = "ms") -> Path:
    """Binance public data: a zip of one header-less CSV, 12 columns, open time in ms (us since 2025)."""
    scale = 1 if unit == "ms" else 1000
    start = 1492592400000
    lines = []
    for i in range(bars):
        t = start + i * 60_000
        o = 1.0716 + i * 0.0001
        lines.append(
            f"{t * scale},{o:.4f},{o + 0.001:.4f},{o - 0.001:.4f},{o + 0.0005:.4f},{100 + i}.5,"
            f"{(t + 59_999) * scale},107.9,{10 + i},50.2,53.9,0"
        )
    member = path.name.removesuffix(".zip") + ".csv"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, "\n".join(lines) + "\n")
    return path


def ingest(root: Path, *args: str) -> tuple[int, str, dict[str, object] | None]:
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "ingest", "file", *args, "--json"])
    return r.exit_code, r.stderr, json.loads(r.stdout) if r.exit_code == 0 else None


def adds_up(result: dict[str, object]) -> None:
    read, stored = result["rows_read"], result["rows"]
    assert read == stored + result["rows_quarantined"] + result["duplicates_dropped"], result  # type: ignore[operator]


@pytest.mark.parametrize(("name", "rows", "first"), [("GOOG", 2148, "2004-08-19"), ("EURUSD", 5000, "2017-04-19")])
def test_backtesting_csvs_import_without_flags(plake, name, rows, first):
    code, err, res = ingest(plake.root, str(BT / f"{name}.csv"))
    assert code == 0, err
    assert res is not None and res["rows"] == rows and res["symbol"] == name and res["format"] == "CSV"
    adds_up(res)
    assert res["columns"]["column0"] == "ts"  # the pandas index's empty header
    t = plake.read(str(res["id"]))
    assert t.column("ts")[0].as_py().date().isoformat() == first and set(t.column("symbol").to_pylist()) == {name}
    assert plake.read(str(res["raw_id"])).num_rows == rows
    code, _, again = ingest(plake.root, str(BT / f"{name}.csv"), "--preset", "backtesting")
    assert code == 0 and again is not None and again["id"] == res["id"]


def test_btcusd_monthly_and_gzip_and_the_same_candles_from_two_layouts(plake, tmp_path):
    _, _, plain = ingest(plake.root, str(BT / "BTCUSD.csv"))
    gz = tmp_path / "BTCUSD.csv.gz"
    gz.write_bytes(gzip.compress((BT / "BTCUSD.csv").read_bytes()))
    code, err, zipped = ingest(plake.root, str(gz))
    assert code == 0, err
    assert plain is not None and zipped is not None and zipped["id"] == plain["id"] and plain["rows"] == 156
    assert zipped["format"] == "CSV (gzip)"


def test_msft_newest_first_with_month_names_needs_one_flag(plake):
    code, err, res = ingest(plake.root, str(MSFT))
    assert code == 2 and "column 'Adj. Close*' is not a column of type 'ohlcv'" in err and "--keep-extra" in err
    code, err, res = ingest(plake.root, str(MSFT), "--keep-extra")
    assert code == 0, err
    assert res is not None and res["sorted"] and res["rows"] == 65 and res["dropped"] == ["Adj. Close*"]
    adds_up(res)
    ts = plake.read(str(res["id"])).column("ts").to_pylist()
    assert ts == sorted(ts) and ts[-1] == datetime(2003, 9, 19, tzinfo=UTC)  # "19-Sep-03", newest first in the file


def test_yahoo_and_german_layouts_give_the_backtesting_ids(plake, tmp_path):
    rows = goog_rows(60)
    bt = tmp_path / "bt" / "GOOG.csv"
    bt.parent.mkdir()
    bt.write_text(",Open,High,Low,Close,Volume\n" + "\n".join(",".join(r) for r in rows) + "\n")
    _, _, base = ingest(plake.root, str(bt))
    code, err, y = ingest(plake.root, str(yahoo(tmp_path / "yahoo" / "GOOG.csv", rows)), "--preset", "yahoo")
    assert code == 0, err
    code, err, de = ingest(plake.root, str(german(tmp_path / "de" / "GOOG.csv", rows)), "--decimal", ",")
    assert code == 0, err
    assert base is not None and y is not None and de is not None
    assert base["id"] == y["id"] == de["id"]
    adds_up(y)
    adds_up(de)
    # Adj Close only when asked: the adjusted preset scales the prices
    code, err, adj = ingest(plake.root, str(tmp_path / "yahoo" / "GOOG.csv"), "--preset", "yahoo-adjusted")
    assert code == 0, err
    assert adj is not None and adj["id"] != y["id"]
    closes = plake.read(str(adj["id"])).column("close").to_pylist()
    assert closes[0] == pytest.approx(float(rows[0][4]) / 2)


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_binance_klines_zip_keeps_the_first_row(plake, tmp_path, unit):
    path = klines(tmp_path / f"BTCUSDT-1m-2017-04-{unit}.zip", unit=unit)
    code, err, res = ingest(plake.root, str(path), "--preset", "binance-klines")
    assert code == 0, err
    assert res is not None and res["rows"] == 500 and res["symbol"] == "BTCUSDT"
    assert res["format"] == f"CSV (zip: BTCUSDT-1m-2017-04-{unit}.csv)"
    adds_up(res)
    t = plake.read(str(res["id"]))
    assert t.column("ts")[0].as_py() == datetime.fromtimestamp(1492592400, UTC)
    assert t.column("open")[0].as_py() == 1.0716
    assert plake.read(str(res["raw_id"])).num_rows == 500
    # without the preset the first row is still data, not a header: the columns have no names to map
    code, err, _ = ingest(plake.root, str(path))
    assert code == 2 and "column 'column00' is not a column of type 'ohlcv'" in err, err


def test_klines_in_ms_and_us_are_one_artifact(plake, tmp_path):
    ids = set()
    for unit in ("ms", "us"):
        path = klines(tmp_path / f"BTCUSDT-1m-{unit}.zip", unit=unit)
        _, _, res = ingest(plake.root, str(path), "--preset", "binance-klines")
        assert res is not None
        ids.add(res["id"])
    assert len(ids) == 1


def test_header_less_values_are_never_a_header(plake, tmp_path):
    src = tmp_path / "X.csv"
    src.write_text("2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1,2,0.5,1.5,10\n")
    code, err, res = ingest(plake.root, str(src), "--columns", "ts,open,high,low,close,volume", "--no-header")
    assert code == 0, err
    assert res is not None and res["rows_read"] == 3 and res["rows"] == 3
    code, err, res = ingest(plake.root, str(src), "--columns", "ts,open,high,low,close,volume")
    assert code == 0, err
    assert res is not None and res["rows"] == 3


def test_overrides_delimiter_skip_rows_ts_format(plake, tmp_path):
    src = tmp_path / "Y.tsv"
    src.write_text(
        "exported by a tool\nwhen\tO\tH\tL\tC\tV\n02/01/2024\t1\t2\t0.5\t1.5\t10\n03/01/2024\t1\t2\t0.5\t1.5\t10\n"
    )
    code, err, res = ingest(
        plake.root,
        str(src),
        "--skip-rows",
        "1",
        "--delimiter",
        "\t",
        "--ts-format",
        "%d/%m/%Y",
        *("--map", "when=ts", "--map", "O=open", "--map", "H=high", "--map", "L=low", "--map", "C=close"),
        *("--map", "V=volume"),
    )
    assert code == 0, err
    assert plake.read(str(res["id"])).column("ts")[0].as_py() == datetime(2024, 1, 2, tzinfo=UTC)


def test_duplicates_collapse_and_conflicts_name_both_rows(plake, tmp_path):
    src = tmp_path / "D.csv"
    src.write_text(
        "Date,Open,High,Low,Close,Volume\n2024-01-03,1,2,0.5,1.5,10\n2024-01-02,1,2,0.5,1.5,10\n"
        "2024-01-03,1,2,0.5,1.5,10\n2024-01-01,1,2,0.5,1.5,10\n"
    )
    code, err, res = ingest(plake.root, str(src))
    assert code == 0, err
    assert res is not None and res["rows_read"] == 4 and res["rows"] == 3 and res["duplicates_dropped"] == 1
    assert res["sorted"]
    adds_up(res)
    src.write_text(
        src.read_text().replace("2024-01-03,1,2,0.5,1.5,10\n2024-01-01", "2024-01-03,1,2,0.5,1.6,10\n2024-01-01")
    )
    before = lake_state(plake.root)
    code, err, _ = ingest(plake.root, str(src))
    assert code == 2 and err.count("\n") == 1
    assert "rows 0 and 2 are both symbol D, ts 2024-01-03 00:00:00+00:00 with different values" in err
    assert "(column 'close': 1.5 vs 1.6)" in err
    assert lake_state(plake.root) == before


def test_pandas_parquet_index_is_ts(plake, tmp_path):
    pd = pytest.importorskip("pandas")
    idx = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC")
    df = pd.DataFrame({"Open": 1.0, "High": 2.0, "Low": 0.5, "Close": 1.5, "Volume": 3.0}, index=idx)
    for index_name in (None, "Date"):
        df.index.name = index_name
        path = tmp_path / f"p{index_name}" / "SPY.parquet"
        path.parent.mkdir()
        df.to_parquet(path)
        code, err, res = ingest(plake.root, str(path))
        assert code == 0, err
        assert res is not None and res["format"] == "Parquet" and res["rows"] == 5
        assert plake.read(str(res["id"])).column("ts").to_pylist() == list(idx.to_pydatetime())


def test_tz_applies_to_dates_meta_and_calendar(plake, tmp_path):
    src = tmp_path / "bt" / "GOOG.csv"
    src.parent.mkdir()
    src.write_text(",Open,High,Low,Close,Volume\n" + "\n".join(",".join(r) for r in goog_rows(10)) + "\n")
    _, _, utc = ingest(plake.root, str(src))
    code, err, ny = ingest(plake.root, str(src), "--tz", "America/New_York", "--calendar", "XNYS", "--meta", "k=v")
    assert code == 0, err
    assert utc is not None and ny is not None and utc["id"] != ny["id"]
    first = plake.read(str(ny["id"])).column("ts")[0].as_py()
    assert first == datetime(2004, 8, 19, 4, tzinfo=UTC)  # midnight in New York (EDT)
    meta = plake.get(str(ny["id"])).meta
    assert meta["calendar"] == "XNYS" and meta["k"] == "v"
    before = lake_state(plake.root)
    code, err, _ = ingest(plake.root, str(src), "--calendar", "XNYSS")
    assert code == 2 and err.startswith("error: unknown calendar 'XNYSS' (did you mean 'XNYS'?)"), err
    assert lake_state(plake.root) == before


def test_publish_tz_reads_naive_times_in_the_zone(plake, tmp_path):
    naive = pa.table(
        {
            "ts": pa.array([datetime(2024, 1, 2, 9, 30), datetime(2024, 1, 2, 9, 31)], pa.timestamp("us")),
            "symbol": ["A", "A"],
            **{c: [1.0, 1.0] for c in ("open", "high", "low", "close", "volume")},
        }
    )
    path = tmp_path / "naive.parquet"
    pq.write_table(naive, path)
    r = CliRunner().invoke(
        lake_cli, ["--lake", str(plake.root), "publish", str(path), "--type", "ohlcv", "--tz", "America/New_York"]
    )
    assert r.exit_code == 0, r.stderr
    t = plake.read(r.stdout.strip())
    assert t.column("ts")[0].as_py() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def test_bad_input_is_one_line_and_the_lake_unchanged(plake, tmp_path):
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n1\n")
    before = lake_state(plake.root)
    cases = [
        ((str(two),), "a zip file must hold exactly one CSV file (it holds 2: a.csv, b.csv)"),
        ((str(BT / "GOOG.csv"), "--preset", "yahooo"), "unknown preset 'yahooo': did you mean 'yahoo'?"),
        ((str(BT / "GOOG.csv"), "--drop", "Nope"), "--drop names column 'Nope', which the file lacks"),
    ]
    for args, message in cases:
        code, err, _ = ingest(plake.root, *args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert lake_state(plake.root) == before


def test_list_presets():
    r = CliRunner().invoke(lake_cli, ["ingest", "file", "--list-presets"])
    assert r.exit_code == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == [
        "binance-klines",
        "yahoo",
        "yahoo-adjusted",
        "backtesting",
    ]


def test_api_counts_add_up(plake):
    res = import_file(plake, BT / "GOOG.csv")
    assert res.rows_read == res.rows + res.rows_quarantined + res.duplicates_dropped == 2148


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_alert_feeds_with_mixed_time_formats_quarantine_only_bad_rows(plake, tmp_path, suffix):
    from artifact_lake.artifact_store.ingest import ingest_alerts

    path = tmp_path / f"feed{suffix}"
    if suffix == ".csv":
        path.write_text("ts,symbol,side\n2024-01-01T00:05:10Z,A,buy\n1704067510000,A,sell\nnope,A,buy\n")
    else:
        path.write_text(
            '{"ts":"2024-01-01T00:05:10Z","symbol":"A","side":"buy"}\n'
            '{"ts":1704067510000,"symbol":"A","side":"sell"}\n{"ts":"nope","symbol":"A","side":"buy"}\n'
        )
    r = ingest_alerts(plake, path, as_of="2025-01-01")
    assert (r.rows, r.valid, r.quarantined, r.reasons) == (3, 2, 1, {"unparsable_ts": 1})


def test_a_broken_json_lines_feed_is_named_as_such(plake, tmp_path):
    from artifact_lake.artifact_store.ingest.sniff import read_source

    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(Exception, match="cannot read it as JSON lines"):
        read_source(path)
