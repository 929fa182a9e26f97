"""Image resizing shared by every family: antialiased resize with a centre crop, and the area-averaging
weights of the Atari screen's downscale (OpenCV's ``INTER_AREA``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) → (N, C, size, size): scale the shorter side (antialiased), centre-crop."""
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = []
    for chunk in images.split(1024):
        x = F.interpolate(chunk.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        out.append(x[:, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def area_resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of area-averaging weights: OpenCV ``INTER_AREA`` for downscaling."""
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for k in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            weights[i, k] = min(hi, k + 1) - max(lo, k)
    return weights / scale
