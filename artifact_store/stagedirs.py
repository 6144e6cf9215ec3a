"""Staging folders in ``tmp/``: work a run stages to resume after a crash (a sweep's chunks), as opposed to
the single staging files of a publish (:func:`objects.stage`).

A folder ``tmp/sweep-<32 hex>/`` holds ``chunk-<6 digits>.parquet`` files (each whole: written under a
hidden name and renamed) and a ``lock`` its run holds while it computes. Nobody holding the lock means the
run is gone: ``verify`` reports the folder as *stale* and ``gc`` removes it (files of other names inside
are left alone, with the folder). Everything is walked with :func:`objects.safe_entries`: no symlink is
followed, nothing outside the lake is touched.

A folder ``tmp/<pid>-<16 hex>.spill/`` is where a projection build's DuckDB spills (``duckdb_temp_*``
files); it belongs to the build's held ``tmp/<pid>-<16 hex>.lock`` and is gone when the build ends. A free
(or missing) lock means the build was killed: the folder is stale and gc removes it the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .objects import is_stale, remove_file, safe_entries
from .records import LeftAlone

SWEEP_DIR = re.compile(r"sweep-[0-9a-f]{32}")
SWEEP_FILE = re.compile(r"chunk-[0-9]{6}\.parquet|\.chunk-[0-9]{6}\.parquet\.new|lock")
SPILL_DIR = re.compile(r"[0-9]+-[0-9a-f]{16}\.spill")
SPILL_FILE = re.compile(r"duckdb_temp_[0-9A-Za-z_.-]+")


def is_stale_spill(path: Path) -> bool:
    """True when no build holds the spill folder's ``<prefix>.lock`` beside it (or that lock is gone)."""
    lock = path.with_name(path.name.split(".", 1)[0] + ".lock")
    return not os.path.lexists(lock) or is_stale(lock)


def files_of(path: Path) -> re.Pattern[str]:
    """The names the lake makes inside the staging folder ``path``."""
    return SPILL_FILE if SPILL_DIR.fullmatch(path.name) else SWEEP_FILE


def is_stale_dir(path: Path) -> bool:
    """True when no run holds the folder's ``lock`` (a folder without one is stale too)."""
    lock = path / "lock"
    return not os.path.lexists(lock) or is_stale(lock)


def dir_size(root: Path, path: Path) -> int:
    files, _ = safe_entries(root, path.relative_to(root), files_of(path))
    total = 0
    for f in files:
        try:
            total += os.lstat(f).st_size
        except FileNotFoundError:
            pass
    return total


def remove_dir(root: Path, path: Path) -> list[LeftAlone]:
    """Remove the staged files of ``path`` and the folder itself; what is left, with why."""
    files, left = safe_entries(root, path.relative_to(root), files_of(path))
    for f in files:
        reason = remove_file(root, f)
        if reason is not None:
            left.append(LeftAlone(str(f), reason))
    if not left:
        try:
            os.rmdir(path)
        except OSError as exc:
            left.append(LeftAlone(str(path), f"cannot remove the folder: {exc.strerror}"))
    return left
