"""Seeding, device selection, RNG state capture, the bf16 autocast choice, the warm-up + cosine
learning-rate schedule and small file helpers."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from rlgen.errors import UsageError


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for the run's own draws."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available here; use --device cpu or auto")
        return torch.device(name)
    raise UsageError(f"--device {name!r} is not one of auto, cpu, cuda")



def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the kernel.

    A CNN update allocates and frees the same few megabytes of activations every step; glibc by default
    maps large blocks afresh each time, and the page faults that follow cost about a fifth of a batch-32
    Nature-CNN update on a CPU (``experiments/bench_atari100k.py --profile``). Only the allocator's thresholds
    change, never a number the run computes. Returns False where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's malloc.h
    return all((mallopt(m_mmap_threshold, 32 << 20), mallopt(m_trim_threshold, 1 << 30),
                mallopt(m_top_pad, 256 << 20)))


def flush_denormals() -> bool:
    """Make this thread, and every torch thread started after it, treat float32 numbers below 1.2e-38
    (denormals) as zero (the x86 FTZ and DAZ flags, with which TensorFlow runs its CPU threads).

    Adam's running averages of a weight whose gradient has stopped (a unit that no longer fires) decay
    geometrically and spend thousands of steps in the denormal range, where an x86 core computes many times
    slower: after 100k DrQ(ε) steps on Boxing a fifth of Adam's state was denormal and an update took 41 ms
    instead of 13 (``experiments/bench_atari100k.py --profile-state``). Divided by Adam's ε (1.5e-4 there)
    such numbers cannot move a weight of ordinary size. OpenMP's threads copy the flags when they are
    created, so call this before the first parallel torch op; threads already running keep theirs. Returns
    False where the CPU cannot.
    """
    return bool(torch.set_flush_denormal(True))


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for the machine line every benchmark prints."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX or AVX-512 BF16), where autocast speeds convolutions up."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, c, lambda: False)() for c in checks)


def use_amp(mode: str, device: torch.device) -> bool:
    """Whether to train under bfloat16 autocast: ``on``, ``off``, or ``auto`` (CUDA, or a CPU with bf16
    matrix units, where it makes the small convnets 1.4–3× faster)."""
    if mode not in ("auto", "on", "off"):
        raise UsageError(f"--amp {mode!r} is not one of auto, on, off")
    if mode != "auto":
        return mode == "on"
    return device.type == "cuda" or (device.type == "cpu" and bf16_cpu())


def warmup_cosine(progress: float, warmup: float, floor: float = 0.0) -> float:
    """Factor of the peak learning rate at ``progress`` in [0, 1]: a linear warm-up over the first ``warmup``
    of the run (never below ``floor``), then a cosine to zero (Loshchilov & Hutter 2017)."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, floor)
    t = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * t))

def rng_state(np_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Every RNG's state in a form ``torch.load(weights_only=True)`` accepts."""
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy_global": _to_plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np_rng is not None:
        state["numpy"] = _to_plain(np_rng.bit_generator.state)
    return state


def set_rng_state(state: dict[str, Any], np_rng: np.random.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(_from_plain(state["numpy_global"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if np_rng is not None and "numpy" in state:
        np_rng.bit_generator.state = _from_plain(state["numpy"])


def _to_plain(obj: Any) -> Any:
    """NumPy arrays become torch tensors so the safe unpickler accepts them."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(obj.copy())}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _from_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_plain(v) for v in obj]
    return obj


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for writing; on success fsync it and rename it over ``path``.

    A process killed mid-write leaves ``path`` as it was and, at worst, a stray ``.*.tmp`` file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide run files from the user's group
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
