"""Errors of the experiments package, under the root class from :mod:`schemas.errors`::

LakeError (exit 2)
├── SpecError            a spec key is unknown, mistyped, missing or does not resolve
│   └── PluginError      a plugin path or entry point that cannot be loaded
├── PluginGone           a recorded run's plugin is not registered any more
├── SimError             the simulator refused its inputs (re-raised ValueError/TypeError from sim)
├── NotFoundExperiment   no experiment or run matches a reference
└── CheckFailed (exit 1)
    ├── NotReproduced    a rerun gave different result ids
    ├── CodeChanged      a plugin's installed code differs from the recorded code
    └── LookAhead        a plugin's output depends on later bars, or on more than its input
"""

from __future__ import annotations

from typing import Any

from artifact_lake.schemas.errors import CheckFailed, LakeError


class SpecError(LakeError):
    """The experiment spec is wrong; the message names the key."""


class SimError(LakeError):
    """The simulator refused its inputs or parameters."""


class NotFoundExperiment(LakeError):
    """No experiment or run matches the reference."""


class NotReproduced(CheckFailed):
    """Reproducing a result gave different artifact ids."""


class PluginError(SpecError):
    """A plugin that cannot be loaded or resolved (exit 2)."""


class PluginGone(LakeError):
    """A plugin a recorded run used is not registered any more (exit 2)."""


class LookAhead(CheckFailed):
    """A plugin's output depends on later bars, or differs between two calls on the same bars (exit 1)."""


class CodeChanged(CheckFailed):
    """Reproduce found a plugin whose installed code differs from the recorded code (exit 1)."""

    def __init__(self, message: str, changes: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.changes = list(changes or [])
        """Per changed plugin: name, kind, origin, recorded and installed hash, unified diff of the sources."""
