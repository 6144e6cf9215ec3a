from __future__ import annotations

import os
import stat

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifact_lake.artifact_store import AmbiguousRef, InvalidInput, Lake, NotFound
from artifact_lake.artifact_store import lake as lake_module
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.schemas import UnknownType, ValidationError
from tests.conftest import lake_state, two_ids_sharing_a_prefix


def test_publish_returns_the_record_and_stores_a_read_only_object(lake, ohlcv):
    rec = lake.publish(ohlcv, "ohlcv", name="btc", meta={"source": "synthetic"})
    assert len(rec.id) == 64 and rec.type == "ohlcv" and rec.name == "btc" and rec.version == 1
    assert rec.rows == ohlcv.num_rows and not rec.deduplicated
    path = object_path(lake.root, rec.id)
    assert path.stat().st_size == rec.bytes
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert lake.read(rec.id).equals(pq.read_table(path))
    assert lake.read("btc").num_rows == ohlcv.num_rows


def test_same_content_from_polars_or_another_encoding_is_deduplicated(lake, ohlcv, tmp_path):
    first = lake.publish(ohlcv, "ohlcv")
    again = lake.publish(pl.from_arrow(ohlcv), "ohlcv")
    snappy = tmp_path / "snappy.parquet"
    pq.write_table(ohlcv, snappy, compression="snappy", row_group_size=17)
    from_file = lake.publish(snappy, "ohlcv")
    assert again.id == from_file.id == first.id
    assert again.deduplicated and from_file.deduplicated
    assert lake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == 1
    assert len(list((lake.root / "objects").rglob("*.parquet"))) == 1


def test_republishing_known_bytes_is_recognised_without_decoding(lake, ohlcv, tmp_path, monkeypatch):
    src = tmp_path / "in.parquet"
    pq.write_table(ohlcv, src)
    first = lake.publish(src, "ohlcv")
    reads = []
    real = lake_module._read_parquet
    monkeypatch.setattr(lake_module, "_read_parquet", lambda p: reads.append(p) or real(p))
    again = lake.publish(src, "ohlcv", name="n")
    stored = lake.publish(object_path(lake.root, first.id), "ohlcv")  # the lake's own bytes, too
    assert again.id == stored.id == first.id and again.deduplicated and again.version == 1
    assert reads == []


def test_names_are_versioned_pointers(lake, ohlcv):
    a = lake.publish(ohlcv, "ohlcv", name="px")
    b = lake.publish(ohlcv.slice(0, 100), "ohlcv", name="px")
    same = lake.publish(ohlcv.slice(0, 100), "ohlcv", name="px")
    back = lake.publish(ohlcv, "ohlcv", name="px")
    assert (a.version, b.version, same.version, back.version) == (1, 2, 2, 3)
    assert same.deduplicated and back.deduplicated
    assert lake.resolve("px") == lake.resolve("px@latest") == lake.resolve("px@v3") == a.id
    assert lake.resolve("px@v2") == b.id
    assert sorted(lake.get(a.id).names) == ["px@v1", "px@v3"]
    with pytest.raises(NotFound, match=r"'px' has no version 9 \(latest is v3\)"):
        lake.resolve("px@v9")
    with pytest.raises(NotFound, match="did you mean 'px'"):
        lake.resolve("pz")


@pytest.mark.parametrize("bad", ["has space", "a@b", "../up", "", "end/"])
def test_bad_names_are_refused(lake, ohlcv, bad):
    with pytest.raises(InvalidInput, match="invalid name"):
        lake.publish(ohlcv, "ohlcv", name=bad)


def test_prefixes_resolve_and_ambiguity_is_an_error(lake, ohlcv):
    rec = lake.publish(ohlcv, "ohlcv")
    assert lake.resolve(rec.id[:6]) == rec.id
    with pytest.raises(NotFound, match="at least 6 hex"):
        lake.resolve(rec.id[:5])
    two_ids_sharing_a_prefix(lake)
    with pytest.raises(AmbiguousRef, match="id prefix 'abcdef' matches several artifacts"):
        lake.resolve("abcdef")
    assert lake.resolve("abcdef1") == "abcdef" + "1" * 58


def test_refused_publishes_leave_the_lake_unchanged(lake, ohlcv, tmp_path):
    lake.publish(ohlcv, "ohlcv", name="keep")
    before = lake_state(lake.root)
    broken = ohlcv.set_column(4, "low", pa.array([1e9] * ohlcv.num_rows))
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("ts,symbol\n1,A\n")
    cases = [
        (lambda: lake.publish(broken, "ohlcv", name="keep"), ValidationError),
        (lambda: lake.publish(ohlcv, "nope"), UnknownType),
        (lambda: lake.publish(not_parquet, "ohlcv"), InvalidInput),
        (lambda: lake.publish(tmp_path / "missing.parquet", "ohlcv"), InvalidInput),
        (lambda: lake.publish(ohlcv.slice(0, 5), "ohlcv", inputs=["no-such-name"]), NotFound),
        (lambda: lake.publish(ohlcv.slice(0, 5), "ohlcv", meta={"x": object()}), InvalidInput),
        (lambda: lake.publish({"a": 1}, "table"), InvalidInput),
    ]
    for call, exc in cases:
        with pytest.raises(exc):
            call()
        assert lake_state(lake.root) == before


