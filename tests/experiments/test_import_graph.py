"""The experiments package has no import circle: every ``from . import`` / ``from .x import`` between its
modules, at top level, inside functions or under ``TYPE_CHECKING``, forms an acyclic graph (the executor
sits on the runners, the runners on spec, strategies, plugins and train, and the spec contract at the bottom).
"""

from __future__ import annotations

import ast
from pathlib import Path

import artifact_lake.experiments as pkg

ROOT = Path(pkg.__file__).resolve().parent
MODULES = {p.stem for p in ROOT.glob("*.py")}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        elif node.level == 0 and (node.module or "").startswith("artifact_lake.experiments"):
            parts = (node.module or "").split(".")
            names = [parts[2]] if len(parts) > 2 else [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n in MODULES)
    return out


def graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p) - {p.stem} for p in sorted(ROOT.glob("*.py"))}


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_the_package():
    g = graph()
    assert {"executor", "runners", "spec", "tracker", "train", "plugins"} <= set(g)
    assert "runners" in g["executor"] and "train" in g["runners"]


def test_no_import_circle_inside_experiments():
    assert _cycle(graph()) is None, " -> ".join(_cycle(graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_executor_has_no_branch_on_kinds_of_work():
    source = (ROOT / "executor.py").read_text(encoding="utf-8")
    for word in ('["strategy"]', ".kind ==", '"alert_replay"', "sma_cross", "OWN_KINDS"):
        assert word not in source
