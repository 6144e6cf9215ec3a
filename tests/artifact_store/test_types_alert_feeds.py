"""An alert feed's bad rows go to quarantine and the rest go on (issue #12, item 17): a negative, infinite or
unreadable price, a garbage line, a blank source. No infinity is ever stored as a price."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.ingest import ingest_alerts
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.schemas import ValidationError

GOOD = {"ts": "2024-01-01T00:00:00Z", "symbol": "A", "side": "buy", "price": 100.0}


def line(**change) -> str:
    return json.dumps(GOOD | change)


def test_json_feed_quarantines_bad_prices_and_garbage_lines_and_keeps_the_rest(plake, tmp_path):
    src = tmp_path / "feed.jsonl"
    lines = [
        line(),
        line(ts="2024-01-01T00:01:00Z", price=-5.0),  # 1: negative
        '{"ts": "2024-01-01T00:02:00Z", "symbol": "A", "side": "buy", "price": Infinity}',  # 2: infinite
        "this is not json",  # 3: garbage
        line(ts="2024-01-01T00:03:00Z", price="abc"),  # 4: not a number
        "[1, 2]",  # 5: JSON, but no object
        line(ts="2024-01-01T00:04:00Z", price=None),  # no price: fine
        line(ts="2024-01-01T00:05:00Z", source="  "),  # 7: blank source (an alerts check)
        line(ts="2024-01-02T00:00:00Z", price="7.5"),  # a price as text: fine
    ]
    src.write_text("\n".join(lines) + "\n")
    res = ingest_alerts(plake, src, source="tv", as_of="2025-01-01")
    assert (res.rows, res.valid, res.quarantined) == (9, 3, 6)
    assert res.reasons == {"bad_price": 3, "garbage": 2, "non_empty": 1}
    q = {r["row"]: r for r in plake.read(res.quarantine_id).to_pylist()}
    assert sorted(q) == [1, 2, 3, 4, 5, 7]
    assert q[1]["reason"] == "price -5.0 is not above 0" and q[2]["reason"] == "price inf is not finite"
    assert q[3]["reason"].startswith("line 4 is not JSON") and json.loads(q[3]["record"]) == {
        "line": "this is not json"
    }
    assert q[4]["reason"] == "price 'abc' is not a number" and q[5]["reason"] == "line 6 is not a JSON object"
    assert q[7]["reason"] == "column 'source': value '  ' breaks not empty"

    def strict(constant: str) -> None:
        pytest.fail(f"{constant} in a quarantined record")

    for r in q.values():
        json.loads(r["record"], parse_constant=strict)
    alerts = plake.read("alerts/tv/2024-01-01").to_pylist() + plake.read("alerts/tv/2024-01-02").to_pylist()
    assert [a["price"] for a in alerts] == [100.0, None, 7.5]
    assert plake.verify().ok


def test_csv_feed_quarantines_a_garbage_line_and_bad_prices(plake, tmp_path):
    src = tmp_path / "feed.csv"
    src.write_text(
        "ts,symbol,side,price\n"
        "2024-01-01T00:00:00Z,A,buy,100\n"
        "garbage\n"
        "2024-01-01T00:01:00Z,A,sell,-1\n"
        "2024-01-01T00:02:00Z,A,sell,inf\n"
        "2024-01-01T00:03:00Z,A,sell,101,extra\n"
        "2024-01-01T00:04:00Z,B,buy,5\n"
    )
    res = ingest_alerts(plake, src, source="csv", as_of="2025-01-01")
    assert (res.rows, res.valid, res.quarantined) == (6, 2, 4)
    q = {r["row"]: r["reason"] for r in plake.read(res.quarantine_id).to_pylist()}
    assert q == {
        1: "line 3 has 1 field(s) where the header has 4",
        2: "price -1.0 is not above 0",
        3: "price inf is not finite",
        4: "line 6 has 5 field(s) where the header has 4",
    }
    assert [a["symbol"] for a in plake.read("alerts/csv/2024-01-01").to_pylist()] == ["A", "B"]
    r = CliRunner().invoke(lake_cli, ["--lake", str(plake.root), "cat", "alerts/csv/2024-01-01", "--json"])
    assert r.exit_code == 0 and "Infinity" not in r.stdout


def test_an_infinite_price_is_refused_by_the_alerts_type(plake):
    feed = pa.table(
        {
            "ts": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
            "symbol": ["A", "A"],
            "side": ["buy", "sell"],
            "source": ["s", "s"],
            "price": [1.0, math.inf],
            "payload": pa.array([None, None], pa.string()),
        }
    )
    with pytest.raises(ValidationError, match="column 'price', row 1: value inf breaks finite"):
        plake.publish(feed, "alerts")
