from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import InvalidInput
from artifact_lake.artifact_store.ingest import import_file, ingest_alerts
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.projections import coverage
from artifact_lake.schemas import ValidationError
from tests.conftest import lake_state

CSV = """Time,Sym,O,H,L,C,Vol
2024-03-31 01:00:00,BTC,100,101,99,100.5,3
2024-03-31 01:01:00,BTC,100.5,102,100,101,4
2024-03-31 03:02:00,BTC,101,101.5,100.5,101.2,5
"""


def test_file_import_maps_columns_and_reads_local_times(plake, tmp_path):
    src = tmp_path / "btc.csv"
    src.write_text(CSV)
    mapping = {"Time": "ts", "Sym": "symbol", "O": "open", "H": "high", "L": "low", "C": "close", "Vol": "volume"}
    rec = import_file(plake, src, "ohlcv", mapping=mapping, tz="Europe/Berlin", name="btc-berlin")
    t = plake.read(rec.id)
    # Berlin is UTC+1 until 02:00 on 2024-03-31, then UTC+2 (03:02 local is 01:02 UTC)
    assert [x.strftime("%H:%M") for x in t.column("ts").to_pylist()] == ["00:00", "00:01", "01:02"]
    assert [a.id for a in plake.parents(rec.id)] == [rec.raw_id]
    raw = plake.read(rec.raw_id)
    assert raw.column_names == ["Time", "Sym", "O", "H", "L", "C", "Vol"] and plake.get(rec.raw_id).type == "table"
    again = import_file(plake, src, "ohlcv", mapping=mapping, tz="Europe/Berlin", name="btc-berlin")
    assert again.deduplicated and again.id == rec.id


