"""Errors of the artifact store, under the root class from :mod:`schemas.errors`::

LakeError (exit 2)
├── NotFound            no artifact, name or version matches a reference
├── AmbiguousRef        an id prefix matches several artifacts, or a reference is both a name and an id prefix
├── InvalidInput        unreadable file, malformed --meta, bad name, a lineage cycle, unsupported column type
│   └── ReadOnlyLake    the lake is on a read-only file system and the command needs to write
├── DiskFull            the disk (or a file-size limit) ran out while writing; nothing was registered
├── LakeBusy            another process held the manifest's write lock for longer than the wait
├── CorruptArtifact     a stored object is missing or its bytes changed
│   └── DamagedObject (exit 1)   a read found its object missing, changed or not a file of the lake
└── CheckFailed (exit 1)
    ├── VerifyFailed    verify found problems
    └── ManifestDamaged manifest.sqlite is not a database, is corrupt, or holds text that is not UTF-8
"""

from __future__ import annotations

from artifact_lake.schemas.errors import CheckFailed, LakeError


class NotFound(LakeError):
    """No artifact, name or version matches the reference."""


class AmbiguousRef(LakeError):
    """An id prefix matches more than one artifact, or a reference is both a name and an id prefix."""


class InvalidInput(LakeError):
    """Input that cannot be used: unreadable file, malformed option, unsupported type, a lineage cycle."""


class ReadOnlyLake(InvalidInput):
    """The lake is on a read-only file system (an archive, a snapshot): reading works, this needs to write."""


class DiskFull(LakeError):
    """The disk is full (ENOSPC, EDQUOT) or a file-size limit was hit (EFBIG); nothing was registered."""


class LakeBusy(LakeError):
    """Another process held the manifest's write lock for longer than this one would wait."""


class CorruptArtifact(LakeError):
    """A stored object is missing, or its bytes differ from what the manifest recorded."""


class DamagedObject(CorruptArtifact, CheckFailed):
    """A read refused an object: missing, changed since it was published, or not a regular file of the lake."""

    exit_code = 1


class VerifyFailed(CheckFailed):
    """``verify`` found missing, changed or orphan objects, or a damaged manifest."""


class ManifestDamaged(CheckFailed):
    """``manifest.sqlite`` cannot be trusted: not a database, corrupt pages, or text that is not UTF-8."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(f"{path} is damaged ({detail}): run lake verify")
        self.path = str(path)
        self.detail = detail
