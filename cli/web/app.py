"""The web UI behind ``lake ui``: server-rendered pages (Jinja templates in ``templates/``, htmx and uPlot in
``static/``) over the same library calls as the CLI. Every page is also JSON with a ``.json`` suffix.

Safety (docs/ui.md): the manifest is opened read-only (``mode=ro``, ``immutable`` on a read-only mount), no
page writes to the lake, every value a user types reaches SQLite as a parameter, and no user SQL is run at
all (tables are read through :meth:`Lake.read`/:meth:`Lake.head`, which check each object's file hash).
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from artifact_lake.artifact_store import manifest as mf
from artifact_lake.experiments import report as rpt
from artifact_lake.experiments import tracker
from artifact_lake.projections import Lake
from artifact_lake.schemas.errors import LakeError

HERE = Path(__file__).parent
PAGE = 50
"""Rows per page of the artifacts list (keyset pagination)."""
MAX_POINTS = 1500
"""Points per chart series sent to the browser (a stride over the bars keeps the first and last)."""
SORTS: dict[str, tuple[str | None, bool]] = {
    "newest": (None, True),
    "oldest": (None, False),
    "largest": ("a.bytes", True),
    "most_rows": ("a.rows", True),
}
"""Sort name -> (column, descending); None is the insertion order the manifest's key gives."""


def open_read_only(root: str | Path) -> Lake:
    """The lake at ``root`` with its manifest opened read-only: nothing this UI does can write to it."""
    from artifact_lake.artifact_store.errors import NotFound

    path = Path(root).resolve()
    manifest = path / "manifest.sqlite"
    if not manifest.is_file():
        raise NotFound(f"no lake at {path} (create one with: lake init --lake {path})")
    lake = Lake(path, mf.connect(manifest, readonly=True))
    lake.read_only = True
    return lake


def jsonable(value: Any) -> Any:
    """Strict JSON: NaN and infinities as null, times as ISO text, bytes as base64."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    return value


class _Cache:
    """Small tables by artifact id. Content ids are immutable, so a cached table is never stale."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.items: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.lock = threading.Lock()

    def rows(self, lake: Lake, artifact_id: str) -> list[dict[str, Any]]:
        with self.lock:
            hit = self.items.get(artifact_id)
            if hit is not None:
                self.items.move_to_end(artifact_id)
                return hit
        rows: list[dict[str, Any]] = lake.read(artifact_id).to_pylist()
        with self.lock:
            self.items[artifact_id] = rows
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return rows


class _Job:
    def __init__(self, ref: str) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.ref = ref
        self.state = "queued"
        self.started = time.monotonic()
        self.finished: float | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.step = 0
        self.total = 0
        self.label = ""

    def progress(self, step: int, total: int, label: str) -> None:
        """The rerun's progress callback (called from the job's thread; read by the status page)."""
        self.step, self.total, self.label = int(step), int(total), str(label)

    def to_dict(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "id": self.id,
            "ref": self.ref,
            "state": self.state,
            "elapsed": round(end - self.started, 1),
            "progress": {"step": self.step, "total": self.total, "label": self.label},
            "report": self.result,
            "error": self.error,
        }


