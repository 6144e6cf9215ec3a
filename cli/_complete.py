"""Shell completion of references, types and projection specs (bash, zsh and fish through click).

Completion runs on every <TAB>, so it only opens the manifest read-only with the standard library and asks
indexed queries; it never creates a lake, and any failure completes nothing instead of printing an error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import click
from click.shell_completion import CompletionItem

LIMIT = 200


def _lake_root(ctx: click.Context) -> Path:
    from artifact_lake.artifact_store.lake import default_path

    # the innermost --lake wins: a command's own (kept in its obj by the option's callback), then the group's
    node: click.Context | None = ctx
    while node is not None:
        explicit = (node.obj or {}).get("lake") if isinstance(node.obj, dict) else None
        explicit = explicit or node.params.get("lake_path")
        if explicit:
            return default_path(explicit)
        node = node.parent
    return default_path(None)


def _query(ctx: click.Context, sql: str, args: tuple[str, ...]) -> list[str]:
    path = _lake_root(ctx) / "manifest.sqlite"
    if not path.is_file():
        return []
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=0.5)
    try:
        return [r[0] for r in db.execute(sql, args).fetchall()]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def artifact_refs(ctx: click.Context, incomplete: str) -> list[str]:
    """Names (``NAME``, ``NAME@vN``) and id prefixes that start with what was typed."""
    name, at, _ = incomplete.partition("@")
    if at:
        versions = _query(ctx, "SELECT version FROM names WHERE name = ? ORDER BY version", (name,))
        return [f"{name}@latest", *(f"{name}@v{v}" for v in versions)]
    names = _query(
        ctx, f"SELECT DISTINCT name FROM names WHERE name LIKE ? ESCAPE '\\' ORDER BY name LIMIT {LIMIT}",
        (_like(incomplete),),
    )  # fmt: skip
    if len(incomplete) >= 2 and all(c in "0123456789abcdef" for c in incomplete):
        names += _query(ctx, f"SELECT id FROM artifacts WHERE id >= ? AND id < ? ORDER BY id LIMIT {LIMIT}",
                        (incomplete, incomplete + "g"))  # fmt: skip
    return names


def experiment_refs(ctx: click.Context, incomplete: str) -> list[str]:
    """Experiment names, then artifact references (reproduce and plot take either)."""
    names = _query(
        ctx, f"SELECT DISTINCT name FROM experiments WHERE name LIKE ? ESCAPE '\\' ORDER BY name LIMIT {LIMIT}",
        (_like(incomplete),),
    )  # fmt: skip
    return names + [r for r in artifact_refs(ctx, incomplete) if r not in names]


def role_refs(ctx: click.Context, incomplete: str) -> list[str]:
    """``ROLE=REF`` (or a plain ``REF``): the reference part completes like any artifact reference."""
    role, eq, ref = incomplete.partition("=")
    if not eq:
        return artifact_refs(ctx, incomplete)
    return [f"{role}={r}" for r in artifact_refs(ctx, ref)]


def types(ctx: click.Context, incomplete: str) -> list[str]:
    from artifact_lake.schemas import Registry

    try:
        names = Registry(_lake_root(ctx) / "schemas").names()
    except Exception:  # a broken lake-local schema file must not break the shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def specs(ctx: click.Context, incomplete: str) -> list[str]:
    from artifact_lake.projections.spec import spec_paths

    try:
        names = sorted(spec_paths(_lake_root(ctx) / "projections" / "specs"))
    except Exception:
        return []
    return [n for n in names if n.startswith(incomplete)]


def projection_keys(ctx: click.Context, incomplete: str) -> list[str]:
    folder = _lake_root(ctx) / "projections"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.duckdb") if p.stem.startswith(incomplete))


def complete_items(name: str, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """Run the completer ``name`` of this module; any failure completes nothing (never a traceback in a shell)."""
    fn: Callable[[click.Context, str], list[str]] = globals()[name]
    try:
        return [CompletionItem(v) for v in fn(ctx, incomplete)]
    except Exception:
        return []
