"""Names and references (issue #12, item 16, store part): the name rules, names against id prefixes,
lineage cycles, meta on a deduplicated publish, and raw names made from file names."""

from __future__ import annotations

import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import AmbiguousRef, InvalidInput, Lake
from artifact_lake.artifact_store import manifest as mf
from artifact_lake.artifact_store.names import MAX_NAME, name_from_file
from artifact_lake.cli.main import lake as lake_cli
from tests.conftest import lake_state


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("px\n", "start with a letter or digit"),
        ("px\r", "start with a letter or digit"),
        ("x" * 100_000, f"at most {MAX_NAME} characters"),
        ("x" * (MAX_NAME + 1), f"at most {MAX_NAME} characters"),
        ("a//b", "no '//'"),
        ("20240105", "hex characters read as an artifact id prefix"),
        ("deadbeef", "hex characters read as an artifact id prefix"),
        ("ab" * 32, "hex characters read as an artifact id prefix"),
    ],
)
def test_names_that_could_not_be_reached_or_would_be_shadowed_are_refused(lake, bad, says):
    before = lake_state(lake.root)
    with pytest.raises(InvalidInput, match="invalid name") as err:
        lake.publish(pa.table({"v": [1]}), "table", name=bad)
    assert says in str(err.value) and len(str(err.value)) < 400
    assert lake_state(lake.root) == before


@pytest.mark.parametrize("good", ["x" * MAX_NAME, "2024-01-05", "day-20240105", "abcde", "ABCDEF", "x20240105"])
def test_names_within_the_rules_are_accepted_and_resolve(lake, good):
    rec = lake.publish(pa.table({"v": [1]}), "table", name=good)
    assert lake.resolve(good) == lake.resolve(f"{good}@v1") == rec.id


def test_an_older_hex_name_never_silently_resolves_to_an_id_prefix(tmp_path):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        a = lk.publish(pa.table({"v": [1]}), "table").id
        b = lk.publish(pa.table({"v": [2]}), "table").id
        with mf.immediate(lk.db):  # recorded before the rule existed
            mf.add_name(lk.db, a[:8], lk._pk(b))
        with pytest.raises(AmbiguousRef, match=f"{a[:8]!r} is both a name and the start of artifact id"):
            lk.resolve(a[:8])
        assert lk.resolve(f"{a[:8]}@latest") == b and lk.resolve(a[:10]) == a
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "show", a[:8]])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {a[:8]!r} is both a name") and "@latest" in r.stderr


def test_an_input_derived_from_the_artifact_is_refused_as_a_cycle(tmp_path):
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        a = lk.publish(pa.table({"v": [1]}), "table", name="a").id
        b = lk.publish(pa.table({"v": [2]}), "table", name="b", inputs=["a"]).id
        c = lk.publish(pa.table({"v": [3]}), "table", name="c", inputs=["b"]).id
        before = lake_state(root)
        with pytest.raises(InvalidInput, match=f"input {c[:12]} was derived from {a[:12]}") as err:
            lk.publish(pa.table({"v": [1]}), "table", name="a2", inputs=["c"])  # a's content again
        assert f"{a[:12]} <- {b[:12]} <- {c[:12]}" in str(err.value)
        assert lake_state(root) == before
        same = lk.publish(pa.table({"v": [1]}), "table", inputs=["a"])  # its own input: no edge, not an error
        assert same.id == a and lk.parents(a) == []
        assert lk.verify().ok
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"v": [2]}), root.parent / "b.parquet")
    r = CliRunner().invoke(
        lake_cli, ["--lake", str(root), "publish", str(root.parent / "b.parquet"), "--type", "table", "--input", "c"]
    )
    assert r.exit_code == 2 and r.stderr.startswith(f"error: input {c[:12]} was derived from {b[:12]}")
    assert lake_state(root) == before


def test_meta_on_a_deduplicated_publish_is_added_or_reported_never_dropped(tmp_path):
    import pyarrow.parquet as pq

    root = tmp_path / "lake"
    src = tmp_path / "t.parquet"
    pq.write_table(pa.table({"v": [1, 2]}), src)
    with Lake.open(root) as lk:
        a = lk.publish(src, "table", meta={"source": "vendor-a"}).id
        again = lk.publish(src, "table", meta={"source": "vendor-b", "desk": "fx"})
        assert again.deduplicated and again.meta_added == ["desk"] and again.meta_kept == ["source"]
        assert lk.get(a).meta == {"source": "vendor-a", "desk": "fx"}
        assert [x.id for x in lk.find(meta={"desk": "fx"})] == [a]
    r = CliRunner().invoke(
        lake_cli,
        ["--lake", str(root), "publish", str(src), "--type", "table", "--meta", "owner=me", "--meta", "desk=eq"],
    )
    assert r.exit_code == 0
    assert r.stderr.strip() == (
        "deduplicated: already in the lake; meta added: owner; meta kept (already set, meta is add-only): desk"
    )
    with Lake.open(root) as lk:
        assert lk.get(a).meta == {"source": "vendor-a", "desk": "fx", "owner": "me"} and lk.verify().ok


@pytest.mark.parametrize(
    ("file_name", "raw"),
    [("my data.csv", "raw/my_data.csv"), ("données.csv", "raw/donnees.csv"), ("20240105.csv", "raw/20240105.csv")],
)
def test_ingest_file_names_the_raw_artifact_from_any_file_name(tmp_path, file_name, raw):
    root = tmp_path / "lake"
    path = tmp_path / file_name
    path.write_text("ts,symbol,open,high,low,close,volume\n2024-01-05T00:00:00Z,A,1,2,0.5,1.5,10\n")
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "ingest", "file", str(path), "--type", "ohlcv", "--json"])
    assert r.exit_code == 0, r.output
    with Lake.open(root) as lk:
        art = lk.get(raw)
        assert art.meta == {"source_file": file_name} and art.names == [f"{raw}@v1"]


def test_names_made_from_file_names_always_pass_the_rules():
    for file_name in ("..", " ", "日本.csv", "a/b:c.csv", "x" * 400, "-.-", "deadbeefcafe"):
        name = name_from_file("raw", file_name)
        assert name.startswith("raw/") and len(name) <= MAX_NAME