class UI:
    """The application's state: where the lake is, one read-only connection per worker thread, caches, jobs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        open_read_only(self.root).close()  # a missing or damaged lake is one line before the server starts
        self.local = threading.local()
        self.tables = _Cache()
        self.jobs: dict[str, _Job] = {}
        self.lock = threading.Lock()
        self.equity_tables: OrderedDict[str, Any] = OrderedDict()
        self.memo: dict[tuple[Any, ...], Any] = {}
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters["metric"] = format_metric
        env.filters["size"] = format_size
        env.filters["short"] = lambda s, n=12: (s or "")[:n]
        env.filters["symbol"] = rpt.symbol_label
        env.filters["params"] = rpt.format_params
        env.filters["tojson_attr"] = lambda v: json.dumps(jsonable(v))
        env.globals["static_version"] = "2"

    def equity(self, artifact_id: str) -> Any:
        """An equity table (checked bytes), kept for the next chart of the same run: ids never change."""
        with self.lock:
            hit = self.equity_tables.get(artifact_id)
        if hit is None:
            columns = ["combo", "symbol", "ts", "equity"]
            have = {c[0] for c in self.lake.get(artifact_id).columns}
            columns += [c for c in ("gross_exposure", "net_exposure") if c in have]  # a portfolio's equity
            hit = self.lake.read(artifact_id, columns=columns)
            with self.lock:
                self.equity_tables[artifact_id] = hit
                while len(self.equity_tables) > 8:
                    self.equity_tables.popitem(last=False)
        return hit

    @property
    def lake(self) -> Lake:
        lake: Lake | None = getattr(self.local, "lake", None)
        if lake is None:
            lake = open_read_only(self.root)
            self.local.lake = lake
        return lake

    def page(self, request: Request, template: str, ctx: dict[str, Any], as_json: bool) -> Response:
        if as_json:
            return JSONResponse(jsonable({k: v for k, v in ctx.items() if not k.startswith("_")}))
        return self.templates.TemplateResponse(request, template, {"lake_root": str(self.root), **ctx})


def format_metric(value: Any, column: str = "") -> str:
    """A metric as ``experiments show`` prints it (one formatting for the CLI and the UI)."""
    from artifact_lake.cli._render import format_metric as render

    return render(column, value)


def format_size(n: Any) -> str:
    """Bytes as the CLI prints them (``12.3 KiB``)."""
    from artifact_lake.cli._render import human_bytes

    return human_bytes(int(n or 0))


def _split_json(value: str) -> tuple[str, bool]:
    return (value[: -len(".json")], True) if value.endswith(".json") else (value, False)


# -- pages ---------------------------------------------------------------------------------------------------------


def overview(ui: UI, request: Request) -> Response:
    as_json = request.url.path.endswith(".json")
    db = ui.lake.db
    # artifacts are only ever added (gc removes orphan files, never rows): the largest key and the count say
    # whether the per-type totals (a scan of every row) changed since the last time
    key = ("by_type", *db.execute("SELECT max(pk), count(*) FROM artifacts").fetchone())
    by_type = ui.memo.get(key)
    if by_type is None:
        by_type = [
            {"type": t, "artifacts": n, "bytes": b or 0}
            for t, n, b in db.execute("SELECT type, count(*), sum(bytes) FROM artifacts GROUP BY type ORDER BY type")
        ]
        ui.memo = {k: v for k, v in ui.memo.items() if k[0] != "by_type"} | {key: by_type}
    recent = _artifact_rows(db, "SELECT a.pk, a.id, a.type, a.rows, a.bytes, a.created FROM artifacts a", [], 10)
    tracker.ensure_tables(db)
    runs = [
        dict(r)
        for r in db.execute(
            "SELECT r.id, r.status, r.started, r.duration, r.device, e.name AS experiment, e.id AS experiment_id"
            " FROM runs r JOIN experiments e ON e.id = r.experiment ORDER BY r.started DESC LIMIT 10"
        )
    ]
    ctx = {
        "by_type": by_type,
        "total": {"artifacts": sum(t["artifacts"] for t in by_type), "bytes": sum(t["bytes"] for t in by_type)},
        "recent": recent,
        "runs": runs,
    }
    return ui.page(request, "overview.html", ctx, as_json)


def _artifact_rows(
    db: Any, select: str, params: list[Any], limit: int, order: str = "a.pk DESC"
) -> list[dict[str, Any]]:
    rows = [dict(r) for r in db.execute(f"{select} ORDER BY {order} LIMIT ?", [*params, limit])]
    if rows:
        names: dict[int, list[str]] = {}
        for pk, name, version in db.execute(
            "SELECT n.artifact, n.name, n.version FROM json_each(?) j JOIN names n ON n.artifact = j.value"
            " ORDER BY n.name, n.version",
            (json.dumps([r["pk"] for r in rows]),),
        ):
            names.setdefault(pk, []).append(f"{name}@v{version}")
        for r in rows:
            r["names"] = names.get(r["pk"], [])
    return rows


def _meta_filter(text: str) -> dict[str, str]:
    from artifact_lake.artifact_store.errors import InvalidInput

    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"malformed meta filter {item!r}: use KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def artifacts(ui: UI, request: Request) -> Response:
    """Search by type, name glob, meta and date, through :meth:`Lake.find_sql` (the filters of ``lake find``),
    with keyset pagination over (sort column, key): never an OFFSET."""
    as_json = request.url.path.endswith(".json")
    q = request.query_params
    type_, name, since = q.get("type") or None, q.get("name") or None, q.get("since") or None
    meta = _meta_filter(q.get("meta", ""))
    filters: dict[str, Any] = {"type": type_, "name": name, "meta": meta, "since": since}
    sort = q.get("sort", "newest")
    if sort not in SORTS:
        sort = "newest"
    column, desc = SORTS[sort]
    sql, params = Lake.find_sql(type_, name, meta or None, since)
    base, _, order = sql.rpartition(" ORDER BY ")
    key = order.split()[0]  # a.pk, or m0.artifact (the same number) when a meta filter drives the query
    base = base.replace("SELECT a.*", "SELECT a.pk, a.id, a.type, a.rows, a.bytes, a.created", 1)
    cmp = "<" if desc else ">"
    after = q.get("after")
    where: list[str] = []
    if after:
        try:
            parts = [int(x) for x in after.split(":")]
        except ValueError:
            parts = []
        if column is None and len(parts) == 1:
            where.append(f"{key} {cmp} ?")
            params.append(parts[0])
        elif column is not None and len(parts) == 2:
            where.append(f"({column}, {key}) {cmp} (?, ?)")
            params += parts
    if where:
        base += (" AND " if " WHERE " in base else " WHERE ") + " AND ".join(where)
    direction = "DESC" if desc else "ASC"
    ordering = f"{key} {direction}" if column is None else f"{column} {direction}, {key} {direction}"
    rows = _artifact_rows(ui.lake.db, base, params, PAGE + 1, ordering)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    cursor = None
    if more:
        last = rows[-1]
        cursor = str(last["pk"]) if column is None else f"{last[column.split('.')[1]]}:{last['pk']}"
    types = [t for (t,) in ui.lake.db.execute("SELECT DISTINCT type FROM artifacts ORDER BY type")]
    keep = [(k, v) for k, v in q.multi_items() if k != "after" and v]
    ctx = {
        "filters": {**filters, "meta": q.get("meta", ""), "sort": sort},
        "rows": rows,
        "next": cursor,
        "next_url": "/artifacts?" + urlencode([*keep, ("after", cursor)]) if cursor else None,
        "types": types,
        "sorts": list(SORTS),
    }
    template = "_artifact_rows.html" if request.headers.get("HX-Request") and after else "artifacts.html"
    return ui.page(request, template, ctx, as_json)


def _lineage_graph(lake: Lake, artifact_id: str, depth: int = 3, per_column: int = 8) -> dict[str, Any]:
    """Columns of a left-to-right graph: ancestors at negative depth, the artifact at 0, descendants after."""
    up = lake.lineage(artifact_id, up=True, down=False, depth=depth)
    down = lake.lineage(artifact_id, up=False, down=True, depth=depth)
    columns: dict[int, list[dict[str, Any]]] = {}
    hidden: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for sign, lin in ((-1, up), (1, down)):
        for node in lin.nodes:
            col = sign * node.depth
            if node.id in pos or (node.depth == 0 and sign == 1):
                continue
            cells = columns.setdefault(col, [])
            if len(cells) >= per_column:
                hidden[col] = hidden.get(col, 0) + 1
                continue
            pos[node.id] = (col, len(cells))
            cells.append({"id": node.id, "type": node.type, "label": node.names[0] if node.names else node.id[:12]})
    edges = [(p, c, run) for p, c, run in [*up.edges, *down.edges] if p in pos and c in pos]
    cols = sorted(columns)
    width, height, box_w, box_h, gap_x, gap_y = 200, 40, 180, 30, 60, 14
    x_of = {c: i * (width + gap_x) + 10 for i, c in enumerate(cols)}
    nodes = []
    for col in cols:
        for i, cell in enumerate(columns[col]):
            nodes.append({**cell, "x": x_of[col], "y": 10 + i * (height + gap_y), "root": col == 0})
    where = {n["id"]: n for n in nodes}
    lines = [
        {
            "x1": where[p]["x"] + box_w,
            "y1": where[p]["y"] + box_h / 2,
            "x2": where[c]["x"],
            "y2": where[c]["y"] + box_h / 2,
            "run": run,
        }
        for p, c, run in sorted(set(edges))
    ]
    rows = max((len(v) for v in columns.values()), default=1)
    more = [{"x": x_of[c], "y": 10 + per_column * (height + gap_y), "n": n} for c, n in sorted(hidden.items())]
    return {
        "nodes": nodes,
        "edges": lines,
        "more": more,
        "box_w": box_w,
        "box_h": box_h,
        "width": max(len(cols), 1) * (width + gap_x),
        "height": 20 + (rows + (1 if hidden else 0)) * (height + gap_y),
    }


def artifact(ui: UI, request: Request) -> Response:
    ref, as_json = _split_json(request.path_params["ref"])
    lake = ui.lake
    art = lake.get(ref)
    head = lake.head(art.id, 20)
    runs = lake.runs_of(art.id)
    made_by = tracker.run_of_artifact(lake.db, art.id)
    versions = [
        {"name": n, "version": v, "created": c, "id": i, "this": i == art.id}
        for n, v, c, i in lake.db.execute(
            "SELECT n.name, n.version, n.created, a.id FROM names n JOIN artifacts a ON a.pk = n.artifact"
            " WHERE n.name IN (SELECT m.name FROM names m JOIN artifacts b ON b.pk = m.artifact WHERE b.id = ?)"
            " ORDER BY n.name, n.version DESC LIMIT 200",
            (art.id,),
        )
    ]
    ctx = {
        "artifact": art,
        "versions": versions,
        "head": {"columns": head.column_names, "rows": [list(r.values()) for r in head.to_pylist()]},
        "runs": runs,
        "made_by": made_by.id if made_by else None,
        "experiment": made_by.experiment if made_by else None,
        "lineage": _lineage_graph(lake, art.id),
    }
    return ui.page(request, "artifact.html", ctx, as_json)


def download(ui: UI, request: Request) -> Response:
    ref, fmt = request.path_params["ref"], request.path_params["fmt"]
    if fmt not in ("parquet", "csv"):
        return Response("unknown format", status_code=404)
    lake = ui.lake
    art = lake.get(ref)
    folder = Path(tempfile.mkdtemp(prefix="lake-ui-"))
    try:
        out = lake.export(art.id, folder / f"{art.id}.{fmt}", fmt)
        data = out.read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    media = "application/vnd.apache.parquet" if fmt == "parquet" else "text/csv"
    name = (art.names[0].split("@")[0].replace("/", "_") if art.names else art.id[:12]) + f".{fmt}"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _headline(ui: UI, run: tracker.Run | None) -> dict[str, Any] | None:
    """The best combination's main metrics of a run (by total return), from its metrics artifact."""
    if run is None or run.status != "succeeded" or "metrics" not in run.results:
        return None
    rows = ui.tables.rows(ui.lake, run.results["metrics"])
    finite = [r for r in rows if isinstance(r.get("total_return"), int | float) and math.isfinite(r["total_return"])]
    if not finite:
        return None
    best = max(finite, key=lambda r: r["total_return"])
    return {k: best.get(k) for k in ("symbol", "combo", *rpt.COMPARE_METRICS)} | {"combinations": len(rows)}


