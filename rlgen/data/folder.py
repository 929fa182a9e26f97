"""``folder:PATH``: every PNG/JPEG image under a directory or inside a .zip (e.g. the Anime Face Dataset).

Rules, applied in this order:

* Files are found recursively, in sorted path order; hidden files and folders (``.name``) and
  ``__MACOSX`` are ignored. Files whose suffix is not .png/.jpg/.jpeg/.bmp/.webp are skipped with
  one summary warning. A file with an image suffix that does not decode is an error naming it.
* Colour: palette, RGBA, LA and CMYK images become RGB; transparency is composited onto white. If
  every image is greyscale (modes 1, L, LA, I, I;16) the dataset has one channel, otherwise three
  (greyscale images are then repeated across channels).
* ``size=N``: scale the shorter side to N (bicubic), then centre-crop N×N. Without ``size`` all
  images must have the same size.
* Labels: leading folders shared by every file are dropped (so ``images/*.png`` in a zip counts
  as flat); if every remaining path is inside a sub-folder, the sub-folder names, sorted, are the
  classes; otherwise labels are None.
* Split: a file is in ``test`` when the CRC-32 of its path (with the shared leading folders
  removed, so a zip and its extracted folder agree), mod 100, is below 5 (about 5%); the rest is
  ``train``. The rule depends only on the file's own path, so adding files beside it never moves
  it between splits.

Decoded arrays are cached under a key made of the path, ``size`` and every file's name, size and
modification time, so changing the folder rebuilds the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from rlgen.data.cache import cached
from rlgen.data.core import Dataset, Source, as_dataset, check_positive_int
from rlgen.data.formats import DataFileError
from rlgen.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L")
TEST_PERCENT = 5


def split_of(relpath: str) -> str:
    """``test`` for about 5% of paths (CRC-32 mod 100 < 5), else ``train``."""
    return "test" if zlib.crc32(relpath.encode("utf-8")) % 100 < TEST_PERCENT else "train"


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(rel).parts)


MAX_MEMBER_BYTES = 64 << 20
"""The largest zip member read: a larger one (or one whose header understates it) is refused, so a zip bomb
cannot fill memory."""


class _ZipMembers:
    """Reads the members of one zip archive through a single handle, opened at the first read; ``close()``
    ends it."""

    def __init__(self, path: Path) -> None:
        self.path, self._zf = path, None

    def read(self, info: zipfile.ZipInfo) -> bytes:
        where = f"{self.path}:{info.filename}"
        if info.file_size > MAX_MEMBER_BYTES:
            raise DataFileError(f"{where}: {info.file_size:,} bytes uncompressed, over the "
                                f"{MAX_MEMBER_BYTES:,}-byte limit for one image")
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.path)
        with self._zf.open(info) as fh:
            data = fh.read(MAX_MEMBER_BYTES + 1)  # bounded even when the header lies about the size
        if len(data) > MAX_MEMBER_BYTES:
            raise DataFileError(f"{where}: over the {MAX_MEMBER_BYTES:,}-byte limit for one image")
        return data

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None


def _list(path: Path) -> tuple[list[tuple[str, Callable[[], bytes]]], list[str], str, Callable[[], None]]:
    """(image files as (relative path, reader)), skipped non-image paths, and a fingerprint of the listing."""
    entries: list[tuple[str, Callable[[], bytes]]] = []
    skipped: list[str] = []
    close: Callable[[], None] = lambda: None  # noqa: E731
    digest = hashlib.sha1()
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
            for name in sorted(filenames):
                full = Path(dirpath) / name
                rel = full.relative_to(path).as_posix()
                if _hidden(rel):
                    continue
                st = full.stat()
                digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                if full.suffix.lower() in IMAGE_SUFFIXES:
                    entries.append((rel, full.read_bytes))
                else:
                    skipped.append(rel)
    elif zipfile.is_zipfile(path):
        st = path.stat()
        digest.update(f"zip\0{st.st_size}\0{st.st_mtime_ns}".encode())
        try:
            with zipfile.ZipFile(path) as zf:
                infos = sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.filename)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataFileError(f"{path}: unreadable zip file ({err})") from None
        members = _ZipMembers(path)
        close = members.close
        for info in infos:
            rel = info.filename
            if _hidden(rel):
                continue
            if PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES:
                entries.append((rel, lambda i=info: members.read(i)))
            else:
                skipped.append(rel)
    elif path.exists():
        raise UsageError(f"folder:{path}: not a directory or a .zip file")
    else:
        raise UsageError(f"folder:{path}: no such directory or zip file")
    entries.sort(key=lambda e: e[0])
    return entries, sorted(skipped), digest.hexdigest(), close


def fingerprint(arg: str) -> str:
    """A digest of the files behind ``folder:ARG`` (names, sizes and modification times; for a .zip, the
    archive's size and time): it changes whenever the dataset's contents may have. The data cache keys on it."""
    return _list(Path(arg).expanduser().resolve())[2]


def _decode(data: bytes, where: str, size: int | None) -> np.ndarray:
    """One image as (H, W) for greyscale or (H, W, 3), resized and cropped when ``size`` is given."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataFileError(f"{where}: not a readable image, truncated or corrupt ({err})") from None
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in GREY_MODES:
        img = img.convert("LA" if img.mode == "LA" else "L")
        if img.mode == "LA":
            white = Image.new("LA", img.size, (255, 255))
            img = Image.alpha_composite(white.convert("RGBA"), img.convert("RGBA")).convert("L")
    else:
        if img.mode in ("RGBA", "PA", "RGBa"):
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img.convert("RGBA"))
        img = img.convert("RGB")
    if size is not None:
        scale = size / min(img.size)
        new = (max(size, round(img.width * scale)), max(size, round(img.height * scale)))
        img = img.resize(new, Image.Resampling.BICUBIC)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img)


