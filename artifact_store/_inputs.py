"""Input files: a path a user gives must be a regular file, and the refusal says what it is instead."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InvalidInput

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file(path: str | os.PathLike[str]) -> Path:
    """``path`` when it is a regular file (symlinks to one included); else one line naming what it is.

    Never opens the path: a FIFO or ``/dev/zero`` would block or never end.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InvalidInput(f"{p}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read it ({exc.strerror})") from exc
    if stat.S_ISREG(mode):
        return p
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise InvalidInput(f"{p}: is {what}, not a file (give a Parquet, CSV or JSON file)")
