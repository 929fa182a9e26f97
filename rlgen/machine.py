"""The machine a run uses: the device, the CPU's bf16 units and the autocast choice, and the process
settings the Atari agent changes (denormals flushed to zero, freed memory kept)."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

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


def malloc_defaults() -> bool:
    """Set glibc malloc's thresholds back to their documented defaults (128 KiB each; ``mallopt(3)``), undoing
    :func:`keep_freed_memory`. glibc's dynamic mmap threshold stays fixed at that value afterwards, as
    ``mallopt`` leaves it. Returns False where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all((mallopt(m_mmap_threshold, 128 << 10), mallopt(m_trim_threshold, 128 << 10),
                mallopt(m_top_pad, 128 << 10)))


def denormals_flushed() -> bool:
    """Whether this thread treats float32 denormals as zero (:func:`flush_denormals`), read from the arithmetic."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask (``taskset``, a batch scheduler's allocation), cut to a
    container's CPU quota (cgroup ``cpu.max``) where one is set; what ``--threads 0`` means."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


@dataclasses.dataclass
class ProcessState:
    """What a run changes in its process and gives back at its end: torch's CPU threads, the denormal flags of
    the calling thread and glibc malloc's thresholds. (OpenMP worker threads started during the run keep the
    denormal flags they copied when created: Python cannot reach them.)"""

    threads: int
    denormals_flushed: bool
    malloc_changed: bool = False

    @classmethod
    def capture(cls) -> ProcessState:
        return cls(torch.get_num_threads(), denormals_flushed())

    def keep_freed_memory(self) -> None:
        """:func:`keep_freed_memory`, remembered so that :meth:`restore` undoes it."""
        self.malloc_changed = keep_freed_memory() or self.malloc_changed

    def restore(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if denormals_flushed() != self.denormals_flushed:
            torch.set_flush_denormal(self.denormals_flushed)
        if self.malloc_changed:
            malloc_defaults()
            self.malloc_changed = False


def amx_cpu() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later)."""
    check = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else False


def describe(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where a run ran: library versions, Python, the CPU (model, usable cores, bf16 and AMX units), the device
    and its GPU. Results depend on all of them (float kernels differ per CPU kind)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("rlgen", "torch", "numpy", "gymnasium", "ale-py", "wandb"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available() else None
    return {"versions": versions, "python": platform.python_version(), "cpu": cpu_name(),
            "cores": available_cpus(), "bf16_units": bf16_cpu(), "amx": amx_cpu(), "device": str(device), "gpu": gpu}
