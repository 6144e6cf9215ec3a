from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_lake.cli.main import experiments, lake
from tests.conftest import PYTHON, ROOT, lake_state, subprocess_env, two_ids_sharing_a_prefix


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "lake"

    def invoke(*args: str, lake_dir: Path = root):
        result = CliRunner().invoke(lake, ["--lake", str(lake_dir), *args], catch_exceptions=False)
        return result

    invoke.root = root
    return invoke


@pytest.fixture
def pq_file(tmp_path, ohlcv):
    p = tmp_path / "btc.parquet"
    pq.write_table(ohlcv, p)
    return p


def test_publish_prints_the_id_and_json_has_the_contract_keys(run, pq_file):
    r = run("publish", str(pq_file), "--type", "ohlcv", "--name", "btc", "--meta", "source=synthetic")
    assert r.exit_code == 0
    artifact_id = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", artifact_id)
    r = run("publish", str(pq_file), "--type", "ohlcv", "--name", "btc", "--json")
    out = json.loads(r.stdout)
    assert set(out) == {"id", "type", "name", "version", "deduplicated", "rows", "bytes"}
    assert out["id"] == artifact_id and out["deduplicated"] is True and out["version"] == 1


def test_show_cat_get_find_lineage(run, pq_file, tmp_path):
    parent = run("publish", str(pq_file), "--type", "ohlcv", "--name", "btc", "--meta", "source=syn").stdout.strip()
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(pq_file).slice(0, 20), small)
    child = run("publish", str(small), "--type", "ohlcv", "--name", "btc-small", "--input", "btc").stdout.strip()

    show = json.loads(run("show", child[:8], "--json").stdout)
    assert show["id"] == child and show["parents"] == [parent] and show["rows"] == 20
    assert ["ts", "timestamp[us, tz=UTC]"] in show["columns"]
    assert "timestamp[us, tz=UTC]" in run("show", "btc-small").stdout
    assert json.loads(run("show", "btc", "--json").stdout)["children"] == [child]

    rows = json.loads(run("cat", "btc", "--limit", "3", "--json").stdout)
    assert len(rows) == 3 and rows[0]["symbol"] == "BTC/USDT"
    assert "BTC/USDT" in run("cat", "btc", "--limit", "2").stdout

    out_csv = tmp_path / "o.csv"
    assert run("get", "btc-small", "--out", str(out_csv), "--format", "csv").exit_code == 0
    assert out_csv.read_text().count("\n") == 21
    out_pq = tmp_path / "o.parquet"
    run("get", "btc-small@v1", "--out", str(out_pq))
    assert pq.read_table(out_pq).num_rows == 20

    found = json.loads(run("find", "--meta", "source=syn", "--json").stdout)
    assert [a["id"] for a in found] == [parent]
    assert [a["id"] for a in json.loads(run("find", "--type", "ohlcv", "--limit", "1", "--json").stdout)] == [child]
    assert [a["id"] for a in json.loads(run("find", "--name", "btc-*", "--json").stdout)] == [child]

    lin = json.loads(run("lineage", "btc-small", "--json").stdout)
    assert lin["edges"] == [{"parent": parent, "child": child, "run": None}]
    tree = run("lineage", "btc-small").stdout
    assert child[:12] in tree and parent[:12] in tree
    assert f'"{parent[:12]}" -> "{child[:12]}"' in run("lineage", "btc-small", "--format", "dot").stdout
    assert f"n{parent[:12]} --> n{child[:12]}" in run("lineage", "btc", "--down", "--format", "mermaid").stdout


def _err(result) -> str:
    return result.stderr.strip()


