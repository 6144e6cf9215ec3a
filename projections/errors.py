"""Errors of the projections package, under the root classes from :mod:`schemas.errors`::

LakeError (exit 2)
├── ProjectionError        unknown spec, wrong roles or types, SQL errors, conflicting inputs
│   ├── UnknownSpec
│   ├── QueryError          a query failed, tried to write, or tried to reach files or settings
│   └── ForeignProjection (exit 1, also a CheckFailed)
│                           a projection file the lake did not build: changed since its build, or unknown
└── CheckFailed (exit 1)
"""

from __future__ import annotations

from artifact_lake.schemas.errors import CheckFailed, LakeError


class ProjectionError(LakeError):
    """A projection cannot be built or used."""


class UnknownSpec(ProjectionError):
    """No projection spec has that name."""


class QueryError(ProjectionError):
    """A query against a projection failed or was refused (DuckDB's message, one line)."""


class ForeignProjection(ProjectionError, CheckFailed):
    """A projection file is not the one the lake built: its bytes changed since the build, or the manifest
    has no record of it (copied in, made by hand, left by a crash). It is never opened; drop it."""

    exit_code = 1

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message
        """What is wrong with the file, without its path and the fix."""
