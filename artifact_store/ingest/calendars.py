"""Calendar names an ``ohlcv`` artifact may carry in its meta (``calendar``): ``24/7`` or an ``exchange_calendars``
calendar (``XNYS``, ``XLON``, ``CMES``, ...). The sessions themselves are :mod:`artifact_lake.projections.calendars`.
"""

from __future__ import annotations

from ..errors import InvalidInput

ALWAYS_OPEN = "24/7"


def check_calendar(name: str) -> str:
    """``name`` when it is ``24/7`` or a calendar ``exchange_calendars`` knows (aliases resolved), else an error."""
    if name.strip().lower() in ("24/7", "247", "always_open"):
        return ALWAYS_OPEN
    import exchange_calendars as xcals

    names = xcals.get_calendar_names(include_aliases=True)
    if name not in names and name.upper() in names:
        name = name.upper()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name.upper(), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInput(
            f"unknown calendar {name!r}{hint}: give 24/7 or an exchange_calendars name such as XNYS, XLON, XTKS"
        )
    resolved: str = xcals.resolve_alias(name)
    return resolved