def test_bad_input_is_one_line_exit_2_and_leaves_the_lake_unchanged(run, pq_file, tmp_path, ohlcv):
    good = run("publish", str(pq_file), "--type", "ohlcv", "--name", "btc").stdout.strip()
    run("publish", str(pq_file), "--type", "table", "--name", "raw")  # a second artifact sharing no prefix
    text = tmp_path / "notes.parquet"
    text.write_text("hello")
    broken = tmp_path / "broken.parquet"
    t = ohlcv.set_column(4, "low", pa.array([1.0] * 5 + [1e9] + [1.0] * (ohlcv.num_rows - 6)))
    pq.write_table(t, broken)
    before = lake_state(run.root)
    cases = [
        (
            ["publish", str(tmp_path / "nope.parquet"), "--type", "ohlcv"],
            f"error: {tmp_path / 'nope.parquet'}: no such file",
        ),
        (["publish", str(text), "--type", "ohlcv"], f"error: {text}: not a readable Parquet file"),
        (
            ["publish", str(broken), "--type", "ohlcv"],
            f"error: {broken}: type 'ohlcv': column 'low', row 5: value 1000000000.0 breaks low <= open",
        ),
        (["publish", str(pq_file), "--type", "ohlc"], "error: unknown artifact type 'ohlc'; did you mean 'ohlcv'?"),
        (
            ["publish", str(pq_file), "--type", "ohlcv", "--meta", "novalue"],
            "error: malformed --meta 'novalue': use KEY=VALUE",
        ),
        (["show", "0123456789"], "error: no artifact matches '0123456789'"),
        (["show", "btx"], "error: no artifact matches 'btx'; did you mean 'btc'?"),
        (["lineage", "btc@v7"], "error: 'btc' has no version 7 (latest is v1)"),
        (["find", "--since", "yesterday"], "error: not an ISO time: 'yesterday'"),
    ]
    for args, line in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert _err(r).startswith(line), (args, _err(r))
        assert "\n" not in _err(r) and "Traceback" not in r.stderr
        assert lake_state(run.root) == before
    assert run("show", good[:6]).exit_code == 0


def test_ambiguous_prefix_is_exit_2(run):
    from artifact_lake.artifact_store import Lake

    with Lake.open(run.root) as lk:
        two_ids_sharing_a_prefix(lk)
    r = run("show", "abcdef")
    assert r.exit_code == 2 and _err(r).startswith("error: id prefix 'abcdef' matches several artifacts")


def test_reading_a_missing_lake_is_an_error_not_a_new_lake(tmp_path):
    where = tmp_path / "nowhere"
    r = CliRunner().invoke(lake, ["--lake", str(where), "find"])
    assert r.exit_code == 2 and _err(r) == f"error: no lake at {where} (create one with: lake init --lake {where})"
    assert not where.exists()


def test_verify_exits_1_on_problems_and_gc_cleans(run, pq_file):
    from artifact_lake.artifact_store.objects import object_path

    run("init")
    assert run("verify").exit_code == 0
    orphan = object_path(run.root, "cd" * 32)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    r = run("verify")
    assert r.exit_code == 1 and "orphan" in r.stdout and _err(r) == "error: verify found 1 problem(s)"
    report = json.loads(run("verify", "--json").stdout)
    assert report["ok"] is False and report["problems"][0]["kind"] == "orphan"
    assert str(orphan) in run("gc", "--dry-run").stdout and orphan.exists()
    assert json.loads(run("gc", "--grace", "0", "--json").stdout)["removed"] == [str(orphan)]
    assert run("verify", "--quick").exit_code == 0


def test_lake_home_is_used_when_no_lake_option(tmp_path, monkeypatch, pq_file):
    monkeypatch.setenv("LAKE_HOME", str(tmp_path / "home-lake"))
    r = CliRunner().invoke(lake, ["publish", str(pq_file), "--type", "ohlcv"])
    assert r.exit_code == 0 and (tmp_path / "home-lake" / "manifest.sqlite").exists()


