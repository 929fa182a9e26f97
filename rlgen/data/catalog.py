"""``load(name, split)``: one entry point for every dataset, returning ``(images, labels)`` tensors.

Images are uint8 ``(N, C, H, W)`` tensors backed by a copy-on-write memory map of the cache, so
they load fast and can be moved to the training device and augmented in batches; labels are int64
``(N,)`` or None (``atari-frames`` returns the console RAM, int64 ``(N, 128)``, as its labels).
:func:`load_dataset` returns the same arrays with their class names, a description, extra per-image
arrays (face attributes, Atari episode ids) and whether the cache answered.

Every source is listed here, from the modules that define them; a new source module adds its ``SOURCES``.
"""

from __future__ import annotations

import difflib
import os
import time
from typing import Any

import torch

from rlgen.data import atari_frames, faces, folder, sources
from rlgen.data.cache import data_root
from rlgen.data.core import SPLITS, Dataset, Source
from rlgen.errors import UsageError

_SOURCES: dict[str, Source] = {s.name: s for module in (sources, folder, faces, atari_frames) for s in module.SOURCES}


def all_sources() -> dict[str, Source]:
    """Every known dataset source by name (``folder`` and ``atari-frames`` take ``:ARG``)."""
    return dict(_SOURCES)


_ORDER = ("mnist", "fashion-mnist", "cifar10", "folder", "digits", "mnist5k", "faces", "atari-frames",
          "atari-stacks")


def names_help() -> str:
    names = sorted(_SOURCES, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    return ", ".join(f"{n}:{'PATH' if n == 'folder' else 'GAME'}" if _SOURCES[n].takes_arg else n for n in names)


def resolve(name: str) -> tuple[Source, str | None]:
    """The source for ``name`` and its argument (the part after ``:`` for folder/atari-frames)."""
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


