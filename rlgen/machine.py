"""The machine a run uses: the device, the CPU's bf16 units and the autocast choice, and the process
settings the Atari agent changes (denormals flushed to zero, freed memory kept)."""

from __future__ import annotations

import torch

from rlgen.errors import UsageError


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