def experiments_page(ui: UI, request: Request) -> Response:
    as_json = request.url.path.endswith(".json")
    db = ui.lake.db
    tracker.ensure_tables(db)
    # the list is rebuilt when an experiment or run is added or changes state; a live run's status also
    # depends on its lock file, so while one is live the list is never reused
    key = (
        "experiments",
        *db.execute(
            "SELECT (SELECT count(*) FROM experiments), count(*), max(started), max(finished),"
            " sum(status IN ('queued', 'running')) FROM runs"
        ).fetchone(),
    )
    items = ui.memo.get(key) if not key[-1] else None
    if items is None:
        items = tracker.list_experiments(db)
        ui.memo = {k: v for k, v in ui.memo.items() if k[0] != "experiments"} | {key: items}
    rows = [{"experiment": e, "run": r, "headline": _headline(ui, r)} for e, r in items]
    return ui.page(request, "experiments.html", {"experiments": rows}, as_json)


def _pick_run(lake: Lake, runs: list[tracker.Run], wanted: str | None) -> tracker.Run | None:
    if wanted:
        return tracker.get_run(lake.db, wanted)
    return next((r for r in runs if r.status == "succeeded"), runs[0] if runs else None)


def _heatmap(exp: tracker.Experiment, metrics: list[dict[str, Any]], metric: str, symbol: str) -> dict[str, Any] | None:
    """Cells over the first two swept parameters for one symbol; more swept parameters take their best cell."""
    swept = exp.spec.swept
    if len(swept) < 2 or not metrics:
        return None
    px, py = swept[0], swept[1]
    xs = sorted({m[px] for m in metrics if px in m}, key=_sort_key)
    ys = sorted({m[py] for m in metrics if py in m}, key=_sort_key)
    cells: dict[tuple[Any, Any], dict[str, Any]] = {}
    for m in metrics:
        if m.get("symbol") != symbol or px not in m or py not in m:
            continue
        value = m.get(metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        key = (m[px], m[py])
        if key not in cells or value > cells[key]["value"]:
            cells[key] = {"value": value, "combo": m["combo"]}
    values = [c["value"] for c in cells.values()]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    grid = []
    for y in reversed(ys):
        row: list[dict[str, Any] | None] = []
        for x in xs:
            cell = cells.get((x, y))
            if cell is None:
                row.append(None)
                continue
            t = 0.5 if hi == lo else (cell["value"] - lo) / (hi - lo)
            row.append({**cell, "colour": _colour(t), "text": format_metric(cell["value"], metric)})
        grid.append({"y": y, "cells": row})
    return {"x": px, "y": py, "xs": xs, "rows": grid, "metric": metric, "symbol": symbol, "lo": lo, "hi": hi}


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float) else (1, str(v))


