"""Errors of the experiments package, under the root class from :mod:`schemas.errors`::

LakeError (exit 2)
├── SpecError            a spec key is unknown, mistyped, missing or does not resolve
├── SimError             the simulator refused its inputs (re-raised ValueError/TypeError from sim)
├── NotFoundExperiment   no experiment or run matches a reference
└── CheckFailed (exit 1)
    └── NotReproduced    a rerun gave different result ids
"""

from __future__ import annotations

from artifact_lake.schemas.errors import CheckFailed, LakeError


class SpecError(LakeError):
    """The experiment spec is wrong; the message names the key."""


class SimError(LakeError):
    """The simulator refused its inputs or parameters."""


class NotFoundExperiment(LakeError):
    """No experiment or run matches the reference."""


class NotReproduced(CheckFailed):
    """Reproducing a result gave different artifact ids."""