def test_meta_is_searchable_through_an_index(lake, ohlcv):
    a = lake.publish(ohlcv.slice(0, 10), "ohlcv", meta={"source": "x", "n": 5})
    b = lake.publish(ohlcv.slice(10, 10), "ohlcv", meta={"source": "y", "n": 5}, name="ohlcv/y")
    lake.publish(pa.table({"v": [1]}), "table", meta={"source": "x"})
    assert [r.id for r in lake.find(type="ohlcv", meta={"source": "x"})] == [a.id]
    assert [r.id for r in lake.find(meta={"n": "5"})] == [b.id, a.id]  # newest first; "5" == 5
    assert [r.id for r in lake.find(name="ohlcv/*")] == [b.id]
    assert len(lake.find(limit=2)) == 2
    assert lake.find(since="2999-01-01") == []
    sql, params = lake.find_sql(type="ohlcv", meta={"source": "x", "n": 5}, limit=10)
    plan = [str(r[3]) for r in lake.db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    # driven by the meta index in artifact order: no scan, no sort
    assert plan[0].startswith("SEARCH m0 USING PRIMARY KEY (key=? AND value=?)"), plan
    assert not any("SCAN" in p or "TEMP B-TREE" in p for p in plan), plan


def test_lineage_walks_up_and_down_with_depth(lake):
    ids = []
    for i in range(6):  # a chain 0 <- 1 <- ... <- 5 plus a diamond 0 <- {1, x} <- 2
        ids.append(lake.publish(pa.table({"v": [i]}), "table", inputs=ids[-1:]).id)
    x = lake.publish(pa.table({"v": [99]}), "table", inputs=[ids[0]]).id
    lake.publish(pa.table({"v": [2]}), "table", inputs=[x])  # same content as ids[2]: adds an edge only
    up = lake.lineage(ids[5])
    assert [(n.id, n.depth) for n in up.nodes][:3] == [(ids[5], 0), (ids[4], 1), (ids[3], 2)]
    assert {n.id for n in up.nodes} == set(ids) | {x}
    assert {n.id for n in lake.lineage(ids[5], depth=2).nodes} == {ids[5], ids[4], ids[3]}
    assert lake.walk(ids[5], depth=2) == [(ids[4], 1), (ids[3], 2)]
    assert dict(lake.walk(ids[0], up=False))[ids[2]] == 2
    down = lake.lineage(ids[0], up=False, down=True)
    assert {n.id: n.depth for n in down.nodes}[ids[2]] == 2
    assert (x, ids[2], None) in down.edges
    assert [a.id for a in lake.parents(ids[2])] == [ids[1], x]
    with pytest.raises(InvalidInput):
        lake.lineage(ids[0], depth=-1)


def test_run_ids_are_kept_on_edges(lake):
    a = lake.publish(pa.table({"v": [1]}), "table").id
    b = lake.publish(pa.table({"v": [2]}), "table", inputs=[a], run="run-1").id
    assert lake.runs_of(b) == ["run-1"]
    assert lake.lineage(b).edges == [(a, b, "run-1")]


def test_lake_schema_folder_types_can_be_published(lake):
    (lake.root / "schemas" / "fills.toml").write_text(
        'name = "fills"\nversion = 1\n[[columns]]\nname = "qty"\ntype = "float64"\n'
    )
    fresh = Lake.open(lake.root)
    rec = fresh.publish(pa.table({"qty": [1, 2]}), "fills")  # ints cast losslessly to the declared float64
    assert fresh.read(rec.id).schema.field("qty").type == pa.float64()
    fresh.close()


def test_lost_object_is_restored_by_publishing_the_content_again(lake, ohlcv):
    rec = lake.publish(ohlcv, "ohlcv")
    path = object_path(lake.root, rec.id)
    os.chmod(path, 0o644)
    path.unlink()
    assert not lake.verify().ok
    again = lake.publish(ohlcv, "ohlcv")
    assert again.id == rec.id and path.exists() and lake.verify().ok


def test_any_arrow_stream_publishes_as_the_same_artifact(lake, ohlcv):
    """DuckDB relations, RecordBatchReaders, polars and pandas: one content, one id."""
    import duckdb

    first = lake.publish(ohlcv, "ohlcv")
    con = duckdb.connect()
    con.register("src", ohlcv)
    relation = con.sql("SELECT * FROM src")
    for data in (relation, ohlcv.to_reader(max_chunksize=97), pl.from_arrow(ohlcv), ohlcv.to_pandas()):
        again = lake.publish(data, "ohlcv")
        assert (again.id, again.deduplicated) == (first.id, True), type(data).__name__


def test_a_pandas_datetime_index_becomes_ts(lake, ohlcv):
    import pandas as pd

    frame = ohlcv.to_pandas().set_index("ts")
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert lake.publish(frame, "ohlcv").id == lake.publish(ohlcv, "ohlcv").id
    both = frame.assign(ts=frame.index)
    before = lake_state(lake.root)
    with pytest.raises(InvalidInput, match="both a DatetimeIndex and a 'ts' column"):
        lake.publish(both, "ohlcv")
    assert lake_state(lake.root) == before


def test_an_object_without_arrow_is_refused_in_one_line(lake):
    with pytest.raises(InvalidInput, match=r"cannot publish a dict: .*__arrow_c_stream__"):
        lake.publish({"a": [1]}, "table")
