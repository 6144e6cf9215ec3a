"""Errors of the projections package, under the root class from :mod:`schemas.errors`::

LakeError (exit 2)
└── ProjectionError        unknown spec, wrong roles or types, SQL errors, conflicting inputs
    ├── UnknownSpec
    └── QueryError          a query failed or tried to write
"""

from __future__ import annotations

from artifact_lake.schemas.errors import LakeError


class ProjectionError(LakeError):
    """A projection cannot be built or used."""


class UnknownSpec(ProjectionError):
    """No projection spec has that name."""


class QueryError(ProjectionError):
    """A query against a projection failed (DuckDB's message, one line)."""