def _colour(t: float) -> str:
    """A diverging red-white-green scale from 0 to 1."""
    t = min(max(t, 0.0), 1.0)
    if t < 0.5:
        k = t / 0.5
        r, g, b = 215 + (247 - 215) * k, 48 + (247 - 48) * k, 39 + (247 - 39) * k
    else:
        k = (t - 0.5) / 0.5
        r, g, b = 247 + (26 - 247) * k, 247 + (152 - 247) * k, 247 + (80 - 247) * k
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def experiment(ui: UI, request: Request) -> Response:
    ref, as_json = _split_json(request.path_params["ref"])
    lake = ui.lake
    q = request.query_params
    exp = tracker.get_experiment(lake.db, ref)
    runs = tracker.runs_of(lake.db, exp.id)
    run = _pick_run(lake, runs, q.get("run"))
    metrics = ui.tables.rows(lake, run.results["metrics"]) if run and "metrics" in run.results else []
    columns = [c for c in (metrics[0].keys() if metrics else []) if c not in ("combo", "symbol")]
    numeric = [c for c in columns if c not in exp.spec.swept and isinstance(metrics[0].get(c), int | float)]
    symbols = sorted({str(m["symbol"]) for m in metrics if "symbol" in m})
    symbol = str(q.get("symbol")) if q.get("symbol") in symbols else (symbols[0] if symbols else "")
    metric = (
        str(q.get("metric")) if q.get("metric") in numeric else ("total_return" if "total_return" in numeric else "")
    )
    combo_text = q.get("combo")
    combo = int(combo_text) if combo_text and combo_text.isdigit() else None
    heat = _heatmap(exp, metrics, metric, symbol) if metric else None
    combo_params = rpt.strategy_params(exp, combo) if combo is not None and exp.kind != "train" else None
    ctx = {
        "experiment": exp,
        "runs": runs,
        "run": run,
        "metrics": metrics,
        "columns": columns,
        "numeric": numeric,
        "swept": exp.spec.swept,
        "symbols": symbols,
        "symbol": symbol,
        "metric": metric,
        "combo": combo,
        "combo_params": combo_params,
        "heatmap": heat,
        "spec_text": json.dumps(exp.spec.doc, indent=2, sort_keys=True),
        "has_equity": bool(run and "equity" in run.results),
        "has_curve": bool(run and "training_curve" in run.results),
        "sources": _plugin_sources(lake, run),
        # a train sweep's rows are trials, experiments of their own: a combination opens its trial's page
        "trials": {int(m["combo"]): str(m["experiment"]) for m in metrics if exp.kind == "train" and "experiment" in m},
    }
    if request.headers.get("HX-Request") and q.get("fragment") == "heatmap":
        return ui.page(request, "_heatmap.html", ctx, as_json)
    return ui.page(request, "experiment.html", ctx, as_json)


