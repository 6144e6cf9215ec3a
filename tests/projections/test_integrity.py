"""Projections are tamper-evident: a build records the file's hash, every use checks it, verify hashes every
file, execute refuses an edited one and reproduce never trusts the cache (issue #12, item 4)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import textwrap

import duckdb
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.hashing import file_hash
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.experiments import create, execute, parse_spec, reproduce
from artifact_lake.projections import ForeignProjection, Lake
from tests.conftest import PYTHON, lake_state, subprocess_env

SUM = "SELECT symbol, sum(close) AS s, count(*) AS n FROM ohlcv GROUP BY symbol ORDER BY symbol"
SPEC = """
name = "sma"
kind = "backtest"
seed = 7
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
direction = "long"
[sweep]
fast = [5]
slow = [30]
"""


def cli(root, *args, group=lake_cli):
    return CliRunner().invoke(group, ["--lake", str(root), *args])


def notebook_edit(path):
    """What a notebook does: open the projection read-write (DuckDB's default) and change the bars."""
    os.chmod(path, 0o644)  # needed unless the notebook runs as root, which ignores the mode
    con = duckdb.connect(str(path))
    con.execute("UPDATE ohlcv SET close = close * 2")
    con.close()


@pytest.fixture
def built(plake):
    plake.publish(synthetic_ohlcv(("A", "B"), bars=400, seed=5), "ohlcv", name="px")
    res = cli(plake.root, "projection", "build", "ohlcv", "--input", "ohlcv=px")
    assert res.exit_code == 0, res.output
    key = res.stdout.strip()
    return plake, key, plake.root / "projections" / f"{key}.duckdb"


def test_a_build_records_the_file_hash_and_leaves_the_file_read_only(built):
    lake, key, path = built
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    row = lake.db.execute(
        "SELECT file_hash, size, mtime_ns, spec, inputs FROM projections WHERE key = ?", (key,)
    ).fetchone()
    assert row is not None
    assert row["file_hash"] == file_hash(path) and row["size"] == path.stat().st_size
    assert row["mtime_ns"] == path.stat().st_mtime_ns and row["spec"] == "ohlcv"
    assert json.loads(row["inputs"]) == {"ohlcv": [lake.resolve("px")]}
    assert lake.projection("ohlcv", {"ohlcv": "px"}).reused


def test_an_edited_projection_is_refused_by_query_show_build_and_verify(built):
    lake, key, path = built
    before = cli(lake.root, "query", "--projection", key, SUM, "--format", "csv").stdout
    notebook_edit(path)
    fix = f"lake projection drop {key[:12]}"
    for args in (
        ("query", "--projection", key[:8], SUM),
        ("query", "--spec", "ohlcv", "--input", "ohlcv=px", SUM, "--publish"),
        ("projection", "show", key),
        ("projection", "build", "ohlcv", "--input", "ohlcv=px"),
    ):
        res = cli(lake.root, *args)
        assert res.exit_code == 1, (args, res.output)
        assert res.stderr.startswith(f"error: {path} changed since it was built: its bytes hash to "), res.stderr
        assert fix in res.stderr and res.stderr.count("\n") == 1
    listed = json.loads(cli(lake.root, "projection", "list", "--json").stdout)
    assert [p.get("foreign") for p in listed] == [True]
    verify = cli(lake.root, "verify", "--json")
    assert verify.exit_code == 1 and verify.stderr == "error: verify found 1 problem(s)\n"
    assert [(p["kind"], p["subject"]) for p in json.loads(verify.stdout)["problems"]] == [("changed", str(path))]
    # the fix: drop it and build again; the answers are the original ones
    assert cli(lake.root, "projection", "drop", key[:8]).exit_code == 0
    assert lake.db.execute("SELECT count(*) FROM projections").fetchone()[0] == 0
    assert cli(lake.root, "projection", "build", "ohlcv", "--input", "ohlcv=px").stdout.strip() == key
    assert cli(lake.root, "query", "--projection", key, SUM, "--format", "csv").stdout == before
    assert cli(lake.root, "verify").exit_code == 0


def test_only_a_moved_stat_costs_a_hash_and_a_restored_mtime_does_not_hide_an_edit(built):
    lake, key, path = built
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes: still the lake's file
    assert cli(lake.root, "query", "--projection", key, SUM).exit_code == 0
    assert lake.db.execute("SELECT mtime_ns FROM projections").fetchone()[0] == st.st_mtime_ns + 10**9
    # same size, one byte changed, the mtime put back: the inode's ctime still tells
    with open(path, "r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert path.stat().st_size == st.st_size
    res = cli(lake.root, "query", "--projection", key, SUM)
    assert res.exit_code == 1 and "changed since it was built" in res.stderr


WAL_WRITER = textwrap.dedent(
    """
    import os, sys, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("SET checkpoint_threshold = '1GB'")
    con.execute("UPDATE ohlcv SET close = close * 2")
    os._exit(0)  # a notebook kernel that died: the edit lives only in the write-ahead log
    """
)


def test_a_write_ahead_log_beside_a_projection_is_refused(built):
    lake, key, path = built
    os.chmod(path, 0o644)
    subprocess.run([PYTHON, "-c", WAL_WRITER, str(path)], check=True, env=subprocess_env(), timeout=120)
    os.chmod(path, 0o444)
    assert path.with_name(path.name + ".wal").exists()
    res = cli(lake.root, "query", "--projection", key, SUM)
    assert res.exit_code == 1 and "a write-ahead log" in res.stderr, res.output
    assert cli(lake.root, "verify").exit_code == 1
    assert cli(lake.root, "projection", "drop", "--all").exit_code == 0
    assert list((lake.root / "projections").glob("*.duckdb*")) == []


def test_a_projection_copied_from_another_lake_is_foreign(built, tmp_path):
    lake, key, path = built
    with Lake.open(tmp_path / "other") as other:
        other.publish(lake.read("px"), "ohlcv", name="px")  # same content: same id, same key
        theirs = other.projection("ohlcv", {"ohlcv": "px"})
        assert theirs.key == key
        lake.projections.drop()
        shutil.copy2(theirs.path, path)
    with pytest.raises(ForeignProjection, match="is not a projection this lake built") as err:
        lake.projection("ohlcv", {"ohlcv": "px"})
    assert err.value.exit_code == 1
    lake.projections.drop(key)
    assert not lake.projection("ohlcv", {"ohlcv": "px"}).reused


def test_execute_refuses_an_edited_projection_and_publishes_nothing(built, tmp_path):
    lake, key, path = built
    spec = tmp_path / "sma.toml"
    spec.write_text(SPEC)
    assert cli(lake.root, "create", str(spec), group=exp_cli).exit_code == 0
    notebook_edit(path)
    artifacts = lake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
    res = cli(lake.root, "execute", "sma", group=exp_cli)
    assert res.exit_code == 1, res.output
    assert res.stderr.splitlines()[-1].startswith(f"error: {path} changed since it was built")
    assert lake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == artifacts
    assert cli(lake.root, "projection", "drop", key).exit_code == 0
    assert cli(lake.root, "execute", "sma", group=exp_cli).exit_code == 0


def test_reproduce_rebuilds_from_the_objects_and_never_reads_the_cache(built):
    lake, key, path = built
    run = execute(lake, create(lake, parse_spec(SPEC))[0].id)
    notebook_edit(path)  # after the run: the cached projection no longer holds the bars the run saw
    state = lake_state(lake.root)
    edited = file_hash(path)
    report = reproduce(lake, run.results["metrics"])
    assert report.identical
    assert lake_state(lake.root) == state and file_hash(path) == edited  # the evidence stays as it was
    assert list((lake.root / "tmp").iterdir()) == []


def test_reproduce_catches_results_published_from_edited_bars(built):
    """The issue's story: results computed from an edited projection whose record was made to match."""
    lake, key, path = built
    clean = execute(lake, create(lake, parse_spec(SPEC))[0].id)
    notebook_edit(path)
    st = path.stat()
    db = sqlite3.connect(lake.root / "manifest.sqlite")
    db.execute(
        "UPDATE projections SET file_hash = ?, size = ?, mtime_ns = ?, ctime_ns = ?, inode = ? WHERE key = ?",
        (file_hash(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, key),
    )
    db.commit()
    db.close()
    forged = execute(lake, "sma", force=True)
    assert forged.results["metrics"] != clean.results["metrics"]
    res = cli(lake.root, "reproduce", forged.results["metrics"])
    assert res.exit_code == 1 and res.stderr.startswith("error: reproduced results differ"), res.output
    assert cli(lake.root, "reproduce", clean.results["metrics"]).exit_code == 0


def test_drop_never_follows_a_symlink_out_of_the_lake(built, tmp_path):
    """A lake from a tarball can hold links: drop --all removes the lake's own files and nothing they point to."""
    import shutil

    from click.testing import CliRunner

    from artifact_lake.cli.main import lake as lake_cli

    plake, _, built_path = built
    outside = tmp_path / "mine"
    outside.mkdir()
    precious = outside / ("e" * 64 + ".duckdb")
    precious.write_bytes(b"a user's own database")
    link = plake.root / "projections" / ("d" * 64 + ".duckdb")
    link.symlink_to(precious)
    r = CliRunner().invoke(lake_cli, ["--lake", str(plake.root), "projection", "drop", "--all", "--json"])
    assert r.exit_code == 0, r.output
    assert not built_path.exists()
    assert precious.read_bytes() == b"a user's own database" and link.is_symlink()
    # the whole projections/ folder a symlink to the user's folder: nothing there is touched
    shutil.rmtree(plake.root / "projections")
    (plake.root / "projections").symlink_to(outside)
    r = CliRunner().invoke(lake_cli, ["--lake", str(plake.root), "projection", "drop", "--all", "--json"])
    assert precious.read_bytes() == b"a user's own database"
