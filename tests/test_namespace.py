"""Everything installs under ``artifact_lake``: a researcher's own ``sim.py`` or ``schemas.py`` shadows nothing."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import PYTHON, ROOT

FOLDERS = ("schemas", "artifact_store", "projections", "experiments", "sim", "cli")


def _clean_env() -> dict[str, str]:
    """The environment of a user's shell: the installed package only, nothing of this checkout on the path."""
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_users_own_modules_shadow_nothing(tmp_path):
    # a research repository's usual files, each of which would break the lake if it were imported
    for name in ("schemas", "sim", "cli", "projections", "artifact_store"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text(
        "raise ImportError('the user\\'s experiments/ was imported')\n"
    )
    probe = (
        "import json, sys\n"
        "from artifact_lake.artifact_store import Lake\n"
        "from artifact_lake.projections import Lake as PLake\n"
        "from artifact_lake.experiments import create\n"
        "from artifact_lake.sim import run\n"
        "from artifact_lake.cli.main import lake\n"
        "lk = Lake.open('lk'); lk.close()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FOLDERS!r})))\n"
    )
    r = subprocess.run(
        [PYTHON, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_store_imports_no_cli_and_no_heavy_libraries(tmp_path):
    probe = "import json, sys\nimport artifact_lake.artifact_store\nprint(json.dumps(sorted(sys.modules)))\n"
    r = subprocess.run(
        [PYTHON, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), timeout=60
    )
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout))
    assert not {m for m in loaded if m.startswith("artifact_lake.cli")}
    assert not loaded & {"torch", "numba", "duckdb", "click", "matplotlib"}


def test_python_dash_m_is_the_lake_command(tmp_path):
    r = subprocess.run(
        [PYTHON, "-m", "artifact_lake.cli", "--lake", str(tmp_path / "lk"), "init", "--json"],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"lake": str(tmp_path / "lk")}


def _python_sources() -> list[Path]:
    skip = {".git", "build", ".venv", "venv", "__pycache__"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def _bare_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in FOLDERS:
                found.append((node.lineno, name))
    return found


def test_no_code_imports_a_bare_package_name():
    bad = []
    for path in _python_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad += [f"{path.relative_to(ROOT)}:{line}: import {name}" for line, name in _bare_imports(tree)]
        # code handed to a subprocess as a string counts too
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "import " in node.value:
                for m in re.finditer(r"^\s*(?:from|import) (\w+)", node.value, flags=re.M):
                    if m.group(1) in FOLDERS:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: string imports {m.group(1)}")
    assert bad == []


def test_no_doc_imports_a_bare_package_name():
    bad = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            m = re.search(r"(?:^|`)\s*(?:from|import) (\w+)", line)
            if m and m.group(1) in FOLDERS:
                bad.append(f"{doc.name}:{i}: {line.strip()}")
    assert bad == []


def test_wheel_installs_one_top_level_name(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("artifact_lake-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"artifact_lake"}
    assert "artifact_lake/__init__.py" not in names  # a namespace package
    for folder in FOLDERS:
        assert f"artifact_lake/{folder}/__init__.py" in names
    assert "artifact_lake/schemas/types/ohlcv.toml" in names
    assert "artifact_lake/projections/specs/ohlcv.toml" in names
    assert "artifact_lake/artifact_store/ingest/ccxt_source.py" in names
