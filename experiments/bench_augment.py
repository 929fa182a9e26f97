"""Batched tensor augmentation vs a per-image PIL pipeline (``python experiments/bench_augment.py``).

Two rows, both on the CPU: 28×28 grey digits (``mnist5k``) with the ``digits`` recipe (crop,
rotation, brightness, contrast, blur), and 32×32 RGB images (procedural ``faces``) with the full
SimCLR recipe (``color``: crop, flip, colour jitter, grayscale, blur). Each row times
:func:`rlgen.augment.augment` on batches against a per-image PIL implementation of the same
operations, both starting from the uint8 dataset and ending with a float (N, C, H, W) batch in
[0, 1]. The PIL side draws the same distributions with Python's ``random`` and uses PIL's own C
routine for each operation, choosing the faster one where PIL has two, so that the ratio is not
flattered by a slow baseline:

- crop: ``Image.resize(box=...)`` (``Image.transform(AFFINE)`` when the recipe rotates), bilinear;
- flip: ``ImageOps.mirror``; brightness and saturation: ``ImageEnhance``;
- contrast: ``ImageEnhance.Contrast``'s blend with the mean grey, the mean taken by a 1×1 box
  resize in C rather than ``ImageStat`` in Python (about 2× faster);
- hue: the same YIQ rotation as rlgen, as one ``Image.convert(matrix=...)`` (an HSV round trip
  through numpy, as torchvision does, is about 8× slower);
- grayscale: ``ImageOps.grayscale``; blur: the same 3×3 (or 5×5) Gaussian kernel as rlgen via
  ``ImageFilter.Kernel`` (which skips the one-pixel border), ``GaussianBlur`` for larger kernels.

For context a second PIL column uses the calls torchvision makes for the same recipe
(``ImageEnhance.Contrast``, hue as an HSV shift through numpy, ``ImageFilter.GaussianBlur``); the
goal is judged against the faster one.

It also times the encoders' forward+backward pass (``convnet`` on digits; ``convnet`` and
``resnet18`` on 32×32 RGB), so the reader sees whether augmentation still matters in a training
step: the "share" columns are augmentation's fraction of augment + forward+backward per view.
Rates are the best of a few repeats (the machine may be shared); the conditions are printed.

    python experiments/bench_augment.py --json bench_augment.json
    python experiments/bench_augment.py --quick          # a few seconds, for the tests
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import time
from collections.abc import Callable

import numpy as np
import PIL
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from rlgen import cli
from rlgen.augment import RECIPES, Recipe, augment, blur_kernel_size
from rlgen.data import load
from rlgen.errors import UsageError
from rlgen.files import write_json
from rlgen.nets import make_backbone


@dataclasses.dataclass
class Args:
    batch: int = 512
    """Batch size for the batched augmentation."""
    encoder_batch: int = 256
    """Batch size for the encoders' forward+backward pass."""
    threads: int = 1
    """torch threads for the batched augmentation and the encoders (PIL is single-threaded)."""
    repeats: int = 5
    """Timed repeats per measurement, taking turns between the implementations (the best is reported)."""
    quick: bool = False
    """Tiny sizes and one repeat: a smoke run for the tests, not a measurement."""
    seed: int = 0
    """Seed for both implementations' random draws."""
    json: str | None = None
    """Also write the results to this JSON file."""


ROWS = [
    # (row label, dataset name, load options, recipe name, encoders)
    ("digits 28×28 grey (digits recipe)", "mnist5k", {}, "digits", ("convnet",)),
    ("RGB 32×32 (full SimCLR recipe: crop, flip, jitter, gray, blur)", "faces", {"size": 32}, "color",
     ("convnet", "resnet18")),
]

_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def _hue_matrix(turns: float) -> tuple[float, ...]:
    """PIL's 12-number colour matrix for a rotation of the YIQ chroma plane by ``turns``."""
    a = 2 * math.pi * turns
    rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
    m = _YIQ_TO_RGB @ rot @ _RGB_TO_YIQ
    return tuple(float(v) for row in m for v in (*row, 0.0))


def _contrast(img: Image.Image, factor: float) -> Image.Image:
    gray = img if img.mode == "L" else img.convert("L")
    mean = gray.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return Image.blend(Image.new(img.mode, img.size, mean if img.mode == "L" else (mean,) * 3), img, factor)


def _hsv_hue(img: Image.Image, turns: float) -> Image.Image:
    """torchvision's PIL hue shift: to HSV, add to the H byte (wrapping), back to RGB."""
    h, s, v = img.convert("HSV").split()
    shifted = (np.asarray(h, dtype=np.uint8) + np.uint8(round(turns * 255) % 256)).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(shifted, "L"), s, v)).convert("RGB")


