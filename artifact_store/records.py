"""Value objects the store returns: frozen dataclasses with a ``to_dict`` for ``--json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublishResult:
    """What ``publish`` did."""

    id: str
    """The artifact id (blake3 of the logical content)."""
    type: str
    """Artifact type."""
    name: str | None
    """Name given, if any."""
    version: int | None
    """Version of ``name`` that points at the artifact."""
    deduplicated: bool
    """True when the content was already in the lake (nothing new stored)."""
    rows: int
    """Row count."""
    bytes: int
    """Size of the stored object file."""
    meta_added: list[str] = field(default_factory=list)
    """Meta keys this publish added to an artifact the lake already held (meta is add-only)."""
    meta_kept: list[str] = field(default_factory=list)
    """Meta keys given with a different value than the artifact already has: the first value stays."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``publish --json``: ``meta_added``/``meta_kept`` only when a deduplicated publish had meta."""
        out = asdict(self)
        for key in ("meta_added", "meta_kept"):
            if not out[key]:
                del out[key]
        return out


@dataclass(frozen=True)
class Artifact:
    """One manifest row, with its names."""

    id: str
    type: str
    schema_version: int
    file_hash: str
    rows: int
    bytes: int
    created: str
    columns: list[list[str]] = field(default_factory=list)
    """``[name, arrow type]`` per column."""
    meta: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    """``NAME@vN`` for every name version that points here."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LineageNode:
    """One artifact reached by a lineage walk."""

    id: str
    type: str
    names: list[str]
    """``NAME@vN`` for every name version that points here."""
    depth: int
    """0 for the start, then 1, 2, ... along the walk (the shortest distance)."""


@dataclass(frozen=True)
class Lineage:
    """A lineage walk: the nodes reached and the edges among them."""

    root: str
    direction: str
    """``up`` (ancestors), ``down`` (descendants) or ``both``."""
    nodes: list[LineageNode]
    edges: list[tuple[str, str, str | None]]
    """``(parent id, child id, run id or None)``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "direction": self.direction,
            "nodes": [{"id": n.id, "type": n.type, "names": n.names, "depth": n.depth} for n in self.nodes],
            "edges": [{"parent": p, "child": c, "run": r} for p, c, r in self.edges],
        }


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong."""

    kind: str
    """``missing``, ``changed``, ``content``, ``orphan``, ``stale``, ``manifest``; from the CLI's verify also
    ``foreign`` or ``changed`` projection files (projections.Lake) and ``run`` (an interrupted run)."""
    subject: str
    """Artifact id or file path."""
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LeftAlone:
    """Something in the lake's folders that verify and gc do not touch, and why."""

    path: str
    reason: str
    """e.g. ``a symlink to /home/u: not followed, not removed``, ``not a name the lake makes``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    problems: list[Problem]
    left_alone: list[LeftAlone] = field(default_factory=list)
    """Entries of objects/ and tmp/ that are not the lake's: reported, never followed or removed."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.to_dict() for p in self.problems],
            "left_alone": [x.to_dict() for x in self.left_alone],
        }


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    removed: list[str]
    """Paths removed (or that would be, with ``dry_run``)."""
    bytes: int
    left_alone: list[LeftAlone] = field(default_factory=list)
    """What gc did not remove and why: not the lake's, or an orphan younger than the grace period."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": self.removed,
            "bytes": self.bytes,
            "left_alone": [x.to_dict() for x in self.left_alone],
        }