def _stride(n: int) -> int:
    return max(1, math.ceil(n / MAX_POINTS))


def equity_data(ui: UI, request: Request) -> Response:
    """Series for the equity and drawdown charts (and, for a portfolio, gross and net exposure): ``run``,
    ``symbol`` and one or more ``combo``."""
    import numpy as np
    import pyarrow.compute as pc

    lake = ui.lake
    q = request.query_params
    run = tracker.get_run(lake.db, q.get("run", ""))
    exp = tracker.get_experiment(lake.db, run.experiment)
    if "equity" not in run.results:
        return JSONResponse({"ts": [], "series": []})
    combos = [int(c) for c in q.getlist("combo") if c.isdigit()]
    symbol = q.get("symbol", "")
    table = ui.equity(run.results["equity"])
    part = table.filter(pc.equal(table.column("symbol"), symbol))
    if not combos:
        metrics = ui.tables.rows(lake, run.results["metrics"]) if "metrics" in run.results else []
        kept = set(pc.unique(part.column("combo")).to_pylist())  # a large sweep keeps equity for [results] only
        ranked = sorted(
            (
                m
                for m in metrics
                if m.get("symbol") == symbol and m.get("combo") in kept and _finite(m.get("total_return"))
            ),
            key=lambda m: -float(m["total_return"]),
        )
        combos = [int(m["combo"]) for m in ranked[:5]]
    swept = exp.spec.swept
    ts_out: list[float] | None = None
    series = []
    for combo in combos[:12]:
        one = part.filter(pc.equal(part.column("combo"), combo))
        if one.num_rows == 0:
            continue
        values = one.column("equity").to_numpy()
        ts = one.column("ts").cast("int64").to_numpy()
        peak = np.maximum.accumulate(values)
        dd = np.where(peak > 0, values / np.where(peak > 0, peak, 1.0) - 1.0, 0.0)
        idx = np.unique(np.append(np.arange(0, one.num_rows, _stride(one.num_rows)), one.num_rows - 1))
        if ts_out is None:
            ts_out = (ts[idx] / 1e6).tolist()
        elif len(ts_out) != len(idx):
            continue
        params = rpt.strategy_params(exp, combo) if exp.kind != "train" else {}
        label = rpt.format_params({k: params[k] for k in swept if k in params}, " ")
        entry = {
            "combo": combo,
            "label": f"#{combo} {label}".strip(),
            "equity": values[idx].tolist(),
            "drawdown": dd[idx].tolist(),
        }
        for key in ("gross_exposure", "net_exposure"):
            if key in one.column_names:
                entry[key] = one.column(key).to_numpy()[idx].tolist()
        series.append(entry)
    return JSONResponse(jsonable({"symbol": symbol, "ts": ts_out or [], "series": series}))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def curve_data(ui: UI, request: Request) -> Response:
    """A train run's training curve (steps, mean episodic return)."""
    lake = ui.lake
    run = tracker.get_run(lake.db, request.query_params.get("run", ""))
    if "training_curve" not in run.results:
        return JSONResponse({"steps": [], "episodic_return": []})
    curve = lake.read(run.results["training_curve"]).to_pydict()
    return JSONResponse(
        jsonable({"steps": curve.get("steps", []), "episodic_return": curve.get("episodic_return", [])})
    )


