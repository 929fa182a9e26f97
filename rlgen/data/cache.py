"""Where datasets live on disk, and the memory-mapped cache of decoded arrays.

The data root is the ``root=`` argument, else ``$RLGEN_DATA``, else ``~/.cache/rlgen``. Downloaded
originals sit in ``<root>/<dataset>/``; decoded arrays sit in ``<root>/cache/<tag>-<key hash>/`` as
plain ``.npy`` files plus a ``meta.json`` written last, so an interrupted build leaves no entry that
looks complete. A cached load is ``np.load(mmap_mode="c")``: pages are read lazily and writes go to
private copy-on-write memory, so the returned tensors are writable without touching the file.
Cache files are only ever replaced by rename, never rewritten in place, so tensors already mapped
stay valid when an entry is rebuilt (truncating a mapped file in place would crash its readers).
Delete ``<root>/cache`` (or pass ``cache=False`` / ``--rebuild``) to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.files import atomic_open, atomic_write_bytes

CACHE_FORMAT = 1


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$RLGEN_DATA``, else ``~/.cache/rlgen``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("RLGEN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rlgen"


def entry_dir(root: Path, tag: str, key: dict[str, Any]) -> Path:
    """The cache folder for one dataset build, named by a tag and a hash of everything it depends on."""
    blob = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True, default=str).encode()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    return root / "cache" / f"{safe}-{hashlib.sha1(blob).hexdigest()[:16]}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    # np.save straight into the temp file: large arrays need not be held twice in memory.
    with atomic_open(path) as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def read_entry(folder: Path, key: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The cached arrays, memory-mapped, or None when the entry is absent, stale or damaged."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        arrays = {}
        for name, (shape, dtype) in meta["arrays"].items():
            arr = np.load(folder / f"{name}.npy", mmap_mode="c", allow_pickle=False)
            if list(arr.shape) != shape or str(arr.dtype) != dtype:
                raise ValueError(f"{name}.npy is {arr.dtype} {arr.shape}, meta.json says {dtype} {shape}")
            arrays[name] = arr
        return arrays
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"ignoring damaged cache entry {folder} ({err}); rebuilding it", stacklevel=3)
        return None


def write_entry(folder: Path, key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write every array, then ``meta.json`` last: the entry only counts once that exists."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    for name, arr in arrays.items():
        _save_npy(folder / f"{name}.npy", arr)
    meta = {"format": CACHE_FORMAT, "key": key,
            "arrays": {name: [list(arr.shape), str(arr.dtype)] for name, arr in arrays.items()}}
    atomic_write_bytes(folder / "meta.json", (json.dumps(meta, indent=1, default=str) + "\n").encode())


def cached(root: Path, tag: str, key: dict[str, Any], build: Callable[[], dict[str, np.ndarray]],
           use_cache: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays from the cache when present, else ``build()`` them and cache them; also says which happened.

    ``use_cache=False`` rebuilds and overwrites the entry. The returned arrays are always read back
    memory-mapped from the cache, so a first load and a later one hand out the same kind of array.
    """
    folder = entry_dir(root, tag, key)
    if use_cache:
        hit = read_entry(folder, key)
        if hit is not None:
            return hit, True
    arrays = build()
    try:
        write_entry(folder, key, arrays)
    except OSError as err:
        warnings.warn(f"could not write the dataset cache at {folder} ({err}); using the arrays uncached",
                      stacklevel=3)
        return arrays, False
    back = read_entry(folder, key)
    return (back if back is not None else arrays), False


def remove_entries(root: Path, tag: str) -> int:
    """Delete every cache entry whose tag is ``tag`` (any key); returns how many were removed."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    removed = 0
    base = root / "cache"
    if base.is_dir():
        for folder in base.glob(f"{safe}-*"):
            if folder.is_dir() and len(folder.name) == len(safe) + 17:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed
