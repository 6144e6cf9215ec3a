"""OpenLineage run events for experiment runs and ingests (the optional ``openlineage`` extra).

Every experiment run and every ingest emits START, then COMPLETE or FAIL (ABORT for an interrupted ingest),
through the ``openlineage-python`` client configured the client's own way (``OPENLINEAGE_URL``,
``OPENLINEAGE_CONFIG`` or an ``openlineage.yml``, ``OPENLINEAGE__TRANSPORT__...`` variables). docs/openlineage.md
gives the mapping: namespace, job names, run ids, datasets and facets.

Invariants:
* Off unless configured. :func:`configured` reads the environment and looks for the client's config files
  where the client looks, without importing it; when it finds nothing, no ``openlineage`` module is loaded
  and nothing is emitted. This module imports only the standard library at import time.
* Configured but unusable (the extra not installed, or a configuration the client refuses) is refused with
  one line before any work, so the lake is unchanged.
* Emitting never fails a run and never touches the lake: the events only read the manifest, a transport
  error is logged as a warning, and COMPLETE goes out after the results are committed.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from artifact_lake.schemas.errors import LakeError

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import JobFacet, RunFacet

    from .lake import Lake

INSTALL = 'pip install "artifact-lake[openlineage]"'
NAMESPACE_ENV = "LAKE_OPENLINEAGE_NAMESPACE"
"""Overrides the namespace of jobs and lake datasets (default ``artifact-lake://<host><lake path>``)."""
CLOSE_TIMEOUT_S = 10.0
"""How long the end of a run waits for an asynchronous transport to deliver its events."""
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "artifact-lake:run")  # only for run ids that are not 32 hex
log = logging.getLogger("artifact_lake.openlineage")

P = ParamSpec("P")
R = TypeVar("R")


class OpenLineageUnavailable(LakeError):
    """OpenLineage is configured, but its client is not installed or refuses the configuration."""


@dataclass(frozen=True)
class External:
    """A dataset outside the lake (a source file, an exchange's market), named the OpenLineage way."""

    namespace: str
    """OpenLineage dataset namespace, e.g. ``file`` for a local file."""
    name: str
    """Name within the namespace, e.g. the file's absolute path."""


Ref = str | tuple[str, str | None] | External
"""A dataset of an event: an artifact id, (artifact id, lake name) or an :class:`External` dataset."""


def configured(environ: Mapping[str, str] | None = None) -> str | None:
    """The setting that turns OpenLineage on (``OPENLINEAGE_URL``, a config file path, ...), or ``None``.

    Follows the client's own resolution (``OpenLineageClient.config`` and ``_resolve_transport``), without
    importing it: ``OPENLINEAGE_DISABLED=true`` turns everything off; otherwise an ``OPENLINEAGE_CONFIG``
    that names a readable file, ``openlineage.yml`` in the working directory or in ``~/.openlineage``, any
    ``OPENLINEAGE__TRANSPORT...`` variable, or ``OPENLINEAGE_URL`` turns it on.
    """
    env = os.environ if environ is None else environ
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return None
    candidates = (
        env.get("OPENLINEAGE_CONFIG"),
        os.path.join(os.getcwd(), "openlineage.yml"),
        os.path.join(os.path.expanduser("~/.openlineage"), "openlineage.yml"),
    )
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.R_OK):
            return path
    for key in sorted(env):
        if key.startswith("OPENLINEAGE__TRANSPORT") and env[key]:
            return key
    if env.get("OPENLINEAGE_URL"):
        return "OPENLINEAGE_URL"
    return None


def namespace(lake: Lake) -> str:
    """Namespace of the lake's jobs and artifact datasets: ``LAKE_OPENLINEAGE_NAMESPACE``, else
    ``artifact-lake://<host name><absolute lake path>``."""
    explicit = os.environ.get(NAMESPACE_ENV, "").strip()
    if explicit:
        return explicit
    import socket

    return f"artifact-lake://{socket.gethostname()}{lake.root.resolve().as_posix()}"


def run_uuid(run_id: str) -> str:
    """The OpenLineage ``runId`` of a lake run id.

    A lake run id is 32 hex digits (128 bits), read as a UUID: dropping the dashes gives the lake's id back.
    Any other id maps to ``uuid5(uuid5(NAMESPACE_URL, "artifact-lake:run"), run_id)``.
    """
    if _RUN_ID.match(run_id):
        return str(uuid.UUID(hex=run_id))
    return str(uuid.uuid5(_RUN_NAMESPACE, run_id))


