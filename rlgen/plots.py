"""Pictures every family saves: learning curves (PNG), episodes and sample sequences (GIF).

Plain helpers with no algorithm inside, so Q-learning, DQN, REINFORCE, the generative models and the
self-supervised pretraining draw and animate the same way. Matplotlib runs on the Agg backend: nothing
needs a display. Every file is written atomically: a reader never sees half a picture.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.errors import UsageError
from rlgen.files import atomic_open


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
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png")
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


def save_curves(path: str | os.PathLike, curves: dict[str, tuple[Sequence[float], Sequence[float]]],
                xlabel: str, ylabel: str, title: str | None = None) -> Path:
    """One PNG with several named curves ``{"label": (xs, ys)}`` on shared axes."""
    return save_learning_curve(path, [], [], xlabel=xlabel, ylabel=ylabel, title=title, extra=curves)


def save_gif(path: str | os.PathLike, frames: Sequence[np.ndarray] | np.ndarray, fps: int = 12,
             min_side: int = 128) -> Path:
    """Write uint8 (H, W, 3) frames as a looping GIF, upscaled (nearest) so small images stay visible."""
    frames = [np.asarray(f) for f in frames]
    factor = max(1, math.ceil(min_side / max(1, min(frames[0].shape[:2]))))
    if factor > 1:
        frames = [f.repeat(factor, axis=0).repeat(factor, axis=1) for f in frames]
    return write_gif(path, frames, fps)


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write uint8 frames, (H, W, 3) or grey (H, W), as a looping GIF, atomically; returns the path.

    Rendered game screens hold few colours (CartPole's about 230, Atari's NTSC palette 128): when all
    the frames together have at most 256, they share that exact palette and the GIF is lossless. This
    skips Pillow's median-cut palette per frame: the README's CartPole run spent 12.8 s after training
    with it and 6.8 s without it (AVX2 CPU). Frames with more colours (GAN samples) keep a palette each,
    as Pillow makes it.
    """
    from PIL import Image

    rgb = [np.ascontiguousarray(np.dstack([f] * 3) if np.ndim(f) == 2 else f, dtype=np.uint8) for f in frames]
    colours: set[tuple[int, int, int]] = set()
    for f in rgb:
        found = Image.fromarray(f).getcolors(256)  # None past 256 colours in one frame
        colours.update(c for _, c in found or ())
        if found is None or len(colours) > 256:
            images = [Image.fromarray(f) for f in rgb]
            break
    else:
        palette = np.array(sorted(colours), dtype=np.uint8).reshape(-1, 3)
        index = np.zeros(1 << 24, dtype=np.uint8)  # packed 24-bit colour -> its palette entry
        index[_pack_rgb(palette)] = np.arange(len(palette), dtype=np.uint8)
        images = []
        for f in rgb:
            image = Image.fromarray(index[_pack_rgb(f)])
            image.putpalette(palette.tobytes())  # the "L" image of palette entries becomes "P"
            images.append(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        images[0].save(fh, format="GIF", save_all=True, append_images=images[1:],
                       duration=1000.0 / max(1.0, fps), loop=0)
    return path


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]


def video_available() -> bool:
    """Whether MP4s can be written: ``imageio`` with the ffmpeg build that ``imageio-ffmpeg`` ships in its wheel
    (``pip install 'rlgen[video]'``)."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return False


class VideoWriter:
    """An H.264 MP4 written frame by frame, so a game of thousands of frames is never held in memory; the file
    appears whole (written beside it, then renamed) when the ``with`` block ends without an error.

    ``with VideoWriter("episode.mp4", fps=30) as video: video.add(frame)`` for (H, W, 3) uint8 frames.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30) -> None:
        if not video_available():
            raise UsageError(f"{os.fspath(path)}: writing MP4 needs imageio and imageio-ffmpeg "
                             "(pip install 'rlgen[video]'); a .gif needs nothing more")
        self.path, self.fps, self.frames = Path(path), fps, 0
        self._tmp = self.path.with_name(f".{self.path.name}.tmp.mp4")
        self._writer: Any = None

    def __enter__(self) -> VideoWriter:
        import imageio.v2 as imageio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # H.264 in yuv420p wants even sides: frames are padded by a pixel where odd, never resized
        self._writer = imageio.get_writer(self._tmp, fps=self.fps, codec="libx264", quality=7, macro_block_size=2,
                                          ffmpeg_log_level="error")
        return self

    def add(self, frame: np.ndarray) -> None:
        self._writer.append_data(np.asarray(frame, dtype=np.uint8))
        self.frames += 1

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._writer.close()
        if exc_type is None and self.frames:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
