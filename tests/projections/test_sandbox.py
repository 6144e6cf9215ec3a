"""SQL that users and lakes supply runs sandboxed; identifiers read from files are quoted; published query
results do not depend on thread timing (issue #12, items 1, 2 and 10)."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.objects import object_path
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.projections import Lake, QueryError
from tests.conftest import lake_state


def cli(root, *args):
    return CliRunner().invoke(lake_cli, ["--lake", str(root), *args])


def one_error_line(res, code: int, start: str) -> None:
    assert res.exit_code == code, (res.exit_code, res.output)
    assert res.stderr.startswith(start), res.stderr
    assert res.stderr.count("\n") == 1, res.stderr


@pytest.fixture
def world(plake, tmp_path):
    """A lake with a built ohlcv projection, an empty folder outside it, and an object of another lake."""
    plake.publish(synthetic_ohlcv(("A", "B"), bars=200, seed=1), "ohlcv", name="px")
    key = plake.projection("ohlcv", {"ohlcv": "px"}).key
    outside = tmp_path / "outside"
    outside.mkdir()
    with Lake.open(tmp_path / "other") as other:
        secret = other.publish(pa.table({"secret": ["do not read"]}), "table").id
        other_object = object_path(other.root, secret)
    return {"lake": plake.root, "key": key, "out": outside, "other": other_object}


QUERY_ATTACKS = [
    "COPY (SELECT 42) TO '{out}/x.csv'",
    "EXPORT DATABASE '{out}/exported'",
    "COPY (SELECT 42) TO '{lake}/manifest.sqlite'",
    "COPY (SELECT 42) TO '{out}/x.parquet' (FORMAT parquet, USE_TMP_FILE false)",
    "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/home/*')",
    "SELECT * FROM read_parquet('{other}')",
    "SELECT * FROM '{other}'",
    "ATTACH '{out}/x.duckdb' AS x",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SELECT 1; COPY (SELECT 42) TO '{out}/y.csv'",
]


@pytest.mark.parametrize("attack", QUERY_ATTACKS)
def test_lake_query_cannot_reach_files_or_settings(world, attack):
    sql = attack.format(**world)
    before = lake_state(world["lake"])
    res = cli(world["lake"], "query", "--projection", world["key"][:10], sql)
    one_error_line(res, 2, "error: query refused: SQL on a projection cannot read or write files")
    assert list(world["out"].iterdir()) == []
    assert lake_state(world["lake"]) == before
    assert cli(world["lake"], "query", "--projection", world["key"], "SELECT count(*) FROM ohlcv").exit_code == 0


def test_the_python_api_is_sandboxed_too(world, plake):
    p = plake.projections.get(world["key"])
    with pytest.raises(QueryError, match="query refused"):
        p.arrow("SELECT * FROM read_text('/etc/passwd')")
    con = p.connect()
    try:
        got = con.execute(
            "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')"
        ).fetchone()
    finally:
        con.close()
    assert got == (False, True)


def test_open_connections_do_not_clash_with_queries(world, plake):
    """Each read-only connection is its own DuckDB instance: one held open does not lock out another's settings."""
    p = plake.projections.get(world["key"])
    held = p.connect()
    try:
        one = p.arrow("SELECT sum(close) AS s FROM ohlcv", deterministic=True)
        assert p.arrow("SELECT count(*) AS n FROM ohlcv").to_pylist() == [{"n": 400}]
        assert held.execute("SELECT sum(close) FROM ohlcv").fetchone()[0] == pytest.approx(one.column(0)[0].as_py())
    finally:
        held.close()


SPEC = """name = "evil"
version = 1
relations = ["x"]
[[inputs]]
role = "t"
type = "table"
[sql]
text = '''{sql}'''
"""

SPEC_ATTACKS = [
    "CREATE TABLE x AS SELECT * FROM input_t; COPY x TO '{out}/x.csv'",
    "CREATE TABLE x AS SELECT * FROM input_t; COPY (SELECT 42) TO '{lake}/manifest.sqlite'",
    "CREATE TABLE x AS SELECT * FROM read_text('/etc/passwd')",
    "CREATE TABLE x AS SELECT * FROM glob('/home/*')",
    "CREATE TABLE x AS SELECT * FROM read_parquet('{other}')",
    "CREATE TABLE x AS SELECT * FROM read_parquet('{own}')",
    "SET enable_external_access = true; CREATE TABLE x AS SELECT * FROM read_text('/etc/passwd')",
    "ATTACH '{out}/x.duckdb' AS o; CREATE TABLE x AS SELECT * FROM input_t",
    "CREATE TABLE x AS SELECT * FROM input_t; EXPORT DATABASE '{out}/exported'",
]


