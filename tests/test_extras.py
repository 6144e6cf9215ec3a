"""The core install runs the lake, projections, backtests and ingestion; torch (extra ``rl``) only trains."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from tests.conftest import PYTHON, ROOT, subprocess_env

# torch made unimportable, as on a machine that installed only the core
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"

TRAIN = """
name = "ppo"
kind = "train"
seed = 3
[inputs]
ohlcv = ["px"]
[trainer]
total_steps = 256
"""


def _run(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", WITHOUT_TORCH + code, *args], capture_output=True, text=True, env=subprocess_env(), cwd=cwd,
        timeout=300,
    )  # fmt: skip


def test_demo_runs_without_torch(tmp_path):
    code = (
        "from artifact_lake.cli.main import lake\n"
        "lake(['demo', '--lake', sys.argv[1], '--json'], prog_name='lake', standalone_mode=False)\n"
        "assert 'torch' not in {k for k, v in sys.modules.items() if v is not None}\n"
    )
    r = _run(code, str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["reproduce"]["identical"] is True


def test_training_without_torch_names_the_extra(tmp_path):
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.projections import Lake

    with Lake.open(tmp_path / "lake") as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=300, seed=2), "ohlcv", name="px")
    (tmp_path / "ppo.toml").write_text(TRAIN)
    code = "from artifact_lake.cli.main import experiments_main\nsys.argv[0] = 'experiments'\nexperiments_main()\n"
    r = _run(code, "--lake", str(tmp_path / "lake"), "create", str(tmp_path / "ppo.toml"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        'error: training and policy backtests needs torch, which is not installed: pip install "artifact-lake[rl]"'
    ]


def test_every_declared_dependency_is_imported_somewhere():
    """No dependency rides along unused (sqlite-utils once did)."""
    import re

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    modules = {"pyarrow": "pyarrow", "duckdb": "duckdb", "polars": "polars", "click": "click", "blake3": "blake3"}
    modules |= {"rich": "rich", "numpy": "numpy", "numba": "numba", "gymnasium": "gymnasium", "ccxt": "ccxt"}
    modules |= {"matplotlib": "matplotlib", "exchange_calendars": "exchange_calendars"}
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in ("schemas", "artifact_store", "projections", "experiments", "sim", "cli")
        for p in (ROOT / folder).rglob("*.py")
    )
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower()
        assert name in modules, f"{name} is declared but this test does not know its module"
        assert re.search(rf"^\s*(import|from) {modules[name]}\b", source, flags=re.M), f"{name} is never imported"
    assert sys.version_info >= (3, 11)
