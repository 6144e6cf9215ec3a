"""Verify checks the manifest, and a damaged manifest is one line everywhere (issue #12, item 9).

Byte flips in the real ``manifest.sqlite`` file (the lake closed, so the WAL is checkpointed into it),
aimed at the text of a name, a meta value, a column list and an experiment's spec, plus flips that break a
page or make a text value invalid UTF-8.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.maintenance import spec_id
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.cli.main import lake as lake_cli

PAGE = 4096


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A closed lake: two artifacts with lineage, names, meta, and a recorded experiment."""
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments.spec import ExperimentSpec
    from artifact_lake.experiments.tracker import put_experiment

    root = tmp_path_factory.mktemp("pristine") / "lake"
    with Lake.open(root) as lk:
        px = lk.publish(synthetic_ohlcv(("A",), bars=50, seed=2), "ohlcv", name="btc-1m", meta={"venue": "binance"})
        lk.publish(lk.read(px.id).slice(0, 10), "ohlcv", name="btc-head", inputs=[px.id])
        doc = {
            "kind": "backtest",
            "name": "flipme",
            "inputs": {"ohlcv": [px.id]},
            "strategy": {"name": "sma_cross", "fast": 5, "slow": 20},
            "seed": 0,
        }
        put_experiment(lk.db, ExperimentSpec(doc))
        assert lk.verify().ok
    return root


@pytest.fixture
def root(pristine, tmp_path):
    copy = tmp_path / "lake"
    shutil.copytree(pristine, copy)
    return copy


def _flip_text(root, needle: bytes, at: int, *, occurrence: int = 0, value: int | None = None):
    """Change one byte of the ``occurrence``-th copy of ``needle`` in the manifest file."""
    path = root / "manifest.sqlite"
    data = bytearray(path.read_bytes())
    pos = -1
    for _ in range(occurrence + 1):
        pos = data.index(needle, pos + 1)
    data[pos + at] = value if value is not None else data[pos + at] ^ 0x01
    path.write_bytes(bytes(data))


def _manifest_problems(root):
    with Lake.open(root) as lk:
        report = lk.verify()
    return [p.detail for p in report.problems if p.kind == "manifest"]


@pytest.mark.parametrize(
    ("needle", "at", "occurrence", "says"),
    [
        (b"btc-1m", 5, 0, "SQLite integrity_check"),  # a renamed name (its index entry keeps the old one)
        (b"btc-1m", 5, 1, "SQLite integrity_check"),  # the same name flipped in the index instead
        (b'"fast":5', 7, 0, "its spec hashes to"),  # an experiment's spec changed
        (b'"venue":"binance"', 12, 0, "meta disagrees with the meta index"),  # a meta value changed
        (b'["symbol","', 3, 0, "'sxmbol'"),  # a column list changed
    ],
)
def test_targeted_flips_in_the_manifest_fail_verify(root, needle, at, occurrence, says):
    _flip_text(root, needle, at, occurrence=occurrence)
    problems = _manifest_problems(root)
    assert any(says in p for p in problems), problems
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "verify"])
    assert r.exit_code == 1 and r.stderr.strip().startswith("error: verify found")


def test_invariants_sqlite_cannot_see_are_checked(root):
    db = sqlite3.connect(root / "manifest.sqlite")
    pks = [r[0] for r in db.execute("SELECT pk FROM artifacts ORDER BY pk")]
    db.execute("INSERT INTO edges (child, parent, run) VALUES (?, ?, NULL)", (pks[0], pks[1]))  # a cycle
    db.execute("INSERT INTO names (name, version, artifact, created) VALUES ('ghost', 1, 999, 'x')")
    db.execute("UPDATE names SET version = 3 WHERE name = 'btc-head'")
    db.execute("UPDATE experiments SET kind = 'train'")
    db.commit()
    db.close()
    problems = _manifest_problems(root)
    for says in ("lineage has a cycle", "names whose artifact points at no artifact", "versions are not 1..1"):
        assert any(says in p for p in problems), (says, problems)
    assert any("kind 'train' is not its spec's" in p for p in problems)


def test_a_text_value_that_is_not_utf8_is_one_line_everywhere(root):
    path = root / "manifest.sqlite"
    data = path.read_bytes()
    assert data.count(b"btc-head") == 2  # the names row and its index entry
    data = data.replace(b"btc-head", b"\xfftc-head").replace(b"flipme", b"\xfflipme")
    path.write_bytes(data)  # what made every command exit 70
    for cli, args in (
        (lake_cli, ["find"]),
        (lake_cli, ["show", "btc-1m"]),
        (lake_cli, ["cat", "btc-head"]),
        (lake_cli, ["lineage", "btc-1m", "--down"]),
        (exp_cli, ["list"]),
    ):
        r = CliRunner().invoke(cli, ["--lake", str(root), *args])
        assert r.exit_code in (1, 2), (args, r.output)
        assert r.stderr.strip() == f"error: {path} is damaged (a text value is not UTF-8): run lake verify", args
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "verify"])
    assert r.exit_code == 1 and "a text value is not UTF-8" in r.stdout


@pytest.mark.parametrize("how", ["not-a-database", "broken-page"])
def test_a_damaged_manifest_is_one_line_and_verify_reports_it(root, how):
    path = root / "manifest.sqlite"
    data = bytearray(path.read_bytes())
    if how == "not-a-database":
        data[:16] = b"this is no db!!\0"
    else:
        data[PAGE : PAGE + 8] = b"\xee" * 8  # the header of the second page
    path.write_bytes(bytes(data))
    for args in (["find"], ["show", "btc-1m"], ["get", "btc-1m", "--out", str(root.parent / "o.parquet")]):
        r = CliRunner().invoke(lake_cli, ["--lake", str(root), *args])
        (line,) = r.stderr.strip().splitlines()
        assert (
            r.exit_code in (1, 2)
            and line.startswith(f"error: {path} is damaged (")
            and line.endswith("): run lake verify")
        ), (args, r.output)
    r = CliRunner().invoke(lake_cli, ["--lake", str(root), "verify", "--json"])
    assert r.exit_code == 1 and '"kind": "manifest"' in r.stdout, r.output


def test_the_experiment_id_rule_is_the_one_experiments_use():
    from artifact_lake.experiments.spec import ExperimentSpec, canonical_json

    for doc in (
        {"kind": "backtest", "name": "données", "strategy": {"slow": 30, "fast": 5.5}, "seed": 0},
        {"kind": "train", "inputs": {"ohlcv": ["ab" * 32]}, "env": {"window": 8, "symbols": ["A", "日本"]}},
    ):
        spec = ExperimentSpec(doc)
        assert spec_id(canonical_json(doc)) == spec.id
        assert spec_id('{"kind": "backtest", "name":"x"}') == ExperimentSpec({"name": "x", "kind": "backtest"}).id
