"""Object files: where they live, how they are staged, written and protected.

Invariants:
* ``objects/<2 hex>/<64 hex>.parquet`` holds the artifact whose id is the file name; it is written once,
  by :func:`write_canonical` with fixed settings, made read-only and never rewritten.
* A staged file lives in ``tmp/`` and is locked (``flock``) by the process writing it for as long as it
  lives. ``gc`` removes a staged file only when it can take that lock, i.e. its writer is gone, so a
  publish in flight is never disturbed and a killed one leaves nothing that cannot be cleaned.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import pyarrow as pa

OBJECT_SUFFIX = ".parquet"
# Fixed writer settings: the stored bytes of an artifact depend on them, its id does not. Dictionary
# pages only for strings and binaries (trying them on high-cardinality numbers costs time and saves
# nothing); floats use BYTE_STREAM_SPLIT, which makes them compress better and faster under zstd.
# Measured on 2M OHLCV rows: 0.24 s and 71.6 MB versus 0.44 s and 80.0 MB for pyarrow's defaults.
WRITER_SETTINGS = {
    "compression": "zstd",
    "row_group_size": 1 << 20,
    "write_statistics": True,
    "version": "2.6",
}


def _encodings(schema: pa.Schema) -> dict[str, list[str]]:
    import pyarrow.types as pt

    strings = [f.name for f in schema if pt.is_string(f.type) or pt.is_binary(f.type)]
    floats = [f.name for f in schema if pt.is_floating(f.type)]
    return {"use_dictionary": strings, "use_byte_stream_split": floats}


def object_path(root: Path, artifact_id: str) -> Path:
    return root / "objects" / artifact_id[:2] / f"{artifact_id}{OBJECT_SUFFIX}"


@dataclass
class Staged:
    """A file being written in ``tmp/``; holds its lock until closed."""

    path: Path
    handle: BinaryIO

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()

    def discard(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def stage(root: Path, suffix: str = OBJECT_SUFFIX) -> Staged:
    """Open a new locked staging file in ``<root>/tmp``."""
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    path = tmp / f"{os.getpid()}-{secrets.token_hex(8)}{suffix}"
    handle = open(path, "xb")  # noqa: SIM115 - the Staged owns it
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    return Staged(path, handle)


def stage_lock(root: Path) -> Staged:
    """A held ``tmp/<prefix>.lock`` for writers that create their own files (``tmp/<prefix>.*``)."""
    return stage(root, suffix=".lock")


def is_stale(path: Path) -> bool:
    """True when nobody holds the staging file's lock (its writer is gone).

    The lock is ``tmp/<prefix>.lock`` when it exists (files a library creates itself, such as DuckDB
    databases), else the staged file itself.
    """
    lock = path.with_name(path.name.split(".", 1)[0] + ".lock")
    target = lock if lock.exists() else path
    try:
        fd = os.open(target, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def write_canonical(table: pa.Table, staged: Staged, type_name: str, schema_version: int) -> None:
    """Write ``table`` into the staged file with the lake's fixed settings and fsync it."""
    import pyarrow.parquet as pq

    meta = {b"artifact_lake.type": type_name.encode(), b"artifact_lake.schema_version": str(schema_version).encode()}
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, staged.handle, **WRITER_SETTINGS, **_encodings(table.schema))
    staged.handle.flush()
    os.fsync(staged.handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install(staged: Staged, target: Path) -> None:
    """Move a staged, fsynced file to its object path atomically and make it read-only."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(staged.path, 0o444)
    os.replace(staged.path, target)
    fsync_dir(target.parent)
    staged.close()