def _plugin_sources(lake: Lake, run: tracker.Run | None) -> list[dict[str, Any]]:
    """The user plugins ``run`` ran: name, kind, origin, code hash and the files of their recorded ``source``
    artifact (read through :func:`experiments.reproduce.recorded_sources`, checked bytes; shown as text, never
    imported). Plugins that share one source artifact list its files once, on the first of them."""
    from artifact_lake.experiments.reproduce import recorded_sources

    if run is None:
        return []
    out: list[dict[str, Any]] = []
    shown: dict[str, str] = {}
    for name, rec in sorted(run.plugins.items()):
        source = str(rec.get("source") or "")
        item: dict[str, Any] = {
            "plugin": name,
            "kind": rec.get("kind", ""),
            "origin": rec.get("origin", ""),
            "hash": rec.get("hash", ""),
            "source": source,
            "files": [],
            "same_as": shown.get(source),
            "error": None,
        }
        if item["same_as"] is None:
            try:
                files = recorded_sources(lake, source)
            except LakeError as exc:
                item["error"] = f"the recorded source {source[:12]} cannot be read: {exc}"
            else:
                item["files"] = [{"path": k, "text": v} for k, v in sorted(files.items())]
                shown[source] = name
        out.append(item)
    return out


def run_page(ui: UI, request: Request) -> Response:
    run_id, as_json = _split_json(request.path_params["run"])
    lake = ui.lake
    run = tracker.get_run(lake.db, run_id)
    exp = tracker.get_experiment(lake.db, run.experiment)
    ctx = {"run": run, "experiment": exp, "headline": _headline(ui, run), "sources": _plugin_sources(lake, run)}
    return ui.page(request, "run.html", ctx, as_json)


