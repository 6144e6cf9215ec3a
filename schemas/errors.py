"""The one exception hierarchy of the lake.

Every package raises subclasses of :class:`LakeError`; the CLI catches it in one place, prints one
``error: ...`` line and exits with the class's ``exit_code``::

    LakeError (exit 2: bad input, usage, not found, ambiguous)
    ├── CheckFailed (exit 1: verify or reproduce found a difference)
    ├── MissingExtra           an optional extra (rl, openlineage, ...) is needed and not installed
    ├── SchemaError            schemas: unknown type, malformed schema file
    │   └── UnknownType
    └── ValidationError        schemas: data that does not fit its schema (file, column, row, value)

artifact_store, projections and experiments add their own subclasses in their own ``errors.py``.
"""

from __future__ import annotations


class LakeError(Exception):
    """Base class of every error the lake raises on purpose."""

    exit_code: int = 2


class CheckFailed(LakeError):
    """A check ran and found a problem (verify, reproduce)."""

    exit_code = 1


class SchemaError(LakeError):
    """A schema definition is missing or malformed."""


class UnknownType(SchemaError):
    """No schema is defined for the requested artifact type."""


class ValidationError(LakeError):
    """Data does not fit its schema. The message names the column, the row and the value."""

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.row = row


class MissingExtra(LakeError):
    """A feature needs an optional extra that is not installed; the message names the ``pip install``."""

    def __init__(self, extra: str, feature: str, module: str) -> None:
        super().__init__(f'{feature} needs {module}, which is not installed: pip install "artifact-lake[{extra}]"')
        self.extra = extra
        self.module = module
