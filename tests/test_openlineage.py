"""OpenLineage events of experiment runs and ingests: the real client, its real file transport, configured
through its own environment variables; every event checked against a JSON schema of the OpenLineage run-event
contract (tests/_openlineage_schema.py, written after the 2-0-2 specification)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from artifact_lake.artifact_store import openlineage
from artifact_lake.artifact_store.ingest import backfill, import_file, ingest_alerts
from artifact_lake.artifact_store.ingest.ccxt_source import ExchangeFailed
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.experiments import create, execute, parse_spec, runs_of
from artifact_lake.projections import Lake
from artifact_lake.schemas import ValidationError
from artifact_lake.schemas.errors import LakeError
from tests._openlineage_schema import CORE, SCHEMAS
from tests.conftest import PYTHON, lake_state, subprocess_env
from tests.fakes.binance import FakeBinance

SPEC = """
name = "sma"
kind = "backtest"
seed = 7
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
direction = "long"
[execution]
fee_bps = 10.0
units = "fractional"
[sweep]
fast = [5, 10]
slow = [30]
"""
CSV = """Time,Sym,O,H,L,C,Vol
2024-03-31 01:00:00,BTC,100,101,99,100.5,3
2024-03-31 01:01:00,BTC,100.5,102,100,101,4
"""
MAPPING = {"Time": "ts", "Sym": "symbol", "O": "open", "H": "high", "L": "low", "C": "close", "Vol": "volume"}
FEED = [
    {"ts": "2024-01-01T00:05:10Z", "symbol": "A", "side": "buy", "price": 100.0},
    {"ts": "2024-01-02T08:00:00Z", "symbol": "B", "side": "short"},
    {"ts": "2024-01-02T09:00:00Z", "symbol": "B", "side": "hold"},  # quarantined
]
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


# -- the schemas ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry().with_resources((schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS)


def validate(event: dict, registry: Registry) -> None:
    """The event against the core schema, and each facet against the schema its ``_schemaURL`` names."""
    checker = Draft202012Validator.FORMAT_CHECKER
    assert event["schemaURL"].split("#")[0] == CORE, f"the event is not of spec {CORE}"
    core = registry.contents(CORE)
    Draft202012Validator(core, registry=registry, format_checker=checker).validate(event)
    groups = [event["run"].get("facets", {}), event["job"].get("facets", {})]
    for ds in event.get("inputs", []) + event.get("outputs", []):
        groups += [ds.get("facets", {}), ds.get("inputFacets", {}), ds.get("outputFacets", {})]
    for facets in groups:
        for key, facet in facets.items():
            base = facet["_schemaURL"].split("#")[0]
            assert base in {uri for uri, _ in registry.items()}, f"no schema for facet {key!r} ({base})"
            Draft202012Validator({"$ref": facet["_schemaURL"]}, registry=registry, format_checker=checker).validate(
                facet
            )
            # the facet's schema also fixes the key it goes under (schema, version, errorMessage, ...)
            file_schema = registry.contents(base)
            assert key in file_schema["properties"], f"facet {key!r} does not belong under that key in {base}"
            Draft202012Validator(file_schema, registry=registry, format_checker=checker).validate({key: facet})


def test_the_schema_check_is_not_vacuous(registry):
    from jsonschema import ValidationError as SchemaViolation

    event = {
        "eventTime": "2024-01-01T00:00:00+00:00",
        "eventType": "START",
        "producer": "urn:artifact-lake:0",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "01234567-89ab-cdef-0123-456789abcdef"},
        "job": {"namespace": "ns", "name": "job"},
        "inputs": [{"namespace": "ns", "name": "px", "facets": {"version": {"datasetVersion": "abc"}}}],
    }
    url = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
    event["inputs"][0]["facets"]["version"].update({"_producer": "urn:x", "_schemaURL": url})
    validate(event, registry)
    for path, value in (
        (("run", "runId"), "not-a-uuid"),
        (("eventType",), "DONE"),
        (("inputs", 0, "facets", "version", "datasetVersion"), 7),
        (("inputs", 0, "facets", "version", "_schemaURL"), url.replace("1-0-1", "9-9-9")),
    ):
        broken = json.loads(json.dumps(event))
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises((SchemaViolation, AssertionError)):
            validate(broken, registry)


# -- configuration ---------------------------------------------------------------------------------------
def _clear(monkeypatch, tmp_path: Path) -> None:
    """No OpenLineage setting from the machine: none in the environment, none in the cwd or ~/.openlineage."""
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE") or key == openlineage.NAMESPACE_ENV:
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def events_file(tmp_path, monkeypatch) -> Path:
    """The client's file transport, configured through its OPENLINEAGE__TRANSPORT__* variables."""
    _clear(monkeypatch, tmp_path)
    path = tmp_path / "openlineage" / "events.jsonl"
    path.parent.mkdir()
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(path))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    return path


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def elake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A", "B"), bars=400, seed=3), "ohlcv", name="px")
    yield lk
    lk.close()


