"""Parsing of the units users write: Go-style durations and Kubernetes quantities.

Everything here raises ``ValueError`` with a message fit to show a user; the CLI
turns it into a click error naming the flag or environment variable.
"""

from __future__ import annotations

import math
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Seconds from a Go duration (``500ms``, ``2s``, ``1m30s``) or plain seconds (``1.5``)."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        value = float(s)
    except ValueError:
        pos, value, matched = 0, 0.0, False
        for m in _DURATION_PART.finditer(s):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _DURATION_UNIT[m.group(2)]
            pos, matched = m.end(), True
        if not matched or pos != len(s):
            raise ValueError(
                f"invalid duration {text!r}: use e.g. 500ms, 2s, 1m30s or plain seconds"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite, non-negative number")
    return value


_CPU = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?(m?)$")


def parse_cpu(text: str) -> float:
    """CPU cores from a Kubernetes quantity: ``2``, ``1.5``, ``500m``, ``1e3m``."""
    s = str(text).strip()
    m = _CPU.match(s)
    if not m:
        raise ValueError(f"invalid CPU quantity {text!r}: use cores (2, 1.5) or millicores (500m)")
    mantissa = float(m.group(1))
    value = mantissa * _power_of_ten(m.group(2)) if mantissa else 0.0
    if m.group(3):
        value /= 1000.0
    if not math.isfinite(value):
        raise ValueError(f"invalid CPU quantity {text!r}: out of range")
    return value


def _power_of_ten(exponent: str | None) -> float:
    """10**exponent as a float; inf or 0.0 beyond the float range (``1e400``) rather
    than an OverflowError, so the callers' range checks say what is wrong."""
    if not exponent:
        return 1.0
    if len(exponent.lstrip("+-").lstrip("0")) > 3:  # |e| >= 1000, and no 4300-digit int()
        return 0.0 if exponent.startswith("-") else math.inf
    try:
        return 10.0 ** int(exponent)
    except OverflowError:
        return math.inf


_MEM_SUFFIX = {
    "": 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
    "m": 0.001,
}
_MEM = re.compile(
    r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$"
)


def parse_memory(text: str) -> int:
    """Bytes from a Kubernetes quantity: ``1024``, ``512Mi``, ``1Gi``, ``1G``, ``1e3``."""
    s = str(text).strip()
    m = _MEM.match(s)
    if not m:
        raise ValueError(
            f"invalid memory quantity {text!r}: use bytes (1024) or a suffix "
            "(Ki Mi Gi Ti Pi Ei, k M G T P E), e.g. 256Mi"
        )
    mantissa = float(m.group(1))
    value = mantissa * _power_of_ten(m.group(2)) if mantissa else 0.0
    value *= _MEM_SUFFIX[m.group(3) or ""]
    if not math.isfinite(value) or value >= 2**63:
        raise ValueError(f"invalid memory quantity {text!r}: out of range")
    return math.ceil(value)
