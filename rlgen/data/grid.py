"""Image grids: many images in one picture, for dataset previews and generated samples.

:func:`make_grid` takes (N, C, H, W) or (N, H, W) images as a torch tensor or NumPy array, uint8
(0..255) or float (``value_range``, default (0, 1); use (-1, 1) for tanh outputs), with 1 or 3
channels (4 drops alpha), and returns one uint8 (H, W, C) array. :func:`save_grid` writes it as a
PNG with an optional title bar.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rlgen.files import atomic_write_bytes


def _to_numpy(images: Any) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor, without importing torch here
        images = images.detach().cpu().numpy()
    return np.asarray(images)


def to_uint8(images: Any, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 (N, C, H, W) from uint8 or float images; floats are mapped from ``value_range`` and clipped."""
    arr = _to_numpy(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {arr.shape}")
    if arr.shape[1] == 4:
        arr = arr[:, :3]
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1, 3 or 4 channels, got {arr.shape[1]}")
    if arr.dtype == np.uint8:
        return arr
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    scaled = (arr.astype(np.float32) - lo) / max(hi - lo, 1e-12)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: Any, nrow: int | None = None, padding: int = 2, pad_value: int = 0,
              value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Tile images into one uint8 (H, W, C) array, ``nrow`` images per row (default: near-square)."""
    arr = to_uint8(images, value_range)
    n, c, h, w = arr.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    ncol = nrow if nrow else math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncol)
    out = np.full((padding + nrows * (h + padding), padding + ncol * (w + padding), c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        out[y:y + h, x:x + w] = arr[i].transpose(1, 2, 0)
    return out


def grid_image(grid: np.ndarray, title: str | None = None, min_cell: int = 0, cell: int = 0) -> Image.Image:
    """A PIL image of a grid, upscaled by an integer factor when ``cell`` < ``min_cell``, with a title bar."""
    factor = max(1, math.ceil(min_cell / cell)) if cell and min_cell else 1
    img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).convert("RGB")
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    if not title:
        return img
    font = ImageFont.load_default()
    # The built-in font may lack typographic characters; plain ASCII stand-ins always render.
    title = title.translate({ord("×"): "x", ord("—"): "-", ord("–"): "-", ord("’"): "'"})
    chars = max(20, img.width // 6)
    lines = textwrap.wrap(title, chars) or [""]
    line_h = 12
    bar = Image.new("RGB", (img.width, 6 + line_h * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(bar)
    for i, text in enumerate(lines):
        draw.text((4, 3 + i * line_h), text, fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (img.width, bar.height + img.height), (255, 255, 255))
    out.paste(bar, (0, 0))
    out.paste(img, (0, bar.height))
    return out


def save_grid(path: str | os.PathLike, images: Any, nrow: int | None = None, title: str | None = None,
              padding: int = 2, value_range: tuple[float, float] | None = None, min_cell: int = 48) -> Path:
    """Write a PNG grid of ``images`` (small images are upscaled so each is at least ``min_cell`` px)."""
    arr = to_uint8(images, value_range)
    grid = make_grid(arr, nrow=nrow, padding=padding, value_range=value_range)
    img = grid_image(grid, title, min_cell=min_cell, cell=min(arr.shape[2], arr.shape[3]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