def fields(dataset: dict) -> list[list[str]]:
    return [[f["name"], f["type"]] for f in dataset["facets"]["schema"]["fields"]]


# -- experiments -------------------------------------------------------------------------------------------
def test_a_run_emits_start_then_complete_with_frozen_inputs_and_published_results(elake, events_file, registry):
    exp, _ = create(elake, parse_spec(SPEC))
    run = execute(elake, exp.id)
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for e in events:
        validate(e, registry)
    start, complete = events
    assert start["run"]["runId"] == complete["run"]["runId"] == str(uuid.UUID(run.id))
    assert uuid.UUID(start["run"]["runId"]).hex == run.id  # the documented mapping: drop the dashes
    ns = openlineage.namespace(elake)
    assert ns == f"artifact-lake://{socket.gethostname()}{elake.root.resolve()}"
    for e in events:
        assert (e["job"]["namespace"], e["job"]["name"]) == (ns, "experiment/sma")
        assert e["job"]["facets"]["jobType"]["jobType"] == "EXPERIMENT"
        assert [(i["namespace"], i["name"]) for i in e["inputs"]] == [(ns, "px")]
        assert [i["facets"]["version"]["datasetVersion"] for i in e["inputs"]] == exp.spec.inputs["ohlcv"]
        assert fields(e["inputs"][0]) == elake.get("px").columns
    assert not start.get("outputs")
    outputs = {o["name"]: o for o in complete["outputs"]}
    assert set(outputs) == {f"exp/sma/{role}" for role in run.results}
    for role, artifact_id in run.results.items():
        out = outputs[f"exp/sma/{role}"]
        assert out["namespace"] == ns and out["facets"]["version"]["datasetVersion"] == artifact_id
        assert fields(out) == elake.get(artifact_id).columns
        assert [f["ordinal_position"] for f in out["facets"]["schema"]["fields"]] == list(
            range(1, len(elake.get(artifact_id).columns) + 1)
        )
    assert "errorMessage" not in complete["run"]["facets"]
    # a reused run does no work and emits nothing
    assert execute(elake, exp.id).reused and len(read_events(events_file)) == 2


def test_a_failing_run_emits_fail_with_the_error_message(elake, events_file, registry):
    from artifact_lake.artifact_store import CorruptArtifact
    from artifact_lake.artifact_store.objects import object_path

    exp, _ = create(elake, parse_spec(SPEC))
    lost = object_path(elake.root, elake.resolve("px"))  # the input goes missing between create and execute
    lost.chmod(0o644)
    lost.unlink()
    with pytest.raises(CorruptArtifact) as failed:
        execute(elake, exp.id)
    run = runs_of(elake.db, exp.id)[0]
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for e in events:
        validate(e, registry)
    fail = events[1]
    assert fail["run"]["runId"] == str(uuid.UUID(run.id)) and run.status == "failed"
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == run.error and str(failed.value) in error["message"]
    assert error["programmingLanguage"] == "python" and "stackTrace" not in error  # a user error: no trace
    assert not fail.get("outputs")