def _common_prefix_len(paths: list[str]) -> int:
    parts = [PurePosixPath(p).parts[:-1] for p in paths]
    k = 0
    while all(len(p) > k for p in parts) and len({p[k] for p in parts}) == 1:
        k += 1
    return k


def _build(path: Path, entries: list[tuple[str, Callable[[], bytes]]], skipped: list[str], split: str,
           size: int | None) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    if skipped:
        examples = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warnings.warn(f"folder:{path}: skipped {len(skipped)} file(s) that are not PNG/JPEG images ({examples})",
                      stacklevel=4)
    if not entries:
        raise UsageError(f"folder:{path}: no PNG or JPEG images found")
    rels = [rel for rel, _ in entries]
    k = _common_prefix_len(rels)
    stripped = [PurePosixPath(*PurePosixPath(r).parts[k:]) for r in rels]
    labelled = all(len(p.parts) >= 2 for p in stripped)
    classes = tuple(sorted({p.parts[0] for p in stripped})) if labelled else None
    chosen = [i for i, rel in enumerate(stripped) if split_of(rel.as_posix()) == split]
    if not chosen:
        raise UsageError(f"folder:{path}: the {split} split is empty ({len(rels)} images; about "
                         f"{TEST_PERCENT}% of files, chosen by a hash of their paths, form the test split)")
    arrays = []
    for i in chosen:
        rel, read = entries[i]
        arrays.append(_decode(read(), f"{path}/{rel}" if path.is_dir() else f"{path}:{rel}", size))
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        (h0, w0), (h1, w1) = sorted(shapes)[:2]
        raise UsageError(f"folder:{path}: images have different sizes ({w0}×{h0}, {w1}×{h1}, ...); pass size=N to "
                         "resize and centre-crop them to N×N")
    colour = any(a.ndim == 3 for a in arrays)
    if colour:
        images = np.stack([a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays])
        images = images.transpose(0, 3, 1, 2)
    else:
        images = np.stack(arrays)[:, None]
    out = {"images": np.ascontiguousarray(images)}
    if classes is not None:
        index = {c: j for j, c in enumerate(classes)}
        out["labels"] = np.array([index[stripped[i].parts[0]] for i in chosen], dtype=np.int64)
    return out, classes


def _load_folder(root: Path, split: str, cache: bool, arg: str | None, size: int | None) -> Dataset:
    assert arg is not None
    path = Path(arg).expanduser().resolve()
    if size is not None:
        size = check_positive_int(f"folder:{arg}", "size", size)
    entries, skipped, fingerprint, close = _list(path)
    if not entries:
        raise UsageError(f"folder:{path}: no PNG or JPEG images found"
                         + (f" (only {len(skipped)} other file(s))" if skipped else ""))
    key = {"path": str(path), "size": size, "split": split, "files": fingerprint}

    def build() -> dict[str, np.ndarray]:
        try:
            arrays, classes = _build(path, entries, skipped, split, size)
        finally:
            close()
        if classes is not None:
            arrays["classes"] = np.array(classes)
        return arrays

    arrays, hit = cached(root, f"folder-{path.name}-{split}", key, build, cache)
    names = arrays.pop("classes", None)
    classes = tuple(str(c) for c in names) if names is not None else None
    desc = f"images from {path}" + (f", resized and centre-cropped to {size}×{size}" if size else "")
    return as_dataset(f"folder:{arg}", split, arrays, hit, desc, classes)


SOURCES = (Source("folder", _load_folder, {"size": None}, "PNG/JPEG images from a directory or .zip", takes_arg=True),)