def test_demo_tells_the_whole_story_and_is_deterministic(tmp_path):
    where = tmp_path / "demo"
    r = CliRunner().invoke(lake, ["demo", "--lake", str(where), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    raw, alerts, hourly = out["published"]
    assert (raw["type"], alerts["type"], hourly["type"]) == ("ohlcv", "alerts", "ohlcv")
    sma = out["experiments"]["sma"]["results"]
    assert set(sma) == {"trades", "equity", "metrics"}
    assert {"alert_results", "equity", "metrics"} == set(out["experiments"]["alerts"]["results"])
    assert {e["parent"] for e in out["lineage"]["edges"]} == {raw["id"]}
    assert out["reproduce"]["identical"] is True
    assert (where / "demo-sma.png").read_bytes()[:4] == b"\x89PNG"
    plugin = out["plugin"]  # the user's own strategy: written, registered, swept, reproduced, edited
    assert set(plugin["results"]) == {"trades", "equity", "metrics"}
    assert set(plugin["code"]) == {"demo_bollinger", "demo_zscore"}
    assert plugin["checks"]["plugins"]["demo_bollinger"]["combinations"] == 9  # 3 k x 3 symbols, guarded
    assert plugin["reproduce"]["identical"] is True
    assert plugin["edited"]["refused"] is True
    diff = next(c["diff"] for c in plugin["edited"]["changes"] if c["plugin"] == "demo_bollinger")
    assert "-    out[z > 0] = 0.0\n+    out[z > 0.5] = 0.0" in diff
    assert "out[z > 0.5]" in (where / "demo_strategies.py").read_text()
    again = json.loads(CliRunner().invoke(lake, ["demo", "--lake", str(tmp_path / "d2"), "--json"]).stdout)
    assert again["experiments"]["sma"]["results"] == sma  # seeded data, deterministic code: same ids elsewhere
    assert again["plugin"]["results"] == plugin["results"] and again["plugin"]["code"] == plugin["code"]
    text = CliRunner().invoke(lake, ["demo", "--lake", str(tmp_path / "d3")]).stdout
    assert "identical: every result id matches" in text and f"The demo lake is at {tmp_path / 'd3'}" in text
    assert "+    out[z > 0.5] = 0.0" in text and "reproduce refuses (exit 1 on the CLI)" in text


def _commands(group) -> list[str]:
    import click

    return group.list_commands(click.Context(group))


def test_every_command_has_help_and_a_readme_line():
    import click

    readme = (ROOT / "README.md").read_text()
    for group, prog in ((lake, "lake"), (experiments, "experiments")):
        for name in _commands(group):
            cmd = group.get_command(click.Context(group), name)
            assert cmd.help and cmd.help.strip(), name
            assert f"`{prog} {name}" in readme, f"README lacks {prog} {name}"
            r = CliRunner().invoke(group, [name, "--help"])
            assert r.exit_code == 0


def test_console_script_runs_as_a_real_process_without_heavy_imports(tmp_path, pq_file):
    root = tmp_path / "lake"
    pub = subprocess.run(
        ["lake", "--lake", str(root), "publish", str(pq_file), "--type", "ohlcv", "--json"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert pub.returncode == 0, pub.stderr
    artifact_id = json.loads(pub.stdout)["id"]
    probe = (
        "import sys, json\n"
        "from artifact_lake.cli.main import lake\n"
        "try:\n"
        f"    lake.main(['--lake', {str(root)!r}, 'find', '--limit', '10'], standalone_mode=False)\n"
        "finally:\n"
        "    print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    r = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert artifact_id[:12] in r.stdout
    loaded = set(json.loads(r.stderr.strip().splitlines()[-1]))
    heavy = {"torch", "numba", "duckdb", "polars", "sqlite_utils", "pyarrow", "pandas", "numpy"}
    assert not heavy & loaded, heavy & loaded
    bad = subprocess.run(
        ["lake", "--lake", str(root), "show", "ffffff"], capture_output=True, text=True, env=subprocess_env()
    )
    assert bad.returncode == 2 and bad.stderr == "error: no artifact matches 'ffffff'\n"


def test_lazy_commands_are_listed_with_their_own_help_and_load_only_when_run():
    """`lake --help` lists commands of modules it has not imported; what it prints must be theirs."""
    import click

    probe = (
        "import json, sys\n"
        "from artifact_lake.cli.main import lake\n"
        "from click.testing import CliRunner\n"
        "CliRunner().invoke(lake, ['--help'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('artifact_lake.cli'))))\n"
    )
    r = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert json.loads(r.stdout) == ["artifact_lake.cli", "artifact_lake.cli._core", "artifact_lake.cli.main"]
    for group in (lake, experiments):
        for name, (_module, short) in group.lazy.items():
            cmd = group.get_command(click.Context(group), name)
            assert cmd is not None and " ".join(cmd.help.split("\n\n")[0].split()) == short, name