def compare_page(ui: UI, request: Request) -> Response:
    """Experiments' latest runs (``exp``) and any runs (``run``) side by side (:func:`experiments.report.compare`),
    equity overlaid."""
    as_json = request.url.path.endswith(".json")
    refs = [r for r in request.query_params.getlist("exp") if r]
    run_ids = [r for r in request.query_params.getlist("run") if r]
    rows = rpt.compare(ui.lake, refs, run_ids) if refs or run_ids else []
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if _finite(r.get("total_return")) and (
            r["run"] not in best or r["total_return"] > best[r["run"]]["total_return"]
        ):
            best[r["run"]] = r
    overlay = [
        {"run": r["run"], "symbol": r["symbol"], "combo": r["combo"], "label": f"{r['experiment']} {r['run'][:8]}"}
        for r in best.values()
    ]
    params = sorted({k for r in rows for k in r["params"]})
    ctx = {
        "refs": refs + run_ids,
        "rows": rows,
        "params": params,
        "overlay": overlay,
        "metrics": rpt.COMPARE_METRICS,
    }
    return ui.page(request, "compare.html", ctx, as_json)


# -- reproduce in the background -----------------------------------------------------------------------------------


def _reproduce(ui: UI, job: _Job) -> None:
    from artifact_lake.experiments import reproduce

    job.state = "running"
    lake = open_read_only(ui.root)
    try:
        report = reproduce(lake, job.ref, progress=job.progress)
        job.result = jsonable(report.to_dict())
        job.state = "identical" if report.identical else "different"
    except LakeError as exc:
        job.error, job.state = str(exc), "failed"
    except Exception as exc:  # a bug: shown on the page, the server stays up
        job.error, job.state = f"internal error: {type(exc).__name__}: {exc}", "failed"
    finally:
        job.finished = time.monotonic()
        lake.close()


