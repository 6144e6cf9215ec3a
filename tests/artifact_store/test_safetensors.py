"""Policies (``tensors`` artifacts) in and out of safetensors, read by the reference implementation."""

from __future__ import annotations

import json
import struct
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store import InvalidInput
from artifact_lake.cli.main import lake as lake_cli
from tests.conftest import ROOT, lake_state

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "layer.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "layer.bias": np.array([np.nan, -0.0, np.inf, 1e-45], dtype=np.float32),  # bits, not values, must survive
        "norm.mean": rng.standard_normal(5),
        "half": rng.standard_normal(6).astype(np.float16),
        "steps": np.arange(3, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "bytes": np.arange(4, dtype=np.uint8).reshape(2, 2),
        "scalar": np.array(3.5, dtype=np.float64),
    }


def test_a_reference_file_round_trips_bit_identically(lake, tmp_path):
    src = tmp_path / "policy.safetensors"
    safetensors_numpy.save_file(arrays(), str(src), metadata={"framework": "numpy"})
    rec = lake.publish(src, "tensors", name="policy/ref")
    assert lake.get(rec.id).meta == {"framework": "numpy"}
    out = tmp_path / "out.safetensors"
    r = CliRunner().invoke(
        lake_cli, ["--lake", str(lake.root), "get", "policy/ref", "--out", str(out), "--format", "safetensors"]
    )  # noqa: E501
    assert r.exit_code == 0, r.output
    back = safetensors_numpy.load_file(str(out))
    want = arrays()
    assert set(back) == set(want)
    for name, arr in want.items():
        assert back[name].dtype == arr.dtype and back[name].shape == arr.shape
        assert back[name].tobytes() == arr.tobytes(), name
    # published again, the exported file is the same artifact
    again = lake.publish(out, "tensors")
    assert (again.id, again.deduplicated) == (rec.id, True)


def test_bfloat16_from_torch_survives_and_the_policy_loader_reads_it(lake, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from artifact_lake.sim.policy import from_rows

    w = torch.randn(3, 5, dtype=torch.bfloat16)
    save_file({"w": w}, str(tmp_path / "bf.safetensors"))
    rec = lake.publish(tmp_path / "bf.safetensors", "tensors")
    lake.export(rec.id, tmp_path / "back.safetensors", "safetensors")
    assert torch.equal(load_file(str(tmp_path / "back.safetensors"))["w"].view(torch.int16), w.view(torch.int16))
    decoded = from_rows(lake.read(rec.id).to_pydict())["w"]
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, w.float().numpy())  # bfloat16 widens to float32 exactly


def test_a_trained_policy_exports_and_keeps_its_settings(lake, tmp_path):
    """The artifact's meta (a policy's env and network) travels in __metadata__ and comes back as it was."""
    from artifact_lake.sim.policy import to_rows

    torch = pytest.importorskip("torch")
    from artifact_lake.sim.ppo import Agent

    torch.manual_seed(0)
    import pyarrow as pa

    rows = to_rows(Agent(6, (3, 2), (8,)), {"norm.mean": np.zeros(6), "norm.std": np.ones(6)})
    meta = {"env": {"window": 1, "features": ["logret"]}, "hidden": [8], "note": "plain string"}
    rec = lake.publish(pa.table(rows), "tensors", meta=meta)
    lake.export(rec.id, tmp_path / "p.safetensors", "safetensors")
    header = json.loads(
        (tmp_path / "p.safetensors").read_bytes()[8:][
            : struct.unpack("<Q", (tmp_path / "p.safetensors").read_bytes()[:8])[0]
        ]
    )  # noqa: E501
    assert header["__metadata__"]["note"] == "plain string"
    from artifact_lake.artifact_store import Lake

    with Lake.open(tmp_path / "other") as other:
        moved = other.publish(tmp_path / "p.safetensors", "tensors")
        assert moved.id == rec.id
        assert other.get(moved.id).meta == meta


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            {"w": {"dtype": "U16", "shape": [1], "data_offsets": [0, 2]}},
            "dtype U16 is not stored by the tensors type (it takes F16, BF16, F32, F64, I8, I16, I32, I64, U8, BOOL)",
        ),
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
            "4 bytes do not hold shape [2] of F32 (8 bytes)",
        ),
        (
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}},
            "data_offsets [0, 400] lie outside the 8 data bytes",
        ),
        ({"w": {"dtype": "F32", "shape": [1]}}, "needs dtype, shape and data_offsets"),
    ],
)
def test_bad_files_are_one_line_and_change_nothing(lake, tmp_path, header, message):
    text = json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 8)
    before = lake_state(lake.root)
    r = CliRunner().invoke(lake_cli, ["--lake", str(lake.root), "publish", str(path), "--type", "tensors"])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {path}: tensor 'w': {message}"
    assert lake_state(lake.root) == before


def test_not_a_safetensors_file_and_wrong_types_are_refused(lake, tmp_path, ohlcv):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        lake.publish(junk, "tensors")
    with pytest.raises(InvalidInput, match="publishes as --type tensors, not 'ohlcv'"):
        lake.publish(junk, "ohlcv")
    rec = lake.publish(ohlcv, "ohlcv")
    with pytest.raises(InvalidInput, match="only tensors export as safetensors"):
        lake.export(rec.id, tmp_path / "x.safetensors", "safetensors")


def test_the_tensors_type_and_the_policy_loader_agree_on_dtypes():
    from artifact_lake.artifact_store import safetensors
    from artifact_lake.sim.policy import DTYPES

    spec = tomllib.loads((ROOT / "schemas" / "types" / "tensors.toml").read_text())
    allowed = next(c["values"] for c in spec["checks"] if c["kind"] == "in_set" and c["column"] == "dtype")
    assert set(allowed) == set(DTYPES) == set(safetensors.CODES.values())
