"""A payload's value as a column holds it: a finite number, a BIGINT, a name.

A summary's fields are not all checked on a push (a peer may send anything where
the schema does not look), so nothing here raises: what a column cannot hold is
None, and the stored payload keeps the value as sent.  Shared by the columns a
push derives (:mod:`resmon.store.derive`, :mod:`resmon.store.job_figures`).
"""

from __future__ import annotations

import math
import re
from typing import Any

# What a BIGINT column holds (PostgreSQL's int8, SQLite's INTEGER).
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# What a name column holds (CharField(255)).
NAME_MAX = 255
# Characters a name column does not keep: PostgreSQL text cannot hold NUL, and a
# control character would break the table row it is shown in.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def number(value: Any) -> float | None:
    """A finite int or float as a float; None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def bigint(value: Any) -> int | None:
    """A whole number for a BIGINT column, or None.  An int stays as it is (through a
    float 2**62 - 1 would become 2**62); past the signed 64-bit range, which only an
    unvalidated version-1 row or an unchecked summary field can hold (a checked
    figure is capped at 2**62), the column is left empty rather than failing the
    write: the payload keeps the figure."""
    if isinstance(value, int) and not isinstance(value, bool):
        whole: int | None = value
    else:
        real = number(value)
        whole = None if real is None else int(round(real))
    if whole is None or not BIGINT_MIN <= whole <= BIGINT_MAX:
        return None
    return whole


def name(value: Any) -> str | None:
    """A name from a summary for a CharField(255): text only, without control
    characters, cut to 255 characters; None for anything else or nothing left."""
    if not isinstance(value, str):
        return None
    return CONTROL.sub("", value)[:NAME_MAX] or None
