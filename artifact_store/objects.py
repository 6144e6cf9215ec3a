"""Object files: where they live, how they are staged, written, protected, read back and cleaned.

Invariants:
* ``objects/<2 hex>/<64 hex>.parquet`` holds the artifact whose id is the file name; it is written once,
  with fixed settings (:func:`write_canonical`, or ``_stream``'s writer, which writes the same bytes), or is
  an input file's own bytes when those already are canonical (``_stream.kept_as_is``); it is made read-only
  and never rewritten (a publish of the same content restores a missing or changed one).
* A staged file lives in ``tmp/`` as ``<pid>-<16 hex><suffix>`` and is locked (``flock``) by the process
  writing it for as long as it lives. It is created under a hidden name (``.<pid>-<16 hex>.new``), locked,
  and only then renamed to its staging name, so nobody ever sees an unlocked staging file of a live writer.
  ``gc`` removes a staged file only when it can take that lock, i.e. its writer is gone.
* Nothing here follows a symlink below the lake's root: folders are opened one component at a time with
  ``O_NOFOLLOW`` and files are removed through a handle on their folder (:func:`remove_file`), so a lake
  received as a tarball with ``objects/zz -> ~`` cannot make gc, verify or a read reach outside it. Only
  regular files of the names the lake makes are ever removed; anything else is reported as left alone.
* Reads open an object without blocking (a FIFO planted at an object path cannot hang them), check that it
  is a regular file, and hash the very bytes they serve (:func:`read_checked`, :func:`copy_checked`).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import blake3

from .errors import DiskFull, InvalidInput
from .records import LeftAlone

if TYPE_CHECKING:
    import pyarrow as pa

OBJECT_SUFFIX = ".parquet"
# Fixed writer settings: the stored bytes of an artifact depend on them, its id does not. Dictionary
# pages only for strings and binaries (trying them on high-cardinality numbers costs time and saves
# nothing); floats use BYTE_STREAM_SPLIT, which makes them compress better and faster under zstd.
# Measured on 2M OHLCV rows: 0.24 s and 71.6 MB versus 0.44 s and 80.0 MB for pyarrow's defaults.
ROW_GROUP_ROWS = 1 << 20
WRITER_SETTINGS = {
    "compression": "zstd",
    "row_group_size": ROW_GROUP_ROWS,
    "write_statistics": True,
    "version": "2.6",
}


def _encodings(schema: pa.Schema) -> dict[str, list[str]]:
    import pyarrow.types as pt

    strings = [f.name for f in schema if pt.is_string(f.type) or pt.is_binary(f.type)]
    floats = [f.name for f in schema if pt.is_floating(f.type)]
    return {"use_dictionary": strings, "use_byte_stream_split": floats}


def parquet_options(schema: pa.Schema) -> dict[str, object]:
    """Keyword arguments of ``pq.ParquetWriter`` for an object of ``schema`` (all settings but the row-group
    size, which its ``write_table`` takes)."""
    options: dict[str, object] = {k: v for k, v in WRITER_SETTINGS.items() if k != "row_group_size"}
    return options | _encodings(schema)


def lake_metadata(type_name: str, schema_version: int) -> dict[bytes, bytes]:
    """The schema metadata of every object the lake writes."""
    return {b"artifact_lake.type": type_name.encode(), b"artifact_lake.schema_version": str(schema_version).encode()}


# Names the lake makes, and so the only names maintenance ever removes.
SHARD_NAME = re.compile(r"[0-9a-f]{2}")
OBJECT_NAME = re.compile(r"[0-9a-f]{64}\.parquet")
STAGING_NAME = re.compile(r"[0-9]+-[0-9a-f]{16}(\.[a-z0-9]+)*")
CREATING_NAME = re.compile(r"\.[0-9]+-[0-9a-f]{16}\.new")
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def object_path(root: Path, artifact_id: str) -> Path:
    return root / "objects" / artifact_id[:2] / f"{artifact_id}{OBJECT_SUFFIX}"


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC, EDQUOT and EFBIG (a file-size limit): all of them mean "no room to write"."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full(exc: OSError, what: str) -> DiskFull:
    """The one-line error for a full disk: ``disk full while <what> (<strerror>): ...``."""
    reason = exc.strerror or str(exc)
    return DiskFull(f"disk full while {what} ({reason}): free some space and try again; nothing was registered")


# -- staying inside the lake ---------------------------------------------------------------------------
class OutsideLake(OSError):
    """A path below the lake's root runs through a symlink or something that is not a folder."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a file" if stat.S_ISREG(mode) else "not a regular file"