def test_the_namespace_can_be_set(elake, events_file, monkeypatch):
    monkeypatch.setenv(openlineage.NAMESPACE_ENV, "research-lake")
    execute(elake, create(elake, parse_spec(SPEC))[0].id)
    events = read_events(events_file)
    assert {e["job"]["namespace"] for e in events} == {"research-lake"}
    assert {i["namespace"] for e in events for i in e["inputs"] + e.get("outputs", [])} == {"research-lake"}


# -- ingests -----------------------------------------------------------------------------------------------
def test_a_file_import_emits_its_source_file_raw_and_curated_artifacts(plake, tmp_path, events_file, registry):
    src = tmp_path / "btc.csv"
    src.write_text(CSV)
    rec = import_file(plake, src, "ohlcv", mapping=MAPPING, name="btc")
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for e in events:
        validate(e, registry)
    start, complete = events
    assert start["run"]["runId"] == complete["run"]["runId"] and uuid.UUID(start["run"]["runId"]).version == 7
    assert start["job"]["name"] == "ingest/file/btc.csv"
    assert start["job"]["facets"]["jobType"]["jobType"] == "INGEST"
    assert start["inputs"] == complete["inputs"]
    assert [(i["namespace"], i["name"], i["facets"]) for i in start["inputs"]] == [("file", str(src.resolve()), {})]
    outs = {o["name"]: o for o in complete["outputs"]}
    assert list(outs) == ["raw/btc.csv", "btc"]
    assert outs["raw/btc.csv"]["facets"]["version"]["datasetVersion"] == rec.raw_id
    assert outs["btc"]["facets"]["version"]["datasetVersion"] == rec.id
    assert fields(outs["raw/btc.csv"]) == plake.get(rec.raw_id).columns
    assert fields(outs["btc"]) == plake.get(rec.id).columns
    # a second import of the same file is a new run of the same job, with the same versions
    import_file(plake, src, "ohlcv", mapping=MAPPING, name="btc")
    again = read_events(events_file)[2:]
    assert again[0]["run"]["runId"] != start["run"]["runId"] and again[1]["outputs"] == complete["outputs"]


def test_a_refused_file_import_emits_fail_and_leaves_the_lake_unchanged(plake, tmp_path, events_file, registry):
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV.replace("100,101,99,100.5", "100,99,99,100.5"))  # high below open
    before = lake_state(plake.root)
    with pytest.raises(ValidationError, match="breaks high >= open"):
        import_file(plake, bad, "ohlcv", mapping=MAPPING)
    assert lake_state(plake.root) == before
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for e in events:
        validate(e, registry)
    assert "breaks high >= open" in events[1]["run"]["facets"]["errorMessage"]["message"]


def test_an_alert_feed_emits_its_days_and_quarantine(plake, tmp_path, events_file, registry):
    src = tmp_path / "feed.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in FEED))
    res = ingest_alerts(plake, src, source="tv", as_of="2025-01-01")
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for e in events:
        validate(e, registry)
    assert events[0]["job"]["name"] == "ingest/alerts/tv"
    outs = {o["name"]: o["facets"]["version"]["datasetVersion"] for o in events[1]["outputs"]}
    assert outs == {
        "raw/alerts/tv": res.raw_id,
        "alerts/tv/2024-01-01": res.alerts[0]["id"],
        "alerts/tv/2024-01-02": res.alerts[1]["id"],
        "quarantine/alerts/tv": res.quarantine_id,
    }
    for o in events[1]["outputs"]:
        assert fields(o) == plake.get(o["facets"]["version"]["datasetVersion"]).columns


