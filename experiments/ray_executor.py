"""The Ray executor: a sweep's missing chunks as Ray tasks, the driver staging and publishing (issue #17).

``experiments execute REF --executor ray [--ray-address ADDR]`` (or ``execute(..., executor="ray")``). The
driver connects (or starts a local cluster), ``ray.put``\\ s the bars once, submits each missing chunk with a
bounded number in flight and hands each result back as it arrives, in any order; :mod:`.sweep` stages it and
goes on exactly as a local run (selection, the kept combinations run again locally, checks, publish).

Invariants:
* The executor is not part of an experiment's identity: a worker runs the same pure function as the local
  path (:func:`.sweep.chunk_metrics`), so the same spec, inputs and code publish the same ids either way.
* A worker loads plugins the way the driver does (entry points and ``LAKE_PLUGINS``, which every task
  carries in its ``runtime_env``: the driver's plugin paths, absolute) and refuses to run when a user
  plugin's code hash, or the lake's code version, differs from the driver's.
* Nothing is read from a lake on a worker and nothing a lake holds is imported or unpickled: Ray's own
  transport carries the bars, the parameters and the metric rows between driver and workers.
* The run record says which executor ran (``checks.sweep.executor``: Ray's version, the kind of address, not
  the address), never a result.

This module does not import :mod:`.sweep` (the sweep hands it the function to run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from artifact_lake.schemas.errors import LakeError, MissingExtra

from . import plugins

EXECUTORS = ("local", "ray")
"""The executors ``execute`` knows."""
IN_FLIGHT_PER_CPU = 2
"""Chunks in flight per CPU of the cluster: enough to keep every worker busy while results come back, few
enough that the driver's memory holds only a bounded number of results it has not staged yet."""

K = TypeVar("K")


class ExecutorError(LakeError):
    """The executor cannot run: an unknown executor, an option it does not take, a cluster that cannot be
    reached or lost a chunk (exit 2)."""


def require_ray() -> None:
    """The ``ray`` extra: without it, one line naming the install instead of an ImportError."""
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise MissingExtra("ray", "the ray executor", "ray") from exc


def check_executor(executor: str, ray_address: str | None) -> None:
    """Refuse an unknown executor, an address without Ray, or Ray without its extra (before any work)."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")
    if ray_address is not None and executor != "ray":
        raise ExecutorError("--ray-address needs --executor ray")
    if executor == "ray":
        require_ray()


def open_executor(executor: str, ray_address: str | None = None) -> RayExecutor | None:
    """The executor named (None: run in this process), checked (an address where nothing answers is refused
    before any work); it connects when it first has work."""
    check_executor(executor, ray_address)
    if executor != "ray":
        return None
    if ray_address is not None:
        probe(ray_address)
    return RayExecutor(ray_address)


def probe(address: str) -> None:
    """Refuse at once an address where nothing answers (Ray itself retries for minutes): a TCP connection to
    ``HOST:PORT`` (or ``ray://HOST:PORT``); ``auto`` and ``local`` are Ray's to resolve."""
    import socket

    if address in ("auto", "local"):
        return
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address}: not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ExecutorError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc})") from exc


def address_kind(address: str | None) -> str:
    """What kind of cluster ``address`` names, for the run record (never the address itself)."""
    if address is None:
        env = os.environ.get("RAY_ADDRESS")
        return "local" if not env else f"RAY_ADDRESS ({address_kind(env)})"
    if address in ("local", "auto"):
        return address
    if address.startswith("ray://"):
        return "ray-client"
    return "gcs"


def worker_env() -> dict[str, str]:
    """The environment every task carries: the driver's plugin paths (absolute: a worker's working folder may
    differ) and one numba thread per task (the cluster's parallelism is its tasks)."""
    paths = [str(Path(p).expanduser().resolve()) for p in plugins.env_paths()]
    return {plugins.ENV: os.pathsep.join(paths), "NUMBA_NUM_THREADS": "1"}


