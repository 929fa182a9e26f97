"""Exploration and learning-rate schedules."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """``start`` at t = 0, moving linearly to ``end`` at t = ``duration``, then held."""
    if duration <= 0:
        return end
    frac = min(max(t / duration, 0.0), 1.0)
    return start + frac * (end - start)
