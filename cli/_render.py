"""Rendering for people (rich) and scripts (JSON). Nothing here touches the lake."""

from __future__ import annotations

import json
import shutil
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from artifact_lake.artifact_store import Artifact, Lineage, LineageNode

SHORT = 12


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((120, 24)).columns, 120)
    return Console(stderr=stderr, width=width, soft_wrap=False, highlight=False, markup=False)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def artifacts_table(arts: list[Artifact], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col, just in (
        ("id", "left"),
        ("type", "left"),
        ("rows", "right"),
        ("size", "right"),
        ("names", "left"),
        ("created (UTC)", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for a in arts:
        table.add_row(a.id[:SHORT], a.type, f"{a.rows:,}", human_bytes(a.bytes), ", ".join(a.names), a.created[:19])
    console().print(table)


def show_artifact(a: Artifact, parents: list[Artifact], children: list[Artifact], runs: list[str]) -> None:
    from rich.table import Table

    c = console()
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("id", a.id)
    info.add_row("type", f"{a.type} (schema v{a.schema_version})")
    info.add_row("rows", f"{a.rows:,}")
    info.add_row("bytes", f"{a.bytes:,} ({human_bytes(a.bytes)})")
    info.add_row("file hash", a.file_hash)
    info.add_row("created", a.created)
    info.add_row("names", ", ".join(a.names) or "-")
    info.add_row("meta", json.dumps(a.meta, sort_keys=True) if a.meta else "-")
    if runs:
        info.add_row("runs", ", ".join(runs))
    c.print(info)
    schema = Table(title="schema")
    schema.add_column("column")
    schema.add_column("type")
    for name, type_ in a.columns:
        schema.add_row(name, type_)
    c.print(schema)
    for label, arts in (("parents", parents), ("children", children)):
        if arts:
            artifacts_table(arts, title=label)
        else:
            c.print(f"{label}: none")


def arrow_table(tbl: Any, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title)
    for name in tbl.column_names:
        table.add_column(name)
    for row in tbl.to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console().print(table)


def _label(a: Artifact | LineageNode) -> str:
    names = f" {', '.join(a.names)}" if a.names else ""
    return f"{a.id[:SHORT]} {a.type}{names}"


def lineage_text(lin: Lineage, fmt: str) -> str | None:
    """dot or mermaid text of a lineage graph; None for ``tree`` (printed by :func:`lineage_tree`)."""
    arts = {n.id: n for n in lin.nodes}
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        for aid, a in arts.items():
            lines.append(f'  "{aid[:SHORT]}" [label="{_label(a)}"];')
        for p, ch, run in lin.edges:
            attr = f' [label="run {run[:SHORT]}"]' if run else ""
            lines.append(f'  "{p[:SHORT]}" -> "{ch[:SHORT]}"{attr};')
        lines.append("}")
        return "\n".join(lines)
    if fmt == "mermaid":
        lines = ["graph LR"]
        for aid, a in arts.items():
            lines.append(f'  n{aid[:SHORT]}["{_label(a)}"]')
        for p, ch, run in lin.edges:
            arrow = f"-- run {run[:SHORT]} -->" if run else "-->"
            lines.append(f"  n{p[:SHORT]} {arrow} n{ch[:SHORT]}")
        return "\n".join(lines)
    return None


def lineage_tree(lin: Lineage, depth: int | None) -> None:
    from rich.text import Text
    from rich.tree import Tree

    arts = {n.id: n for n in lin.nodes}
    ups: dict[str, list[tuple[str, str | None]]] = {}
    downs: dict[str, list[tuple[str, str | None]]] = {}
    for p, ch, run in lin.edges:
        ups.setdefault(ch, []).append((p, run))
        downs.setdefault(p, []).append((ch, run))
    c = console()

    def grow(node: Tree, aid: str, links: dict[str, list[tuple[str, str | None]]], level: int, seen: set[str]) -> None:
        if depth is not None and level >= depth:
            return
        for other, run in sorted(links.get(aid, [])):
            via = f"  (run {run[:SHORT]})" if run else ""
            if other in seen:
                node.add(Text(_label(arts[other])) + Text(f"{via}  (shown above)", style="dim"))
                continue
            seen.add(other)
            grow(node.add(Text(_label(arts[other])) + Text(via, style="dim")), other, links, level + 1, seen)

    for flag, links, word in (("up", ups, "upstream"), ("down", downs, "downstream")):
        if lin.direction in (flag, "both"):
            tree = Tree(Text(_label(arts[lin.root]), style="bold") + Text(f"  {word}", style="dim"))
            grow(tree, lin.root, links, 0, {lin.root})
            c.print(tree)


def projections_table(items: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table()
    for col in ("key", "spec", "relations", "size", "built"):
        table.add_column(col)
    for it in items:
        if "error" in it:
            table.add_row(it["key"][:SHORT], "?", f"unreadable: {it['error']}", "", "")
            continue
        rels = ", ".join(f"{k} ({v:,})" for k, v in it["relations"].items())
        table.add_row(it["key"][:SHORT], it["spec"], rels, human_bytes(it["bytes"]), it["built"][:19])
    console().print(table)


class _LiveBar:
    """A rich progress display on stderr, only when it is a terminal. ``with`` yields the callback the
    library calls (or None); subclasses build the display and the callback in :meth:`start`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None

    def start(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        callback = self.start()
        self.bar.__enter__()
        return callback

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


class _Progress(_LiveBar):
    def start(self) -> Any:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=console(stderr=True), transient=True)  # fmt: skip
        task = self.bar.add_task("running", total=None)

        def update(done: int, total: int, label: str) -> None:
            self.bar.update(task, completed=done, total=total, description=label)

        return update


def progress_bar(enabled: bool = True) -> _Progress:
    """A rich progress bar on stderr (only on a terminal); yields the callback for the library."""
    return _Progress(enabled)


def _metrics_table(rows: list[dict[str, Any]], swept: list[str], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title)
    cols = ["combo", "symbol", *swept, "total_return", "sharpe", "max_drawdown", "n_trades", "final_equity"]
    for c in cols:
        table.add_column(c, justify="left" if c == "symbol" else "right")
    for m in rows:
        cells = []
        for c in cols:
            v = m.get(c)
            if c in ("total_return", "max_drawdown") and isinstance(v, float):
                cells.append(f"{v:+.2%}")
            elif isinstance(v, float):
                cells.append(f"{v:,.2f}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    console().print(table)


def run_summary(lake: Any, run: Any) -> None:
    from artifact_lake.experiments import get_experiment

    exp = get_experiment(lake.db, run.experiment)
    c = console()
    state = "reused an earlier run" if run.reused else run.status
    c.print(f"experiment {exp.name} ({exp.id[:12]})  run {run.id[:12]}  {state}  {run.duration or 0:.2f} s")
    for role, artifact_id in sorted(run.results.items()):
        c.print(f"  {role:14} {artifact_id}")
    if "metrics" in run.results:
        _metrics_table(lake.read(run.results["metrics"]).to_pylist(), exp.spec.swept, title="metrics")


def experiments_table(items: list[Any]) -> None:
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "kind", "strategy", "latest run", "status", "created (UTC)"):
        table.add_column(col)
    for exp, run in items:
        table.add_row(
            exp.id[:SHORT],
            exp.name,
            exp.kind,
            str(exp.spec.doc.get("strategy", {}).get("name", "")),
            run.id[:SHORT] if run else "-",
            run.status if run else "-",
            exp.created[:19],
        )
    console().print(table)


def show_experiment(lake: Any, exp: Any, runs: list[Any]) -> None:
    from rich.table import Table

    c = console()
    c.print(f"experiment {exp.name}  id {exp.id}")
    c.print(json.dumps(exp.spec.doc, indent=2, sort_keys=True))
    table = Table(title="runs")
    for col in ("run", "status", "started", "seconds", "code version", "git", "error"):
        table.add_column(col)
    for r in runs:
        git = f"{(r.git_commit or '-')[:10]}{' dirty' if r.git_dirty else ''}"
        table.add_row(
            r.id[:SHORT], r.status, (r.started or "")[:19], f"{r.duration or 0:.2f}", r.code_version, git, r.error or ""
        )
    c.print(table)
    latest = next((r for r in runs if r.status == "succeeded"), None)
    if latest is None:
        return
    for role, artifact_id in sorted(latest.results.items()):
        c.print(f"  {role:14} {artifact_id}")
    if "metrics" in latest.results:
        _metrics_table(lake.read(latest.results["metrics"]).to_pylist(), exp.spec.swept, title="metrics")
        lineage_tree(lake.lineage(latest.results["metrics"]), 1)


def reproduce_report(report: Any) -> None:
    from rich.table import Table

    c = console()
    table = Table(title=f"reproduce run {report.run[:12]}")
    for col in ("result", "recorded", "reproduced", "same"):
        table.add_column(col)
    for a in report.artifacts:
        table.add_row(a.role, a.recorded[:SHORT], a.reproduced[:SHORT], "yes" if a.identical else "NO")
    c.print(table)
    code = (
        report.recorded_code
        if report.recorded_code == report.current_code
        else f"{report.recorded_code} -> {report.current_code}"
    )
    c.print(f"code version: {code}")
    for a in report.artifacts:
        if not a.identical:
            c.print(f"{a.role}: columns differ: {', '.join(a.columns) or '(none: types or row count)'}; {a.detail}")
    c.print(
        "identical: every result id matches" if report.identical else "DIFFERENT",
        style="bold" if report.identical else "bold red",
    )


class _BackfillProgress(_LiveBar):
    """Candles fetched, pages, rate and ETA of a backfill."""

    def start(self) -> Any:
        import time

        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.fields[candles]:,} candles, {task.fields[pages]} pages, {task.fields[rate]:,.0f}/s"),
            TimeRemainingColumn(), console=console(stderr=True),
        )  # fmt: skip
        tasks: dict[str, Any] = {}
        started: dict[str, float] = {}

        def update(info: dict[str, Any]) -> None:
            sym = info["symbol"]
            if sym not in tasks:
                tasks[sym] = self.bar.add_task(sym, total=info["total_ms"], candles=0, pages=0, rate=0.0)
                started[sym] = time.perf_counter()
            rate = info["candles"] / max(time.perf_counter() - started[sym], 1e-9)
            self.bar.update(
                tasks[sym], completed=info["done_ms"], candles=info["candles"], pages=info["pages"], rate=rate
            )

        return update


def backfill_progress(enabled: bool = True) -> _BackfillProgress:
    return _BackfillProgress(enabled)
