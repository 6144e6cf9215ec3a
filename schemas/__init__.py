"""Artifact types: declarative schema files, their loader and the validator.

Importing this package is cheap: pyarrow loads only when a table is conformed or validated.
"""

from .errors import CheckFailed, LakeError, MissingExtra, SchemaError, UnknownType, ValidationError
from .registry import Check, Column, Registry, Schema, load_schema_file
from .validate import Violation, bad_rows, conform, find_violations, first_error, validate

__all__ = [
    "Check",
    "CheckFailed",
    "Column",
    "LakeError",
    "MissingExtra",
    "Registry",
    "Schema",
    "SchemaError",
    "UnknownType",
    "ValidationError",
    "Violation",
    "bad_rows",
    "conform",
    "find_violations",
    "first_error",
    "load_schema_file",
    "validate",
]
