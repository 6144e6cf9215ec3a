"""Reproduce checks the stored results, not only the rerun (issue #12, item 8)."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.hashing import file_hash
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.cli.main import lake as lake_cli
from artifact_lake.experiments import create, execute, parse_spec, reproduce
from tests.experiments.test_experiments import SPEC, elake  # noqa: F401 - the fixture


@pytest.fixture
def done(elake):  # noqa: F811
    return execute(elake, create(elake, parse_spec(SPEC))[0].id)


def _writable(path):
    os.chmod(path, 0o644)
    return path


def _delete(lk, artifact_id):
    _writable(object_path(lk.root, artifact_id)).unlink()


def _flip(lk, artifact_id):
    path = _writable(object_path(lk.root, artifact_id))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _swap_content(lk, artifact_id):
    """Valid Parquet of other content, with the manifest's file hash made to match: only the id check sees it."""
    path = _writable(object_path(lk.root, artifact_id))
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    lk.db.execute("UPDATE artifacts SET file_hash = ? WHERE id = ?", (file_hash(path), artifact_id))


@pytest.mark.parametrize(("damage", "state"), [(_delete, "missing"), (_flip, "changed"), (_swap_content, "changed")])
@pytest.mark.parametrize("command", ["experiments", "lake"])
def test_a_missing_or_changed_stored_result_fails_reproduce(elake, done, damage, state, command):  # noqa: F811
    metrics = done.results["metrics"]
    damage(elake, metrics)
    cli = exp_cli if command == "experiments" else lake_cli
    r = CliRunner().invoke(cli, ["--lake", str(elake.root), "reproduce", "exp/sma/metrics"])
    assert r.exit_code == 1, r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: the stored result metrics {metrics[:12]} of run {done.id[:12]} is {state}: ")
    assert "identical: every result id matches" not in r.stdout and "DIFFERENT" in r.stdout
    report = reproduce(elake, done.results["trades"])  # any result of the run finds the same problem
    assert not report.identical
    by_role = {a.role: a for a in report.artifacts}
    assert by_role["metrics"].stored == state and by_role["metrics"].to_dict()["stored"] == state
    assert by_role["metrics"].reproduced == metrics  # the rerun itself still gives the recorded id
    assert by_role["trades"].identical and by_role["equity"].identical


def test_intact_results_still_reproduce_and_say_so(elake, done):  # noqa: F811
    report = reproduce(elake, "exp/sma/metrics")
    assert report.identical and {a.stored for a in report.artifacts} == {"intact"}
