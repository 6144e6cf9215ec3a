"""Errors of the artifact store, under the root class from :mod:`schemas.errors`::

LakeError (exit 2)
├── NotFound            no artifact, name or version matches a reference
├── AmbiguousRef        an id prefix matches several artifacts
├── InvalidInput        unreadable file, malformed --meta, bad name, unsupported column type
├── CorruptArtifact     a stored object is missing or its bytes changed
└── CheckFailed (exit 1)
    └── VerifyFailed    verify found problems
"""

from __future__ import annotations

from artifact_lake.schemas.errors import CheckFailed, LakeError


class NotFound(LakeError):
    """No artifact, name or version matches the reference."""


class AmbiguousRef(LakeError):
    """An id prefix matches more than one artifact."""


class InvalidInput(LakeError):
    """Input that cannot be used: unreadable file, malformed option, unsupported type."""


class CorruptArtifact(LakeError):
    """A stored object is missing, or its bytes differ from what the manifest recorded."""


class VerifyFailed(CheckFailed):
    """``verify`` found missing, changed or orphan objects."""