def file_dataset(path: str | os.PathLike[str]) -> External:
    """A local file as OpenLineage names it: namespace ``file``, name its absolute path."""
    return External("file", Path(path).resolve().as_posix())


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("artifact-lake")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _client(setting: str) -> OpenLineageClient:
    """The client configured the client's way; refused with one line when unusable."""
    try:
        from openlineage.client import OpenLineageClient
    except ImportError as exc:
        detail = "" if (exc.name or "").split(".")[0] == "openlineage" else f" ({exc})"
        raise OpenLineageUnavailable(
            f"OpenLineage is configured ({setting}) but its client is not installed{detail}: {INSTALL}"
        ) from exc
    try:
        return OpenLineageClient()
    except Exception as exc:  # the client raises ValueError, RuntimeError, TypeError ... for a bad config
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OpenLineageUnavailable(
            f"OpenLineage is configured ({setting}) but the client refuses the configuration: {first}"
        ) from exc


def run_events(lake: Lake) -> RunEvents:
    """The events of one run in ``lake``: a no-op when OpenLineage is not configured.

    Call it before any work: configured without the extra (or with a configuration the client refuses),
    it raises :class:`OpenLineageUnavailable` (exit 2) while the lake is still unchanged.
    """
    setting = configured()
    if setting is None:
        return RunEvents(lake, None)
    return RunEvents(lake, _client(setting))


