"""Batched image augmentations for contrastive learning, DQN and generative models, run as tensor operations on
any device.

Every random draw comes from one ``torch.Generator`` on the CPU (one (N, k) draw per operation),
so a seed gives the same views on the CPU and on a GPU; the pixel work itself runs where the
images are. No per-image Python loop: crop, rotation and flip are one ``grid_sample`` call for the
whole batch; colour jitter is a few in-place passes and one batched 3×3 colour matrix, which
also carries grayscale; blur is two batched products with banded matrices on the images its coin
picks.

The SimCLR recipe (Chen et al. 2020, appendix A): random resized crop (area 8–100 %, aspect
3/4–4/3), horizontal flip, colour jitter (brightness, contrast, saturation 0.8·s, hue 0.2·s;
applied with p 0.8), grayscale (p 0.2), Gaussian blur (σ 0.1–2.0, kernel 10 % of the image,
p 0.5). Three departures, documented: the four jitter operations run in a fixed order rather than
a random one; hue is a rotation of the chroma plane in YIQ space rather than an HSV shift (the
same idea, linear, so it batches); and saturation, hue and (in :func:`augment`) grayscale are
one colour matrix, clamped to [0, 1] once after all three rather than after each (brightness and
contrast clamp after each, as PIL does).

The augmentation of data-efficient RL from pixels (DrQ: Kostrikov, Yarats & Fergus 2021; DrQ(ε): Agarwal et
al. 2021) is :func:`drq_augment`: a random shift of each image by up to 4 pixels with the edge pixels
repeated (:func:`random_shift`), then a random scaling of its intensity (:func:`intensity_noise`); the
``dqn`` recipe is the same pair for contrastive pretraining on ``atari-stacks``. The VAE uses
:func:`random_shift` with zero fill as its regulariser.

On the CPU the batch-sized temporaries (the float copy of uint8 input, the sampling grid, the
blur's and the colour matrix's inputs) live in buffers kept per thread and reused from call to
call, up to 16 MB each: a fresh multi-megabyte allocation is page-faulted in on every call, and
on a small machine that costs as much as the arithmetic. Only the returned batch is new memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rlgen.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Which augmentations to apply and how strongly."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    """range of the crop's area as a fraction of the image"""
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """range of the crop's aspect ratio (width / height), sampled log-uniformly"""
    rotate: float = 0.0
    """maximum rotation in degrees (uniform in ±rotate)"""
    flip: float = 0.0
    """probability of a horizontal flip"""
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """brightness, contrast, saturation, hue strengths (factors in [1 − s, 1 + s]; hue in ±s turns)"""
    jitter_p: float = 0.0
    """probability of colour jitter"""
    gray_p: float = 0.0
    """probability of converting to grayscale (colour images only)"""
    blur_p: float = 0.0
    """probability of a Gaussian blur"""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """range of the blur's σ in pixels"""
    shift: int = 0
    """when > 0: translate by up to this many pixels with the edge repeated (DrQ's random shift) instead of the
    crop, flip and rotation"""
    intensity: float = 0.0
    """scale of the per-image intensity noise applied last (DrQ(ε)'s 0.05); 0: none"""

    def describe(self) -> str:
        parts = ([f"shift ±{self.shift} px (edge fill)"] if self.shift
                 else [f"crop {self.crop_scale[0]:g}–{self.crop_scale[1]:g}"])
        parts += [f"rotate ±{self.rotate:g}°"] if self.rotate else []
        parts += [f"flip {self.flip:g}"] if self.flip else []
        parts += [f"jitter {'/'.join(f'{s:g}' for s in self.jitter)} p {self.jitter_p:g}"] if self.jitter_p else []
        parts += [f"gray {self.gray_p:g}"] if self.gray_p else []
        parts += [f"blur σ {self.blur_sigma[0]:g}–{self.blur_sigma[1]:g} p {self.blur_p:g}"] if self.blur_p else []
        parts += [f"intensity noise {self.intensity:g}"] if self.intensity else []
        return ", ".join(parts)