def test_a_ccxt_backfill_emits_its_markets_and_partitions(plake, events_file, registry):
    with FakeBinance(now_ms=T0 + 86_400_000 + 30 * 60_000) as fb:
        report = backfill(plake, "binance", ["BTC/USDT"], "1m", "2024-01-01", api_url=fb.url, rate_limit_ms=1)
        with pytest.raises(ExchangeFailed, match="no market 'NOPE/USDT'"):
            backfill(plake, "binance", ["NOPE/USDT"], "1m", "2024-01-01", api_url=fb.url, rate_limit_ms=1)
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    for e in events:
        validate(e, registry)
    assert events[0]["job"]["name"] == "ingest/ccxt/binance"
    assert [(i["namespace"], i["name"]) for i in events[0]["inputs"]] == [("ccxt://binance", "BTC/USDT/1m")]
    parts = report.symbols["BTC/USDT"]["partitions"]
    assert [(o["name"], o["facets"]["version"]["datasetVersion"]) for o in events[1]["outputs"]] == [
        (p["name"], p["id"]) for p in parts
    ]
    assert "no market 'NOPE/USDT'" in events[3]["run"]["facets"]["errorMessage"]["message"]


# -- configuration, failure policy -----------------------------------------------------------------------
def test_the_client_config_file_works_too(plake, tmp_path, monkeypatch, registry):
    _clear(monkeypatch, tmp_path)
    path = tmp_path / "events.jsonl"
    (tmp_path / "openlineage.yml").write_text(f"transport:\n  type: file\n  log_file_path: {path}\n  append: true\n")
    src = tmp_path / "btc.csv"
    src.write_text(CSV)
    import_file(plake, src, "ohlcv", mapping=MAPPING)
    assert [e["eventType"] for e in read_events(path)] == ["START", "COMPLETE"]


def test_configured_follows_the_clients_own_resolution(tmp_path, monkeypatch):
    _clear(monkeypatch, tmp_path)
    assert openlineage.configured() is None
    assert openlineage.configured({"OPENLINEAGE_URL": "http://localhost:5000"}) == "OPENLINEAGE_URL"
    assert openlineage.configured({"OPENLINEAGE__TRANSPORT__TYPE": "console"}) == "OPENLINEAGE__TRANSPORT__TYPE"
    assert openlineage.configured({"OPENLINEAGE__TRANSPORT": '{"type": "console"}'}) == "OPENLINEAGE__TRANSPORT"
    assert openlineage.configured({"OPENLINEAGE__FACETS__DISABLED": "x"}) is None  # no transport
    assert openlineage.configured({"OPENLINEAGE_CONFIG": str(tmp_path / "missing.yml")}) is None  # the client skips it
    cfg = tmp_path / "ol.yml"
    cfg.write_text("transport:\n  type: console\n")
    assert openlineage.configured({"OPENLINEAGE_CONFIG": str(cfg)}) == str(cfg)
    assert openlineage.configured({"OPENLINEAGE_URL": "http://x", "OPENLINEAGE_DISABLED": "true"}) is None
    home = tmp_path / "home" / ".openlineage"
    home.mkdir()
    (home / "openlineage.yml").write_text("transport:\n  type: console\n")
    assert openlineage.configured({}) == str(home / "openlineage.yml")
    (tmp_path / "openlineage.yml").write_text("transport:\n  type: console\n")
    assert openlineage.configured({}) == str(tmp_path / "openlineage.yml")


def test_run_ids_map_to_uuids_both_ways():
    run_id = "0123456789abcdef0123456789abcdef"
    assert openlineage.run_uuid(run_id) == "01234567-89ab-cdef-0123-456789abcdef"
    assert uuid.UUID(openlineage.run_uuid(run_id)).hex == run_id
    other = openlineage.run_uuid("not-a-hex-run")
    assert other == openlineage.run_uuid("not-a-hex-run") and uuid.UUID(other).version == 5