class RayExecutor:
    """Runs tasks on a Ray cluster: the one ``ray.init`` already connected this process to, else the one at
    ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), else at ``$RAY_ADDRESS``, else a new local
    cluster (no dashboard) that :meth:`close` shuts down. Workers' output stays in Ray's log files (a
    command's ``--json`` stays strict)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        require_ray()
        self.address = address
        self.started = False
        """This executor called ``ray.init`` (so :meth:`close` shuts Ray down)."""
        self.connected = False
        self.kind = address_kind(address)
        self.tasks = 0
        self.connect_seconds = 0.0
        self._cpus = 0
        self.gpus = 0
        """GPUs in the cluster (known once connected)."""

    def connect(self) -> None:
        """Connect (or start a local cluster) once; a cluster that cannot be reached is one line."""
        if self.connected:
            return
        import logging

        import ray

        t0 = time.perf_counter()
        if ray.is_initialized():
            self.kind = "connected by the caller"
        else:
            # no address: $RAY_ADDRESS, else a new local cluster ("local"), never a cluster that Ray would find
            # on this machine by itself (another user's `ray start`)
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            options: dict[str, Any] = {"address": address, "logging_level": logging.WARNING, "log_to_driver": False}
            if address == "local":
                options["include_dashboard"] = False
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExecutorError(f"cannot connect to the Ray cluster ({self.kind}): {line}") from exc
            self.started = True
        self.connected = True
        resources = ray.cluster_resources()
        self._cpus = int(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))
        self.connect_seconds = time.perf_counter() - t0

    def map_unordered(
        self,
        fn: Callable[..., Any],
        shared: Any,
        jobs: Iterable[tuple[K, tuple[Any, ...]]],
        env: dict[str, str],
        *,
        gpu: Callable[[K], bool] | None = None,
    ) -> Iterator[tuple[K, Any]]:
        """``fn(shared, *args)`` for each ``(key, args)`` of ``jobs`` as a Ray task, ``(key, result)`` as each
        finishes (any order). ``shared`` is put in the object store once; at most
        :data:`IN_FLIGHT_PER_CPU` x the cluster's CPUs tasks are in flight, and the next ones are submitted
        only after the caller took a result. A task's exception is raised here as it was raised there (a
        :class:`LakeError` keeps its class and its one line). A job whose key ``gpu`` says may use a GPU asks
        for one when the cluster has any (:attr:`gpus`); every other job runs on a CPU."""
        import itertools

        import ray

        todo = iter(jobs)
        first = next(todo, None)
        if first is None:  # every chunk was staged: no cluster is started or reached
            return
        todo = itertools.chain([first], todo)
        self.connect()
        task = ray.remote(fn)
        on_cpu = task.options(num_cpus=1, runtime_env={"env_vars": env})
        on_gpu = task.options(num_cpus=1, num_gpus=1, runtime_env={"env_vars": env}) if self.gpus else on_cpu
        shared_ref = ray.put(shared)
        limit = max(2, IN_FLIGHT_PER_CPU * self._cpus)
        pending: dict[Any, K] = {}
        more = True
        try:
            while True:
                while more and len(pending) < limit:
                    job = next(todo, None)
                    if job is None:
                        more = False
                        break
                    remote = on_gpu if gpu is not None and gpu(job[0]) else on_cpu
                    pending[remote.remote(shared_ref, *job[1])] = job[0]
                    self.tasks += 1
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    yield key, self._get(ref, key)
        finally:
            for ref in pending:  # a failed or abandoned pass leaves nothing running on the cluster
                ray.cancel(ref, force=True)

    @staticmethod
    def _get(ref: Any, key: Any) -> Any:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if cause is None:
                raise
            raise cause from None  # the worker's own exception: the same class and line as a local run's
        except ray.exceptions.RayError as exc:  # a worker or node lost for good (Ray retried it first)
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ExecutorError(f"the Ray cluster lost task {key}: {type(exc).__name__}: {line}") from exc

    def record(self) -> dict[str, Any]:
        """What the run record keeps: Ray's version, the kind of address (never the address), the cluster's
        size and the tasks shipped."""
        import ray

        out: dict[str, Any] = {"name": self.name, "ray_version": ray.__version__, "address": self.kind}
        if self.connected:
            out |= {"nodes": sum(1 for n in ray.nodes() if n.get("Alive")), "cpus": self._cpus, "gpus": self.gpus}
        return out | {"tasks": self.tasks}

    def close(self) -> None:
        """Shut Ray down when this executor started it (a connection the caller made stays)."""
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
        self.connected = False
