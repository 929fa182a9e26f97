"""Pictures every RL algorithm saves: the learning curve (PNG) and a greedy episode (GIF).

Both are plain helpers with no algorithm inside, so tabular Q-learning, DQN and REINFORCE
draw and animate the same way. Matplotlib runs on the Agg backend: nothing needs a display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlgen.utils import write_gif


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start, never padded)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0 or window <= 1:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def save_learning_curve(path: str | os.PathLike, steps: Sequence[float], returns: Sequence[float],
                        threshold: float | None = None, xlabel: str = "environment steps",
                        ylabel: str = "episode return", title: str | None = None,
                        smooth: int | None = None, extra: dict[str, tuple[Sequence[float], Sequence[float]]]
                        | None = None, label: str = "episode return", threshold_label: str = "solved") -> Path:
    """Plot ``returns`` against ``steps`` (raw, faint) with a moving average, and save a PNG.

    ``threshold`` draws the environment's "solved" line; ``extra`` adds named curves
    (``{"label": (xs, ys)}``) such as an exponential moving average or evaluation points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs, ys = np.asarray(steps, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    if len(ys):
        window = smooth or max(1, min(100, len(ys) // 20))
        ax.plot(xs, ys, color="tab:blue", alpha=0.25, linewidth=0.8, label=label)
        if window > 1:
            ax.plot(xs, moving_average(ys, window), color="tab:blue", linewidth=1.6,
                    label=f"mean of last {window}")
    colours = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:gray")
    for i, (name, (ex, ey)) in enumerate((extra or {}).items()):
        ax.plot(ex, ey, linewidth=1.4, label=name, color=colours[i % len(colours)])
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1,
                   label=f"{threshold_label} ({threshold:.3g})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_episode_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: int = 30,
                     max_frames: int | None = None) -> Path | None:
    """Write ``frames`` (H×W×3 uint8, from ``render_mode="rgb_array"``) as a looping GIF.

    ``max_frames`` keeps every k-th frame so long episodes stay small; returns ``None``
    when there is nothing to write.
    """
    frames = [np.asarray(f, dtype=np.uint8) for f in frames if f is not None]
    if not frames:
        return None
    if max_frames and len(frames) > max_frames:
        stride = -(-len(frames) // max_frames)
        frames = frames[::stride]
        fps = max(1, fps // stride)
    return write_gif(path, frames, fps)
