from __future__ import annotations

import hashlib
import os
import subprocess
import textwrap

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import CorruptArtifact
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.projections import ProjectionError, QueryError, UnknownSpec
from tests.conftest import PYTHON, subprocess_env

MIN = 60_000_000


@pytest.fixture
def two_parts(plake):
    t = synthetic_ohlcv(("A", "B"), bars=500, seed=4)
    a = plake.publish(t.slice(0, 300), "ohlcv", name="part-a")  # A 0..299
    b = plake.publish(t.slice(200, 800), "ohlcv", name="part-b")  # A 200..499 and all of B: overlaps on A 200..299
    return t, a.id, b.id


def arrow_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def test_same_key_is_reused_whatever_the_input_order(plake, two_parts):
    _, a, b = two_parts
    first = plake.projection("ohlcv", {"ohlcv": [a, b]})
    again = plake.projection("ohlcv", {"ohlcv": ["part-b", a[:8]]})
    assert not first.reused and again.reused and again.key == first.key and again.path == first.path
    other = plake.projection("ohlcv", {"ohlcv": [a, b]}, {"timeframe": "1m"})
    assert other.key != first.key
    assert [p.name for p in (plake.root / "tmp").iterdir()] == []


def test_overlapping_identical_rows_collapse_and_results_are_sorted(plake, two_parts):
    t, a, b = two_parts
    p = plake.projection("ohlcv", {"ohlcv": [a, b]})
    got = p.arrow("SELECT * FROM ohlcv")
    expected = t.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    assert got.equals(expected.select(got.column_names))


def test_conflicting_rows_name_both_artifacts_symbol_and_time(plake, two_parts):
    t, a, _ = two_parts
    bad = t.slice(250, 10)
    bad = bad.set_column(5, "close", pc.multiply(bad.column("close"), 1.0001))
    bad = bad.set_column(3, "high", pc.max_element_wise(bad.column("high"), bad.column("close")))
    c = plake.publish(bad, "ohlcv").id
    with pytest.raises(ProjectionError) as err:
        plake.projection("ohlcv", {"ohlcv": [a, c]})
    msg = str(err.value)
    assert "ohlcv inputs disagree at A 2024-01-01T04:10:00+00:00" in msg
    assert a[:12] in msg and c[:12] in msg
    assert list((plake.root / "projections").glob("*.duckdb")) == []


def test_gaps_list_missing_bars_per_symbol(plake):
    t = synthetic_ohlcv(("A", "B"), bars=100, seed=1)
    keep = [i for i in range(200) if i not in (10, 11, 12, 150)]
    art = plake.publish(t.take(keep), "ohlcv").id
    gaps = plake.projection("ohlcv", {"ohlcv": art}).arrow("SELECT * FROM gaps").to_pylist()
    assert [(g["symbol"], g["missing_bars"]) for g in gaps] == [("A", 3), ("B", 1)]
    assert gaps[0]["first_missing"].minute == 10 and gaps[0]["last_missing"].minute == 12
    # a declared timeframe larger than the bars finds no gaps of that size
    hourly = plake.projection("ohlcv", {"ohlcv": art}, {"timeframe": "1h"}).arrow("SELECT * FROM gaps")
    assert hourly.num_rows == 0


def test_delete_and_rebuild_gives_byte_identical_query_results(plake, two_parts):
    _, a, b = two_parts
    p = plake.projection("ohlcv", {"ohlcv": [a, b]})
    query = "SELECT symbol, ts, close, volume FROM ohlcv ORDER BY symbol, ts"
    before = arrow_digest(p.arrow(query))
    gaps_before = arrow_digest(p.arrow("SELECT * FROM gaps"))
    assert plake.projections.drop(p.key[:10]) == [p.key]
    assert not p.path.exists()
    rebuilt = plake.projection("ohlcv", {"ohlcv": [a, b]})
    assert not rebuilt.reused
    assert arrow_digest(rebuilt.arrow(query)) == before
    assert arrow_digest(rebuilt.arrow("SELECT * FROM gaps")) == gaps_before


