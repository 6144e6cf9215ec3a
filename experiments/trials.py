"""Train experiments that sweep seeds or hyperparameters: one trial per combination (issue #17).

A train spec with a ``[sweep]`` (``seed = [1, 2, 3]``, ``trainer.learning_rate = [3e-4, 1e-3]``,
``reward.drawdown = [...]``, ...) is a **trial sweep**. Trial ``k`` is a train experiment of its own, named
``<name>.trial-<k>`` (:func:`train.trial_doc`: the spec without its sweep, with the trial's values): it has its
own run record and its own results (``policy``, ``training_curve``, ``metrics``), is reused like any experiment
and reproduces alone. The sweep's own run publishes ``metrics``: a row per trial (the trained policy on the
validation split, the trial's swept values, ``experiment``: the trial's experiment id, ``policy``: its policy's
artifact id), with lineage to every trial's results, so the sweep's id changes when any trial's policy does.

Invariants:
* A trial is the same whoever runs it: the same spec, inputs and code give the same trial ids and the same
  policy ids on a CPU, whether the trials run here one after another or one per Ray task.
* A trial sweep killed half way keeps its finished trials (runs of their own); the same command again trains
  only the rest.
* A Ray task trains on bars the driver read (verified) and put in the object store once; it never opens the
  lake, loads plugins as the driver does and refuses other code than the driver recorded (:func:`train_trial`).
  It asks for one GPU when the cluster has GPUs and the trial may use one (``trainer.device`` auto or cuda).

This module does not import the executor: :mod:`.executor` runs, records and publishes the trials.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import plugins, train
from .spec import ExperimentSpec

if TYPE_CHECKING:
    import pyarrow as pa


def is_trial_sweep(spec: ExperimentSpec) -> bool:
    """A train spec with a ``[sweep]``: its trials are experiments of their own."""
    return spec.kind == "train" and bool(spec.doc.get("sweep"))


def trial_specs(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """Every trial of a trial sweep, in the sweep's order (keys sorted, values as written)."""
    return [ExperimentSpec(train.trial_doc(spec, k, combo)) for k, combo in enumerate(spec.iter_combos())]


def may_use_gpu(spec: ExperimentSpec) -> bool:
    """Whether a trial asks a cluster for a GPU: its ``trainer.device`` is ``auto`` (the default) or ``cuda``."""
    return str(spec.doc["trainer"].get("device", "auto")) != "cpu"


def code_hashes(spec: ExperimentSpec) -> dict[str, str]:
    """The code hash of every user indicator a trial's features compute (built-ins are the code version)."""
    return {p.name: plugins.closure(p).hash for p in train.feature_plugins(spec.doc.get("env", {}))}


@dataclass(frozen=True)
class Trained:
    """What a trial's training returns, before anything is published."""

    tables: dict[str, pa.Table]
    timings: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)
    gpus: list[str] = field(default_factory=list)
    """The GPUs Ray granted the task (``ray.get_gpu_ids()``; empty outside Ray or without GPUs)."""
    environment: dict[str, Any] = field(default_factory=dict)
    """Where it trained (:func:`tracker.environment` of the worker: Python, torch, CUDA, platform)."""


def train_trial(bars: Mapping[str, Any], doc: dict[str, Any], code: Mapping[str, str], version: str) -> Trained:
    """Train the trial ``doc`` on ``bars``: what a Ray task runs. A pure function of its arguments and the
    registered code, refused (one line naming the plugin and both hashes) when this process runs other code
    than the driver recorded (``code``: the user indicators' hashes; ``version``: the lake's code version)."""
    from .sweep import _writable, check_hashes, check_version

    t0 = time.perf_counter()
    check_version(version)
    spec = ExperimentSpec(doc)
    here = code_hashes(spec)
    check_hashes(here, code)
    log = plugins.GuardLog() if here else None
    timings: dict[str, Any] = {}
    tables = train.train_tables(_writable(dict(bars)), spec, None, timings, log)
    if log is not None:
        timings["lookahead_guard"] = log.seconds
    timings["task"] = time.perf_counter() - t0
    from .tracker import environment

    return Trained(tables, timings, log.to_dict() if log is not None else {}, _granted_gpus(), environment())


def _granted_gpus() -> list[str]:
    """The GPU ids Ray granted this task (torch then sees those through ``CUDA_VISIBLE_DEVICES``)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return []
    return [str(g) for g in ray.get_gpu_ids()]


@dataclass(frozen=True)
class Outcome:
    """One trial of a sweep, done: its experiment, the run that made its results (None when only computed,
    as in a reproduction), whether that run was reused, and its results by role."""

    index: int
    experiment: str
    results: dict[str, str]
    """Role -> artifact id (published, or the id the table would publish as)."""
    metrics: dict[str, Any]
    """The policy's row of the trial's validation metrics."""
    run: str | None = None
    reused: bool = False
    device: str = "cpu"

    def record(self) -> dict[str, Any]:
        """What the sweep's run record keeps of this trial."""
        return {
            "trial": self.index,
            "experiment": self.experiment,
            "run": self.run,
            "reused": self.reused,
            "device": self.device,
        }


def policy_row(metrics: pa.Table) -> dict[str, Any]:
    """The trained policy's row of a trial's ``metrics`` (beside buy-and-hold and flat)."""
    rows: list[dict[str, Any]] = [r for r in metrics.to_pylist() if r["strategy"] == "policy"]
    if len(rows) != 1:
        raise ValueError(f"a trial's metrics hold {len(rows)} policy rows, not 1")
    return rows[0]


def summary(spec: ExperimentSpec, outcomes: Mapping[int, Outcome]) -> pa.Table:
    """The sweep's ``metrics``: a row per trial, in trial order: ``combo`` (the trial), the policy's symbol and
    validation metrics, the swept values, the trial's experiment id and its policy's id."""
    import pyarrow as pa

    rows = []
    for k, combo in enumerate(spec.iter_combos()):
        o = outcomes[k]
        row: dict[str, Any] = {"combo": k, "symbol": o.metrics["symbol"], "strategy": "policy", "split": "validation"}
        row.update({m: o.metrics[m] for m in train.VALIDATION_METRICS})
        row.update({key: combo[key] for key in spec.swept})
        row.update({"experiment": o.experiment, "policy": o.results["policy"]})
        rows.append(row)
    return pa.Table.from_pylist(rows)


def lineage(outcomes: Mapping[int, Outcome]) -> list[str]:
    """Every trial's results: the parents of the sweep's ``metrics``."""
    return sorted({i for o in outcomes.values() for i in o.results.values()})
