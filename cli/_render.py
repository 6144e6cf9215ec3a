"""Rendering for people (rich) and scripts (JSON). Nothing here touches the lake."""

from __future__ import annotations

import json
import math
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


def strict(obj: Any) -> Any:
    """``obj`` with every NaN and infinity (Python or numpy floats, in dicts, lists and tuples, numpy arrays)
    turned into None, numpy scalars and arrays into Python values: what strict JSON can hold."""
    if isinstance(obj, float):  # numpy.float64 is a float too
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy scalars and arrays, without importing numpy
        return strict(obj.tolist())
    return obj


def emit_json(obj: Any) -> None:
    """The one place ``--json`` output is printed: strict JSON, NaN and infinities as ``null``.

    ``allow_nan=False`` makes a non-finite float that slips past :func:`strict` an error, never a ``NaN``
    token that strict parsers (browsers, ``jq``, Go, Rust) refuse.
    """
    text = json.dumps(strict(obj), indent=2, sort_keys=False, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


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


def print_rows(
    columns: list[str],
    rows: list[list[str]],
    *,
    title: str | None = None,
    right: tuple[str, ...] = (),
    wrap: tuple[str, ...] = (),
    row_titles: list[str] | None = None,
) -> None:
    """A rich table when it fits the terminal (columns in ``wrap`` may wrap between words); otherwise one
    block per row with a line per column (like ``psql``'s expanded display), so no value or column name is
    ever cut to ``fina…``."""
    from rich.cells import cell_len
    from rich.rule import Rule
    from rich.table import Table

    c = console()

    def width(text: str, wraps: bool = False) -> int:
        parts = text.split() if wraps else text.splitlines()
        return max((cell_len(part) for part in parts), default=0)

    needed = sum(max([width(col), *(width(r[i], col in wrap) for r in rows)]) + 3 for i, col in enumerate(columns))
    if needed + 1 <= c.width:
        table = Table(title=title)
        for col in columns:
            table.add_column(col, justify="right" if col in right else "left", no_wrap=col not in wrap)
        for row in rows:
            table.add_row(*row)
        c.print(table)
        return
    if title:
        c.print(title, style="bold")
    if not rows:
        c.print(f"no rows; columns: {', '.join(columns)}")
    for n, row in enumerate(rows):
        c.print(Rule(row_titles[n] if row_titles else f"row {n + 1}", align="left", style="dim"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for col, value in zip(columns, row, strict=True):
            grid.add_row(col, value)
        c.print(grid)


def arrow_table(tbl: Any, title: str | None = None) -> None:
    """An Arrow table's rows for people (vertical records when it is wider than the terminal)."""
    import pyarrow as pa

    rows = [["" if v is None else str(v) for v in row.values()] for row in tbl.to_pylist()]
    numeric = tuple(f.name for f in tbl.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
    print_rows(list(tbl.column_names), rows, title=title, right=numeric)


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


PERCENT_SIGNED = ("total_return", "max_drawdown", "cagr")
PERCENT = ("win_rate", "exposure")


def format_metric(column: str, value: Any) -> str:
    """A metric for people: returns and drawdowns as ``+533.41%``, other floats as ``1,234.57``, NaN as
    ``n/a``, a missing value as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
    if column in PERCENT_SIGNED and isinstance(value, int | float):
        return f"{value:+.2%}"
    if column in PERCENT and isinstance(value, int | float):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _symbol(symbol: Any) -> str:
    return "portfolio" if symbol == "*" else str(symbol)


METRIC_COLUMNS = ("total_return", "sharpe", "max_drawdown", "n_trades", "final_equity")


def _metrics_table(rows: list[dict[str, Any]], swept: list[str], title: str | None = None) -> None:
    from artifact_lake.experiments.report import format_params

    labelled = any("strategy" in m for m in rows)  # a train experiment: policy, buy_and_hold, flat
    cols = ["combo", "symbol", *(["strategy"] if labelled else []), *swept, *METRIC_COLUMNS]

    def cell(m: dict[str, Any], c: str) -> str:
        if c == "symbol":
            return _symbol(m.get(c))
        if c in swept:  # a parameter as the spec wrote it (a learning rate of 0.0003 is not 0.00)
            return format_params({c: m.get(c)}).partition("=")[2]
        return format_metric(c, m.get(c))

    cells = [[cell(m, c) for c in cols] for m in rows]
    right = tuple(c for c in cols if c not in ("symbol", "strategy"))
    print_rows(cols, cells, title=title, right=right)


def compare_table(rows: list[dict[str, Any]]) -> None:
    """``experiments compare`` for people: each experiment's strategy and fixed parameters above a table of
    its rows (swept parameters, metrics formatted like ``experiments show``)."""
    from artifact_lake.experiments.report import TRAIN_LABELS, format_params

    c = console()
    seen: set[str] = set()
    for r in rows:
        if r["experiment_id"] in seen or (r["strategy"] in ("buy_and_hold", "flat")):
            continue
        seen.add(r["experiment_id"])
        fixed = format_params({k: v for k, v in r["params"].items() if k not in r["swept"]})
        swept = f"; swept: {', '.join(r['swept'])}" if r["swept"] else ""
        kind = "train" if r["strategy"] in TRAIN_LABELS else r["strategy"]
        c.print(f"{r['experiment']} ({r['experiment_id'][:SHORT]}) {kind}: fixed: {fixed or '-'}{swept}")
    cols = ["experiment", "symbol", "swept", *METRIC_COLUMNS]
    cells = []
    for r in rows:
        # a backtest's row is its combination (sweep #3); a train experiment's, its strategy (ppo policy)
        which = r["strategy"] if r["strategy"] in TRAIN_LABELS else f"#{r['combo']}"
        swept = format_params({k: v for k, v in r["params"].items() if k in r["swept"]})
        head = [f"{r['experiment']} {which}", _symbol(r["symbol"]), swept or "-"]
        cells.append(head + [format_metric(k, r[k]) for k in METRIC_COLUMNS])
    print_rows(cols, cells, right=METRIC_COLUMNS, wrap=("swept",))


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
        if getattr(a, "stored", "intact") != "intact":
            c.print(f"{a.role}: the stored result is {a.stored}: {a.detail}")
        elif not a.identical:
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