def test_a_projection_opens_in_the_duckdb_1x_cli(plake, two_parts):
    """The `duckdb-cli` package (test extra) is a DuckDB 1.x client: it must read a file built by DuckDB 2."""
    import shutil

    cli = shutil.which("duckdb")
    assert cli, "the duckdb CLI of the duckdb-cli package (test extra) is not installed"
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1."), version
    _, a, b = two_parts
    p = plake.projection("ohlcv", {"ohlcv": [a, b]})
    r = subprocess.run(
        [cli, "-readonly", "-csv", str(p.path), "-c", "SELECT count(*), count(DISTINCT symbol) FROM ohlcv"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == f"{p.arrow('SELECT count(*) FROM ohlcv').column(0)[0].as_py()},2"


BUILD = textwrap.dedent(
    """
    import sys
    from artifact_lake.projections import Lake
    p = Lake.open(sys.argv[1]).projection("ohlcv", {"ohlcv": sys.argv[2:]})
    print(p.key)
    """
)


def test_concurrent_builds_of_one_key_end_with_one_valid_file(plake, two_parts):
    _, a, b = two_parts
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", BUILD, str(plake.root), a, b],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    keys = {o[0].strip() for o in outs}
    assert len(keys) == 1
    files = list((plake.root / "projections").glob("*.duckdb"))
    assert [f.stem for f in files] == list(keys)
    assert plake.projections.show(keys.pop())["relations"]["ohlcv"] == 1000
    assert list((plake.root / "tmp").iterdir()) == []


def test_alerts_windows_and_coverage_classes(plake):
    t = synthetic_ohlcv(("A",), bars=120, seed=2)  # 2024-01-01 00:00 .. 01:59, 1m bars
    o = plake.publish(t.take([i for i in range(120) if not 60 <= i < 65]), "ohlcv").id
    start = t.column("ts")[0].as_py()
    alerts = pa.table(
        {
            "ts": pa.array(
                [
                    start.replace(minute=20),
                    start.replace(minute=58),
                    start.replace(hour=1, minute=59),
                    start.replace(minute=30),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "symbol": ["A", "A", "A", "Z"],
            "side": ["buy", "sell", "buy", "buy"],
            "source": ["s"] * 4,
            "price": [None] * 4,
            "payload": [None] * 4,
        }
    )
    al = plake.publish(alerts, "alerts").id
    p = plake.projection("alerts_ohlcv", {"alerts": al, "ohlcv": o}, {"before": "10m", "after": "10m"})
    cov = {
        r["ts"].strftime("%H:%M") + r["symbol"]: (r["coverage"], r["bars"], r["expected_bars"])
        for r in p.arrow("SELECT * FROM coverage").to_pylist()
    }
    assert cov == {
        "00:20A": ("full", 21, 21),
        "00:58A": ("partial", 16, 21),  # 01:00-01:04 missing
        "01:59A": ("partial", 11, 21),  # the data ends at 01:59
        "00:30Z": ("none", 0, 0),
    }
    bars = p.arrow("SELECT alert, count(*) n FROM bars GROUP BY alert ORDER BY alert").to_pylist()
    assert [(b["alert"], b["n"]) for b in bars] == [(0, 21), (2, 16), (3, 11)]  # numbered by time; 1 is Z


def test_bad_inputs_are_clear_and_leave_nothing_behind(plake, two_parts, tmp_path):
    _, a, b = two_parts
    table_art = plake.publish(pa.table({"x": [1]}), "table").id
    cases = [
        (
            lambda: plake.projection("ohlc", {"ohlcv": a}),
            UnknownSpec,
            "unknown projection spec 'ohlc'; did you mean 'ohlcv'?",
        ),
        (lambda: plake.projection("ohlcv", {}), ProjectionError, "spec 'ohlcv' needs input role 'ohlcv'"),
        (
            lambda: plake.projection("ohlcv", {"ohlcv": a, "olhcv": b}),
            ProjectionError,
            "has no input role 'olhcv'; did you mean 'ohlcv'?",
        ),
        (
            lambda: plake.projection("ohlcv", {"ohlcv": table_art}),
            ProjectionError,
            "needs an artifact of type 'ohlcv', but",
        ),
        (
            lambda: plake.projection("ohlcv", {"ohlcv": a}, {"timeframe": "soon"}),
            ProjectionError,
            "parameter 'timeframe': not a duration: 'soon'",
        ),
        (lambda: plake.projection("ohlcv", {"ohlcv": a}, {"tf": "1m"}), ProjectionError, "has no parameter 'tf'"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as err:
            call()
        assert text in str(err.value)
        assert err.value.exit_code == 2
    spec_dir = plake.root / "projections" / "specs"
    spec_dir.mkdir(parents=True)
    (spec_dir / "broken.toml").write_text(
        'name = "broken"\nversion = 1\nrelations = ["x"]\n[[inputs]]\nrole = "t"\ntype = "table"\n'
        '[sql]\ntext = "CREATE TABLE x AS SELECT nope FROM input_t"\n'
    )
    with pytest.raises(ProjectionError, match=r"spec 'broken': the SQL failed: Binder Error: .*nope"):
        plake.projection("broken", {"t": table_art})
    path = object_path(plake.root, b)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(50)
        f.write(b"\x00\x01\x02")
    with pytest.raises(CorruptArtifact, match=f"input {b} is corrupt"):
        plake.projection("ohlcv", {"ohlcv": [a, b]})
    assert list((plake.root / "projections").glob("*.duckdb")) == []
    assert list((plake.root / "tmp").iterdir()) == []


def test_queries_are_read_only_and_errors_are_one_line(plake, two_parts):
    _, a, _ = two_parts
    p = plake.projection("ohlcv", {"ohlcv": a})
    with pytest.raises(QueryError, match="read-only"):
        p.arrow("CREATE TABLE x AS SELECT 1")
    with pytest.raises(QueryError, match="query failed: .*nope"):
        p.arrow("SELECT nope FROM ohlcv")
    assert p.arrow("SELECT count(*) AS n FROM ohlcv WHERE symbol = ?", ["A"]).to_pylist() == [{"n": 300}]
    assert p.polars("SELECT count(*) AS n FROM ohlcv")["n"][0] == 300


def test_cli_build_query_publish_and_errors(plake, two_parts, tmp_path):
    _, a, b = two_parts
    root = str(plake.root)

    def run(*args):
        return CliRunner().invoke(lake_cli, ["--lake", root, *args])

    r = run("projection", "build", "ohlcv", "--input", "ohlcv=part-a", "--input", f"ohlcv={b[:8]}")
    assert r.exit_code == 0
    key = r.stdout.strip()
    assert run("projection", "show", key[:8], "--json").exit_code == 0
    assert key[:12] in run("projection", "list").stdout
    q = run(
        "query",
        "--projection",
        key[:8],
        "SELECT symbol, count(*) AS n FROM ohlcv GROUP BY ALL ORDER BY 1",
        "--format",
        "csv",
    )
    assert q.stdout.splitlines() == ['"symbol","n"', '"A",500', '"B",500']
    out = tmp_path / "counts.parquet"
    run(
        "query",
        "--projection",
        key,
        "SELECT symbol, count(*) AS n FROM ohlcv GROUP BY ALL ORDER BY 1",
        "--format",
        "parquet",
        "--out",
        str(out),
    )
    pub = run("publish", str(out), "--type", "table", "--name", "counts", "--input", a, "--input", b, "--json")
    assert pub.exit_code == 0
    one = run(
        "query",
        "--spec",
        "ohlcv",
        "--input",
        "ohlcv=part-a",
        "--input",
        f"ohlcv={b}",
        "SELECT symbol, count(*) AS n FROM ohlcv GROUP BY ALL ORDER BY 1",
        "--publish",
        "--name",
        "counts",
        "--json",
    )
    assert one.exit_code == 0, one.output
    import json

    rec = json.loads(one.stdout)
    assert rec["deduplicated"] and rec["id"] == json.loads(pub.stdout)["id"]  # same content either way
    parents = {x["id"] for x in json.loads(run("lineage", "counts", "--json").stdout)["nodes"]} - {rec["id"]}
    assert parents == {a, b}
    for args, line in [
        (("query", "--projection", key, "DROP TABLE ohlcv"), "error: query failed: "),
        (("query", "SELECT 1"), "error: give --projection KEY or --spec SPEC"),
        (("query", "--projection", "ffffff", "SELECT 1"), "error: no projection 'ffffff'"),
        (("projection", "build", "nope", "--input", "x=y"), "error: unknown projection spec 'nope'"),
        (("projection", "drop"), "error: give a projection KEY or --all"),
        (("query", "--projection", key, "SELECT 1", "--format", "parquet"), "error: --format parquet needs --out FILE"),
    ]:
        res = run(*args)
        assert res.exit_code == 2 and res.stderr.startswith(line), (args, res.stderr)
        assert res.stderr.count("\n") == 1
    assert run("projection", "drop", "--all").stdout.strip() == "dropped 1 projection(s)"


def test_a_killed_build_leaves_staging_that_gc_removes(plake):
    from artifact_lake.artifact_store.objects import stage_lock

    lock = stage_lock(plake.root)
    db = lock.path.with_suffix(".duckdb")
    db.write_bytes(b"half a database")
    assert plake.gc().removed == []  # its builder still holds the lock
    lock.close()
    assert sorted(plake.gc().removed) == sorted([str(lock.path), str(db)])


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("inputs = 5", "'inputs' must be a list of [[inputs]] tables (role, type), not 5"),
        ('params = "x"', "'params' must be a table of [params.NAME] tables (type, default, description)"),
        ("relations = [1]", "'relations' must be a list of table names, not [1]"),
    ],
)
def test_malformed_lake_specs_are_one_line(plake, two_parts, body, says):
    spec_dir = plake.root / "projections" / "specs"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "bad.toml").write_text(f'name = "bad"\nversion = 1\n{body}\nsql = "SELECT 1 AS x"\n')
    r = CliRunner().invoke(lake_cli, ["--lake", str(plake.root), "projection", "build", "bad"])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: projection spec {spec_dir / 'bad.toml'}: {says}"


def test_special_files_are_named_for_what_they_are(lake, tmp_path):
    import os

    from artifact_lake.artifact_store import InvalidInput

    os.mkfifo(tmp_path / "pipe.parquet")
    with pytest.raises(InvalidInput, match=r"pipe.parquet: is a FIFO \(named pipe\), not a file"):
        lake.publish(tmp_path / "pipe.parquet", "ohlcv")
    with pytest.raises(InvalidInput, match="/dev/zero: is a character device, not a file"):
        lake.publish("/dev/zero", "ohlcv")
    with pytest.raises(InvalidInput, match="nothing.parquet: no such file"):
        lake.publish(tmp_path / "nothing.parquet", "ohlcv")
