"""Content-addressed Parquet artifacts with a SQLite manifest: publish, names, lineage, verify, gc.

Importing this package loads only the standard library (and blake3); pyarrow loads on first use, so
commands like ``lake find`` start fast.
"""

from .errors import AmbiguousRef, CorruptArtifact, InvalidInput, NotFound, VerifyFailed
from .hashing import column_digest, content_id, file_hash
from .lake import Lake, default_path, to_arrow
from .records import Artifact, GcReport, Lineage, LineageNode, Problem, PublishResult, VerifyReport

__all__ = [
    "AmbiguousRef",
    "Artifact",
    "CorruptArtifact",
    "GcReport",
    "InvalidInput",
    "Lake",
    "Lineage",
    "LineageNode",
    "NotFound",
    "Problem",
    "PublishResult",
    "VerifyFailed",
    "VerifyReport",
    "column_digest",
    "content_id",
    "default_path",
    "file_hash",
    "to_arrow",
]