def _blur(img: Image.Image, sigma: float) -> Image.Image:
    k = blur_kernel_size(img.height, img.width)
    if k > 5:
        return img.filter(ImageFilter.GaussianBlur(sigma))
    taps = [math.exp(-((t - k // 2) ** 2) / (2 * sigma**2)) for t in range(k)]
    taps = [t / sum(taps) for t in taps]
    return img.filter(ImageFilter.Kernel((k, k), [a * b for a in taps for b in taps], scale=1.0))


def pil_view(arr: np.ndarray, recipe: Recipe, rng: random.Random, torchvision_style: bool = False) -> Image.Image:
    """One augmented view of one (H, W, C) uint8 image, operation by operation, in PIL.

    ``torchvision_style`` swaps in the slower calls torchvision makes for contrast, hue and blur.
    """
    h, w, c = arr.shape
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
    area = rng.uniform(*recipe.crop_scale)
    ratio = math.exp(rng.uniform(math.log(recipe.crop_ratio[0]), math.log(recipe.crop_ratio[1])))
    bw, bh = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))  # in image sides
    cx, cy = rng.uniform(-1, 1) * (1 - bw), rng.uniform(-1, 1) * (1 - bh)  # centre, in [−1, 1]
    if recipe.rotate:
        a = math.radians(rng.uniform(-recipe.rotate, recipe.rotate))
        # rlgen's sampling grid, rewritten from [−1, 1] coordinates to PIL's pixel coordinates.
        t00, t01, t10, t11 = bw * math.cos(a), -bh * math.sin(a), bw * math.sin(a), bh * math.cos(a)
        coeffs = (t00, t01 * w / h, (cx + 1 - t00 - t01) * w / 2, t10 * h / w, t11, (cy + 1 - t10 - t11) * h / 2)
        img = img.transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    else:
        box = ((1 + cx - bw) * w / 2, (1 + cy - bh) * h / 2, (1 + cx + bw) * w / 2, (1 + cy + bh) * h / 2)
        img = img.resize((w, h), Image.Resampling.BILINEAR, box=box)
    if recipe.flip and rng.random() < recipe.flip:
        img = ImageOps.mirror(img)
    if recipe.jitter_p and rng.random() < recipe.jitter_p:
        b, ct, s, hue = recipe.jitter
        if b:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(max(0.0, 1 - b), 1 + b))
        if ct:
            factor = rng.uniform(max(0.0, 1 - ct), 1 + ct)
            img = ImageEnhance.Contrast(img).enhance(factor) if torchvision_style else _contrast(img, factor)
        if c == 3 and s:
            img = ImageEnhance.Color(img).enhance(rng.uniform(max(0.0, 1 - s), 1 + s))
        if c == 3 and hue:
            turns = rng.uniform(-hue, hue)
            img = _hsv_hue(img, turns) if torchvision_style else img.convert("RGB", _hue_matrix(turns))
    if c == 3 and recipe.gray_p and rng.random() < recipe.gray_p:
        img = ImageOps.grayscale(img).convert("RGB")
    if recipe.blur_p and rng.random() < recipe.blur_p:
        sigma = rng.uniform(*recipe.blur_sigma)
        img = img.filter(ImageFilter.GaussianBlur(sigma)) if torchvision_style else _blur(img, sigma)
    return img


def pil_batch(arrs: np.ndarray, recipe: Recipe, rng: random.Random, torchvision_style: bool = False) -> torch.Tensor:
    """Per-image PIL views of (N, H, W, C) uint8 images, collated to a float (N, C, H, W) batch."""
    out = np.empty_like(arrs)
    for i in range(len(arrs)):
        out[i] = np.asarray(pil_view(arrs[i], recipe, rng, torchvision_style)).reshape(arrs.shape[1:])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def best_rates(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Items per second of each ``fn`` (which returns how many it did): the best of ``repeats`` runs.

    The runs take turns (one of each, ``repeats`` times), so that a burst of load from elsewhere
    on a shared machine falls on both sides of a ratio rather than on one.
    """
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, lazy initialisation
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            n = fn()
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def batched_run(images: torch.Tensor, recipe: Recipe, batch: int, n: int, seed: int) -> Callable[[], int]:
    """One pass of rlgen's batched augmentation over ``n`` images in batches of ``batch``."""
    gen = torch.Generator().manual_seed(seed)
    batches = [images[i:i + batch] for i in range(0, n, batch)]

    def run() -> int:
        for b in batches:
            augment(b, recipe, gen)
        return sum(len(b) for b in batches)

    return run


def pil_run(images: torch.Tensor, recipe: Recipe, n: int, seed: int, torchvision_style: bool = False
            ) -> Callable[[], int]:
    """One pass of the per-image PIL pipeline over ``n`` images (converted to NHWC numpy once, untimed)."""
    arrs = images[:n].permute(0, 2, 3, 1).contiguous().numpy()
    rng = random.Random(seed)
    return lambda: len(pil_batch(arrs, recipe, rng, torchvision_style))


def encoder_rate(name: str, shape: tuple[int, ...], batch: int, repeats: int) -> float:
    """Images per second through the encoder's forward and backward pass (training mode)."""
    torch.manual_seed(0)
    net = make_backbone(name, shape).train()
    x = torch.rand(batch, *shape)

    def step() -> int:
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()
        return batch

    return best_rates({name: step}, repeats)[name]


def main(args: Args) -> None:
    for flag in ("batch", "encoder_batch", "threads", "repeats"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be at least 1")
    if args.quick:
        args = dataclasses.replace(args, batch=min(args.batch, 64), encoder_batch=min(args.encoder_batch, 8),
                                   repeats=1)
    torch.set_num_threads(args.threads)
    n_batched = 2 * args.batch if args.quick else max(4096, 4 * args.batch)
    n_pil = 64 if args.quick else 1024
    conditions = {
        "threads": args.threads, "torch": torch.__version__, "pillow": PIL.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "batch": args.batch,
        "encoder_batch": args.encoder_batch, "repeats": args.repeats, "batched_images": n_batched,
        "pil_images": n_pil, "load_average_before": [round(v, 2) for v in os.getloadavg()], "quick": args.quick,
    }
    print(f"CPU, {args.threads} torch thread(s) (PIL is single-threaded); torch {torch.__version__}, Pillow "
          f"{PIL.__version__}; augment batch {args.batch} ({n_batched} images per repeat), PIL {n_pil} images "
          f"per repeat, encoder batch {args.encoder_batch}; best of {args.repeats}; load average "
          f"{conditions['load_average_before']} on {os.cpu_count()} CPUs")
    rows = []
    for label, data, options, recipe_name, encoders in ROWS:
        images, _ = load(data, "train", **options)
        recipe = RECIPES[recipe_name]
        n_b = min(n_batched, len(images) // args.batch * args.batch or len(images))
        n_p = min(n_pil, len(images))
        rates = best_rates({
            "rlgen": batched_run(images, recipe, args.batch, n_b, args.seed),
            "pil": pil_run(images, recipe, n_p, args.seed),
            "pil_tv": pil_run(images, recipe, n_p, args.seed, torchvision_style=True),
        }, args.repeats)
        ours, theirs, tv_style = rates["rlgen"], rates["pil"], rates["pil_tv"]
        shape = tuple(images.shape[1:])
        # A ResNet-18 step at batch 256 takes seconds: two timed steps per encoder are enough.
        enc = {name: encoder_rate(name, shape, args.encoder_batch, min(args.repeats, 2)) for name in encoders}
        rows.append({
            "row": label, "data": data, "shape": list(shape), "recipe": recipe_name, "recipe_text": recipe.describe(),
            "rlgen_img_s": ours, "pil_img_s": theirs, "ratio": ours / theirs,
            "pil_torchvision_style_img_s": tv_style, "ratio_torchvision_style": ours / tv_style,
            "encoder_fwd_bwd_img_s": enc,
            # Augmentation's share of (augment + forward+backward) per view, for each encoder.
            "augment_share_rlgen": {k: (1 / ours) / (1 / ours + 1 / v) for k, v in enc.items()},
            "augment_share_pil": {k: (1 / theirs) / (1 / theirs + 1 / v) for k, v in enc.items()},
        })
    conditions["load_average_after"] = [round(v, 2) for v in os.getloadavg()]

    print(f"\n{'row':64} {'rlgen img/s':>11} {'PIL img/s':>10} {'ratio':>6}  {'PIL, torchvision-style calls':>28}")
    for r in rows:
        print(f"{r['row']:64} {r['rlgen_img_s']:11,.0f} {r['pil_img_s']:10,.0f} {r['ratio']:5.1f}x  "
              f"{r['pil_torchvision_style_img_s']:19,.0f} ({r['ratio_torchvision_style']:4.1f}x)")
    print(f"\n{'encoder forward+backward':42} {'img/s':>9} {'augment share: rlgen':>21} {'PIL':>6}")
    for r in rows:
        for name, rate in r["encoder_fwd_bwd_img_s"].items():
            what = f"{name} on {'×'.join(map(str, r['shape']))} (batch {args.encoder_batch})"
            print(f"{what:42} {rate:9,.0f} {r['augment_share_rlgen'][name]:20.1%} "
                  f"{r['augment_share_pil'][name]:6.1%}")
    ok = all(r["ratio"] >= 5 for r in rows)
    print(f"\ngoal: batched at least 5x faster than per-image PIL on both rows -> {'met' if ok else 'NOT met'}"
          f"{' (quick run: not a measurement)' if args.quick else ''}")
    if args.json:
        write_json(args.json, {"conditions": conditions, "rows": rows, "goal_met": ok})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n")[0])