class RunEvents:
    """START, then COMPLETE, FAIL or ABORT of one run of one job. Every method is a no-op when disabled.

    Example::

        events = run_events(lake)              # before any work
        events.start("ingest/file/x.csv", inputs=[file_dataset("x.csv")], job_type="INGEST")
        ...                                    # the work; on an exception: events.fail(exc)
        events.complete([(rec.id, "btc-1m")])  # after the results are committed
    """

    def __init__(self, lake: Lake, client: OpenLineageClient | None) -> None:
        self._lake = lake
        self._client = client
        self._job = ""
        self._run_id = ""
        self._namespace = ""
        self._inputs: list[InputDataset] = []
        self._job_facets: dict[str, JobFacet] = {}
        self._version = ""
        self._producer = ""
        self._started = False

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def start(
        self, job: str, *, run_id: str | None = None, inputs: Iterable[Ref] = (), job_type: str = "EXPERIMENT"
    ) -> None:
        """Emit START of ``job``; ``run_id`` is the lake's run id (a new UUIDv7 when there is none)."""
        if self._client is None:
            return
        try:
            from openlineage.client.event_v2 import InputDataset
            from openlineage.client.facet_v2 import job_type_job
            from openlineage.client.uuid import generate_new_uuid

            self._version = _version()
            self._producer = f"urn:artifact-lake:{self._version}"
            self._namespace = namespace(self._lake)
            self._job = job
            self._run_id = run_uuid(run_id) if run_id is not None else str(generate_new_uuid())
            self._job_facets = {
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="ARTIFACT_LAKE", jobType=job_type, producer=self._producer
                )
            }
            self._inputs = [InputDataset(ns, name, facets=facets) for ns, name, facets in self._datasets(inputs)]
            self._started = True
        except Exception as exc:  # a lost event is logged, never a failed run
            log.warning("OpenLineage: START of %s not emitted: %s", job, exc)
            return
        self._emit("START", [], {})

    def complete(self, outputs: Iterable[Ref] = ()) -> None:
        """Emit COMPLETE with ``outputs`` (the published artifacts) and close the client."""
        if self._client is None or not self._started:
            return
        try:
            from openlineage.client.event_v2 import OutputDataset

            outs = [OutputDataset(ns, name, facets=facets) for ns, name, facets in self._datasets(outputs)]
        except Exception as exc:
            log.warning("OpenLineage: COMPLETE of %s (run %s) not emitted: %s", self._job, self._run_id, exc)
        else:
            self._emit("COMPLETE", outs, {})
        self._close()

    def fail(self, exc: BaseException) -> None:
        """Emit FAIL with the error message facet (and the stack trace of an unexpected error)."""
        if self._client is None or not self._started:
            return
        try:
            import traceback

            from openlineage.client.facet_v2 import error_message_run

            lake_error = isinstance(exc, LakeError)
            facet = error_message_run.ErrorMessageRunFacet(
                message=str(exc) if lake_error else f"{type(exc).__name__}: {exc}",
                programmingLanguage="python",
                stackTrace=None if lake_error else "".join(traceback.format_exception(exc)),
                producer=self._producer,
            )
        except Exception as err:
            log.warning("OpenLineage: FAIL of %s (run %s) not emitted: %s", self._job, self._run_id, err)
        else:
            self._emit("FAIL", [], {"errorMessage": facet})
        self._close()

    def abort(self) -> None:
        """Emit ABORT (the run was interrupted: Ctrl-C)."""
        if self._client is None or not self._started:
            return
        self._emit("ABORT", [], {})
        self._close()

    def _datasets(self, refs: Iterable[Ref]) -> list[tuple[str, str, dict[str, Any]]]:
        """(namespace, name, facets) of each dataset: lake artifacts get their version and schema."""
        from openlineage.client.facet_v2 import dataset_version_dataset, schema_dataset

        out: list[tuple[str, str, dict[str, Any]]] = []
        for ref in refs:
            if isinstance(ref, External):
                out.append((ref.namespace, ref.name, {}))
                continue
            artifact_id, name = (ref, None) if isinstance(ref, str) else ref
            row = self._lake.db.execute(
                "SELECT a.columns, (SELECT n.name FROM names n WHERE n.artifact = a.pk"
                " ORDER BY n.created DESC, n.version DESC, n.name LIMIT 1) AS name FROM artifacts a WHERE a.id = ?",
                (artifact_id,),
            ).fetchone()
            facets: dict[str, Any] = {
                "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=artifact_id, producer=self._producer
                )
            }
            if row is not None:
                name = name or row["name"]
                facets["schema"] = schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(name=col, type=typ, ordinal_position=i)
                        for i, (col, typ) in enumerate(json.loads(row["columns"]), start=1)
                    ],
                    producer=self._producer,
                )
            out.append((self._namespace, name or f"artifact/{artifact_id}", facets))
        return out

    def _emit(self, state: str, outputs: list[OutputDataset], run_facets: dict[str, RunFacet]) -> None:
        assert self._client is not None
        try:
            from openlineage.client import __version__ as client_version
            from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
            from openlineage.client.facet_v2 import processing_engine_run

            engine = processing_engine_run.ProcessingEngineRunFacet(
                version=self._version,
                name="artifact-lake",
                openlineageAdapterVersion=client_version,
                producer=self._producer,
            )
            event = RunEvent(
                eventType=RunState[state],
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=self._run_id, facets={"processing_engine": engine, **run_facets}),
                job=Job(namespace=self._namespace, name=self._job, facets=dict(self._job_facets)),
                inputs=list(self._inputs),
                outputs=outputs,
                producer=self._producer,
            )
            self._client.emit(event)
        except Exception as exc:  # a lost event is logged, never a failed run: the lake is already right
            log.warning("OpenLineage: %s of %s (run %s) not emitted: %s", state, self._job, self._run_id, exc)

    def _close(self) -> None:
        assert self._client is not None
        try:
            self._client.close(CLOSE_TIMEOUT_S)
        except Exception as exc:
            log.warning("OpenLineage: closing the client after %s (run %s): %s", self._job, self._run_id, exc)


def emits(
    job: Callable[[Mapping[str, Any]], str],
    *,
    outputs: Callable[[R], Iterable[Ref]],
    inputs: Callable[[Mapping[str, Any]], Iterable[Ref]] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an ingest function (its first parameter is ``lake``) to emit its run's events.

    ``job`` and ``inputs`` get the call's arguments by name; ``outputs`` gets the function's result. The
    configuration is checked before the function runs; an exception emits FAIL (ABORT for Ctrl-C) and
    propagates unchanged.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            events = run_events(bound.arguments["lake"])
            if not events.enabled:
                return fn(*args, **kwargs)
            try:
                name = job(bound.arguments)
                sources = list(inputs(bound.arguments)) if inputs else []
            except Exception as exc:  # a lost event is logged, never a failed ingest
                log.warning("OpenLineage: START of %s not emitted: %s", fn.__name__, exc)
                return fn(*args, **kwargs)
            events.start(name, inputs=sources, job_type="INGEST")
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                events.fail(exc)
                raise
            except BaseException:
                events.abort()
                raise
            try:
                published = list(outputs(result))
            except Exception as exc:
                log.warning("OpenLineage: the outputs of %s are left out of COMPLETE: %s", name, exc)
                published = []
            events.complete(published)
            return result

        return wrapper

    return decorate
