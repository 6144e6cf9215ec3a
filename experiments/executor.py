"""Execute an experiment: the run's lifecycle around the work of its runner (:mod:`.runners`): verify the
frozen inputs, reuse an earlier run of the same code, record the run, publish the results with lineage and
the code of the user plugins that made them, record failures.

Invariants:
* Results are functions of the inputs, the spec and the code: no clock, no paths, stable row orders
  (combination, then symbol, then time). The run record holds the timings.
* Every result table is checked against its schema before any is published. All results and the run's
  ``succeeded`` status commit in one manifest transaction (``artifact_store.batch.publish_many``): a run that
  fails, fills the disk or is killed publishes none of them, and every result's edges name a succeeded run.
  Each result gets an edge from every frozen input, tagged with the run id.
* A run holds its lock (``tracker.run_lock``) from before its row exists until its final status is
  committed, so a run whose process died reads as ``interrupted``.
* Input that never could run (a crafted policy) is refused by the runner's ``precheck`` before a run is
  recorded.
* The executor has no branch on strategy names or kinds of work: :func:`runners.runner_for` chooses. The
  one exception is a trial sweep (a train spec with a ``[sweep]``, :mod:`.trials`): its trials are
  experiments of their own, each executed (or, on Ray, recorded and published) as any experiment, and the
  sweep's run publishes their summary with lineage to every trial's results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artifact_lake.artifact_store import openlineage
from artifact_lake.schemas.errors import LakeError

from . import plugins, tracker, train, trials
from ._freeze import freeze
from ._inputs import verify_inputs
from ._version import code_version
from .errors import SimError
from .ray_executor import ExecutorError, open_executor, worker_env
from .runners import Progress, Runner, runner_for
from .spec import ExperimentSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake

    from .ray_executor import RayExecutor

RESULT_TYPES = {
    "trades": "trades",
    "equity": "equity",
    "metrics": "metrics",
    "alert_results": "table",
    "fills": "table",
    "positions": "table",
    "policy": "tensors",
    "training_curve": "table",
}


@dataclass(frozen=True)
class Computed:
    """Result tables of one execution, by role, before publishing."""

    tables: dict[str, pa.Table]
    timings: dict[str, float]
    code: dict[str, Any] = field(default_factory=dict)
    """The user plugins it ran, by name: their :class:`plugins.Closure` (built-ins are the code version)."""
    checks: dict[str, Any] = field(default_factory=dict)
    """What the look-ahead guard checked (empty when no user plugin ran)."""
    cleanup: Callable[[], None] | None = None
    """Removes what the work staged (a sweep's chunks), once the results are published."""
    lineage: list[str] = field(default_factory=list)
    """Artifacts the results derive from beside the frozen inputs (a trial sweep's trials' results)."""


def compute(
    lake: Lake,
    spec: ExperimentSpec,
    progress: Progress | None = None,
    *,
    resume: bool = False,
    timings: dict[str, float] | None = None,
    executor: RayExecutor | None = None,
) -> Computed:
    """Every result table of ``spec`` (nothing is published). With ``resume`` a sweep stages its chunks under
    the lake's tmp/ and reuses the chunks an interrupted run of the same spec and code left there. With an
    ``executor`` (:func:`ray_executor.open_executor`) a sweep's chunks run there; the tables are the same.

    ``timings`` (new when None) gets a wall time per phase: ``imports`` (the simulator's modules and numba's
    start-up, paid once a process), ``verify``, then the runner's own (``load``, ``signals``, ``simulate``...)."""
    timings = {} if timings is None else timings
    _prepare(lake, spec, timings)
    if trials.is_trial_sweep(spec):
        return _compute_trials(lake, spec, progress, timings)
    out = runner_for(spec).compute(lake, spec, progress, timings, resume=resume, executor=executor)
    return Computed(out.tables, timings, out.code, out.checks, out.cleanup)


def _prepare(lake: Lake, spec: ExperimentSpec, timings: dict[str, Any]) -> None:
    """Before any work: the simulator's modules loaded (``imports``) and the frozen inputs verified."""
    import pyarrow as pa

    from artifact_lake import sim

    t0 = time.perf_counter()
    sim.warm()
    pa.array([0.0])  # pyarrow imports pandas at its first conversion (pandas comes with exchange_calendars)
    timings["imports"] = timings.get("imports", 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_inputs(lake, spec)
    timings["verify"] = time.perf_counter() - t0


def _compute_trials(lake: Lake, spec: ExperimentSpec, progress: Progress | None, timings: dict[str, Any]) -> Computed:
    """Every trial of a trial sweep computed here, one after another, nothing published or recorded (what a
    reproduction runs): the sweep's summary, with the ids each trial's results would publish as."""
    from artifact_lake.artifact_store.hashing import content_id

    children = trials.trial_specs(spec)
    outcomes: dict[int, trials.Outcome] = {}
    code: dict[str, Any] = {}
    t0 = time.perf_counter()
    for k, child in enumerate(children):
        computed = compute(lake, child, _trial_progress(progress, k, len(children)))
        tables = conform_results(lake, computed.tables)
        ids = {}
        for role, table in tables.items():
            schema = lake.registry.get(RESULT_TYPES[role])
            ids[role] = content_id(table, schema.name, schema.version)
        device = str(computed.timings.get("device", "cpu"))
        outcomes[k] = trials.Outcome(k, child.id, ids, trials.policy_row(tables["metrics"]), device=device)
        code.update(computed.code)
    timings["trials"] = time.perf_counter() - t0
    checks = {"trials": [o.record() for o in outcomes.values()]}
    return Computed(
        {"metrics": trials.summary(spec, outcomes)}, timings, code, checks, lineage=trials.lineage(outcomes)
    )


def _trial_progress(progress: Progress | None, k: int, n: int) -> Progress | None:
    """A trial's progress, labelled with the trial."""
    if progress is None:
        return None
    outer = progress

    def report(done: int, total: int, what: str) -> None:
        outer(done, total, f"trial {k + 1}/{n}: {what}")

    return report


def conform_results(lake: Lake, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Every result conformed and checked against its type before anything is published."""
    from artifact_lake.schemas import find_violations, first_error
    from artifact_lake.schemas.validate import conform

    out = {}
    for role, table in tables.items():
        schema = lake.registry.get(RESULT_TYPES[role])
        conformed = conform(table, schema, f"result {role!r}")
        bad = find_violations(conformed, schema)
        if bad:
            raise SimError(
                f"the simulator produced an invalid {role!r} table: {first_error(conformed, bad, schema, role)}"
            )
        out[role] = conformed
    return out


def current_plugin_hashes(spec: ExperimentSpec, lake: Lake) -> dict[str, str]:
    """The code hash of every user plugin ``spec`` runs, as installed now (a trial sweep: its trials')."""
    if trials.is_trial_sweep(spec):
        return {k: v for child in trials.trial_specs(spec) for k, v in trials.code_hashes(child).items()}
    return {p.name: plugins.closure(p).hash for p in runner_for(spec).user_plugins(spec, lake)}


def execute(
    lake: Lake,
    ref: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> tracker.Run:
    """Run experiment ``ref`` and publish its results; reuse a succeeded run of the same code unless ``force``.

    The results and the run's ``succeeded`` status commit in one transaction: a run that fails, runs out of
    disk or is killed publishes none of them (a killed one shows as ``interrupted``).

    ``executor="ray"`` runs a sweep's chunks as Ray tasks (a new local cluster, or the one at ``ray_address``:
    ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``; see docs/scale-out.md). The executor is no part of the
    experiment's identity: the same spec, inputs and code publish the same ids with either one, and a run of
    either is reused by the other.
    """
    entered = time.perf_counter()
    pool = open_executor(executor, ray_address)  # before any work: without the extra, the lake stays unchanged
    try:
        return _execute(lake, ref, force, progress, pool, entered)
    finally:
        if pool is not None:
            pool.close()


def _execute(
    lake: Lake, ref: str, force: bool, progress: Progress | None, pool: RayExecutor | None, entered: float
) -> tracker.Run:
    events = openlineage.run_events(lake)  # before any work: configured without the extra, the lake stays unchanged
    exp = tracker.get_experiment(lake.db, ref)
    runner = runner_for(exp.spec)
    sweep_of_trials = trials.is_trial_sweep(exp.spec)
    if pool is not None and pool.name not in runner.executors and not sweep_of_trials:
        raise ExecutorError(
            f"--executor {pool.name}: a {runner.name} run runs only locally (the ray executor ships the chunks"
            " of a signal strategy's sweep and the trials of a train sweep; see docs/scale-out.md)"
        )
    if not force and (reused := _reusable(lake, exp)) is not None:
        return reused
    runner.precheck(lake, exp.spec)
    lake.require_writable("experiments execute")
    device = runner.device(exp.spec)
    with tracker.run_lock(lake.root) as lock:
        run = tracker.new_run(lake.db, exp.id, device=device, lock=lock)
        frozen = sorted({i for ids in exp.spec.inputs.values() for i in ids})
        events.start(f"experiment/{exp.spec.name}", run_id=run.id, inputs=frozen)
        started = entered  # the run's duration is the whole call's, and its timings account for it
        timings = {"prepare": time.perf_counter() - entered}
        try:
            if sweep_of_trials:
                computed = _run_trials(lake, exp, force, progress, pool, timings)
            else:
                computed = compute(lake, exp.spec, progress, resume=True, timings=timings, executor=pool)
            done = _publish(lake, exp, run.id, computed, runner, started)
        except Exception as exc:
            _failed(lake, run.id, started, exc, events)
            raise
    if computed.cleanup is not None:  # after the commit; what a failed clean-up leaves, gc removes
        try:
            computed.cleanup()
        except OSError:
            pass
    # after the commit: a lost COMPLETE event is a warning, never lost results
    events.complete([(i, f"exp/{exp.spec.name}/{role}") for role, i in done.results.items()])
    return done


def _failed(lake: Lake, run_id: str, started: float, exc: Exception, events: Any) -> None:
    """Record a run as failed: a lake error by its one line, anything else with its class."""
    error = str(exc) if isinstance(exc, LakeError) else f"{type(exc).__name__}: {exc}"
    tracker.finish_run(lake.db, run_id, status="failed", duration=time.perf_counter() - started, error=error)
    events.fail(exc)


def _reusable(lake: Lake, exp: tracker.Experiment) -> tracker.Run | None:
    """A succeeded run of ``exp`` by this code version and these plugin hashes whose results are all here."""
    hashes = current_plugin_hashes(exp.spec, lake)
    for run in tracker.runs_of(lake.db, exp.id):
        recorded = {name: rec.get("hash") for name, rec in run.plugins.items()}
        if run.status == "succeeded" and run.code_version == tracker.code_version() and recorded == hashes:
            present = all(
                lake.db.execute("SELECT 1 FROM artifacts WHERE id = ?", (i,)).fetchone() for i in run.results.values()
            )
            if present:
                return tracker.Run(**{**run.to_dict(), "reused": True})
    return None


def _run_trials(
    lake: Lake,
    exp: tracker.Experiment,
    force: bool,
    progress: Progress | None,
    pool: RayExecutor | None,
    timings: dict[str, Any],
) -> Computed:
    """A trial sweep's run: each trial recorded as an experiment of its own; those with a reusable run taken
    as they are (unless ``force``), the others executed here one after another or, with a Ray ``pool``, one
    per task, each recorded and published as it comes back. Returns the sweep's summary (not yet published)."""
    spec = exp.spec
    _prepare(lake, spec, timings)
    children = [tracker.put_experiment(lake.db, child, replace=True)[0] for child in trials.trial_specs(spec)]
    n = len(children)
    outcomes: dict[int, trials.Outcome] = {}
    for k, child in enumerate(children):
        if not force and (run := _reusable(lake, child)) is not None:
            outcomes[k] = _outcome(lake, k, run)
    todo = [k for k in range(n) if k not in outcomes]
    t0 = time.perf_counter()
    if pool is None:
        for k in todo:
            run = _execute(lake, children[k].id, force, _trial_progress(progress, k, n), None, time.perf_counter())
            outcomes[k] = _outcome(lake, k, run)
    elif todo:
        bars = train.train_bars(lake, spec)  # one symbol, the same for every trial: put in Ray's store once
        version = code_version()
        jobs = ((k, (children[k].spec.doc, trials.code_hashes(children[k].spec), version)) for k in todo)
        gpu = {k: trials.may_use_gpu(children[k].spec) for k in todo}  # trainer.device = "cpu": no GPU asked
        for k, trained in pool.map_unordered(trials.train_trial, bars, jobs, worker_env(), gpu=gpu.__getitem__):
            outcomes[k] = _outcome(lake, k, _record_trial(lake, children[k], trained, pool))
            if progress is not None:
                progress(len(outcomes), n, f"trial {k + 1}/{n} trained on {trained.timings.get('device', 'cpu')}")
    timings["trials"] = time.perf_counter() - t0
    code = {
        p.name: plugins.closure(p) for child in children for p in runner_for(child.spec).user_plugins(child.spec, lake)
    }
    executor = pool.record() if pool is not None else {"name": "local"}
    checks = {"trials": [outcomes[k].record() for k in range(n)], "executor": executor}
    return Computed(
        {"metrics": trials.summary(spec, outcomes)}, timings, code, checks, lineage=trials.lineage(outcomes)
    )


def _outcome(lake: Lake, k: int, run: tracker.Run) -> trials.Outcome:
    metrics = trials.policy_row(lake.read(run.results["metrics"]))
    return trials.Outcome(k, run.experiment, dict(run.results), metrics, run.id, run.reused, run.device or "cpu")


def _record_trial(lake: Lake, exp: tracker.Experiment, trained: trials.Trained, pool: RayExecutor) -> tracker.Run:
    """Record and publish a trial a Ray task trained, as its own run (the device it ran on, its timings)."""
    runner = runner_for(exp.spec)
    code = {p.name: plugins.closure(p) for p in runner.user_plugins(exp.spec, lake)}
    checks = {**trained.checks, "executor": {**pool.record(), "task_gpus": trained.gpus}}
    computed = Computed(dict(trained.tables), dict(trained.timings), code, checks)
    started = time.perf_counter() - float(trained.timings.get("task", 0.0))
    events = openlineage.run_events(lake)
    with tracker.run_lock(lake.root) as lock:
        device = str(trained.timings.get("device", "cpu"))
        run = tracker.new_run(lake.db, exp.id, device=device, lock=lock, env=trained.environment or None)
        events.start(f"experiment/{exp.spec.name}", run_id=run.id, inputs=sorted(exp.spec.inputs["ohlcv"]))
        try:
            done = _publish(lake, exp, run.id, computed, runner, started)
        except Exception as exc:
            _failed(lake, run.id, started, exc, events)
            raise
    events.complete([(i, f"exp/{exp.spec.name}/{role}") for role, i in done.results.items()])
    return done


def _publish(
    lake: Lake, exp: tracker.Experiment, run_id: str, computed: Computed, runner: Runner, started: float
) -> tracker.Run:
    """Every result and the run's success in one manifest transaction."""
    from artifact_lake.artifact_store.batch import Item, publish_many

    t0 = time.perf_counter()
    tables = conform_results(lake, computed.tables)
    computed.timings["checks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs = sorted({i for ids in exp.spec.inputs.values() for i in ids} | set(computed.lineage))
    items = []
    for role, table in tables.items():
        meta: dict[str, Any] = {"experiment": exp.id, "role": role, **runner.result_meta(exp.spec, role)}
        items.append(Item(table, RESULT_TYPES[role], name=f"exp/{exp.spec.name}/{role}", inputs=inputs, meta=meta))
    roles = list(tables)
    sources = list(computed.code.values())  # each distinct closure is one `source` artifact (content-addressed)
    for c in sources:
        meta = {"plugin": c.plugin, "kind": c.kind, "code_hash": c.hash, "origin": c.origin}
        items.append(Item(plugins.source_table(c), "source", name=f"source/{c.plugin}", meta=meta))

    def record_success(published: list[Any]) -> None:
        results = {role: rec.id for role, rec in zip(roles, published[: len(roles)], strict=True)}
        source_ids = [rec.id for rec in published[len(roles) :]]
        used = {c.plugin: c.record() | {"source": sid} for c, sid in zip(sources, source_ids, strict=True)}
        for result in results.values():  # lineage: every result <- the code that made it
            for sid in source_ids:
                lake.db.execute(
                    "INSERT OR IGNORE INTO edges (child, parent, run) SELECT c.pk, p.pk, ? FROM artifacts c, artifacts p"
                    " WHERE c.id = ? AND p.id = ?",
                    (run_id, result, sid),
                )
        computed.timings["publish"] = time.perf_counter() - t0
        tracker.finish_run(
            lake.db,
            run_id,
            status="succeeded",
            duration=time.perf_counter() - started,
            results=results,
            timings=computed.timings,
            plugins=used,
            checks=computed.checks,
            in_tx=True,
        )
        tracker.claim_results(lake.db, run_id, results.values(), inputs)

    publish_many(lake, items, run=run_id, in_transaction=record_success)
    return tracker.get_run(lake.db, run_id)


def create(
    lake: Lake,
    raw: dict[str, Any],
    *,
    name: str | None = None,
    replace: bool = False,
    max_combinations: int | None = None,
) -> tuple[tracker.Experiment, bool]:
    """Check and freeze a raw spec and record the experiment (idempotent).

    A name held by an experiment of a different spec is refused unless ``replace``; a sweep of more than
    ``max_combinations`` (default :data:`spec.MAX_COMBINATIONS`) combinations is refused before it is expanded.
    """
    spec = freeze(raw, lake, name=name, max_combinations=max_combinations)
    if lake.read_only:  # the spec was checked first: a bad one is named as such, even here
        known = lake.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone()
        if known and lake.db.execute("SELECT 1 FROM experiments WHERE id = ?", (spec.id,)).fetchone():
            return tracker.get_experiment(lake.db, spec.id), False
        lake.require_writable("experiments create")
    return tracker.put_experiment(lake.db, spec, replace=replace)
