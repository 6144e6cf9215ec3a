"""The ``experiments`` commands: create, execute, list, show, compare, plot, reproduce (also ``lake
reproduce``), the user plugins (`experiments plugins`) and their recorded code (`experiments code`).

Plugins are imported lazily: the root groups store `--plugins PATH` / `LAKE_PLUGINS` in ``ctx.obj``, and only the
commands that resolve strategies (create, execute, reproduce, plugins, code) load them, just before they run.
"""

from __future__ import annotations

from typing import Any

import click

from ._core import json_option, open_lake
from .main import experiments, lake


def use_plugins(ctx: click.Context) -> None:
    """Hand the root group's plugin paths to the experiments package (imported here, not at start-up)."""
    from artifact_lake.experiments import plugins

    paths = list((ctx.find_root().obj or {}).get("plugins") or [])
    plugins.configure(paths)
    plugins.load()


@experiments.command("plugins")
@json_option
@click.pass_context
def exp_plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every registered strategy and indicator: parameters, where it comes from, code hash."""
    from artifact_lake.cli._render import console, emit_json
    from artifact_lake.experiments import plugins
    from artifact_lake.sim import plugins as registry

    use_plugins(ctx)
    rows: list[dict[str, Any]] = []
    for p in registry.plugins():
        c = plugins.closure(p)
        rows.append(
            {
                "name": p.name,
                "kind": p.kind,
                "params": [x.to_dict() for x in p.params],
                "origin": c.origin,
                "distribution": c.distribution,
                "version": c.version,
                "code_hash": c.hash,
                "doc": p.doc.splitlines()[0] if p.doc else "",
            }
        )
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title="plugins")
    for col in ("name", "kind", "parameters", "from", "code"):
        table.add_column(col)
    for r in rows:
        shown = ", ".join(
            f"{x['name']}: {'|'.join(map(str, x['choices'])) or x['type']}"
            + ("" if x["required"] else f" = {x['default']!r}")
            for x in r["params"]
        )
        table.add_row(r["name"], r["kind"], shown, r["origin"], r["code_hash"][:16])
    console().print(table)


@experiments.command("code")
@click.argument("ref")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Write the recorded files here.")
@json_option
@click.pass_context
def exp_code_cmd(ctx: click.Context, ref: str, out: str | None, as_json: bool) -> None:
    """The user plugin code a run recorded (of a result, run or experiment): shown, or written to --out DIR.

    The files are written for reading, never imported.
    """
    from pathlib import Path

    from artifact_lake.cli._render import emit_json
    from artifact_lake.experiments import plugins
    from artifact_lake.experiments.reproduce import find_run, recorded_sources

    lk = open_lake(ctx)
    run = find_run(lk, ref)
    items = []
    for name, rec in sorted(run.plugins.items()):
        files = recorded_sources(lk, rec["source"])
        items.append({"plugin": name, **rec, "files": files})
    written: list[str] = []
    if out is not None:
        root = Path(out)
        planned = {}
        for item in items:
            for rel, text in item["files"].items():
                planned[plugins.safe_out_path(root, rel)] = text  # every path checked before anything is written
        for path, text in planned.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(str(path))
    if as_json:
        emit_json({"run": run.id, "plugins": items, "written": sorted(set(written))})
        return
    if not items:
        click.echo(f"run {run.id[:12]} used only built-in strategies (code version {run.code_version})")
        return
    seen: set[str] = set()
    for item in items:
        click.echo(f"# {item['kind']} {item['plugin']} from {item['origin']} (code {item['hash'][:16]})")
        if item["source"] in seen:
            continue
        seen.add(item["source"])
        for rel, text in sorted(item["files"].items()):
            if out is None:
                click.echo(f"## {rel}")
                click.echo(text, nl=not text.endswith("\n"))
    if written:
        click.echo(f"wrote {len(set(written))} file(s) under {out}", err=True)


def _reproduce(ctx: click.Context, ref: str, allow_code_change: bool, as_json: bool) -> None:
    from artifact_lake.cli._render import emit_json, reproduce_report
    from artifact_lake.experiments import CodeChanged, NotReproduced, reproduce

    use_plugins(ctx)
    try:
        report = reproduce(open_lake(ctx), ref, allow_code_change=allow_code_change)
    except CodeChanged as exc:
        if as_json:
            emit_json({"identical": False, "code_changes": exc.changes, "error": str(exc)})
        else:
            for change in exc.changes:
                if not change["diff"].startswith("(same files as"):
                    click.echo(change["diff"], nl=False)
        raise
    if as_json:
        emit_json(report.to_dict())
    else:
        for change in report.code_changes:
            click.echo(f"code of {change['plugin']} changed (rerun with the installed code):")
            click.echo(change["diff"], nl=False)
        reproduce_report(report)
    if not report.identical:
        raise NotReproduced(report.summary)


_ALLOW = click.option(
    "--allow-code-change",
    is_flag=True,
    help="When a plugin's code changed: rerun with the installed code and report the result diff too.",
)


@experiments.command("reproduce")
@click.argument("ref")
@_ALLOW
@json_option
@click.pass_context
def exp_reproduce_cmd(ctx: click.Context, ref: str, allow_code_change: bool, as_json: bool) -> None:
    """Re-run the run behind a result (or run, or experiment) and prove its ids are identical.

    Exits 0 when every result id matches, 1 with a per-artifact diff otherwise. When a user plugin's code
    changed since the run: exit 1 with a unified diff of its sources (--allow-code-change reruns anyway);
    a plugin that is not registered any more: exit 2 naming it.
    """
    _reproduce(ctx, ref, allow_code_change, as_json)


@lake.command("reproduce")
@click.argument("ref")
@_ALLOW
@json_option
@click.pass_context
def lake_reproduce_cmd(ctx: click.Context, ref: str, allow_code_change: bool, as_json: bool) -> None:
    """Same as `experiments reproduce`: re-run the run behind a result and compare ids (exit 1 if different)."""
    _reproduce(ctx, ref, allow_code_change, as_json)


@experiments.command("create")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Name for people (overrides the spec's name).")
@click.option(
    "--replace",
    is_flag=True,
    help="Move the name to this spec when another experiment holds it (that one keeps its id).",
)
@click.option(
    "--max-combinations",
    default=None,
    type=click.IntRange(min=1),
    help="Refuse a sweep of more combinations than this (default 10000); counted, never expanded.",
)
@json_option
@click.pass_context
def exp_create_cmd(
    ctx: click.Context, spec_file: str, name: str | None, replace: bool, max_combinations: int | None, as_json: bool
) -> None:
    """Check a spec, freeze its inputs to artifact ids and record it; prints the experiment id."""
    use_plugins(ctx)
    from artifact_lake.cli._render import emit_json
    from artifact_lake.experiments import create, load_spec_file

    raw = load_spec_file(spec_file)
    exp, created = create(open_lake(ctx), raw, name=name, replace=replace, max_combinations=max_combinations)
    if as_json:
        emit_json(exp.to_dict() | {"created_now": created})
    else:
        click.echo(exp.id)
        click.echo(f"{'created' if created else 'exists'}: {exp.name}", err=True)


@experiments.command("execute")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Run again even if a run of this code already succeeded.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where a sweep's chunks run: this process, or Ray tasks (extra `ray`); the results are the same.",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDR",
    help="The Ray cluster (auto, HOST:PORT, ray://HOST:PORT); default: a new local cluster, or $RAY_ADDRESS.",
)
@json_option
@click.pass_context
def exp_execute_cmd(
    ctx: click.Context, ref: str, force: bool, executor: str, ray_address: str | None, as_json: bool
) -> None:
    """Run an experiment: verify inputs, project, simulate, publish results with lineage.

    With --executor ray the chunks of a sweep run as tasks on a Ray cluster and the driver (this command)
    stages, selects, checks and publishes them: the same artifact ids as a local run (docs/scale-out.md).
    """
    from artifact_lake.experiments.ray_executor import check_executor

    check_executor(executor, ray_address)  # without the extra: one line, before any plugin or lake is opened
    use_plugins(ctx)
    from artifact_lake.cli._render import emit_json, progress_bar, run_summary
    from artifact_lake.experiments import execute

    lk = open_lake(ctx)
    with progress_bar(enabled=not as_json) as progress:
        run = execute(lk, ref, force=force, progress=progress, executor=executor, ray_address=ray_address)
    if as_json:
        emit_json(
            {
                "experiment": run.experiment,
                "run": run.id,
                "status": run.status,
                "reused": run.reused,
                "results": run.results,
                "duration": run.duration,
                "timings": run.timings,
                "executor": run.checks.get("sweep", {}).get("executor") or run.checks.get("executor"),
            }
        )
    else:
        run_summary(lk, run)
        ran = run.checks.get("sweep", {}).get("executor") or run.checks.get("executor")
        if executor == "ray" and ran and not run.reused:
            where = f" on {ran['nodes']} node(s), {ran['cpus']} CPUs" if "nodes" in ran else ""
            click.echo(f"executor: {ran['name']}, {ran.get('tasks', 0)} chunk task(s){where}", err=True)


@experiments.command("list")
@json_option
@click.pass_context
def exp_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Experiments, newest first, with their latest run."""
    from artifact_lake.cli._render import emit_json, experiments_table
    from artifact_lake.experiments import list_experiments

    items = list_experiments(open_lake(ctx).db)
    if as_json:
        emit_json([e.to_dict() | {"latest_run": r.to_dict() if r else None} for e, r in items])
    else:
        experiments_table(items)


