"""Parsers for the datasets' original file formats, with errors that name the file and the fault.

* IDX (MNIST, Fashion-MNIST): a big-endian header ``0x00 0x00 <type> <ndim>``, ``ndim`` int32
  dimensions, then the values. Format described on http://yann.lecun.com/exdb/mnist/ (LeCun et al.
  1998); Fashion-MNIST reuses it (Xiao et al. 2017, arXiv:1708.07747). Files may be gzipped or not.
* CIFAR-10 python batches: a pickled dict with ``data`` (N×3072 uint8, the 1024 red values, then
  green, then blue, rows first) and ``labels`` (N ints), as documented on
  https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky 2009). They are read with an unpickler
  that only resolves the few NumPy names such a batch needs, so a hostile file cannot run code.

Every fault (truncated download, bad magic number, wrong size, checksum mismatch, unreadable pickle)
is a :class:`DataFileError`, never a silently shorter dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.errors import UsageError


class DataFileError(UsageError):
    """A dataset file is missing, truncated or corrupt: the message names the file and the fault."""


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 of a file: the checksum the dataset authors and mirrors publish (integrity, not security)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`DataFileError` unless the file's MD5 is ``expected``."""
    got = md5sum(path)
    if got != expected:
        raise DataFileError(f"{path}: checksum mismatch (MD5 {got}, expected {expected}); the file is corrupt, "
                            "truncated or not the original: delete it and download it again")


def read_maybe_gzip(path: str | os.PathLike) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic bytes."""
    data = Path(path).read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DataFileError(f"{path}: truncated gzip stream (the file ends before the end-of-stream marker; "
                            "an interrupted download?)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        raise DataFileError(f"{path}: corrupt gzip data ({err})") from None


# IDX type codes → NumPy dtypes (big-endian, as the format specifies).
IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, source: str | os.PathLike, ndim: int, type_code: int = 0x08) -> np.ndarray:
    """Decode one IDX file's (already gunzipped) bytes.

    ``ndim`` and ``type_code`` are what the caller expects (3 and 0x08 for MNIST images, i.e. magic
    0x00000803; 1 and 0x08 for labels, magic 0x00000801); any other header is a bad magic number.
    """
    if len(data) < 4:
        raise DataFileError(f"{source}: truncated IDX file ({len(data)} bytes, shorter than the 4-byte header)")
    magic = int.from_bytes(data[:4], "big")
    zeros, code, dims = data[:2], data[2], data[3]
    want = f"0x{(type_code << 8) | ndim:08x}"
    if zeros != b"\0\0" or code != type_code or dims != ndim:
        raise DataFileError(f"{source}: bad magic number 0x{magic:08x}, expected {want} "
                            "(not an IDX file of this kind, or the wrong file under this name)")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataFileError(f"{source}: truncated IDX header ({len(data)} bytes, need {header} for {dims} dims)")
    shape = struct.unpack(f">{dims}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have != need:
        what = "truncated" if have < need else "too long"
        raise DataFileError(f"{source}: wrong size, {what}: the header says {'×'.join(map(str, shape))} values "
                            f"({need} bytes of data) but the file holds {have}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike, ndim: int, type_code: int = 0x08) -> np.ndarray:
    """Read an IDX file from disk, gzipped or not (see :func:`parse_idx`)."""
    return parse_idx(read_maybe_gzip(path), path, ndim=ndim, type_code=type_code)


def _ndarray_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled NumPy array needs; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _ndarray_reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


CIFAR_IMAGE_BYTES = 3 * 32 * 32


def parse_cifar_batch(data: bytes, source: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch → images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    try:
        obj = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (EOFError, pickle.UnpicklingError) as err:
        if isinstance(err, pickle.UnpicklingError) and "truncated" not in str(err):
            raise DataFileError(f"{source}: not a readable CIFAR-10 pickle batch (UnpicklingError: {err})") from None
        raise DataFileError(f"{source}: truncated pickle (the file ends mid-record; an interrupted download "
                            "or extraction?)") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, UnicodeDecodeError, MemoryError) as err:
        raise DataFileError(f"{source}: not a readable CIFAR-10 pickle batch ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{source}: not a CIFAR-10 batch: the pickle holds a {type(obj).__name__}, "
                            "expected a dict with 'data' and 'labels'")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataFileError(f"{source}: not a CIFAR-10 batch: missing key(s) {', '.join(missing)} "
                            f"(found {', '.join(map(str, batch)) or 'none'})")
    pixels = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != CIFAR_IMAGE_BYTES:
        raise DataFileError(f"{source}: wrong size: 'data' is {pixels.dtype} {tuple(pixels.shape)}, "
                            f"expected uint8 (N, {CIFAR_IMAGE_BYTES})")
    if labels.ndim != 1 or len(labels) != len(pixels):
        raise DataFileError(f"{source}: wrong size: {len(pixels)} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFileError(f"{source}: labels outside 0..9 (found {labels.min()}..{labels.max()})")
    return pixels.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch file (see :func:`parse_cifar_batch`)."""
    return parse_cifar_batch(Path(path).read_bytes(), path)
