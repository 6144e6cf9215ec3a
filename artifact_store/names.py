"""The rules for artifact names, and names made from file names.

A name is a versioned pointer that people type in shells, globs and URLs, so it is plain ASCII:

* ``[A-Za-z0-9][A-Za-z0-9._/:=+-]*`` matched against the whole string (a trailing newline is refused, not
  silently allowed by ``$``), at most :data:`MAX_NAME` characters, no ``..``, no ``//``, no trailing ``/``;
* not 6 or more lowercase hex characters (digits included, like ``20240105``): such a name would read as an
  id prefix. ``day-20240105``, ``2024-01-05`` or ``v20240105`` are fine. A name of that shape recorded by an
  older version still resolves, but only unambiguously (see ``Lake.resolve``).

Names derived from a file name (``raw/<file>`` of ``lake ingest file``) fold the file name into that
alphabet with :func:`name_from_file`; the file's own name is kept in the artifact's meta (``source_file``).
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidInput

MAX_NAME = 256
MIN_PREFIX = 6
HEX = re.compile(r"[0-9a-f]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:=+-]*")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._=+-]+")  # '/' and ':' too: a file name becomes one segment


def check_name(name: str) -> None:
    """Refuse a name that breaks the rules above, saying which rule."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"invalid name {name!r}: a name is a non-empty string")
    shown = name if len(name) <= 80 else name[:60] + f"... ({len(name):,} characters)"
    if len(name) > MAX_NAME:
        raise InvalidInput(f"invalid name {shown!r}: at most {MAX_NAME} characters")
    if not _NAME.fullmatch(name) or ".." in name or "//" in name or name.endswith("/"):
        raise InvalidInput(
            f"invalid name {shown!r}: start with a letter or digit, then letters, digits and . _ / : = + - "
            "(no spaces or other characters, no '@', no '..', no '//', no trailing '/')"
        )
    if len(name) >= MIN_PREFIX and HEX.fullmatch(name):
        raise InvalidInput(
            f"invalid name {shown!r}: {MIN_PREFIX} or more hex characters read as an artifact id prefix; "
            f"add a letter or a separator, e.g. 'day-{name}'"
        )


def name_from_file(prefix: str, file_name: str) -> str:
    """``<prefix>/<file name folded into the name alphabet>``: accents dropped (``données.csv`` ->
    ``donnees.csv``), every run of other characters one ``_`` (``my data.csv`` -> ``my_data.csv``)."""
    folded = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_IN_NAME.sub("_", folded)
    slug = re.sub(r"\.{2,}", ".", slug).strip("._-=+")
    room = MAX_NAME - len(prefix) - 1
    slug = slug[:room].rstrip("._-=+") or "file"
    name = f"{prefix}/{slug}"
    check_name(name)
    return name