@experiments.command("show")
@click.argument("ref")
@json_option
@click.pass_context
def exp_show_cmd(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Spec, runs, results, metrics table and lineage of an experiment."""
    use_plugins(ctx)
    from artifact_lake.cli._render import emit_json, show_experiment
    from artifact_lake.experiments import get_experiment, runs_of

    lk = open_lake(ctx)
    exp = get_experiment(lk.db, ref)
    runs = runs_of(lk.db, exp.id)
    if as_json:
        latest = next((r for r in runs if r.status == "succeeded"), None)
        metrics = lk.read(latest.results["metrics"]).to_pylist() if latest and "metrics" in latest.results else []
        emit_json(exp.to_dict() | {"runs": [r.to_dict() for r in runs], "metrics": metrics})
    else:
        show_experiment(lk, exp, runs)


@experiments.command("compare")
@click.argument("refs", nargs=-1)
@click.option("--run", "runs", multiple=True, metavar="ID", help="A run (id or prefix) to compare; repeatable.")
@json_option
@click.pass_context
def exp_compare_cmd(ctx: click.Context, refs: tuple[str, ...], runs: tuple[str, ...], as_json: bool) -> None:
    """Metrics of experiments (their latest succeeded runs) or of any runs (--run) side by side, with every parameter.

    --run ID (repeatable) names any succeeded run, such as two runs of one experiment before and after a code
    change.

    Each experiment's fixed parameters are listed above the table, the swept ones in it. --json gives one
    object per row with all parameters (params), the swept names (swept) and the raw metrics (NaN: null).
    """
    if not refs and not runs:
        raise click.UsageError("name experiments to compare, or runs with --run ID")
    use_plugins(ctx)
    from artifact_lake.cli._render import compare_table, emit_json
    from artifact_lake.experiments.report import compare

    rows = compare(open_lake(ctx), list(refs), list(runs))
    if as_json:
        emit_json(rows)
    else:
        compare_table(rows)


@experiments.command("plot")
@click.argument("ref")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option(
    "--max-lines",
    default=12,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many curves: the best by total return on each symbol; the others are listed.",
)
@json_option
@click.pass_context
def exp_plot_cmd(ctx: click.Context, ref: str, out: str, max_lines: int, as_json: bool) -> None:
    """A PNG of an experiment's latest run; prints which curves it drew and which it left out.

    Backtests: one panel per symbol (equity above, drawdown below), one colour per combination, each
    curve's total return and Sharpe in the legend. Train: the training curve, the train/validation split
    and the validation equity of the policy, buy-and-hold and flat.
    """
    from artifact_lake.cli._render import emit_json
    from artifact_lake.experiments.report import plot

    report = plot(open_lake(ctx), ref, out, max_lines=max_lines)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(str(report.out))
    click.echo(f"drew {report.selection}", err=True)
    if report.left_out:
        click.echo(f"left out {len(report.left_out)} (raise --max-lines to draw them):", err=True)
        for c in report.left_out:
            click.echo(f"  {c.label}", err=True)
