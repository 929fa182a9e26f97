"""Exploration and learning-rate schedules, shared by every family."""

from __future__ import annotations

import math


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """``start`` at t = 0, moving linearly to ``end`` at t = ``duration``, then held."""
    if duration <= 0:
        return end
    frac = min(max(t / duration, 0.0), 1.0)
    return start + frac * (end - start)


def warmup_cosine(progress: float, warmup: float, floor: float = 0.0) -> float:
    """Factor of the peak learning rate at ``progress`` in [0, 1]: a linear warm-up over the first ``warmup``
    of the run (never below ``floor``), then a cosine to zero (Loshchilov & Hutter 2017)."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, floor)
    t = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * t))