async def reproduce_start(ui: UI, request: Request) -> Response:
    from urllib.parse import parse_qs

    # a urlencoded body, parsed here: starlette's form parser would need python-multipart
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    ref = (form.get("ref") or [""])[0]
    job = _Job(ref)
    ui.jobs[job.id] = job
    threading.Thread(target=_reproduce, args=(ui, job), daemon=True, name=f"reproduce-{job.id}").start()
    if request.headers.get("HX-Request"):
        return ui.page(request, "_reproduce.html", {"job": job.to_dict()}, False)
    return RedirectResponse(f"/reproduce/{job.id}.json", status_code=303)


def reproduce_status(ui: UI, request: Request) -> Response:
    job_id, as_json = _split_json(request.path_params["job"])
    job = ui.jobs.get(job_id)
    if job is None:
        return Response("no such job", status_code=404)
    return ui.page(request, "_reproduce.html", {"job": job.to_dict()}, as_json)


# -- the application -----------------------------------------------------------------------------------------------


def create_app(root: str | Path) -> Starlette:
    """The Starlette application serving the lake at ``root`` (read-only)."""
    ui = UI(root)

    def handler(fn: Callable[[UI, Request], Any]) -> Callable[[Request], Any]:
        import inspect

        if inspect.iscoroutinefunction(fn):

            async def run_async(request: Request) -> Response:
                try:
                    result: Response = await fn(ui, request)
                    return result
                except LakeError as exc:
                    return _error(ui, request, exc)

            return run_async

        def run(request: Request) -> Response:
            try:
                result: Response = fn(ui, request)
                return result
            except LakeError as exc:
                return _error(ui, request, exc)

        return run

    routes = [
        Route("/", handler(overview)),
        Route("/index.json", handler(overview)),
        Route("/artifacts", handler(artifacts)),
        Route("/artifacts.json", handler(artifacts)),
        Route("/artifact/{ref}/download.{fmt}", handler(download)),
        Route("/artifact/{ref}", handler(artifact)),
        Route("/experiments", handler(experiments_page)),
        Route("/experiments.json", handler(experiments_page)),
        Route("/experiment/{ref}", handler(experiment)),
        Route("/data/equity.json", handler(equity_data)),
        Route("/data/curve.json", handler(curve_data)),
        Route("/run/{run}", handler(run_page)),
        Route("/compare", handler(compare_page)),
        Route("/compare.json", handler(compare_page)),
        Route("/reproduce", handler(reproduce_start), methods=["POST"]),
        Route("/reproduce/{job}", handler(reproduce_status)),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.ui = ui
    return app


def _error(ui: UI, request: Request, exc: LakeError) -> Response:
    status = 404 if type(exc).__name__.startswith("NotFound") else 400
    if request.url.path.endswith(".json"):
        return JSONResponse({"error": str(exc)}, status_code=status)
    page = ui.templates.TemplateResponse(
        request, "error.html", {"lake_root": str(ui.root), "message": str(exc)}, status_code=status
    )
    assert isinstance(page, HTMLResponse)
    return page