@pytest.mark.parametrize("attack", SPEC_ATTACKS)
def test_a_lake_spec_that_reads_or_writes_files_is_refused(world, plake, attack):
    own = plake.publish(pa.table({"v": [1, 2, 3]}), "table").id
    (world["lake"] / "projections" / "specs").mkdir()
    sql = attack.format(own=object_path(plake.root, own), **world)
    (world["lake"] / "projections" / "specs" / "evil.toml").write_text(SPEC.format(sql=sql))
    before = lake_state(world["lake"])
    for args in (
        ("projection", "build", "evil", "--input", f"t={own}"),
        ("query", "--spec", "evil", "--input", f"t={own}", "SELECT 1"),
    ):
        res = cli(world["lake"], *args)
        one_error_line(
            res, 2, "error: spec 'evil' refused: its SQL may read only its inputs (input_<role>) and _params"
        )
    assert list(world["out"].iterdir()) == []
    assert lake_state(world["lake"]) == before
    assert list((world["lake"] / "tmp").iterdir()) == []


def test_builds_run_with_external_access_off_and_the_configuration_locked(plake):
    own = plake.publish(pa.table({"v": [1]}), "table").id
    specs = plake.root / "projections" / "specs"
    specs.mkdir()
    sql = (
        "CREATE TABLE s AS SELECT current_setting('enable_external_access') AS ext, "
        "current_setting('lock_configuration') AS locked, current_setting('autoload_known_extensions') AS autoload, "
        "(SELECT count(*) FROM input_t) AS n"
    )
    (specs / "settings.toml").write_text(SPEC.replace('"evil"', '"settings"').replace('["x"]', '["s"]').format(sql=sql))
    got = plake.projection("settings", {"t": own}).arrow("SELECT * FROM s").to_pylist()
    assert got == [{"ext": False, "locked": True, "autoload": False, "n": 1}]


def hostile_file(path, out, key):
    """A DuckDB file that looks like a projection and whose table name is SQL."""
    name = f"t\"; COPY (SELECT 42) TO '{out}/pwned.csv'; SELECT count(*) FROM \"t"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (a INTEGER)")  # so the statements spliced around the COPY succeed too
    con.execute('CREATE TABLE "' + name.replace('"', '""') + '" (a INTEGER)')
    con.execute(
        "CREATE TABLE _projection AS SELECT ? AS key, 'ohlcv' AS spec, 1 AS version, '' AS sql, '{}' AS params, "
        "'{}' AS inputs, 3 AS code_version, '2.0.1' AS duckdb_version, now() AS built",
        [key],
    )
    con.close()


def test_a_projection_file_the_lake_did_not_build_is_refused_without_running_anything(world):
    root, out = world["lake"], world["out"]
    key = "ab" * 32
    path = root / "projections" / f"{key}.duckdb"
    hostile_file(path, out, key)
    before = lake_state(root)
    listed = cli(root, "projection", "list", "--json")
    assert listed.exit_code == 0, listed.output
    foreign = [p for p in json.loads(listed.stdout) if p["key"] == key]
    assert foreign and foreign[0]["foreign"] and "not a projection this lake built" in foreign[0]["error"]
    assert cli(root, "projection", "list").exit_code == 0
    for args in (("projection", "show", key[:8]), ("query", "--projection", key[:8], "SELECT 1")):
        res = cli(root, *args)
        one_error_line(res, 1, f"error: {path} is not a projection this lake built (the manifest has no record of it)")
        assert f"lake projection drop {key[:12]}" in res.stderr
    verify = cli(root, "verify", "--json")
    assert verify.exit_code == 1
    assert [(p["kind"], p["subject"]) for p in json.loads(verify.stdout)["problems"]] == [("foreign", str(path))]
    assert list(out.iterdir()) == []
    assert lake_state(root) == before
    assert cli(root, "projection", "drop", key[:8]).exit_code == 0
    assert not path.exists() and cli(root, "verify").exit_code == 0


def test_relation_names_from_a_file_are_quoted(plake):
    own = plake.publish(pa.table({"v": [1, 2, 3]}), "table").id
    specs = plake.root / "projections" / "specs"
    specs.mkdir()
    name = 'we"ird; name'
    sql = 'CREATE TABLE "we""ird; name" AS SELECT * FROM input_t'
    (specs / "odd.toml").write_text(
        SPEC.replace('"evil"', '"odd"').replace('["x"]', "['" + name + "']").format(sql=sql)
    )
    p = plake.projection("odd", {"t": own})
    assert plake.projections.show(p.key)["relations"] == {name: 3}


def test_published_query_results_are_identical_run_after_run(plake):
    """DuckDB sums floats in parallel in whatever order threads finish; a published result must not."""
    rng = np.random.default_rng(12)
    own = plake.publish(pa.table({"x": rng.random(2_000_000) * 1e6}), "table").id
    specs = plake.root / "projections" / "specs"
    specs.mkdir()
    (specs / "copy.toml").write_text(
        SPEC.replace('"evil"', '"copy"').format(sql="CREATE TABLE x AS SELECT * FROM input_t")
    )
    ids = set()
    for run in range(5):
        if run == 3:
            assert cli(plake.root, "projection", "drop", "--all").exit_code == 0  # a rebuilt file: same answer
        res = cli(
            plake.root,
            "query",
            "--spec",
            "copy",
            "--input",
            f"t={own}",
            "SELECT sum(x) AS s FROM x",
            "--publish",
            "--json",
        )
        assert res.exit_code == 0, res.output
        ids.add(json.loads(res.stdout)["id"])
    assert len(ids) == 1
