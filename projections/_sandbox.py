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

Spilling to ``<database>.tmp`` keeps working: DuckDB's own temporary files are not external access.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
) -> duckdb.DuckDBPyConnection:
    """A sandboxed connection to ``path`` with ``sources`` (name -> Arrow object) registered as views.

    Read-only: a private in-memory DuckDB that attaches the file ``READ_ONLY`` and makes it the current
    database, so two connections in one process never share (or clash over) one DuckDB instance and its
    settings. ``threads=1`` gives results computed in one fixed order (float sums that do not change run
    to run). Read-write (builds, into a fresh staging file): the file itself, in ``storage_version``.
    """
    import duckdb

    config = dict(SANDBOX)
    if threads is not None:
        config["threads"] = threads
    if read_only:
        del config["enable_external_access"]  # switched off right after the ATTACH below
        con = duckdb.connect(":memory:", config=config)
    else:
        if storage_version is not None:
            config["storage_compatibility_version"] = storage_version
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
