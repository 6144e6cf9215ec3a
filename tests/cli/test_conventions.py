"""CLI conventions a user of this ecosystem expects: -h, --lake anywhere, $LAKE_HOME, exit codes, completion."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from artifact_lake.cli.main import experiments, lake
from tests.conftest import subprocess_env


@pytest.fixture
def two_lakes(tmp_path, ohlcv):
    from artifact_lake.artifact_store import Lake

    roots = {}
    for label in ("a", "b"):
        with Lake.open(tmp_path / label) as lk:
            lk.publish(ohlcv.slice(0, 10 if label == "a" else 20), "ohlcv", name=f"px/{label}")
        roots[label] = str(tmp_path / label)
    return roots


@pytest.mark.parametrize(
    "args",
    [["-h"], ["find", "-h"], ["projection", "-h"], ["projection", "build", "-h"], ["ingest", "file", "-h"]],
)
def test_dash_h_is_help(args):
    r = CliRunner().invoke(lake, args)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("Usage: lake")


def test_root_help_lists_exit_codes_and_lake_home():
    out = " ".join(CliRunner().invoke(lake, ["--help"]).output.split())
    assert "[env var: LAKE_HOME]" in out
    assert "Exit codes: 0 ok; 1 a check failed" in out and "70 internal error" in out
    assert "[env var: LAKE_HOME]" in " ".join(CliRunner().invoke(experiments, ["list", "-h"]).output.split())


def _names(runner_result) -> list[str]:
    assert runner_result.exit_code == 0, runner_result.output
    return sorted(n.split("@")[0] for a in json.loads(runner_result.stdout) for n in a.get("names", []))


def test_lake_is_accepted_before_or_after_the_command_and_the_nearest_wins(two_lakes):
    run = CliRunner().invoke
    a, b = two_lakes["a"], two_lakes["b"]
    assert _names(run(lake, ["--lake", a, "find", "--json"])) == ["px/a"]
    assert _names(run(lake, ["find", "--lake", a, "--json"])) == ["px/a"]
    assert _names(run(lake, ["find", "--json"], env={"LAKE_HOME": b})) == ["px/b"]
    assert _names(run(lake, ["--lake", a, "find", "--json"], env={"LAKE_HOME": b})) == ["px/a"]
    assert _names(run(lake, ["find", "--lake", a, "--json"], env={"LAKE_HOME": b})) == ["px/a"]
    assert _names(run(lake, ["--lake", b, "find", "--lake", a, "--json"])) == ["px/a"]
    # sub-groups too
    r = run(lake, ["projection", "list", "--lake", a, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def _complete(group, prog: str, words: str, **env: str) -> list[str]:
    env = {
        f"_{prog.upper()}_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        **env,
    }  # noqa: E501
    r = CliRunner().invoke(group, [], env=env, prog_name=prog)
    assert r.exit_code == 0, r.output
    return [line.split(",", 1)[1] for line in r.stdout.splitlines() if line]


def test_completion_of_references_types_and_specs(two_lakes, tmp_path):
    a = two_lakes["a"]
    assert _complete(lake, "lake", f"lake --lake {a} show px/") == ["px/a"]
    assert _complete(lake, "lake", "lake show px/", LAKE_HOME=a) == ["px/a"]
    assert _complete(lake, "lake", f"lake cat --lake {a} px/a@") == ["px/a@latest", "px/a@v1"]
    assert _complete(lake, "lake", f"lake --lake {a} publish f.parquet --type oh") == ["ohlcv"]
    assert _complete(lake, "lake", f"lake --lake {a} query --spec al") == ["alerts_ohlcv"]
    assert _complete(lake, "lake", f"lake --lake {a} projection build --input ohlcv=px") == ["ohlcv=px/a"]
    # a lake's own type completes too
    (tmp_path / "a" / "schemas" / "fills.toml").write_text(
        'name = "fills"\nversion = 1\n[[columns]]\nname = "x"\ntype = "int64"\n'
    )  # noqa: E501
    assert _complete(lake, "lake", f"lake --lake {a} find --type fi") == ["fills"]
    # no lake there: nothing, and nothing created
    assert _complete(lake, "lake", f"lake --lake {tmp_path / 'none'} show p") == []
    assert not (tmp_path / "none").exists()


def test_completion_scripts_for_bash_zsh_and_fish():
    for shell in ("bash", "zsh", "fish"):
        r = subprocess.run(
            ["lake"], capture_output=True, text=True, env=subprocess_env(_LAKE_COMPLETE=f"{shell}_source"), timeout=60
        )
        assert r.returncode == 0 and "_LAKE_COMPLETE" in r.stdout, (shell, r.stderr)