def simclr_recipe(strength: float = 1.0, blur: bool = True) -> Recipe:
    """The SimCLR recipe with colour strength ``strength`` (0.5 for CIFAR in the paper, 1.0 for ImageNet)."""
    s = strength
    return Recipe(crop_scale=(0.08, 1.0), flip=0.5, jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_p=0.8,
                  gray_p=0.2, blur_p=0.5 if blur else 0.0)


# Per-dataset defaults. Digits must not be flipped; they tolerate a mild rotation, and a larger
# minimum crop keeps enough of the stroke to tell a 7 from a 1. Atari frames keep their layout.
RECIPES: dict[str, Recipe] = {
    "digits": Recipe(crop_scale=(0.3, 1.0), rotate=10.0, jitter=(0.4, 0.4, 0.0, 0.0), jitter_p=0.8, blur_p=0.5,
                     blur_sigma=(0.1, 1.0)),
    "fashion": Recipe(crop_scale=(0.2, 1.0), flip=0.5, jitter=(0.4, 0.4, 0.0, 0.0), jitter_p=0.8, blur_p=0.5,
                      blur_sigma=(0.1, 1.0)),
    "cifar": simclr_recipe(0.5, blur=False),
    "color": simclr_recipe(0.5, blur=True),
    "frames": Recipe(crop_scale=(0.8, 1.0), jitter=(0.2, 0.2, 0.0, 0.0), jitter_p=0.5),
    # What DQN's replay gets under --augment (drq_augment), so pretraining sees the views the agent will.
    "dqn": Recipe(shift=4, intensity=0.05),
}


def default_recipe(data: str) -> tuple[str, Recipe]:
    """The recipe name and recipe for a dataset name (``mnist5k`` → ``digits``, ...)."""
    base = data.split(":")[0].lower()
    if base in ("mnist", "mnist5k", "digits"):
        name = "digits"
    elif base == "fashion-mnist":
        name = "fashion"
    elif base == "cifar10":
        name = "cifar"
    elif base == "atari-frames":
        name = "frames"
    elif base == "atari-stacks":
        name = "dqn"
    else:
        name = "color"
    return name, RECIPES[name]


def recipe_by_name(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is a UsageError listing the known ones."""
    if name not in RECIPES:
        raise UsageError(f"unknown augmentation recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601: grayscale, contrast's mean, saturation
_RGB_TO_YIQ = np.array([_LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
# A hue rotation by θ is YIQ⁻¹·R(θ)·YIQ = H0 + cos θ·H1 + sin θ·H2: a batch of them is a broadcast
# sum of three fixed matrices, with no batched product or inverse per call.
_HUE_BASIS = np.stack([
    _YIQ_TO_RGB[:, :1] @ _RGB_TO_YIQ[:1],
    _YIQ_TO_RGB[:, 1:] @ _RGB_TO_YIQ[1:],
    _YIQ_TO_RGB[:, 1:] @ np.array([[0.0, -1.0], [1.0, 0.0]]) @ _RGB_TO_YIQ[1:],
])

_WORKSPACE = threading.local()
# Elements per buffer (16 MB of float32, so a thread holds well under 100 MB): enough for batches of
# 512 RGB 32×32 or 4096 digits; larger temporaries are allocated per call.
_WORKSPACE_LIMIT = 1 << 22


def _scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A contiguous temporary of ``shape``: on the CPU a view of this thread's reusable buffer ``name``.

    Callers must be done with one use of a name before the next starts; nothing returned to a user
    may live in one.
    """
    numel = math.prod(shape)
    if device.type != "cpu" or numel > _WORKSPACE_LIMIT:
        return torch.empty(shape, dtype=dtype, device=device)
    buffers = _WORKSPACE.__dict__.setdefault("buffers", {})
    buf = buffers.get((name, dtype))
    if buf is None or buf.numel() < numel:
        buf = buffers[(name, dtype)] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)


def _draws(gen: torch.Generator, n: int, k: int) -> np.ndarray:
    """(n, k) uniform numbers in [0, 1): one draw per operation, the parameter arithmetic in numpy."""
    return torch.rand(n, k, generator=gen, dtype=torch.float64).numpy()


