"""Disposable, sandboxed DuckDB projections of frozen artifact sets: build (or reuse by key, once checked),
query, list, drop, verify."""

from ._integrity import verify_projections
from .build import CODE_VERSION, Lake, Projection, Projections, projection_key
from .coverage import Coverage, coverage
from .durations import parse_duration
from .errors import ForeignProjection, ProjectionError, QueryError, UnknownSpec
from .spec import Param, Role, Spec, get_spec, load_spec

__all__ = [
    "CODE_VERSION",
    "Coverage",
    "ForeignProjection",
    "Lake",
    "Param",
    "Projection",
    "ProjectionError",
    "Projections",
    "QueryError",
    "Role",
    "Spec",
    "UnknownSpec",
    "coverage",
    "get_spec",
    "load_spec",
    "parse_duration",
    "projection_key",
    "verify_projections",
]
