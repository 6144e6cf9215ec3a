"""Where a remote keeps its files: a small key/value interface with create-if-absent, and its two backends.

Invariants every backend keeps:
* :meth:`Backend.create` never overwrites. It returns ``True`` when this call created the key and ``False``
  when the key already held something (the first writer wins). A reader never sees half a value: S3 PUTs are
  atomic, and the local backend writes a hidden file, fsyncs it, then ``link``\\s it to the key (``link`` fails
  with ``EEXIST`` instead of replacing, unlike ``rename``).
* Keys are ``/``-separated, relative to the remote's root or prefix, and made only by :mod:`.remote`
  (``objects/<2 hex>/<64 hex>.parquet``, ``segments/<64 hex>.json.gz``): never from remote text.

``file://`` remotes use :class:`LocalBackend`; ``s3://`` remotes use ``_s3.S3Backend`` (obstore, extra ``s3``),
loaded only when such a remote is used.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from .errors import InvalidInput, NotFound


class Backend(Protocol):
    """The operations a remote needs from its storage."""

    url: str

    def create(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` unless the key exists; True when this call created it."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`NotFound` when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key below ``prefix`` (a folder such as ``segments/``), sorted."""
        ...


class LocalBackend:
    """A remote in a folder (a shared disk): ``file:///path``."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"bad remote key {key!r}")
        return self.root.joinpath(*parts)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}.part")
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(hidden, path)  # atomic and never replaces: EEXIST when another writer was first
            except FileExistsError:
                return False
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return True
        finally:
            hidden.unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{self.url}: no {key}") from None
        except OSError as exc:
            raise NotFound(f"{self.url}: {key} cannot be read ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                if not f.startswith("."):
                    out.append(Path(dirpath, f).relative_to(self.root).as_posix())
        return sorted(out)


def check_url(url: str) -> str:
    """``url`` when it is a remote URL the lake can use (``s3://bucket[/prefix]`` or ``file:///abs/path``)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInput(f"remote URL {url!r} names no bucket: use s3://BUCKET/PREFIX")
        return url.rstrip("/")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise InvalidInput(f"remote URL {url!r}: a file URL is file:///absolute/path")
        return url.rstrip("/")
    raise InvalidInput(f"remote URL {url!r}: use s3://BUCKET/PREFIX or file:///absolute/path")


def open_backend(url: str) -> Backend:
    """The backend of a checked remote URL; an ``s3://`` URL needs the ``s3`` extra (obstore)."""
    url = check_url(url)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        root = Path(unquote(parsed.path))
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"remote {url}: {root} is not a folder")
        return LocalBackend(root, url)
    from ._s3 import S3Backend

    return S3Backend(url)
