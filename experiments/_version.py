"""The project's code version: its package version plus a hash of the source of every lake package, so that a
run records exactly which code made its results (user plugins are identified apart, by :mod:`.plugins`)."""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

import blake3

_PACKAGES = ("sim", "experiments", "projections", "schemas", "artifact_store")


@cache
def code_version() -> str:
    """``<package version>+<blake3 of the source of every package, 12 hex>``: changes with any code edit."""
    root = Path(__file__).resolve().parent.parent
    h = blake3.blake3()
    for pkg in _PACKAGES:
        for path in sorted((root / pkg).rglob("*")):
            if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("artifact-lake")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"{version}+{h.hexdigest()[:12]}"
