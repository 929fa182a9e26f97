"""Preview a dataset: ``python -m rlgen.data.show NAME`` writes a PNG grid and prints counts and timings.

For each split it prints the number of images, their shape, the time to build the dataset (on a
cache miss) and the time of a cached load, then the count per label. ``--rebuild`` drops the
cached copy first, so the build time is measured. Examples::

    python -m rlgen.data.show digits --size 28
    python -m rlgen.data.show faces --n 10000 --rebuild
    python -m rlgen.data.show atari-frames:breakout --n 5000 --grid 16
    python -m rlgen.data.show folder:/data/anime-faces.zip --size 64
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rlgen import cli
from rlgen.data.cache import data_root
from rlgen.data.catalog import load_dataset, resolve
from rlgen.data.core import Dataset
from rlgen.data.grid import save_grid
from rlgen.errors import UsageError


@dataclasses.dataclass
class Args:
    name: str = ""
    """Dataset: mnist, fashion-mnist, cifar10, digits, mnist5k, faces, folder:PATH or atari-frames:GAME
    (may also be given as the first positional argument)."""
    split: Literal["both", "train", "test"] = "both"
    """Which split(s) to load and count; the grid shows the first one loaded."""
    out: str = ""
    """PNG file for the grid (default: runs/data/NAME-SPLIT.png)."""
    grid: int = 64
    """Number of images in the grid: the classes in turn where the data has class labels, else a seeded sample."""
    nrow: int = 0
    """Images per grid row (0: near-square)."""
    n: int | None = None
    """Training-split size for faces and atari-frames (default 10000 and 5000)."""
    n_test: int | None = None
    """Test-split size for faces and atari-frames (default 1000)."""
    seed: int = 0
    """Seed for faces and atari-frames."""
    size: int | None = None
    """Image size for digits (upscale), faces and folder (resize + centre-crop)."""
    root: str | None = None
    """Data root (default: $RLGEN_DATA or ~/.cache/rlgen)."""
    download: bool = True
    """Download mnist / fashion-mnist / cifar10 when their files are missing."""
    rebuild: bool = False
    """Ignore and rewrite the cached copy, so the build time is measured."""


def _options(args: Args, split: str) -> dict[str, object]:
    source, _ = resolve(args.name)
    wanted = {"n": args.n if split == "train" else args.n_test, "seed": args.seed, "size": args.size,
              "download": args.download}
    return {k: v for k, v in wanted.items() if k in source.options and v is not None}


def _label_counts(ds: Dataset) -> str:
    if ds.labels is None:
        return "unlabelled"
    if ds.labels.ndim != 1:
        episodes = int(ds.extras["episode"].max()) + 1 if "episode" in ds.extras else 0
        return (f"labels are {tuple(ds.labels.shape)} {str(ds.labels.dtype).removeprefix('torch.')} (console RAM), "
                f"{episodes} episode(s)")
    counts = np.bincount(ds.labels.numpy(), minlength=len(ds.classes or ()))
    names = ds.classes or tuple(str(i) for i in range(len(counts)))
    return ", ".join(f"{names[i]} {c}" for i, c in enumerate(counts))


def grid_indices(labels: torch.Tensor | None, n: int, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` indices into a split of ``n`` images for the preview grid.

    Splits are often sorted by class (the first 64 of mnist5k are all zeros), so with class labels the
    grid takes the classes in turn, a seeded random image of each per round (grid rows then cycle through
    the classes); without them (or with per-image label vectors such as Atari RAM) a seeded random sample,
    in split order.
    """
    gen = torch.Generator().manual_seed(seed)
    k = min(k, n)
    if labels is None or labels.ndim != 1:
        return torch.randperm(n, generator=gen)[:k].sort().values
    order = torch.randperm(n, generator=gen)
    classes, cls = torch.unique(labels[order], return_inverse=True)  # class index of each shuffled image
    # Rank of each image within its class, in shuffled order: round r holds every class's r-th image.
    grouped = torch.argsort(cls, stable=True)
    counts = torch.bincount(cls, minlength=len(classes))
    rank = torch.empty(n, dtype=torch.long)
    rank[grouped] = torch.arange(n) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    picked = torch.argsort(rank * len(classes) + cls, stable=True)[:k]
    return order[picked]


def main(args: Args) -> None:
    torch.set_num_threads(1)
    if not args.name:
        raise UsageError("no dataset given; e.g. python -m rlgen.data.show digits")
    resolve(args.name)
    if args.grid < 1:
        raise UsageError(f"--grid {args.grid} must be at least 1")
    splits = ("train", "test") if args.split == "both" else (args.split,)
    root = data_root(args.root)
    loaded: list[Dataset] = []
    rows = []
    for split in splits:
        opts = _options(args, split)
        first = load_dataset(args.name, split, root, cache=not args.rebuild, **opts)
        start = time.perf_counter()
        again = load_dataset(args.name, split, root, **opts)
        warm = time.perf_counter() - start
        build = "cached" if first.from_cache else f"{first.seconds:.2f} s"
        rows.append((split, len(first.images), tuple(first.images.shape[1:]), build, f"{warm:.4f} s",
                     _label_counts(first)))
        loaded.append(again)
    ds = loaded[0]
    print(ds.description)
    print(f"{'split':6} {'images':>7}  {'shape':15} {'build':>10}  {'cached load':>11}")
    for split, count, shape, build, warm, _ in rows:
        print(f"{split:6} {count:7d}  {str(shape):15} {build:>10}  {warm:>11}")
    label_name = f" ({ds.label_name})" if ds.label_name else ""
    for split, *_, counts in rows:
        print(f"per label{label_name}, {split}: {counts}")
    if any(r[3] == "cached" for r in rows):
        print("(build time not measured for cached splits; pass --rebuild to rebuild and time them)")
    safe = args.name.replace("/", "_").replace(":", "_")
    out = Path(args.out) if args.out else Path("runs") / "data" / f"{safe}-{ds.split}.png"
    k = min(args.grid, len(ds.images))
    title = f"{ds.description} [{ds.split}, {k} of {len(ds.images)}]"
    picks = grid_indices(ds.labels, len(ds.images), k, args.seed)
    images, nrow = ds.images[picks], args.nrow or None
    if ds.name.startswith("atari-stacks"):  # a stack is frames in time, not colour channels: one row each
        images, nrow = images.reshape(-1, 1, *images.shape[2:]), images.shape[1]
    save_grid(out, images, nrow=nrow, title=title)
    print(f"wrote {out} ({k} {ds.split} images)")


def _argv(argv: Sequence[str]) -> list[str]:
    """Accept the dataset name as a leading positional argument as well as ``--name``."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        return ["--name", argv[0], *argv[1:]]
    return argv


if __name__ == "__main__":
    cli.run(main, Args, argv=_argv(sys.argv[1:]), description=__doc__.split("\n")[0],
            prog="python -m rlgen.data.show")
