"""Plugins through the real CLI in subprocesses: by path (--plugins, LAKE_PLUGINS) and as an installed
distribution (built and installed with pip --target, found through its entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from tests.conftest import lake_state, subprocess_env

from .conftest import BOLLINGER, SPEC, write


def _cli(tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = f"from artifact_lake.cli.main import {tool}_main; {tool}_main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env or subprocess_env(), timeout=300
    )


@pytest.fixture
def cli_lake(tmp_path):
    root = tmp_path / "lake"
    pq.write_table(synthetic_ohlcv(("A",), bars=800, seed=3), tmp_path / "px.parquet")
    assert _cli("lake", "--lake", str(root), "publish", str(tmp_path / "px.parquet"), "--type", "ohlcv",
                "--name", "px").returncode == 0  # fmt: skip
    write(tmp_path / "spec.toml", SPEC)
    return root


def test_plugin_by_path_through_the_cli(cli_lake, tmp_path):
    plugin = write(tmp_path / "my_strategies.py", BOLLINGER)
    lk = ["--lake", str(cli_lake)]
    before = lake_state(cli_lake)
    refused = _cli("experiments", *lk, "create", str(tmp_path / "spec.toml"))
    assert refused.returncode == 2 and refused.stderr.startswith("error: spec key 'strategy.name': unknown strategy")
    assert lake_state(cli_lake) == before
    with_plugin = [*lk, "--plugins", str(plugin)]
    assert _cli("experiments", *with_plugin, "create", str(tmp_path / "spec.toml")).returncode == 0
    listed = json.loads(_cli("experiments", *with_plugin, "plugins", "--json").stdout)
    boll = next(p for p in listed if p["name"] == "bollinger")
    assert boll["origin"] == f"file {plugin}" and [x["name"] for x in boll["params"]] == ["n", "k", "direction"]
    run = json.loads(_cli("experiments", *with_plugin, "execute", "boll", "--json").stdout)
    assert run["status"] == "succeeded"
    env = subprocess_env(LAKE_PLUGINS=str(plugin))
    assert _cli("experiments", *lk, "reproduce", "boll", env=env).returncode == 0
    plugin.write_text(BOLLINGER.replace("out[z > 0] = 0.0", "out[z > 0.5] = 0.0"))
    changed = _cli("experiments", *lk, "reproduce", "boll", env=env)
    assert changed.returncode == 1 and "+    out[z > 0.5] = 0.0" in changed.stdout
    assert changed.stderr.count("\n") == 1 and changed.stderr.startswith("error: the code of bollinger")
    assert _cli("experiments", *lk, "reproduce", "boll", "--allow-code-change", env=env).returncode == 1
    gone = _cli("experiments", *lk, "reproduce", "boll")
    assert gone.returncode == 2 and "'bollinger' (from file" in gone.stderr
    out = tmp_path / "code"
    assert _cli("experiments", *lk, "code", "boll", "--out", str(out)).returncode == 0
    assert (out / "my_strategies.py").read_text() == BOLLINGER


def test_installed_distribution_plugin_found_through_its_entry_point(cli_lake, tmp_path):
    src = tmp_path / "dist_src"
    (src / "lake_boll").mkdir(parents=True)
    write(src / "lake_boll" / "__init__.py", BOLLINGER)
    write(
        src / "pyproject.toml",
        """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "lake-boll"
        version = "0.3.1"
        [project.entry-points."artifact_lake.plugins"]
        boll = "lake_boll"
        [tool.setuptools]
        packages = ["lake_boll"]
        """,
    )
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if pip.returncode != 0:
        pytest.fail(pip.stderr)
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    lk = ["--lake", str(cli_lake)]
    listed = json.loads(_cli("experiments", *lk, "plugins", "--json", env=env).stdout)
    boll = next(p for p in listed if p["name"] == "bollinger")
    assert boll["origin"] == "distribution lake-boll 0.3.1" and boll["version"] == "0.3.1"
    assert _cli("experiments", *lk, "create", str(tmp_path / "spec.toml"), env=env).returncode == 0
    run = json.loads(_cli("experiments", *lk, "execute", "boll", "--json", env=env).stdout)
    assert run["status"] == "succeeded"
    assert _cli("experiments", *lk, "reproduce", "boll", env=env).returncode == 0
    code = _cli("experiments", *lk, "code", "boll", "--json", env=env)
    shown = json.loads(code.stdout)["plugins"][0]
    assert shown["origin"] == "distribution lake-boll 0.3.1" and "lake_boll/__init__.py" in shown["files"]


def test_plugins_option_is_on_both_root_groups():
    for tool in ("lake", "experiments"):
        assert "--plugins" in _cli(tool, "--help").stdout


def test_tutorial_in_docs_runs(tmp_path):
    """The code blocks of docs/plugins.md's tutorial, run in order in one fresh interpreter."""
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "plugins.md").read_text()
    blocks = [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith("python tutorial")]
    assert blocks
    script = "\n".join(textwrap.dedent(b) for b in blocks)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