def test_file_import_epoch_units_symbol_option_and_parquet(plake, tmp_path):
    t = synthetic_ohlcv(("X",), bars=5).drop_columns(["symbol"])
    epoch = t.set_column(0, "time_ms", t.column("ts").cast(pa.int64()).cast(pa.int64()))
    epoch = epoch.set_column(0, "time_ms", pa.array([v // 1000 for v in epoch.column("time_ms").to_pylist()]))
    p = tmp_path / "x.parquet"
    pq.write_table(epoch, p)
    rec = import_file(plake, p, "ohlcv", mapping={"time_ms": "ts"}, ts_unit="ms", symbol="X")
    assert plake.read(rec.id).column("ts").to_pylist() == synthetic_ohlcv(("X",), bars=5).column("ts").to_pylist()
    with pytest.raises(InvalidInput, match="column 'ts' holds numbers: give --ts-unit s|ms|us|ns"):
        import_file(plake, p, "ohlcv", mapping={"time_ms": "ts"}, symbol="X")
    with pytest.raises(InvalidInput, match="--map names column 'Stamp', which the file lacks"):
        import_file(plake, p, "ohlcv", mapping={"Stamp": "ts"})


def test_refused_file_imports_leave_the_lake_unchanged(plake, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV.replace("100,101,99,100.5", "100,99,99,100.5"))  # high below open
    before = lake_state(plake.root)
    mapping = {"Time": "ts", "Sym": "symbol", "O": "open", "H": "high", "L": "low", "C": "close", "Vol": "volume"}
    with pytest.raises(ValidationError, match="column 'high', row 0: value 99.0 breaks high >= open"):
        import_file(plake, bad, "ohlcv", mapping=mapping)
    r = CliRunner().invoke(
        lake_cli,
        [
            "--lake",
            str(plake.root),
            "ingest",
            "file",
            str(bad),
            "--type",
            "ohlcv",
            *sum((["--map", f"{k}={v}"] for k, v in mapping.items()), []),
        ],
    )
    assert r.exit_code == 2 and "breaks high >= open" in r.stderr and "Traceback" not in r.stderr
    assert lake_state(plake.root) == before


FEED = [
    {"ts": "2024-01-01T00:05:10Z", "symbol": "A", "side": "buy", "price": 100.0},
    {"ts": "2024-01-01T00:05:10Z", "symbol": "A", "side": "buy", "price": 100.0},  # duplicate of row 0
    {"ts": "yesterday", "symbol": "A", "side": "buy", "price": None},
    {"ts": "2024-01-01T00:06:00Z", "symbol": "A", "side": "hold", "price": None},
    {"ts": "2024-01-01T00:07:00Z", "symbol": " ", "side": "sell", "price": None},
    {"ts": "2030-01-01T00:00:00Z", "symbol": "A", "side": "sell", "price": None},
    {"ts": "2024-01-02T10:00:00+02:00", "symbol": "B", "side": "SHORT", "price": 50.0},
]


def test_alert_feed_quarantines_each_bad_row_with_its_reason(plake, tmp_path):
    src = tmp_path / "feed.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in FEED))
    res = ingest_alerts(plake, src, source="tv", as_of="2025-01-01")
    assert (res.rows, res.valid, res.quarantined) == (7, 2, 5)
    assert res.reasons == {"duplicate": 1, "empty_symbol": 1, "future_ts": 1, "unknown_side": 1, "unparsable_ts": 1}
    assert [a["day"] for a in res.alerts] == ["2024-01-01", "2024-01-02"]
    q = {r["row"]: r["reason"] for r in plake.read(res.quarantine_id).to_pylist()}
    assert q[1] == "duplicate of row 0" and q[2] == "unparsable ts 'yesterday'"
    assert q[3].startswith("unknown side 'hold'") and q[4] == "empty symbol" and "in the future of the feed" in q[5]
    day2 = plake.read("alerts/tv/2024-01-02").to_pylist()
    assert day2[0]["side"] == "sell" and day2[0]["ts"].hour == 8 and day2[0]["source"] == "tv"
    for artifact_id in [a["id"] for a in res.alerts] + [res.quarantine_id]:
        assert [a.id for a in plake.parents(artifact_id)] == [res.raw_id]
    before = lake_state(plake.root)
    again = ingest_alerts(plake, src, source="tv", as_of="2025-01-01")
    assert all(a["deduplicated"] for a in again.alerts) and lake_state(plake.root) == before
    r = CliRunner().invoke(
        lake_cli, ["--lake", str(plake.root), "ingest", "alerts", str(src), "--source", "tv", "--as-of", "2025-01-01"]
    )
    assert r.exit_code == 0 and "7 rows: 2 alerts in 2 day(s), 5 quarantined" in r.stdout


def test_coverage_classes_and_missing_ranges(plake):
    bars = synthetic_ohlcv(("A",), bars=120, seed=1)
    o = plake.publish(bars.take([i for i in range(120) if not 60 <= i < 65]), "ohlcv").id
    t0 = bars.column("ts")[0].as_py()
    feed = pa.table(
        {
            "ts": pa.array(
                [t0.replace(minute=20), t0.replace(minute=55), t0.replace(hour=3)], pa.timestamp("us", tz="UTC")
            ),
            "symbol": ["A", "A", "A"],
            "side": ["buy"] * 3,
            "source": ["s"] * 3,
            "price": pa.array([None] * 3, pa.float64()),
            "payload": pa.array([None] * 3, pa.string()),
        }
    )
    al = plake.publish(feed, "alerts").id
    cov = coverage(plake, [al], [o], before="5m", after="10m", name="cov")
    assert cov.counts == {"full": 1, "partial": 1, "none": 1}
    rows = plake.read(cov.id).to_pylist()
    assert json.loads(rows[1]["missing"]) == [["2024-01-01T01:00:00+00:00", "2024-01-01T01:04:00+00:00"]]
    assert json.loads(rows[0]["missing"]) == []
    assert {a.id for a in plake.parents(cov.id)} == {al, o}
    r = CliRunner().invoke(
        lake_cli,
        ["--lake", str(plake.root), "coverage", al, "--ohlcv", o, "--before", "5m", "--after", "10m", "--json"],
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == cov.id  # same content: same artifact
    bad = CliRunner().invoke(lake_cli, ["--lake", str(plake.root), "coverage", al, "--ohlcv", o, "--before", "soon"])
    assert bad.exit_code == 2 and "not a duration: 'soon'" in bad.stderr


def test_reingesting_a_feed_without_as_of_adds_no_quarantine_version(plake, tmp_path):
    """No wall-clock value enters an artifact: the future row's reason does not embed the time of ingest."""
    import time

    src = tmp_path / "feed.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in FEED))
    first = ingest_alerts(plake, src, source="tv")
    time.sleep(0.01)
    before = lake_state(plake.root)
    again = ingest_alerts(plake, src, source="tv")
    assert again.quarantine_id == first.quarantine_id and lake_state(plake.root) == before
    reasons = [r["reason"] for r in plake.read(first.quarantine_id).to_pylist() if "future" in r["reason"]]
    assert reasons == ["ts 2030-01-01T00:00:00+00:00 is in the future of the feed (later than the time of ingest)"]