def test_a_transport_that_cannot_write_logs_a_warning_and_the_import_succeeds(
    plake, tmp_path, monkeypatch, caplog, events_file
):
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(tmp_path / "no" / "such" / "dir" / "e.jsonl"))
    src = tmp_path / "btc.csv"
    src.write_text(CSV)
    with caplog.at_level(logging.WARNING, logger="artifact_lake.openlineage"):
        rec = import_file(plake, src, "ohlcv", mapping=MAPPING, name="btc")
    assert plake.resolve("btc") == rec.id
    lines = [r.getMessage() for r in caplog.records if r.name == "artifact_lake.openlineage"]
    assert len(lines) == 2 and lines[0].startswith("OpenLineage: START of ingest/file/btc.csv (run ")
    assert "not emitted" in lines[1] and "COMPLETE" in lines[1]


def test_a_configuration_the_client_refuses_is_refused_before_any_work(elake, tmp_path, monkeypatch):
    _clear(monkeypatch, tmp_path)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")  # a file transport needs log_file_path
    exp, _ = create(elake, parse_spec(SPEC))
    before = lake_state(elake.root)
    with pytest.raises(openlineage.OpenLineageUnavailable, match="client refuses the configuration") as err:
        execute(elake, exp.id)
    assert err.value.exit_code == 2 and "OPENLINEAGE__TRANSPORT__TYPE" in str(err.value)
    assert lake_state(elake.root) == before and runs_of(elake.db, exp.id) == []


# -- subprocesses: what gets imported, the missing extra ---------------------------------------------------
def _prepared_lake(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "lake"
    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=200, seed=3), "ohlcv", name="px")
        create(lk, parse_spec(SPEC))
    src = tmp_path / "btc.csv"
    src.write_text(CSV)
    return root, src


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env(**extra).items() if not k.startswith("OPENLINEAGE")}
    env.pop(openlineage.NAMESPACE_ENV, None)
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


SCRIPT = """
import json, sys
{block}
from artifact_lake.artifact_store.ingest import import_file
from artifact_lake.experiments import execute
from artifact_lake.projections import Lake
from artifact_lake.schemas.errors import LakeError

out = {{}}
with Lake.open({root!r}) as lk:
    for what, call in (
        ("execute", lambda: execute(lk, "sma").status),
        ("import", lambda: import_file(lk, {src!r}, "ohlcv", mapping={mapping!r}).type),
    ):
        try:
            out[what] = call()
        except LakeError as exc:
            out[what] = [type(exc).__name__, exc.exit_code, str(exc)]
out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "openlineage")
print(json.dumps(out))
"""


def test_without_configuration_nothing_of_openlineage_is_imported(tmp_path):
    root, src = _prepared_lake(tmp_path)
    code = SCRIPT.format(block="", root=str(root), src=str(src), mapping=MAPPING)
    p = subprocess.run([PYTHON, "-c", code], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert out == {"execute": "succeeded", "import": "ohlcv", "modules": []}


def test_configured_without_the_extra_is_one_line_before_any_work(tmp_path):
    root, src = _prepared_lake(tmp_path)
    before = lake_state(root)
    env = _env(tmp_path, OPENLINEAGE_URL="http://127.0.0.1:9")
    block = 'sys.modules["openlineage"] = None  # as if openlineage-python were not installed'
    code = SCRIPT.format(block=block, root=str(root), src=str(src), mapping=MAPPING)
    p = subprocess.run([PYTHON, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    line = 'OpenLineage is configured (OPENLINEAGE_URL) but its client is not installed: pip install "artifact-lake[openlineage]"'
    assert out["execute"] == out["import"] == ["OpenLineageUnavailable", 2, line]
    assert issubclass(openlineage.OpenLineageUnavailable, LakeError)
    assert lake_state(root) == before
    cli = textwrap.dedent(
        """
        import sys
        sys.modules["openlineage"] = None
        from artifact_lake.cli.main import lake_main
        lake_main()
        """
    )
    args = ["--lake", str(root), "ingest", "file", str(src), "--type", "ohlcv"]
    args += [a for k, v in MAPPING.items() for a in ("--map", f"{k}={v}")]
    p = subprocess.run([PYTHON, "-c", cli, *args], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert (p.returncode, p.stderr, p.stdout) == (2, f"error: {line}\n", "")
    assert lake_state(root) == before
