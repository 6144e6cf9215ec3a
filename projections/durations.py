"""Durations as people write them (``90s``, ``15m``, ``1h``, ``2d``, ``1w``, ``1 hour``) to microseconds."""

from __future__ import annotations

import re

_UNITS = {
    "us": 1, "ms": 1_000, "s": 1_000_000, "sec": 1_000_000, "second": 1_000_000, "seconds": 1_000_000,
    "m": 60_000_000, "min": 60_000_000, "minute": 60_000_000, "minutes": 60_000_000,
    "h": 3_600_000_000, "hour": 3_600_000_000, "hours": 3_600_000_000,
    "d": 86_400_000_000, "day": 86_400_000_000, "days": 86_400_000_000,
    "w": 604_800_000_000, "week": 604_800_000_000, "weeks": 604_800_000_000,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def parse_duration(text: str | int) -> int:
    """Microseconds in ``text``; ValueError naming the text when it is not a duration."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _DURATION.match(str(text).lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 15m, 1h, 2d)")
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))
