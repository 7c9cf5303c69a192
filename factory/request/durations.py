"""Durations as a request writes them (compute.timeout: 3600, 90m, 2h, 1d), in the Jobs API's own spelling."""

from __future__ import annotations

import re

from factory.base.errors import UserError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def timeout_seconds(text: str) -> int:
    """'3600', '90m', '2h', '1d' -> seconds (the Jobs API's own spelling)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"timeout '{text}' is not a duration such as 3600, 90m, 2h or 1d")
    return int(float(m.group(1)) * UNITS[m.group(2) or "s"])