def _between(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + (hi - lo) * u


def _column(v: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """Per-image values as an (n, 1, 1, 1) tensor like ``x``, for broadcasting."""
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(x.device, x.dtype).view(-1, 1, 1, 1)


@functools.lru_cache(maxsize=32)
def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(3, h·w) rows x, y, 1 of the output pixel centres, as ``affine_grid`` (align_corners=False) uses."""
    xs = (torch.arange(w, dtype=torch.float64) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=torch.float64) * 2 + 1) / h - 1
    return torch.stack([xs.repeat(h), ys.repeat_interleave(w), torch.ones(h * w, dtype=torch.float64)]).to(
        device, dtype)


def _resample(x: torch.Tensor, theta: np.ndarray, size: tuple[int, int], padding: str) -> torch.Tensor:
    """``grid_sample(x, affine_grid(theta))``, bilinear, align_corners=False, with a cheaper grid.

    One (2n, 3) × (3, h·w) matrix product gives the x and y planes of every grid, and
    ``grid_sample`` reads that planar layout (a strided (n, h, w, 2) view) as fast as an interleaved
    one; ``affine_grid`` instead runs a batched (h·w, 3) × (3, 2) product per image, about 8× slower.
    """
    n = x.shape[0]
    h, w = size
    grid = _scratch("grid", (2 * n, h * w), x.dtype, x.device)
    theta_t = torch.from_numpy(theta.reshape(2 * n, 3)).to(x.device, x.dtype)
    torch.mm(theta_t, _base_grid(h, w, x.device, x.dtype), out=grid)
    grid = grid.view(n, 2, h, w).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def crop_flip_rotate(x: torch.Tensor, recipe: Recipe, gen: torch.Generator,
                     out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Random resized crop, rotation and horizontal flip as one batched affine resampling.

    The crop's area fraction ``a`` and aspect ``r`` give a box of width √(a·r) and height √(a/r)
    (in units of the image side, clamped to 1), placed uniformly inside the image; bilinear
    resampling maps it to ``out_size`` (default: the input size). An unrotated box never leaves
    the image, so samples past the outermost pixel centres read the edge pixel (as PIL's resize
    does) rather than fading to black; a rotated view fills the corners it uncovers with black.
    Returns a new float tensor in ``x``'s value range.
    """
    n = x.shape[0]
    u = _draws(gen, n, 6)
    area = _between(u[:, 0], *recipe.crop_scale)
    ratio = np.exp(_between(u[:, 1], math.log(recipe.crop_ratio[0]), math.log(recipe.crop_ratio[1])))
    w = np.minimum(np.sqrt(area * ratio), 1.0)
    h = np.minimum(np.sqrt(area / ratio), 1.0)
    # Grid coordinates are in [−1, 1]: a box of width w can be centred anywhere in ±(1 − w).
    cx = (2 * u[:, 2] - 1) * (1 - w)
    cy = (2 * u[:, 3] - 1) * (1 - h)
    angle = np.radians(_between(u[:, 4], -recipe.rotate, recipe.rotate))
    sign = np.where(u[:, 5] < recipe.flip, -1.0, 1.0)
    cos, sin = np.cos(angle), np.sin(angle)
    theta = np.stack([w * cos * sign, -h * sin, cx, w * sin * sign, h * cos, cy], 1)
    x = x if x.is_floating_point() else x.float()
    return _resample(x, theta, out_size or tuple(x.shape[-2:]), "zeros" if recipe.rotate else "border")


def _luma_mean(x: torch.Tensor) -> np.ndarray:
    """Per-image mean of the luma (of the channel mean unless RGB), as float64 numpy (n,)."""
    means = x.mean(dim=(2, 3)).double().cpu().numpy()
    return means @ _LUMA if x.shape[1] == 3 else means.mean(1)


def _colour_matrices(fs: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """(n, 3, 3) matrices: saturation by ``fs`` (a blend with luma), then hue by ``turns``.

    Both keep grey grey (every row sums to 1), so they commute with contrast's grey shift.
    """
    fs = fs.reshape(-1, 1, 1)
    sat = fs * np.eye(3) + (1 - fs) * _LUMA  # each row: fs·eᵢ + (1 − fs)·luma
    ang = 2 * math.pi * turns.reshape(-1, 1, 1)
    hue = _HUE_BASIS[0] + np.cos(ang) * _HUE_BASIS[1] + np.sin(ang) * _HUE_BASIS[2]
    return hue @ sat


def _has_matrix(x: torch.Tensor, strength: tuple[float, float, float, float]) -> bool:
    """Whether colour jitter of ``x`` ends with a colour matrix (RGB with saturation or hue)."""
    return x.shape[1] == 3 and bool(strength[2] or strength[3])


def _color_jitter_(x: torch.Tensor, strength: tuple[float, float, float, float], p: float,
                   gen: torch.Generator, scale: float = 1.0, gray_p: float = 0.0) -> torch.Tensor:
    """:func:`color_jitter` of ``scale · x``, in place on contiguous ``x``.

    Every pass runs over the whole batch: images the coin skips get factors 1 and hue 0, an
    identity, which is cheaper than selecting the others. ``scale`` (1/255 for uint8 input) rides
    on the brightness and contrast multiply instead of costing a pass of its own. With ``gray_p``
    (only where :func:`_has_matrix`) it also draws :func:`random_grayscale`'s coin and turns the
    images it picks gray in the same matrix: every row the luma weights. Saturation and hue leave
    luma unchanged, so that is the luma of the contrast-adjusted image, which the separate
    operation also gives except where saturation or hue had pushed a channel past [0, 1].
    """
    n, c = x.shape[:2]
    u = _draws(gen, n, 5)
    apply = u[:, 0] < p
    b, ct, s, hue = strength
    fb, fc, fs = (np.where(apply, _between(u[:, i + 1], max(0.0, 1 - v), 1 + v), 1.0) for i, v in enumerate((b, ct, s)))
    turns = np.where(apply, _between(u[:, 4], -hue, hue), 0.0)
    gain = fb * scale
    if b:  # min(gain·x, 1) = gain·min(x, 1/gain): clamp now, multiply below
        x.clamp_max_(_column(1 / np.maximum(gain, 1e-12), x))
    matrix = _has_matrix(x, strength)
    gray = _draws(gen, n, 1)[:, 0] < gray_p if matrix and gray_p > 0 else None
    # The colour matrix reads a copy of x and writes x; the last pass before it writes that copy.
    last = _scratch("colour", tuple(x.shape), x.dtype, x.device) if matrix else x
    if ct:  # blend with the mean luma of the brightness-adjusted image
        mean = _luma_mean(x) * gain
        x.mul_(_column(fc * gain, x)).add_(_column((1 - fc) * mean, x))
        torch.clamp(x, 0, 1, out=last)
    elif b or scale != 1:
        torch.mul(x, _column(gain, x), out=last)
    elif matrix:
        last.copy_(x)
    if matrix:
        mats = _colour_matrices(fs, turns)
        if gray is not None:
            mats[gray] = _LUMA
        m = torch.from_numpy(mats).to(x.device, x.dtype)
        pixels = x.shape[2] * x.shape[3]
        torch.bmm(m, last.view(n, 3, pixels), out=x.view(n, 3, pixels))
        x.clamp_(0, 1)
    return x


def color_jitter(x: torch.Tensor, strength: tuple[float, float, float, float], p: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter (in that order) on the images a p-coin picks.

    Brightness and contrast are clamped to [0, 1] after each; saturation and hue are one colour
    matrix, clamped once. ``x`` (float, [0, 1]) is not modified.
    """
    return _color_jitter_(x.clone(memory_format=torch.contiguous_format), strength, p, gen)


def _chosen(u: np.ndarray, p: float, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor] | None:
    """The images a p-coin picks, as numpy and device indices, or None if none."""
    idx = np.flatnonzero(u < p)
    return (idx, torch.from_numpy(idx).to(x.device)) if len(idx) else None


def _random_grayscale_(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """:func:`random_grayscale` in place on contiguous ``x``."""
    n, c, h, w = x.shape
    chosen = _chosen(_draws(gen, n, 1)[:, 0], p, x)
    if chosen is None or c != 3:
        return x
    idx = chosen[1]
    sub = torch.index_select(x, 0, idx, out=_scratch("subset", (n, c, h, w), x.dtype, x.device)[:len(idx)])
    luma = _scratch("luma", (n, 1, h, w), x.dtype, x.device)[:len(idx)]
    torch.mul(sub[:, :1], float(_LUMA[0]), out=luma)
    luma.add_(sub[:, 1:2], alpha=float(_LUMA[1])).add_(sub[:, 2:], alpha=float(_LUMA[2]))
    return x.index_copy_(0, idx, luma.expand(-1, 3, -1, -1))


def random_grayscale(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Grayscale (kept as 3 equal channels) on the images a p-coin picks; ``x`` is not modified."""
    return _random_grayscale_(x.clone(memory_format=torch.contiguous_format), p, gen)


def blur_kernel_size(h: int, w: int) -> int:
    """The blur's (odd) kernel size for an h×w image: about 10 % of the shorter side, at least 3."""
    return max(3, int(0.1 * min(h, w)) // 2 * 2 + 1)


@functools.lru_cache(maxsize=32)
def _tap_basis(size: int, r: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(r + 1, size·size): the identity, then for d = 1..r the 0/1 matrix Pd with (Pd·v)[i] = v[i − d] + v[i + d].

    Indices past an edge are reflected, so the blur by a symmetric kernel (k₀, k₁, …, k_r) along
    an axis of this size is the banded matrix k₀·I + Σd kd·Pd, reflect padding included.
    """
    i = torch.arange(size)
    mats = [torch.eye(size, dtype=torch.float64)]
    for d in range(1, r + 1):
        p = torch.zeros(size, size, dtype=torch.float64)
        for src in (i - d, i + d):
            src = torch.where(src < 0, -src, torch.where(src >= size, 2 * (size - 1) - src, src))
            p[i, src] += 1.0
        mats.append(p)
    return torch.stack(mats).view(r + 1, -1).to(device, dtype)


def _blur_matrices(kern: torch.Tensor, size: int, name: str, batch: int) -> torch.Tensor:
    """(m, size, size) banded blur matrices, one per image, from the half kernels (m, r + 1): one small product."""
    m, r = kern.shape[0], kern.shape[1] - 1
    mats = _scratch(name, (batch, size, size), kern.dtype, kern.device)[:m]
    torch.mm(kern, _tap_basis(size, r, kern.device, kern.dtype), out=mats.view(m, -1))
    return mats


def _blur(x: torch.Tensor, sigma: np.ndarray, batch: int) -> torch.Tensor:
    """Separable Gaussian blur of contiguous (m, C, H, W) images with per-image σ (m,), reflect padding.

    Each pass is one batched product with a per-image banded matrix, which also handles the
    edges: no padded copy and no per-column fix-up (in NCHW a column op costs as much memory
    traffic as a whole pass). The first pass writes its result transposed, so that the second
    contracts the last axis again; the result comes back as an (m, C, H, W) permuted view of a
    scratch buffer. ``batch`` (≥ m) sizes the buffers, so they do not regrow with every subset.
    """
    m, c, h, w = x.shape
    k = blur_kernel_size(h, w)
    r = k // 2
    kern = np.exp(-(np.arange(r + 1) ** 2) / (2 * sigma.reshape(-1, 1) ** 2))
    kern = kern / (2 * kern.sum(1, keepdims=True) - kern[:, :1])  # the half kernel (k₀, …, k_r), normalised
    kern = torch.from_numpy(kern).to(x.device, x.dtype)
    across = _blur_matrices(kern, w, "blur_w", batch)
    down = across if h == w else _blur_matrices(kern, h, "blur_h", batch)
    # t[j, (c, y)] = Σx across[j, x]·x[c, y, x], then z[(j, c), i] = Σy t[(j, c), y]·down[i, y].
    t = _scratch("blur_t", (batch, w, c * h), x.dtype, x.device)[:m]
    torch.bmm(across, x.view(m, c * h, w).transpose(1, 2), out=t)
    z = _scratch("blur_z", (batch, w * c, h), x.dtype, x.device)[:m]
    torch.bmm(t.view(m, w * c, h), down.transpose(1, 2), out=z)
    return z.view(m, w, c, h).permute(0, 2, 3, 1)


def _gaussian_blur_(x: torch.Tensor, sigma: tuple[float, float], p: float, gen: torch.Generator) -> torch.Tensor:
    """:func:`gaussian_blur` in place on contiguous ``x``."""
    n, c, h, w = x.shape
    u = _draws(gen, n, 2)
    chosen = _chosen(u[:, 0], p, x)
    if chosen is None:
        return x
    idx, idx_t = chosen
    sub = torch.index_select(x, 0, idx_t, out=_scratch("subset", (n, c, h, w), x.dtype, x.device)[:len(idx)])
    return x.index_copy_(0, idx_t, _blur(sub, _between(u[idx, 1], *sigma), n))


def gaussian_blur(x: torch.Tensor, sigma: tuple[float, float], p: float, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with a per-image σ on the images a p-coin picks; ``x`` is not modified.

    The kernel spans about 10 % of the image (odd, at least 3 taps; see :func:`blur_kernel_size`)
    and the image is reflect-padded.
    """
    return _gaussian_blur_(x.clone(memory_format=torch.contiguous_format), sigma, p, gen)


def augment(images: torch.Tensor, recipe: Recipe, gen: torch.Generator,
            out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """One random view of each image: uint8 or [0, 1] float (N, C, H, W) in, float in [0, 1] out (a recipe with
    ``intensity`` noise scales by up to 1 ± 2·intensity without clamping, as DrQ(ε) does)."""
    # Resampling is linear, so uint8 images are cropped as 0–255 floats and the 1/255 rides on
    # jitter's first multiply instead of costing a pass of its own.
    scale = 1 / 255 if images.dtype == torch.uint8 else 1.0
    x = images
    if images.dtype != torch.float32:
        x = _scratch("input", tuple(images.shape), torch.float32, images.device).copy_(images)
    if recipe.shift:
        if out_size is not None and tuple(out_size) != tuple(x.shape[-2:]):
            raise UsageError(f"a shift recipe keeps the image size {tuple(x.shape[-2:])}; it cannot make {out_size}")
        x = random_shift(x, recipe.shift, gen, fill="edge")  # new memory: the rest works in place
    else:
        x = crop_flip_rotate(x, recipe, gen, out_size).contiguous()  # new memory: the rest works in place
    # Grayscale rides on jitter's colour matrix where there is one (see _color_jitter_).
    fuse_gray = recipe.jitter_p > 0 and recipe.gray_p > 0 and _has_matrix(x, recipe.jitter)
    if recipe.jitter_p > 0:
        x = _color_jitter_(x, recipe.jitter, recipe.jitter_p, gen, scale, recipe.gray_p if fuse_gray else 0.0)
    elif scale != 1:
        x.mul_(scale)
    if recipe.gray_p > 0 and not fuse_gray:
        x = _random_grayscale_(x, recipe.gray_p, gen)
    if recipe.blur_p > 0:
        x = _gaussian_blur_(x, recipe.blur_sigma, recipe.blur_p, gen)
    if recipe.intensity > 0:
        x = intensity_noise(x, recipe.intensity, gen)
    return x


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator,
                 fill: str = "zeros") -> torch.Tensor:
    """Translate each image of ``x`` (N, C, H, W) by its own (dy, dx), each uniform in [−max_shift, max_shift];
    every channel of an image (e.g. stacked frames) moves together. ``fill`` is ``zeros`` or ``edge`` (the
    border pixels repeated, as DrQ pads). Returns a new contiguous tensor of the same shape and dtype: any
    dtype, so uint8 frames move as bytes.

    Dopamine's DrQ(ε) draws its crop offset from [0, 2·pad) (shifts −4..3); this draws [0, 2·pad] (−4..4), the
    symmetric range of the DrQ paper's reference."""
    if fill not in ("zeros", "edge"):
        raise UsageError(f"shift fill {fill!r} is not one of zeros, edge")
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    if b == 0:
        return x.clone()
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen).to(x.device)
    # Output pixel (i, j) of image n reads input pixel (i + dy − pad, j + dx − pad); edge fill clamps that to the
    # image, so the whole batch is one gather (measured 4× faster on a CPU than padding and slicing per image).
    rows = torch.arange(h, device=x.device) + (dy - max_shift)[:, None]  # (N, H)
    cols = torch.arange(w, device=x.device) + (dx - max_shift)[:, None]  # (N, W)
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (N, H, W)
    out = x.reshape(b, c, h * w).gather(2, index.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
    if fill == "zeros":
        outside = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
        out.masked_fill_(outside[:, None], 0)
    return out


def intensity_noise(x: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Scale each image by 1 + scale·clip(r, −2, 2) with r ~ N(0, 1) per image (Schwarzer et al. 2021, as
    DrQ(ε) uses it with scale 0.05); ``x`` is float."""
    r = torch.randn(x.shape[0], *([1] * (x.dim() - 1)), generator=gen).to(x.device, x.dtype)
    return x * (1.0 + scale * r.clamp(-2.0, 2.0))


def drq_augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4, scale: float = 0.05,
                prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """DrQ(ε)'s augmentation of replayed observations: a random shift by up to ``pad`` pixels with edge fill,
    then intensity noise of ``scale``. ``x`` is float frames in [0, 1] (N, C, H, W), or stored frames (uint8)
    with ``prepare`` the per-pixel map to such floats: it runs between the two, so the shift moves bytes rather
    than floats (the same result, as edge fill only repeats pixels)."""
    x = random_shift(x, pad, gen, fill="edge")
    return intensity_noise(prepare(x) if prepare is not None else x, scale, gen)


# -- DiffAugment: differentiable augmentation of what a GAN's discriminator sees -------------------------------
DIFF_AUGMENT_OPS = ("color", "translation", "cutout")


def parse_diff_augment(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` → its ops in DiffAugment's order; ``""`` or ``none`` → (); an unknown op is a
    UsageError naming it and the accepted ones."""
    names = [p.strip().lower() for p in policy.split(",") if p.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in DIFF_AUGMENT_OPS]
    if unknown:
        raise UsageError(f"DiffAugment op {unknown[0]!r} is not one of {', '.join(DIFF_AUGMENT_OPS)}")
    return tuple(op for op in DIFF_AUGMENT_OPS if op in names)


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """DiffAugment (Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for Data-Efficient GAN
    Training", NeurIPS): the same random, differentiable transforms on real and generated images before D, so
    gradients reach G through them. ``x`` is float (N, C, H, W) in [−1, 1]; ops run in this order:

    * ``color``: brightness + (u − ½), saturation ×2u about the channel mean, contrast ×(u + ½) about the image mean
      (one u ~ U(0, 1) per image and op);
    * ``translation``: a shift by up to ⅛ of the side in each direction, zeros filling what is uncovered;
    * ``cutout``: a square of half the side, centred at a uniformly random pixel, set to zero.

    Every draw comes from ``gen`` on the CPU (the same views on any device); returns a new tensor."""
    ops = parse_diff_augment(policy) if isinstance(policy, str) else policy
    n, _, h, w = x.shape
    if "color" in ops:
        u = torch.rand(3, n, 1, 1, 1, generator=gen).to(x.device, x.dtype)
        x = x + (u[0] - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (2 * u[1]) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (u[2] + 0.5) + mean
    if "translation" in ops:
        x = random_shift(x, int(min(h, w) * 0.125 + 0.5), gen, fill="zeros")
    if "cutout" in ops:
        side_h, side_w = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
        cy, cx = torch.randint(0, h, (n,), generator=gen), torch.randint(0, w, (n,), generator=gen)
        rows, cols = torch.arange(h), torch.arange(w)
        top, left = (cy - side_h // 2)[:, None], (cx - side_w // 2)[:, None]
        in_rows = (rows >= top) & (rows < top + side_h)  # (n, h)
        in_cols = (cols >= left) & (cols < left + side_w)  # (n, w)
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        x = x * keep[:, None].to(x.device, x.dtype)
    return x
