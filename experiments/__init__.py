"""Experiments on frozen artifacts: create (idempotent), execute (results published with lineage),
reproduce a result from its hash and prove the rerun is bit-identical."""

from ._freeze import freeze
from .errors import (
    CodeChanged,
    LookAhead,
    NotFoundExperiment,
    NotReproduced,
    PluginError,
    PluginGone,
    SimError,
    SpecError,
)
from .executor import Computed, compute, create, execute
from .reproduce import ArtifactDiff, Report, find_run, reproduce
from .spec import ExperimentSpec, load_spec_file, parse_spec
from .tracker import Experiment, Run, code_version, get_experiment, list_experiments, runs_of

__all__ = [
    "ArtifactDiff",
    "CodeChanged",
    "LookAhead",
    "PluginError",
    "PluginGone",
    "Computed",
    "Experiment",
    "ExperimentSpec",
    "NotFoundExperiment",
    "NotReproduced",
    "Report",
    "Run",
    "SimError",
    "SpecError",
    "code_version",
    "compute",
    "create",
    "execute",
    "find_run",
    "freeze",
    "get_experiment",
    "list_experiments",
    "load_spec_file",
    "parse_spec",
    "reproduce",
    "runs_of",
]
