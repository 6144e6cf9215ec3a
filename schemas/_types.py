"""Parse the type strings used in schema files into pyarrow types, and normalise types for storage.

Schema files spell types the way pyarrow prints them: ``int64``, ``float64``, ``bool``, ``string``,
``binary``, ``date32``, ``timestamp[us, tz=UTC]``, ``list<int64>``.

Invariant: :func:`canonical_type` is a fixed point of the lake's Parquet round trip. A column conformed to
its canonical type is written, read back (by ``verify``, ``read``, a second ``publish``) and conformed again
with the same type and the same values, so its artifact id does not move. That is why it maps

* encodings of the same values onto one type: ``large_string``, ``string_view`` and ``dictionary<string>``
  to ``string``; ``large_binary``, ``binary_view`` to ``binary``; ``large_list`` to ``list``; dictionaries
  to their values, at every depth;
* types Parquet cannot hold onto the type it reads back, when the conversion is exact: ``timestamp[s]`` to
  ``timestamp[ms]`` (same zone), ``time32[s]`` to ``time32[ms]``, ``date64`` to ``date32`` (whole days only).

Field names of lists and maps (``item``/``element``, ``entries``/``key_value``) and the nullability of
nested fields are not part of a type's identity (see ``artifact_store.hashing``). :func:`storage_problem`
names the types no artifact can hold (unions, intervals, run-end encoding, extension types, list views,
structs without fields, unknown time zones).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from .errors import SchemaError

if TYPE_CHECKING:
    import pyarrow as pa

_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_LIST = re.compile(r"^list<(?:item:\s*)?(.+)>$")


def parse_type(text: str) -> pa.DataType:
    """Return the pyarrow type written as ``text`` in a schema file; :class:`SchemaError` if the lake cannot
    store it (an unknown name, ``timestamp[s]``, an unknown time zone)."""
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
        unit, tz = m.group(1), m.group(2)
        if unit == "s":
            raise SchemaError(
                f"column type {text!r}: Parquet has no seconds unit (the column would read back as"
                " timestamp[ms]); declare timestamp[ms] or timestamp[us]"
            )
        if tz is not None:
            tz = tz.strip()
            problem = time_zone_problem(tz)
            if problem is not None:
                raise SchemaError(f"column type {text!r}: {problem}")
        return pa.timestamp(unit, tz=tz)
    m = _LIST.match(t)
    if m:
        return pa.list_(parse_type(m.group(1)))
    raise SchemaError(f"unknown column type {text!r} (use e.g. int64, float64, string, timestamp[us, tz=UTC])")


@functools.lru_cache(maxsize=256)
def time_zone_problem(tz: str) -> str | None:
    """Why ``tz`` is no usable time zone, or None.

    A zone must be known both to Arrow (compute, DuckDB) and to Python (every reader that turns values into
    datetimes): an IANA name such as ``UTC`` or ``Europe/Berlin``, or a fixed offset such as ``+01:00``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        probe = pa.array([0], pa.timestamp("s", tz=tz))
        pc.hour(probe)
        probe[0].as_py()
    except (pa.ArrowException, ValueError, KeyError, OSError):
        return f"unknown time zone {tz!r} (use an IANA name such as UTC or Europe/Berlin, or an offset such as +01:00)"
    return None


def canonical_type(t: pa.DataType) -> pa.DataType:
    """The canonical type of ``t``: same values, one spelling, and a type Parquet reads back unchanged."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return canonical_type(t.value_type)
    if pt.is_large_string(t) or pt.is_string_view(t):
        return pa.string()
    if pt.is_large_binary(t) or pt.is_binary_view(t):
        return pa.binary()
    if pt.is_timestamp(t) and t.unit == "s":
        return pa.timestamp("ms", tz=t.tz)
    if pt.is_time32(t) and t.unit == "s":
        return pa.time32("ms")
    if pt.is_date64(t):
        return pa.date32()
    if pt.is_list(t) or pt.is_large_list(t):
        return pa.list_(canonical_type(t.value_type))
    if pt.is_fixed_size_list(t):
        return pa.list_(canonical_type(t.value_type), t.list_size)
    if pt.is_map(t):
        return pa.map_(canonical_type(t.key_type), canonical_type(t.item_type), keys_sorted=t.keys_sorted)
    if pt.is_struct(t):
        return pa.struct([pa.field(f.name, canonical_type(f.type)) for f in t])
    return t


def _is_leaf(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    return bool(
        pt.is_null(t)
        or pt.is_boolean(t)
        or pt.is_integer(t)
        or pt.is_floating(t)
        or pt.is_decimal(t)
        or pt.is_string(t)
        or pt.is_large_string(t)
        or pt.is_string_view(t)
        or pt.is_binary(t)
        or pt.is_large_binary(t)
        or pt.is_binary_view(t)
        or pt.is_fixed_size_binary(t)
        or pt.is_date(t)
        or pt.is_time(t)
        or pt.is_timestamp(t)
        or pt.is_duration(t)
    )


def storage_problem(t: pa.DataType) -> str | None:
    """Why a column of type ``t`` cannot be an artifact's column, or None when it can (after
    :func:`canonical_type`)."""
    import pyarrow.types as pt

    if pt.is_timestamp(t) and t.tz is not None:
        return time_zone_problem(t.tz)
    if _is_leaf(t):
        return None
    if pt.is_dictionary(t) or pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        return storage_problem(t.value_type)
    if pt.is_map(t):
        return storage_problem(t.key_type) or storage_problem(t.item_type)
    if pt.is_struct(t):
        if t.num_fields == 0:
            return "a struct without fields cannot be stored in Parquet"
        for f in t:
            problem = storage_problem(f.type)
            if problem is not None:
                return problem
        return None
    if pt.is_list_view(t) or pt.is_large_list_view(t):
        return f"{t} is not supported; cast it to list first"
    return (
        f"{t} cannot be stored in an artifact (supported: numbers, bool, strings, binaries, dates, times,"
        " timestamps, durations, decimals, and lists, maps and structs of them)"
    )