def _describe(dir_fd: int, name: str) -> str:
    """What ``name`` is, in words, without following it (a symlink names its target)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"a symlink to {os.readlink(name, dir_fd=dir_fd)}"
        except OSError:
            return "a symlink"
    return _kind(st.st_mode)


def _parts(rel: str | Path) -> tuple[str, ...]:
    parts = Path(rel).parts
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts) or Path(rel).is_absolute():
        raise ValueError(f"not a path inside the lake: {rel!r}")
    return parts


def open_dir(root: Path, rel: str | Path, *, create: bool = False) -> int:
    """A handle (fd) on the folder ``root/rel``, reached through real folders only.

    Every component below ``root`` is opened with ``O_NOFOLLOW``: a symlink or a file on the way raises
    :class:`OutsideLake` (a missing folder raises ``FileNotFoundError`` unless ``create``). The caller
    closes the fd.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = root
    try:
        for part in _parts(rel):
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                os.fsync(fd)  # the new folder's entry survives a crash
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except (NotADirectoryError, OSError) as exc:
                if isinstance(exc, NotADirectoryError) or exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutsideLake(
                        errno.ENOTDIR, f"{walked / part} is {_describe(fd, part)}, not a folder of the lake"
                    ) from exc
                raise
            os.close(fd)
            fd = nfd
            walked = walked / part
    except BaseException:
        os.close(fd)
        raise
    return fd


