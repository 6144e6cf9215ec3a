"""Each package's public API is its __all__; this guards the lists (and that they import)."""

import importlib

import pytest

EXPECTED = {
    "schemas": {
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
    },
    "artifact_store": {
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
    },
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_exported_members(package):
    mod = importlib.import_module(f"artifact_lake.{package}")
    assert set(mod.__all__) == EXPECTED[package]
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_errors_form_one_hierarchy_with_exit_codes():
    from artifact_lake.artifact_store import errors as store_errors
    from artifact_lake.experiments import errors as exp_errors
    from artifact_lake.projections import errors as proj_errors
    from artifact_lake.schemas import errors

    for cls in (
        store_errors.NotFound,
        store_errors.AmbiguousRef,
        store_errors.InvalidInput,
        store_errors.CorruptArtifact,
        errors.ValidationError,
        errors.UnknownType,
        proj_errors.ProjectionError,
        proj_errors.QueryError,
        exp_errors.SpecError,
        exp_errors.SimError,
        exp_errors.NotFoundExperiment,
    ):
        assert issubclass(cls, errors.LakeError) and cls.exit_code == 2
    assert issubclass(store_errors.VerifyFailed, errors.CheckFailed) and store_errors.VerifyFailed.exit_code == 1
    assert issubclass(exp_errors.NotReproduced, errors.CheckFailed) and exp_errors.NotReproduced.exit_code == 1


def test_layering_holds():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    tool = root.parent / "shared" / "tools" / "check_layers.py"
    if not tool.exists():
        pytest.skip("shared/tools/check_layers.py is not beside this checkout")
    r = subprocess.run([sys.executable, str(tool), str(root)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
