"""The README's portfolio walkthrough runs as written: from a spec to a bit-identical reproduction (issue #14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT, subprocess_env


def _block(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)```", text, re.S)
    assert found, f"README has no {marker} block"
    return found.group(1)


def test_the_readme_portfolio_walkthrough_runs_verbatim_and_reproduces(tmp_path):
    bin_dir = os.path.dirname(sys.executable)  # the `lake` and `experiments` scripts of this environment
    env = subprocess_env(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    env.pop("LAKE_HOME", None)
    r = subprocess.run(
        ["bash", "-e", "-c", _block("portfolio-walkthrough")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "identical: every result id matches" in r.stdout
    assert (tmp_path / "xs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for role in ("equity", "fills", "positions", "metrics"):
        assert re.search(rf"│ {role} +│ (\w{{12}}) +│ \1 +│ yes", r.stdout), role
