"""``load(name, split)``: one entry point for every dataset, returning ``(images, labels)`` tensors.

Images are uint8 ``(N, C, H, W)`` tensors backed by a copy-on-write memory map of the cache, so
they load fast and can be moved to the training device and augmented in batches; labels are int64
``(N,)`` or None (``atari-frames`` returns the console RAM, int64 ``(N, 128)``, as its labels).
:func:`load_dataset` returns the same arrays with their class names, a description, extra per-image
arrays (face attributes, Atari episode ids) and whether the cache answered.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlgen.data.cache import data_root
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


_SOURCES: dict[str, Source] = {}


def register(source: Source) -> None:
    _SOURCES[source.name] = source


def all_sources() -> dict[str, Source]:
    """Every known dataset source by name (``folder`` and ``atari-frames`` take ``:ARG``)."""
    _ensure_registered()
    return dict(_SOURCES)


def _ensure_registered() -> None:
    # The source modules register themselves on import; importing here avoids an import cycle.
    from rlgen.data import atari_frames, faces, folder, sources  # noqa: F401


_ORDER = ("mnist", "fashion-mnist", "cifar10", "folder", "digits", "mnist5k", "faces", "atari-frames",
          "atari-stacks")


def names_help() -> str:
    _ensure_registered()
    names = sorted(_SOURCES, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    return ", ".join(f"{n}:{'PATH' if n == 'folder' else 'GAME'}" if _SOURCES[n].takes_arg else n for n in names)


def resolve(name: str) -> tuple[Source, str | None]:
    """The source for ``name`` and its argument (the part after ``:`` for folder/atari-frames)."""
    _ensure_registered()
    base, sep, arg = name.partition(":")
    key = base.lower().replace("_", "-")
    source = _SOURCES.get(key)
    if source is None or source.takes_arg != bool(sep):
        if source is not None and source.takes_arg:
            example = "folder:/path/to/images" if key == "folder" else f"{key}:breakout"
            raise UsageError(f"dataset {name!r} needs an argument, e.g. {example}")
        close = difflib.get_close_matches(key, list(_SOURCES), n=2, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown dataset {name!r}; known: {names_help()}.{hint}")
    if sep and not arg:
        raise UsageError(f"dataset {name!r}: nothing after ':'; e.g. folder:/path/to/images or atari-frames:breakout")
    return source, (arg if sep else None)


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, *, cache: bool = True,
                 **options: Any) -> Dataset:
    """Load one split of a dataset (see :func:`load`); returns a :class:`Dataset` with metadata."""
    source, arg = resolve(name)
    if split not in SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in source.options.items()) or "no options"
        raise UsageError(f"dataset {source.name}: unknown option {unknown[0]!r}; it accepts {accepted}")
    merged = {**source.options, **{k: v for k, v in options.items() if v is not None}}
    start = time.perf_counter()
    dataset = source.build(data_root(root), split, cache, arg, **merged)
    dataset.seconds = time.perf_counter() - start
    return dataset


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, *, cache: bool = True,
         **options: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)`` for one split of a named dataset.

    Names: ``mnist``, ``fashion-mnist``, ``cifar10`` (downloaded when online, see
    :mod:`rlgen.data.sources`), ``digits``, ``mnist5k``, ``faces`` (offline), ``folder:PATH`` and
    ``atari-frames:GAME`` / ``atari-stacks:GAME``. ``split`` is ``train`` or ``test``. ``root``
    defaults to ``$RLGEN_DATA`` or ``~/.cache/rlgen``. Options depend on the source (``size=``, ``n=``, ``seed=``,
    ``download=``, ...); an option a source does not take is a :class:`UsageError`.
    ``cache=False`` rebuilds and rewrites the cached copy.
    """
    return load_dataset(name, split, root, cache=cache, **options).pair()


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
