"""The ``tensors`` type in and out of the safetensors format (https://github.com/huggingface/safetensors).

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor name to its
dtype, shape and byte range (plus an optional ``__metadata__`` of strings), then the raw little-endian bytes.
A ``tensors`` artifact holds the same thing as rows (name, dtype, shape, data), so the conversion copies bytes
and never decodes a value: a tensor read in and written out is bit-identical. Rows follow the tensors' order in
the data section and export writes them in row order, so an artifact exported and published again is the same
artifact (same id). Nothing here unpickles anything.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

# safetensors dtype code <-> the tensors type's dtype names (schemas/types/tensors.toml), with item sizes
CODES = {
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "BOOL": "bool",
}
NAMES = {v: k for k, v in CODES.items()}
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2, "int32": 4, "int64": 8}
ITEMSIZE |= {"uint8": 1, "bool": 1}
MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit
# __metadata__ holds strings only: artifact meta values that are not strings travel JSON-encoded under this prefix
JSON_PREFIX = "artifact_lake:"


def read(path: str | Path) -> tuple[pa.Table, dict[str, str]]:
    """The tensors of a safetensors file as ``tensors`` rows, and its ``__metadata__`` as artifact meta."""
    import pyarrow as pa

    p = Path(path)
    data = p.read_bytes()
    if len(data) < 8:
        raise InvalidInput(f"{p}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise InvalidInput(
            f"{p}: not a safetensors file (header length {n} does not fit the file of {len(data)} bytes)"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{p}: not a safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise InvalidInput(f"{p}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidInput(f"{p}: __metadata__ must map strings to strings")
    body = memoryview(data)[8 + n :]
    rows: dict[str, list[Any]] = {"name": [], "dtype": [], "shape": [], "data": []}
    spans = []

    def offset(name: str) -> tuple[int, str]:
        info = header[name]
        off = info.get("data_offsets") if isinstance(info, dict) else None
        return (off[0] if isinstance(off, list) and off and isinstance(off[0], int) else -1), name

    for name in sorted(header, key=offset):
        info = header[name]
        where = f"{p}: tensor {name!r}"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise InvalidInput(f"{where}: needs dtype, shape and data_offsets")
        code = info["dtype"]
        if code not in CODES:
            raise InvalidInput(f"{where}: dtype {code} is not stored by the tensors type (it takes {', '.join(CODES)})")
        shape = info["shape"]
        offsets = info["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise InvalidInput(f"{where}: data_offsets {offsets!r} is not [begin, end]")
        begin, end = offsets
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise InvalidInput(f"{where}: shape {shape!r} is not a list of sizes")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= len(body)):
            raise InvalidInput(f"{where}: data_offsets [{begin}, {end}] lie outside the {len(body)} data bytes")
        dtype = CODES[code]
        want = math.prod(shape) * ITEMSIZE[dtype]
        if end - begin != want:
            raise InvalidInput(f"{where}: {end - begin} bytes do not hold shape {shape} of {code} ({want} bytes)")
        spans.append((begin, end, name))
        rows["name"].append(name)
        rows["dtype"].append(dtype)
        rows["shape"].append(shape)
        rows["data"].append(bytes(body[begin:end]))
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise InvalidInput(f"{p}: tensors {a!r} and {b!r} overlap in the data")
    schema = pa.schema(
        [("name", pa.string()), ("dtype", pa.string()), ("shape", pa.list_(pa.int64())), ("data", pa.binary())]
    )
    return pa.Table.from_pydict(rows, schema=schema), _meta_from(metadata, p)


def _meta_from(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in metadata.items():
        if key.startswith(JSON_PREFIX):
            try:
                meta[key[len(JSON_PREFIX) :]] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}: __metadata__ {key!r} is not JSON ({exc})") from exc
        else:
            meta[key] = value
    return meta


def _meta_to(meta: dict[str, Any]) -> dict[str, str]:
    return {
        k if isinstance(v, str) else JSON_PREFIX + k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in sorted(meta.items())
    }


def write(table: pa.Table, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``tensors`` rows as a safetensors file (tensors in row order, header padded to 8 bytes).

    The artifact's ``meta`` goes into ``__metadata__`` (non-string values JSON-encoded), so a policy exported
    and published again in another lake keeps its settings."""
    header: dict[str, Any] = {}
    if meta:
        header["__metadata__"] = _meta_to(meta)
    offset = 0
    chunks = []
    for row in table.select(["name", "dtype", "shape", "data"]).to_pylist():
        if row["dtype"] not in NAMES:
            raise InvalidInput(f"tensor {row['name']!r}: dtype {row['dtype']} has no safetensors code")
        blob = row["data"]
        header[row["name"]] = {
            "dtype": NAMES[row["dtype"]],
            "shape": list(row["shape"]),
            "data_offsets": [offset, offset + len(blob)],
        }
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    out = Path(path)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in chunks:
            f.write(blob)
    return out