def inside_lake(root: Path, path: Path) -> bool:
    """True when ``path`` is a regular file below ``root`` reached through real folders only."""
    try:
        rel = path.relative_to(root)
        parts = _parts(rel)
        dfd = open_dir(root, Path(*parts[:-1])) if len(parts) > 1 else os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, ValueError):
        return False
    try:
        return stat.S_ISREG(os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False
    finally:
        os.close(dfd)


def safe_entries(
    root: Path, folder: str | Path, pattern: re.Pattern[str], *, folders: bool = False
) -> tuple[list[Path], list[LeftAlone]]:
    """The entries of ``root/folder`` that maintenance may touch, and the ones it leaves alone.

    Returns regular files (or, with ``folders``, real folders) whose whole name matches ``pattern``, sorted,
    and a :class:`LeftAlone` with the reason for every other entry: symlinks (never followed, wherever they
    point), FIFOs, sockets, devices, and names the lake does not make. A ``folder`` that is itself a symlink
    (or runs through one) yields nothing and is reported; a missing one yields nothing.

    This is the helper for every clean-up of the lake (gc, verify, ``projection drop``)::

        files, skipped = safe_entries(lake.root, "projections", re.compile(r"[0-9a-f]{64}\\.duckdb(\\.wal)?"))
        for f in files:
            reason = remove_file(lake.root, f)  # None: removed; else why it was left alone
    """
    try:
        fd = open_dir(root, folder)
    except FileNotFoundError:
        return [], []
    except OutsideLake as exc:
        return [], [LeftAlone(str(root / folder), f"{exc.strerror}: not followed")]
    keep: list[Path] = []
    skipped: list[LeftAlone] = []
    try:
        for name in sorted(os.listdir(fd)):
            path = root / folder / name
            try:
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # removed while we listed
            want = stat.S_ISDIR(mode) if folders else stat.S_ISREG(mode)
            if want and pattern.fullmatch(name):
                keep.append(path)
            elif stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
                skipped.append(LeftAlone(str(path), "not a name the lake makes"))
            else:
                skipped.append(LeftAlone(str(path), f"{_describe(fd, name)}: not followed, not removed"))
    finally:
        os.close(fd)
    return keep, skipped


def remove_file(root: Path, path: Path) -> str | None:
    """Remove ``path`` when, at this moment, it is a regular file of the lake; else say why it stays.

    The folder is opened through real folders only and the file unlinked through that handle, so a folder
    swapped for a symlink after it was listed still cannot send the removal outside the lake.
    """
    try:
        parts = _parts(path.relative_to(root))
        dfd = open_dir(root, Path(*parts[:-1]))
    except (OSError, ValueError) as exc:
        return f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}: not removed"
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return f"{_describe(dfd, parts[-1])}: not removed"
        os.unlink(parts[-1], dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot remove it ({exc.strerror})"
    finally:
        os.close(dfd)
    return None


# -- reading objects -----------------------------------------------------------------------------------
class BadObject(Exception):
    """An object file a read or verify cannot use: ``kind`` is ``missing`` or ``changed``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def open_object(root: Path, artifact_id: str) -> tuple[int, os.stat_result]:
    """A read-only fd on the object of ``artifact_id`` and its stat; :class:`BadObject` ("missing") when it
    is gone, or is a symlink, folder, FIFO, socket or device, or lies behind a symlinked folder."""
    path = object_path(root, artifact_id)
    try:
        dfd = open_dir(root, Path("objects") / artifact_id[:2])
    except FileNotFoundError:
        raise BadObject("missing", f"object file {path} is gone") from None
    except OutsideLake as exc:
        raise BadObject("missing", f"object file {path} is unreachable: {exc.strerror}") from None
    name = path.name
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise BadObject("missing", f"object file {path} is gone") from None
        if not stat.S_ISREG(st.st_mode):
            raise BadObject("missing", f"object path {path} is {_describe(dfd, name)}, not a file")
        # O_NONBLOCK: should a FIFO appear here after the stat, the open returns at once instead of hanging
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        raise BadObject("missing", f"object file {path} cannot be opened ({exc.strerror})") from None
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadObject("missing", f"object path {path} is {_kind(st.st_mode)}, not a file")
    return fd, st


def _hasher() -> blake3.blake3:
    # the same blake3 of the bytes as hashing.file_hash, computed from a handle we opened ourselves
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def map_object(root: Path, artifact_id: str) -> tuple[mmap.mmap | bytes, os.stat_result]:
    """The object's bytes (a read-only map, or ``b""`` for an empty file) and the stat of the file mapped."""
    fd, st = open_object(root, artifact_id)
    try:
        return (mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if st.st_size else b""), st
    finally:
        os.close(fd)


def read_checked(root: Path, artifact_id: str, expected: str | None) -> tuple[mmap.mmap | bytes, os.stat_result]:
    """The object's bytes after checking they hash to ``expected`` (no check when ``expected`` is None).

    The bytes returned are the bytes hashed: a reader parses exactly what was checked.
    """
    data, st = map_object(root, artifact_id)
    if expected is not None:
        got = _hasher().update(data).hexdigest()
        if got != expected:
            raise BadObject(
                "changed",
                f"bytes of {object_path(root, artifact_id)} hash to {got[:16]}..., not {expected[:16]}...",
            )
    return data, st


def copy_checked(root: Path, artifact_id: str, expected: str, dest: Path) -> None:
    """Copy the object to ``dest``, hashing while copying; a changed object leaves ``dest`` untouched.

    The copy goes to a hidden file beside ``dest`` and is renamed over it only when the hash matched.
    """
    fd, _ = open_object(root, artifact_id)
    part = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    h = _hasher()
    try:
        with open(part, "xb") as out:
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != expected:
            raise BadObject(
                "changed",
                f"bytes of {object_path(root, artifact_id)} hash to {got[:16]}..., not {expected[:16]}...",
            )
        os.chmod(part, 0o644)
        os.replace(part, dest)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(exc, f"writing {dest}") from exc  # type: ignore[arg-type]
        raise
    finally:
        os.close(fd)


# -- staging and installing ----------------------------------------------------------------------------
@dataclass
class Staged:
    """A file being written in ``tmp/``; holds its lock until closed."""

    path: Path
    handle: BinaryIO

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()

    def discard(self) -> None:
        """Close and remove the staged file, even when closing fails (a full disk fails the last flush again)."""
        try:
            self.close()
        except OSError:
            pass
        finally:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def stage(root: Path, suffix: str = OBJECT_SUFFIX) -> Staged:
    """Open a new staging file ``<root>/tmp/<pid>-<16 hex><suffix>``, already locked when it appears.

    It is created under a hidden name, locked, then renamed: gc never sees the staging name unlocked
    while its writer lives. A ``tmp/`` that is a symlink is refused (the lake stages inside itself).
    """
    try:
        dfd = open_dir(root, "tmp", create=True)
    except OutsideLake as exc:
        raise InvalidInput(
            f"{exc.strerror}: make {root / 'tmp'} a plain folder (the lake stages inside itself)"
        ) from exc
    name = f"{os.getpid()}-{secrets.token_hex(8)}"
    hidden = f".{name}.new"
    try:
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, name + suffix, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.close(fd)
            os.unlink(hidden, dir_fd=dfd)
            raise
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, f"staging in {root / 'tmp'}") from exc
        raise
    finally:
        os.close(dfd)
    return Staged(root / "tmp" / (name + suffix), os.fdopen(fd, "wb"))


