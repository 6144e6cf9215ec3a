"""Parse the type strings used in schema files into pyarrow types, and normalise encodings.

Schema files spell types the way pyarrow prints them: ``int64``, ``float64``, ``bool``, ``string``,
``binary``, ``date32``, ``timestamp[us, tz=UTC]``, ``list<int64>``. Normalisation maps encodings that
carry the same values (``large_string``, ``string_view``, ``dictionary<...>``, ``large_list``) onto one
canonical type, so that the same data from pyarrow, polars or DuckDB has one identity.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import SchemaError

if TYPE_CHECKING:
    import pyarrow as pa

_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_LIST = re.compile(r"^list<(?:item:\s*)?(.+)>$")


def parse_type(text: str) -> pa.DataType:
    """Return the pyarrow type written as ``text`` in a schema file."""
    import pyarrow as pa

    simple = {
        "bool": pa.bool_(),
        "int8": pa.int8(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "uint8": pa.uint8(),
        "uint16": pa.uint16(),
        "uint32": pa.uint32(),
        "uint64": pa.uint64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "double": pa.float64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "date32": pa.date32(),
    }
    t = text.strip()
    if t in simple:
        return simple[t]
    m = _TIMESTAMP.match(t)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    m = _LIST.match(t)
    if m:
        return pa.list_(parse_type(m.group(1)))
    raise SchemaError(f"unknown column type {text!r} (use e.g. int64, float64, string, timestamp[us, tz=UTC])")


def canonical_type(t: pa.DataType) -> pa.DataType:
    """The canonical encoding of ``t``: same values, one spelling."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return canonical_type(t.value_type)
    if pt.is_large_string(t) or pt.is_string_view(t):
        return pa.string()
    if pt.is_large_binary(t) or pt.is_binary_view(t):
        return pa.binary()
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_list_view(t) or pt.is_large_list_view(t):
        return pa.list_(canonical_type(t.value_type))
    if pt.is_struct(t):
        return pa.struct([pa.field(f.name, canonical_type(f.type)) for f in t])
    return t
