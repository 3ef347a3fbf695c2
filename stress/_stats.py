"""Small statistics shared by the scenarios."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile"]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of an already sorted, non-empty list."""
    return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)]
