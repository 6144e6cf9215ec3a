"""The one way projections code opens DuckDB: sandboxed, for SQL that users and lakes supply.

Every connection (builds of built-in and lake specs, ``lake query``, ``projection show/list``,
:meth:`Projection.connect`) is opened with

* ``enable_external_access = false``: no file or network access from SQL (``COPY``, ``EXPORT``/``IMPORT
  DATABASE``, ``ATTACH`` of a file, ``read_*``, ``glob``, ``INSTALL``/``LOAD`` from a path), and no Python
  replacement scans of the caller's variables;
* extension autoload and autoinstall off, community and unsigned extensions off, no persistent secrets;
* then ``TimeZone = 'UTC'`` and, last, ``lock_configuration = true``: every ``SET``/``RESET``/``PRAGMA`` of a
  setting fails from then on, so SQL cannot undo any of the above.

Only the database file itself is opened by DuckDB (read-only: attached to a private in-memory database before
external access is switched off). A build's inputs reach it as pyarrow datasets registered
from Python before the lock (``sources``), scanned in batches (memory stays flat); DuckDB is handed no path
at all. DuckDB's ``allowed_paths`` is not used on purpose: on 2.0.1 it allows writing too, so
``COPY ... TO '<allowed file>' (USE_TMP_FILE false)`` would overwrite an input object.

Spilling keeps working: DuckDB's own temporary files are not external access. A build spills into a folder
of its own in the lake's ``tmp/`` (``temp_directory``, removed after the build, by ``lake gc`` after a crash);
a read-only connection spills beside its file (``<database>.tmp``).

Resources: every connection gets ``memory_limit`` = :func:`memory_limit` (``$LAKE_PROJECTION_MEMORY``, else
half of this machine's memory), so a build larger than memory sorts and joins out of core in its spill folder
instead of being killed. DuckDB's own default, 80 %, leaves too little beside the Arrow scans of the inputs
(pyarrow's buffers are not counted in DuckDB's limit) and whatever else runs on the machine. Threads stay
DuckDB's default (one per core). ``preserve_insertion_order`` stays on: a table keeps the order it was
inserted in, which is what queries of a projection and the ``ohlcv`` spec's streaming pass read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ProjectionError

if TYPE_CHECKING:
    import duckdb

SANDBOX: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
}
"""DuckDB settings of every projections connection, fixed at connect and locked before any SQL runs."""

MEMORY_ENV = "LAKE_PROJECTION_MEMORY"
"""Environment variable that sets DuckDB's ``memory_limit`` for projections: a size (``8GB``, ``512MiB``)
or a share of this machine's memory (``40%``)."""
DEFAULT_MEMORY_SHARE = 0.5
"""``memory_limit`` when :data:`MEMORY_ENV` is not set: this share of the machine's (or cgroup's) memory."""
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(%|[a-z]+)\s*", re.IGNORECASE)

_REFUSED = (
    "file system operations are disabled by configuration",
    "the configuration has been locked",
    "disabled through configuration",
    "external access is disabled",
)


def connect(
    path: Path,
    *,
    read_only: bool,
    storage_version: str | None = None,
    threads: int | None = None,
    sources: Mapping[str, Any] | None = None,
    temp_directory: Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """A sandboxed connection to ``path`` with ``sources`` (name -> Arrow object) registered as views.

    Read-only: a private in-memory DuckDB that attaches the file ``READ_ONLY`` and makes it the current
    database, so two connections in one process never share (or clash over) one DuckDB instance and its
    settings. ``threads=1`` gives results computed in one fixed order (float sums that do not change run
    to run). Read-write (builds, into a fresh staging file): the file itself, in ``storage_version``, spilling
    into ``temp_directory`` (DuckDB creates it when it first spills and removes it when the connection closes).
    Every connection gets :func:`memory_limit`.
    """
    import duckdb

    config = dict(SANDBOX)
    config["memory_limit"] = memory_limit()
    if threads is not None:
        config["threads"] = threads
    if read_only:
        del config["enable_external_access"]  # switched off right after the ATTACH below
        con = duckdb.connect(":memory:", config=config)
    else:
        if storage_version is not None:
            config["storage_compatibility_version"] = storage_version
        if temp_directory is not None:
            config["temp_directory"] = str(temp_directory)
        con = duckdb.connect(str(path), config=config)
    try:
        con.execute("SET TimeZone = 'UTC'")
        if read_only:
            con.execute(f"ATTACH {literal(str(path))} AS {quote(path.stem)} (READ_ONLY)")
            con.execute(f"USE {quote(path.stem)}")
            con.execute(f"SET temp_directory = {literal(str(path) + '.tmp')}")  # spills beside the file, as usual
            con.execute("SET enable_external_access = false")
        for name, source in (sources or {}).items():
            con.register(name, source)
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def memory_limit(environ: Mapping[str, str] | None = None) -> str:
    """DuckDB's ``memory_limit`` for projections: ``$LAKE_PROJECTION_MEMORY`` (``8GB``, ``512MiB``, ``40%`` of
    this machine's memory), else :data:`DEFAULT_MEMORY_SHARE` of it; as a DuckDB size in KiB.

    A value that is not a size is refused in one line (exit 2) naming the variable.
    """
    env = os.environ if environ is None else environ
    raw = env.get(MEMORY_ENV, "").strip()
    if not raw:
        return _kib(physical_memory() * DEFAULT_MEMORY_SHARE)
    m = _SIZE.fullmatch(raw)
    unit = m.group(2).lower() if m else ""
    value = float(m.group(1)) if m else 0.0
    if m is None or (unit != "%" and unit not in _UNITS) or value <= 0 or (unit == "%" and value > 100):
        raise ProjectionError(
            f"{MEMORY_ENV}={raw!r} is not a memory size: give one like 8GB, 512MiB or 40% (of this machine's memory)"
        )
    if unit == "%":
        return _kib(physical_memory() * value / 100)
    return _kib(value * _UNITS[unit])


def physical_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _kib(size: float) -> str:
    return f"{max(int(size) // 1024, 1)}KiB"


def literal(text: str) -> str:
    """``text`` as a DuckDB string literal (each ``'`` doubled); only for lake-made paths."""
    return "'" + text.replace("'", "''") + "'"


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier: in double quotes, each ``"`` doubled (any text is safe)."""
    return '"' + name.replace('"', '""') + '"'


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def refused(exc: BaseException) -> bool:
    """True when DuckDB refused ``exc``'s statement because of the sandbox (files, extensions, settings)."""
    import duckdb

    text = str(exc)
    return isinstance(exc, duckdb.PermissionException) or any(r in text for r in _REFUSED)
