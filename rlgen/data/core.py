"""What every dataset source is built from: the :class:`Dataset` it returns, the :class:`Source` that
describes it, and the helpers the sources share. The list of sources and the entry points that look them up
(``load``, ``load_dataset``) are in :mod:`rlgen.data.catalog`, above the sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlgen.errors import UsageError

SPLITS = ("train", "test")


@dataclasses.dataclass
class Dataset:
    """One split of one dataset, as tensors, with what a caller needs to describe it."""

    name: str
    split: str
    images: torch.Tensor
    """uint8 (N, C, H, W)."""
    labels: torch.Tensor | None
    """int64 (N,), or None for unlabelled data; (N, 128) RAM bytes for ``atari-frames``."""
    classes: tuple[str, ...] | None
    """Name of each label value, when labels are classes."""
    description: str
    """One line saying what the data is (and, for ``faces``, that it is a stand-in)."""
    from_cache: bool
    seconds: float
    """Wall time of this load (a build, or a cached load)."""
    extras: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    """Further per-image arrays, e.g. every face attribute or the Atari episode id of each frame."""
    label_name: str | None = None
    """What the labels are, where a source offers a choice (the face attribute used as label)."""

    def pair(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.images, self.labels


@dataclasses.dataclass(frozen=True)
class Source:
    """How to build one named dataset; ``build(root, split, cache, arg, **options)`` returns a Dataset."""

    name: str
    build: Callable[..., Dataset]
    options: dict[str, Any]
    """Accepted keyword options and their defaults."""
    summary: str
    takes_arg: bool = False
    """True for ``folder:PATH``, ``atari-frames:GAME`` and ``atari-stacks:GAME``."""


def as_dataset(name: str, split: str, arrays: dict[str, np.ndarray], from_cache: bool, description: str,
               classes: tuple[str, ...] | None, labels_key: str | None = "labels") -> Dataset:
    """Wrap cached arrays as tensors; every array but images and labels goes to ``extras``."""
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    images = tensors.pop("images")
    labels = tensors.pop(labels_key) if labels_key is not None and labels_key in tensors else None
    return Dataset(name=name, split=split, images=images, labels=labels, classes=classes, description=description,
                   from_cache=from_cache, seconds=0.0, extras=tensors)


def check_positive_int(source: str, option: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``, or a UsageError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"dataset {source}: {option}={value!r} must be an integer ≥ {minimum}")
    return int(value)


def stratified_split(labels: np.ndarray, test_per_class: dict[int, int] | float, seed: int) -> dict[str, np.ndarray]:
    """Fixed train/test indices: within each class, a seeded permutation; its first part is test.

    ``test_per_class`` is a count per class, or a fraction of each class (rounded). Indices in each
    split are sorted, so the split does not depend on the order classes were visited in.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = test_per_class[int(c)] if isinstance(test_per_class, dict) else int(round(len(idx) * test_per_class))
        test.append(idx[:k])
        train.append(idx[k:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}
