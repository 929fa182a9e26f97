"""What every generative model in :mod:`rlgen.gen` shares.

* **Data**: :func:`load_images` gives uint8 images at the size a model wants; :func:`binarize`
  turns them into {0, 1} pixels for Bernoulli likelihoods (a fixed threshold at 128 by default, so
  numbers compare across models and with published peer figures; ``stochastic`` draws each pixel
  with probability intensity/255, as Salakhutdinov & Murray 2008 and most papers do).
* **The sampler contract**: a trained model is an ``nn.Module`` with ``sample(n, generator=None)``
  returning float images in [0, 1], shape (n, C, H, W), on the CPU whatever the model's device (a
  caller saves or scores them without moving them). Models with a latent space also have
  ``latent_dim`` and ``decode(z)`` (same range), which latent walks use. All randomness comes
  from the ``torch.Generator`` passed in (a CPU one), so the same seed gives the same images.
* **Checkpoints**: each generative module (``vae``, ``gan``, ``pixelcnn``) defines
  ``sampler_from_checkpoint(ckpt, device)``; :func:`load_sampler` picks it by the checkpoint's
  ``algo``, so ``python -m rlgen.gen.generate`` samples from any of them.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal, Protocol

import numpy as np
import torch

from rlgen import checkpoint
from rlgen.data import load_dataset
from rlgen.errors import UsageError
from rlgen.images import resize
from rlgen.machine import available_cpus, pick_device

# Algorithm name in a checkpoint → the module that can rebuild its sampler.
SAMPLERS = {"vae": "rlgen.gen.vae", "gan": "rlgen.gen.gan", "pixelcnn": "rlgen.gen.pixelcnn"}

Binarize = Literal["threshold", "stochastic"]


class Sampler(Protocol):
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images, float (n, C, H, W) in [0, 1], on the CPU."""
        ...


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def binarize(images: torch.Tensor, mode: Binarize = "threshold",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images → float {0, 1}: ``x ≥ 128`` (threshold) or Bernoulli(x / 255) (stochastic)."""
    if images.dtype != torch.uint8:
        raise UsageError(f"binarize takes uint8 images, got {images.dtype}")
    if mode == "threshold":
        return (images >= 128).float()
    if mode == "stochastic":
        probs = images.float() / 255.0
        return torch.bernoulli(probs, generator=generator)
    raise UsageError(f"binarize mode {mode!r} is not one of threshold, stochastic")



def load_images(data: str, split: str, image_size: int | None = None,
                **options: Any) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...] | None]:
    """``(images, labels, classes)`` of one split, uint8 (N, C, S, S) at ``image_size`` (None: native).

    ``faces`` and ``folder:PATH`` are drawn or decoded at the requested size; other sources are
    resized here. An empty dataset is a :class:`UsageError`.
    """
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 4):
        raise UsageError(f"--image-size {image_size} is too small; use 4 or more pixels")
    native = data == "faces" or data.startswith("folder:")
    if native and image_size is not None:
        options.setdefault("size", image_size)
    ds = load_dataset(data, split, **options)
    if len(ds.images) == 0:
        raise UsageError(f"dataset {data!r} ({split}) has no images")
    images = ds.images if image_size is None else resize(ds.images, image_size)
    return images, ds.labels, ds.classes


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 → float in [0, 1]."""
    return images.float().div_(255.0)


def class_balanced_subset(labels: torch.Tensor | None, size: int, n: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` of ``size`` images, in split order: every class equally often (counts differ by at most
    one where each class has enough images), drawn from a generator seeded with ``seed``; a seeded random subset
    when there are no labels; all of them, in order, when ``n`` covers the split.

    The test splits are sorted by class, so their first ``n`` images would be a few classes only.
    """
    if n >= size:
        return torch.arange(size)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(size, generator=gen)
    if labels is None:
        return perm[:n].sort().values
    shuffled = labels[perm]
    rank = torch.empty(size, dtype=torch.long)  # each image's place among its class, in shuffled order
    for c in shuffled.unique():
        where = shuffled == c
        rank[where] = torch.arange(int(where.sum()))
    # The first image of every class, then the second of every class, ...: ties broken by the shuffle
    order = torch.argsort(rank * size + torch.arange(size))
    return perm[order[:n]].sort().values


# ---------------------------------------------------------------------------------------------
# Samplers from checkpoints
# ---------------------------------------------------------------------------------------------
def use_device(device: str, threads: int | None, default_threads: int) -> torch.device:
    """The shared ``--device`` and ``--threads`` flags of a command that trains nothing (``generate``,
    ``inception``), read as :class:`rlgen.lifecycle.Run` reads them for the training commands: torch's CPU threads
    (None: ``default_threads``; 0: every CPU this process may use), then the device (auto: CUDA when available)."""
    threads = default_threads if threads is None else threads
    torch.set_num_threads(threads or available_cpus())
    return pick_device(device)


def load_sampler(run_dir_or_file: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Sampler, dict]:
    """The sampler saved in a run folder (or checkpoint file), in eval mode, and its checkpoint."""
    ckpt = checkpoint.load(run_dir_or_file)
    algo = ckpt.get("algo")
    if algo not in SAMPLERS:
        raise UsageError(f"{checkpoint.checkpoint_path(run_dir_or_file)} holds a {algo!r} checkpoint, which cannot "
                         f"sample images; generators: {', '.join(SAMPLERS)}")
    module = importlib.import_module(SAMPLERS[algo])
    model = module.sampler_from_checkpoint(ckpt, torch.device(device))
    model.eval()
    return model, ckpt


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between Gaussian latents (White 2016, "Sampling generative networks").

    Keeps interpolants at the norm a Gaussian sample has, where straight lines would pass through
    the low-density centre. ``t`` has shape (T,); the result is (T, *z0.shape).
    """
    a, b = z0.flatten(), z1.flatten()
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    t = t.reshape(-1, *([1] * z0.dim()))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * z0 + torch.sin(t * omega) / so * z1


def latent_walk(model: Any, steps: int, frames_per_leg: int = 12,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Frames of a closed loop through ``steps`` random latents of a latent-variable model."""
    if not hasattr(model, "decode") or not hasattr(model, "latent_dim"):
        raise UsageError(f"{type(model).__name__} has no latent space to walk through; --interpolate needs a GAN "
                         "or a VAE checkpoint")
    if steps < 2:
        raise UsageError(f"--interpolate {steps}: a walk needs at least 2 latent points")
    device = next(model.parameters()).device
    shape = (model.latent_dim,) if isinstance(model.latent_dim, int) else tuple(model.latent_dim)
    zs = torch.randn(steps, *shape, generator=generator)
    t = torch.arange(frames_per_leg, dtype=torch.float32) / frames_per_leg
    path = torch.cat([slerp(zs[i], zs[(i + 1) % steps], t) for i in range(steps)])
    with torch.no_grad():
        return torch.cat([model.decode(chunk.to(device)).cpu() for chunk in path.split(256)])


# ---------------------------------------------------------------------------------------------
# Images out
# ---------------------------------------------------------------------------------------------
def to_uint8_frames(images: torch.Tensor) -> np.ndarray:
    """[0, 1] float (N, C, H, W) → uint8 (N, H, W, 3) frames."""
    arr = (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.repeat(arr, 3, axis=3) if arr.shape[3] == 1 else arr