def stage_lock(root: Path) -> Staged:
    """A held ``tmp/<prefix>.lock`` for writers that create their own files (``tmp/<prefix>.*``)."""
    return stage(root, suffix=".lock")


def is_stale(path: Path) -> bool:
    """True when nobody holds the staging file's lock (its writer is gone).

    The lock is ``tmp/<prefix>.lock`` when it exists (files a library creates itself, such as DuckDB
    databases), else the staged file itself. Only regular files are opened (never a FIFO or a symlink).
    """
    lock = path.with_name(path.name.split(".", 1)[0] + ".lock")
    target = lock if lock.exists() else path
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def write_canonical(table: pa.Table, staged: Staged, type_name: str, schema_version: int) -> None:
    """Write ``table`` into the staged file with the lake's fixed settings and fsync it.

    ``table`` is conformed (``schemas.conform``), so every type in it reads back from the file as written,
    up to nested field names (see ``hashing.type_text``). A null in a column declared not null is written
    as a null: the row checks, which run beside this write, refuse the table with the row, and the file is
    discarded; letting the Parquet writer refuse it first would hide that message behind its own.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = lake_metadata(type_name, schema_version)
    if any(not f.nullable and table.column(i).null_count for i, f in enumerate(table.schema)):
        relaxed = pa.schema([f.with_nullable(True) for f in table.schema])
        table = pa.Table.from_arrays(table.columns, schema=relaxed)
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


def install(staged: Staged, target: Path) -> Path:
    """Move a staged, fsynced file to its object path ``target`` atomically and make it read-only.

    The shard folder is made (and ``objects/`` fsynced) when new, then fsynced after the rename. A shard
    or ``objects/`` that is a symlink is refused: the lake never writes through one.
    """
    root, artifact_id = target.parents[2], target.name[: -len(OBJECT_SUFFIX)]
    try:
        objects_fd = open_dir(root, "objects", create=True)
    except OutsideLake as exc:
        raise InvalidInput(f"{exc.strerror}: lake verify lists what to fix") from exc
    try:
        shard = artifact_id[:2]
        try:
            shard_fd = os.open(shard, _DIR_FLAGS, dir_fd=objects_fd)
        except FileNotFoundError:
            try:
                os.mkdir(shard, 0o755, dir_fd=objects_fd)
            except FileExistsError:
                pass
            os.fsync(objects_fd)  # the new shard's entry in objects/ is durable before anything points into it
            shard_fd = os.open(shard, _DIR_FLAGS, dir_fd=objects_fd)
        except OSError as exc:
            raise InvalidInput(
                f"{target.parent} is {_describe(objects_fd, shard)}, not a folder of the lake: lake verify lists it"
            ) from exc
    finally:
        os.close(objects_fd)
    try:
        os.chmod(staged.path, 0o444)
        try:
            os.replace(staged.path, target)
        except IsADirectoryError as exc:
            raise InvalidInput(f"object path {target} is a folder: remove it, then publish again") from exc
        os.fsync(shard_fd)
    finally:
        os.close(shard_fd)
    staged.close()
    return target
