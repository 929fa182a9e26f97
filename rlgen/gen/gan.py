"""Generative adversarial networks: the original GAN, LSGAN and DCGAN.

A generator G maps noise z ~ N(0, I) to images; a discriminator D tells real images from G's.
They play the minimax game of Goodfellow et al. 2014 ("Generative adversarial nets", NeurIPS),
trained as in its Algorithm 1: ``--d-steps`` k updates of D, each on a fresh real batch and a
fresh noise batch, then one update of G on fresh noise.

Losses (D outputs a raw score s; σ is the logistic sigmoid):

* ``bce`` (Goodfellow et al. 2014): D minimises −log σ(s(x)) − log(1 − σ(s(G(z)))), G minimises
  the *non-saturating* −log σ(s(G(z))) (section 3 of the paper: log(1 − D(G(z))) saturates early
  in training, when D rejects every sample, while −log D(G(z)) still gives strong gradients).
* ``lsgan`` (Mao et al. 2017, "Least squares generative adversarial networks", ICCV), with the
  0-1 coding a = 0, b = c = 1: D minimises ½(s(x) − 1)² + ½ s(G(z))², G minimises ½(s(G(z)) − 1)².

``--label-smoothing 0.9`` replaces D's real target 1 by 0.9 (one-sided label smoothing, Salimans
et al. 2016, "Improved techniques for training GANs"); fake targets stay at 0.

Architectures:

* ``dcgan`` (Radford et al. 2015, "Unsupervised representation learning with deep convolutional
  generative adversarial networks", ICLR 2016): no pooling, only strided convolutions (4×4
  kernels, stride 2) in D and fractionally-strided ones in G, BatchNorm in every layer except
  G's output and D's input, ReLU in G with Tanh at the output, LeakyReLU(0.2) in D, weights drawn
  from N(0, 0.02), Adam with lr 2e-4 and β1 = 0.5. The first G layer projects z to a 4×4 map
  (a 4×4 transposed convolution of the 1×1 input, which is the paper's "matrix multiplication
  reshaped into a 4-dimensional tensor"); each further layer doubles the size, so G makes 2^k px
  images: 16, 32, 64 or 128. D mirrors G and ends in one 4×4 convolution to a single score. The
  paper draws z uniformly; here z is Gaussian so latent walks can use spherical interpolation.
* ``mlp``: fully connected G (z → w → 2w → 4w → pixels, LeakyReLU, Tanh) and D (pixels → 2w →
  w → 1), for flat images such as 28-px MNIST, in the spirit of the 2014 paper's MNIST model.

``--ema 0.999`` samples from an exponential moving average of G's weights rather than G itself
(Yazici et al. 2019, "The unusual effectiveness of averaging in GAN training", ICLR): the raw G
circles around an equilibrium and the average sits nearer its centre. A weight average has no
BatchNorm statistics of its own, so they are recomputed exactly from fresh noise batches each time
it is used (:func:`recalibrate_batchnorm`). Grids, the checkpoint's sampler and the scores all use
the average; ``fid_raw`` reports the raw G beside it. On ``faces`` after 8 minutes (3,483 steps) the
average scored 73 against the raw G's 83.

Beyond the paper, each a flag: the hinge loss (Lim & Ye 2017; Miyato et al. 2018), spectral normalization of D
(Miyato et al. 2018), DiffAugment of everything D sees (Zhao et al. 2020), the R1 penalty (Mescheder et al. 2018)
and two time-scales (Heusel et al. 2017). ``--recipe`` names a combination (RECIPES): ``dcgan`` is the paper's
training, ``modern`` (the default on ``faces`` and Fashion-MNIST) adds the hinge loss, DiffAugment's translation,
a light R1 penalty (γ 0.1) and the weight average, which measured best on faces for a fixed CPU budget
(experiments/bench_generative.py --only ablation, --only recipes) and beat the paper's training on Fashion-MNIST
too.

On the CPU the passes run in bfloat16 autocast where the CPU has bf16 matrix units (``--amp``) and
DCGAN's tensors are channels-last: with 2 threads a 128-image step then takes what a 64-image
float32 step took on one.

During training a grid of the sampler's images from a fixed noise batch is saved every ``--sample-every``
steps (``samples/step_NNNNNN.png``) and animated into ``training.gif`` at the end; D and G losses
and the mean scores D(x), D(G(z)) are logged and drawn in ``losses.png``. When the running mean of
D's loss stays within ``--collapse-threshold`` × its equilibrium value (2 log 2 for bce, ¼ for
lsgan) of the lowest loss D can reach (0, or the entropy of a smoothed label) for
``--collapse-patience`` steps, a warning is raised and ``d_collapsed`` is logged: D has won and G
gets almost no gradient. At the end, ``--fid-samples`` images are scored with
:func:`rlgen.gen.metrics.sample_quality` (a classifier-based Fréchet distance with its real-data
floor, and the entropy of the predicted classes).

    python -m rlgen.gen.gan --data mnist5k --loss bce --arch mlp
    python -m rlgen.gen.gan --data mnist5k --loss lsgan --arch mlp
    python -m rlgen.gen.gan --data mnist5k --arch dcgan            # resized to 32 px
    python -m rlgen.gen.gan --data faces                           # --recipe modern, 32 px, 20 min on 2 cores
    python -m rlgen.gen.gan --data folder:~/anime-faces.zip --arch dcgan --image-size 64 --device cuda
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rlgen import cli
from rlgen.augment import diff_augment, parse_diff_augment
from rlgen.data.grid import save_grid
from rlgen.encoders import encoder_record
from rlgen.errors import UsageError
from rlgen.files import atomic_open, atomic_write_bytes
from rlgen.gen.common import load_images
from rlgen.gen.inception import describe, inception_fid
from rlgen.gen.metrics import sample_quality
from rlgen.lifecycle import Run
from rlgen.machine import use_amp
from rlgen.nets import polyak_update, ramped_tau
from rlgen.nets.discriminator import Discriminator, dcgan_init
from rlgen.plots import moving_average, save_gif
from rlgen.seeding import seed_everything
from rlgen.track import RunArgs, Tracker

ALGO = "gan"
DCGAN_SIZES = (16, 32, 64, 128)
STATS = ("d_loss", "g_loss", "d_real", "d_fake")  # one row of the per-step history


@dataclass
class Args(RunArgs):
    THREADS: ClassVar[int] = 2  # dcgan's; the mlp's is 1 (the DEFAULTS table below)

    data: str = "mnist5k"
    """training images: mnist5k, faces, folder:PATH (a directory or .zip of images), or any rlgen dataset"""
    recipe: str | None = None
    """dcgan: the published DCGAN training (Radford et al. 2015) with the per-data defaults; modern: the same
    networks with the hinge loss, DiffAugment's translation, R1 (γ 0.1) and the weight average, what measured
    best on faces (RECIPES) (default: modern on faces and Fashion-MNIST, dcgan elsewhere). Flags you give beat the
    recipe's"""
    loss: Literal["bce", "lsgan", "hinge"] | None = None
    """bce: non-saturating GAN loss (Goodfellow et al. 2014); lsgan: least squares (Mao et al. 2017); hinge
    (Lim & Ye 2017; Miyato et al. 2018) (default: the recipe's)"""
    spectral_norm: bool | None = None
    """spectral normalization of every D layer (Miyato et al. 2018), which then has no BatchNorm (default: the
    recipe's)"""
    diffaugment: str | None = None
    """DiffAugment policy for what D sees, real and generated alike (Zhao et al. 2020): comma-separated color,
    translation, cutout, or none (default: the recipe's)"""
    r1: float | None = None
    """R1 penalty weight γ: γ/2·E‖∇D(x)‖² on real images (Mescheder et al. 2018); 0: off (default: the recipe's)"""
    r1_every: int = 16
    """apply R1 every this many D updates, scaled up to match (lazy regularization, Karras et al. 2020)"""
    arch: Literal["mlp", "dcgan"] | None = None
    """mlp (flat images) or dcgan (Radford et al. 2015) (default: per dataset)"""
    image_size: int | None = None
    """training image size in px; dcgan makes 16, 32, 64 or 128 (default: per dataset)"""
    latent_dim: int = 100
    """size of the noise vector z ~ N(0, I)"""
    width: int | None = None
    """dcgan: channels of G's last and D's first layer (64 in the paper); mlp: hidden width w (default: per data)"""
    lr: float | None = None
    """Adam learning rate of both networks (default: 2e-4, as in DCGAN)"""
    lr_g: float | None = None
    """G's learning rate; with --lr-d, two time-scales (Heusel et al. 2017) (default: --lr)"""
    lr_d: float | None = None
    """D's learning rate (default: --lr)"""
    beta1: float | None = None
    """Adam β1 (0.5 in DCGAN: the default 0.9 oscillates) (default: the recipe's)"""
    beta2: float | None = None
    """Adam β2 (default: the recipe's)"""
    batch_size: int | None = None
    """images per batch, real and generated alike (default: per data)"""
    d_steps: int = 1
    """discriminator updates per generator update (k in Goodfellow et al.'s Algorithm 1)"""
    label_smoothing: float | None = None
    """D's target for real images: 1 is none, 0.9 is one-sided label smoothing (Salimans et al. 2016) (default: per
    data)"""
    total_steps: int | None = None
    """generator updates (default: per dataset)"""
    epochs: float | None = None
    """train for this many passes over the data instead of --total-steps (D sees k real batches per step;
    default: --total-steps decides)"""
    minutes: float | None = None
    """wall-clock training budget in minutes (the training loop, grids and checkpoints included; not data loading
    or the final scoring): stop at the first step boundary past it (default: per dataset)"""
    sample_every: int | None = None
    """save the fixed-noise sample grid every this many steps (default: about 25 grids per run)"""
    log_every: int = 50
    """generator updates between logged rows: each logs the mean losses and scores of the updates since the last"""
    checkpoint_every: int = 500
    """generator updates (optimizer steps of G) between checkpoints (0: only at the end)"""
    fid_samples: int = 1000
    """images scored by the classifier Fréchet distance at the end (0: skip)"""
    collapse_threshold: float = 0.05
    """warn when D's running-mean loss stays below this fraction of its equilibrium value (0: never)"""
    collapse_patience: int = 200
    """steps the running mean must stay below --collapse-threshold before the warning"""
    ema: float | None = None
    """Polyak-average G's weights with this decay and sample from the average (Yazici et al. 2019); 0: the raw G
    (default: per data)"""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast for the networks' passes (auto: on CUDA and on CPUs with bf16 matrix units); losses and
    statistics stay float32"""
    inception_samples: int = 0
    """also score this many samples with the standard FID (Inception-v3 features, rlgen.gen.inception) against as
    many real training images; 0: off. About 0.1 s per image on a 2-core CPU; the real statistics are cached"""
    fid_every: int = 0
    """also score --fid-samples images every this many steps and log fid (and fid_raw with --ema); 0: only at the end.
    The scoring time is not counted in --minutes"""

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        return {"threads": "2 for dcgan, 1 for mlp"}


# What a continued run (--resume) may change: its budget, cadences and the scoring at the end.
RESUME_CHANGEABLE = frozenset({"total_steps", "epochs", "minutes", "checkpoint_every", "log_every", "sample_every",
                               "fid_every", "fid_samples", "inception_samples"})


# Defaults in one table, most specific last: every dataset, the architecture, the dataset (the part
# before ':' for folder:PATH), then the dataset with that architecture. Budgets are measured on one
# shared CPU core (see the module docstring commands); a GPU finishes the same steps far sooner.
DEFAULTS: dict[str, dict[str, Any]] = {
    "*": dict(arch="dcgan", lr=2e-4, label_smoothing=1.0, minutes=None, ema=0.0, recipe="dcgan"),
    "mlp": dict(image_size=None, width=128, batch_size=64, total_steps=10_000, threads=1),
    # 2 threads: 1.5× the images per second of one on the 2-core reference machine (1 for the small MLPs)
    "dcgan": dict(image_size=64, width=64, batch_size=128, total_steps=10_000, threads=2),
    "mnist5k": dict(arch="mlp"),
    "mnist5k/mlp": dict(total_steps=8_000, minutes=5.0),
    "mnist5k/dcgan": dict(image_size=32, width=32, batch_size=64, total_steps=2_000, minutes=5.0),
    "faces": dict(arch="dcgan", image_size=32),
    "faces/mlp": dict(total_steps=15_000, minutes=10.0),
    # faces: one-sided smoothing (Fréchet distance 83 against 122 without it); weight averaging (73 against 83 for
    # the raw G after the same 8 minutes, see the module docstring); bf16 + channels-last + 2 threads make a
    # 128-image step cost what a 64-image fp32 step on one thread did
    # (label smoothing serves --recipe dcgan: the hinge loss of the default recipe has no target to smooth)
    "faces/dcgan": dict(width=32, batch_size=128, label_smoothing=0.9, ema=0.999, total_steps=20_000, minutes=20.0,
                        recipe="modern"),
    "folder/dcgan": dict(image_size=64, width=64, batch_size=128, total_steps=20_000),
    # Fashion-MNIST as faces: DCGAN makes 2^k px, so the 28 px images are resized to 32
    "fashion-mnist": dict(arch="dcgan", image_size=32),
    # --recipe modern: classifier Fréchet distance 18.0 against 34.1 for dcgan after 10 minutes (floor 9.6)
    "fashion-mnist/dcgan": dict(width=32, batch_size=128, label_smoothing=0.9, ema=0.999, total_steps=20_000,
                                minutes=10.0, recipe="modern"),
}
RESOLVED = ("arch", "image_size", "width", "lr", "label_smoothing", "batch_size", "total_steps", "minutes", "ema",
            "threads", "recipe")
# Each recipe, over the table above: "dcgan" is the published training (and the per-data defaults above); "modern"
# is what measured best on faces at a fixed CPU budget (experiments/bench_generative.py, seed 0): DiffAugment's
# translation alone on what D sees (classifier Fréchet distance 20.2 against 46.4 without it after 8 minutes, where
# all three of its ops gave 64.2), the hinge loss (18.5 at 8 minutes; 13.6 against 14.7 for bce at 20,000 steps),
# the weight average (25.8 without it) and R1 with γ 0.1 (18.0 at 8 minutes; 10.0 against 13.6 at 20 minutes: it
# keeps the hinge D from driving its loss to ~0.04 late in the run). Spectral norm in D, on top, gave 51.4.
RECIPES: dict[str, dict[str, Any]] = {
    "dcgan": dict(loss="bce", spectral_norm=False, diffaugment="none", r1=0.0, beta1=0.5, beta2=0.999),
    "modern": dict(loss="hinge", spectral_norm=False, diffaugment="translation", r1=0.1, beta1=0.5, beta2=0.999,
                   label_smoothing=1.0, ema=0.999),
}
RECIPE_FIELDS = ("loss", "spectral_norm", "diffaugment", "r1", "beta1", "beta2", "label_smoothing", "ema")


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def bce_d_loss(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """D's loss from raw scores: −[t log σ(s_r) + (1 − t) log(1 − σ(s_r))] − log(1 − σ(s_f)), batch means.

    ``real_target`` t < 1 is one-sided label smoothing; computed from logits for numerical stability.
    """
    return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_target))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def bce_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss −log σ(s(G(z))) (Goodfellow et al. 2014, section 3)."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """½ E[(s(x) − b)²] + ½ E[(s(G(z)) − a)²] with a = 0 and b = ``real_target`` (Mao et al. 2017, eq. 2)."""
    return 0.5 * (real - real_target).pow(2).mean() + 0.5 * fake.pow(2).mean()


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """½ E[(s(G(z)) − c)²] with c = 1 (Mao et al. 2017, eq. 2)."""
    return 0.5 * (fake - 1.0).pow(2).mean()


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """E[max(0, 1 − s(x))] + E[max(0, 1 + s(G(z)))] (Lim & Ye 2017; Miyato et al. 2018, eq. 16). Label smoothing
    has no meaning here: ``real_target`` must be 1."""
    if real_target != 1.0:
        raise UsageError(f"--label-smoothing {real_target:g}: the hinge loss has no target to smooth; use 1")
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """−E[s(G(z))] (Miyato et al. 2018, eq. 17)."""
    return -fake.mean()


def r1_penalty(d: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """½·E‖∇ₓ D(x)‖² over the real batch (Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs do
    actually converge?", eq. 9, without its γ); differentiable in D's weights (a double backward)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


LOSSES = {"bce": (bce_d_loss, bce_g_loss), "lsgan": (lsgan_d_loss, lsgan_g_loss), "hinge": (hinge_d_loss, hinge_g_loss)}
# D's loss when it cannot tell real from fake (D = ½ everywhere for bce, s = ½ for lsgan, s = 0 for hinge).
EQUILIBRIUM_D_LOSS = {"bce": 2 * math.log(2), "lsgan": 0.25, "hinge": 2.0}
# What a collapsed D means under each loss, and what to try: the hinge loss keeps G's gradient (−∇D(G(z)) does not
# saturate), so there the risk is a D that has memorised the training images
COLLAPSE_ADVICE = {
    "bce": "G now gets little gradient. Try --loss lsgan, --label-smoothing 0.9 or a lower --lr",
    "lsgan": "G now gets little gradient. Try --label-smoothing 0.9 or a lower --lr",
    "hinge": "D separates real from generated images by its whole margin and may be memorising the training "
             "images. Try more DiffAugment (--diffaugment translation,cutout), --r1 0.1 or a lower --lr-d",
}


def d_loss_floor(loss: str, real_target: float) -> float:
    """The lowest loss D can reach: with a smoothed real target t the bce real term cannot go below the
    binary entropy −t log t − (1 − t) log(1 − t); lsgan reaches 0 with s(x) = t, hinge with margins of 1. The
    collapse rule measures above it."""
    if loss != "bce" or real_target >= 1.0:
        return 0.0
    t = real_target
    return -(t * math.log(t) + (1 - t) * math.log(1 - t))


def d_score(out: torch.Tensor, loss: str) -> torch.Tensor:
    """What D says about a batch, on the scale its loss uses: the probability σ(s) for bce, s for lsgan and hinge."""
    return torch.sigmoid(out) if loss == "bce" else out


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
def dcgan_generator(latent_dim: int, channels: int, size: int, width: int) -> nn.Sequential:
    """z (n, latent_dim, 1, 1) → (n, channels, size, size) in [−1, 1]: project to 4×4, then double to ``size``."""
    n_up = int(math.log2(size)) - 2  # stride-2 layers after the 4×4 projection
    ch = width * 2 ** (n_up - 1)
    layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch),
                               nn.ReLU(True)]
    for _ in range(n_up - 1):
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]  # no BatchNorm at the output
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """G: z (n, latent_dim) → images (n, C, H, W) in [−1, 1]; the sampler contract of :mod:`rlgen.gen.common`."""

    def __init__(self, arch: str, latent_dim: int, image_shape: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.arch, self.latent_dim, self.image_shape = arch, int(latent_dim), tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        if arch == "dcgan":
            self.net = dcgan_generator(self.latent_dim, c, h, width)
            self.apply(dcgan_init)
        else:
            # BatchNorm in G's hidden layers, the DCGAN lesson carried over: without it the pixels stay speckled
            self.net = nn.Sequential(
                nn.Linear(self.latent_dim, width), nn.BatchNorm1d(width), nn.LeakyReLU(0.2, True),
                nn.Linear(width, 2 * width), nn.BatchNorm1d(2 * width), nn.LeakyReLU(0.2, True),
                nn.Linear(2 * width, 4 * width), nn.BatchNorm1d(4 * width), nn.LeakyReLU(0.2, True),
                nn.Linear(4 * width, c * h * w), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        if self.arch == "dcgan":
            return self.net(z.reshape(n, self.latent_dim, 1, 1))
        return self.net(z.reshape(n, self.latent_dim)).reshape(n, *self.image_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (n, latent_dim) → images in [0, 1]."""
        return (self(z) + 1.0) / 2.0

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in [0, 1]; the noise is drawn on the CPU from ``generator``, so a seed fixes them."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator)
        return torch.cat([self.decode(chunk.to(device)).cpu() for chunk in z.split(500)])


def sampler_from_checkpoint(ckpt: dict[str, Any], device: torch.device) -> Generator:
    """The trained generator of a ``gan`` checkpoint (its weight average when trained with ``--ema``), on
    ``device``, in eval mode (BatchNorm running stats)."""
    a = ckpt["args"]
    model = Generator(a["arch"], a["latent_dim"], tuple(ckpt["image_shape"]), a["width"])
    model.load_state_dict(ckpt.get("ema_generator") or ckpt["generator"])
    return model.to(device).eval()


@torch.no_grad()
def recalibrate_batchnorm(model: Generator, batches: int = 16, batch_size: int = 128, seed: int = 0) -> Generator:
    """Set every BatchNorm's running statistics to the exact mean over ``batches`` fresh noise batches.

    A weight average has no statistics of its own: the ones copied from the raw G describe other
    weights' activations. The noise comes from its own seeded generator, so this is deterministic
    and leaves every training random stream alone. Returns ``model`` in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts equally
    model.train()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches if norms else 0):
        model(torch.randn(batch_size, model.latent_dim, generator=gen).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Training helpers
# ---------------------------------------------------------------------------------------------
class CollapseMonitor:
    """Flags a discriminator that has won: the running mean of its loss below ``threshold`` for ``patience`` steps."""

    def __init__(self, threshold: float, patience: int, alpha: float = 0.02) -> None:
        self.threshold, self.patience, self.alpha = threshold, patience, alpha
        self.mean: float | None = None
        self.below = 0
        self.collapsed_at: int | None = None

    @property
    def collapsed(self) -> bool:
        return self.below >= self.patience

    def update(self, d_loss: float, step: int) -> bool:
        """Feed one step's D loss; True the first time the collapse rule fires."""
        self.mean = d_loss if self.mean is None else (1 - self.alpha) * self.mean + self.alpha * d_loss
        self.below = self.below + 1 if self.mean < self.threshold else 0
        if self.collapsed and self.collapsed_at is None:
            self.collapsed_at = step
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "below": self.below, "collapsed_at": self.collapsed_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.below, self.collapsed_at = state["mean"], state["below"], state["collapsed_at"]


class Batches:
    """Shuffled batches of uint8 images without replacement, reshuffled each pass (the last partial batch
    is dropped); its whole state (generator, permutation, position) goes into checkpoints."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int) -> None:
        self.images, self.batch_size = images, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(images), generator=self.gen)
        self.pos = 0

    def next(self) -> torch.Tensor:
        """The next batch, as floats in [−1, 1] on the images' device."""
        if self.pos + self.batch_size > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.images), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch_size].to(self.images.device)
        self.pos += self.batch_size
        return self.images[idx].float().div_(127.5).sub_(1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.perm, self.pos = state["perm"], state["pos"]


def save_loss_curves(path: Path, history: np.ndarray, loss: str, collapse_line: float | None,
                     title: str) -> Path:
    """Two panels: D and G losses per step, and the mean scores D(x), D(G(z)); raw (faint) and smoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(history) + 1)
    window = max(1, min(200, len(history) // 25))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for ax, cols, ylabel in ((axes[0], (0, 1), "loss"), (axes[1], (2, 3), "σ(D)" if loss == "bce" else "D")):
        for col, colour in zip(cols, ("tab:blue", "tab:orange")):
            label = {"d_loss": "D loss", "g_loss": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))"}[STATS[col]]
            ax.plot(steps, history[:, col], color=colour, alpha=0.2, linewidth=0.6)
            ax.plot(steps, moving_average(history[:, col], window), color=colour, linewidth=1.5,
                    label=f"{label} (mean of {window})")
        ax.set_xlabel("generator step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if collapse_line:
        axes[0].axhline(collapse_line, color="tab:red", linestyle="--", linewidth=1, label="collapse threshold")
    for ax in axes:
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path) as fh:  # a reader never sees half a picture
        fig.savefig(fh, format="png")
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------
def defaults_for(data: str, arch: str | None) -> dict[str, Any]:
    """The per-data table, flattened for ``data`` and ``arch`` (None: the data's default architecture)."""
    key = data.split(":", 1)[0]
    arch = arch or {**DEFAULTS["*"], **DEFAULTS.get(key, {})}["arch"]
    return {**DEFAULTS["*"], **DEFAULTS[arch], **DEFAULTS.get(key, {}), **DEFAULTS.get(f"{key}/{arch}", {}),
            "arch": arch}


def resolve(args: Args) -> Args:
    """Fill per-data defaults and make the checks the generic ranges (:func:`rlgen.cli.check_numbers`) cannot, before
    anything is written."""
    table = defaults_for(args.data, args.arch)
    recipe = args.recipe or table["recipe"]
    if recipe not in RECIPES:
        raise UsageError(f"--recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    table = {**table, **RECIPES[recipe], "recipe": recipe}
    smoothing_given = args.label_smoothing
    args = dataclasses.replace(args, **{k: (getattr(args, k) if getattr(args, k) is not None else table[k])
                                        for k in (*RESOLVED, *RECIPE_FIELDS)})
    args = dataclasses.replace(args, lr_g=args.lr_g or args.lr, lr_d=args.lr_d or args.lr,
                               diffaugment=",".join(parse_diff_augment(args.diffaugment)) or "none")
    if args.loss == "hinge":
        if smoothing_given not in (None, 1.0):
            raise UsageError(f"--label-smoothing {smoothing_given:g}: the hinge loss has no target to smooth; "
                             "it takes 1 (none)")
        args = dataclasses.replace(args, label_smoothing=1.0)  # a data default made for bce does not carry over
    if args.arch == "dcgan" and args.image_size not in DCGAN_SIZES:
        raise UsageError(f"--image-size {args.image_size}: the dcgan generator doubles a 4×4 map per layer, so it "
                         f"makes {', '.join(map(str, DCGAN_SIZES))} px images; pick one (or --arch mlp)")
    if args.image_size is not None and args.image_size < 4:
        raise UsageError(f"--image-size {args.image_size} is too small; use 4 or more pixels")
    if args.arch == "dcgan" and args.width * 2 ** (int(math.log2(args.image_size)) - 3) > 8192:
        raise UsageError(f"--width {args.width} is too wide for {args.image_size} px (G's first layer would have "
                         "more than 8192 channels)")
    return args


def load_training_images(args: Args) -> torch.Tensor:
    """uint8 (N, C, S, S) training images at the run's size (native size for mlp without --image-size)."""
    images, _, _ = load_images(args.data, "train", args.image_size)
    if images.shape[-1] != images.shape[-2]:
        raise UsageError(f"{args.data} images are {images.shape[-1]}×{images.shape[-2]}; pass --image-size N to "
                         "resize and centre-crop them to N×N")
    if len(images) < args.batch_size:
        raise UsageError(f"{args.data} has {len(images)} training images, fewer than --batch-size {args.batch_size}")
    return images


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def resolve_budget(args: Args, run: Run, images: torch.Tensor) -> Args:
    """The sizes and budget that depend on the loaded images: the mlp's native size, --epochs as steps, the grid
    cadence."""
    n_images = len(images)
    if args.image_size is None:  # mlp at the native size: record it, so the checkpoint says what G makes
        args = dataclasses.replace(args, image_size=int(images.shape[-1]))
    # --epochs sets the budget on a new run, or when a resume changes it; else --total-steps (saved, or a new one)
    if args.epochs is not None and (run.ckpt is None or args.epochs != run.ckpt["args"].get("epochs")):
        args = dataclasses.replace(args, total_steps=max(1, math.ceil(args.epochs * n_images
                                                                      / (args.batch_size * args.d_steps))))
    if args.sample_every is None:  # fixed at the first budget, so a longer resumed run keeps the grid cadence
        args = dataclasses.replace(args, sample_every=max(1, args.total_steps // 25))
    return args


@dataclass
class Training:
    """Everything the training loop reads and changes: the networks and their optimisers, the random streams, the
    counters and the per-step history (STATS rows). ``pending`` holds per-step stats still on the device, so there
    is one device sync per log rather than per step."""

    args: Args
    run: Run
    device: torch.device
    amp: bool
    layout: torch.memory_format  # channels-last for dcgan (oneDNN's preferred layout)
    image_shape: tuple[int, int, int]
    n_images: int
    G: Generator
    D: Discriminator
    averaged: Generator | None  # the weight average (--ema), or None
    g_opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer
    ops: tuple[str, ...]  # DiffAugment's ops
    aug_gen: torch.Generator  # DiffAugment's draws: their own seeded stream
    batches: Batches
    noise: torch.Generator  # z on the CPU: the same numbers on any device
    fixed_z: torch.Tensor  # the noise of the sample grids
    monitor: CollapseMonitor
    floor: float  # the lowest loss D can reach
    step: int = 0
    images_seen: int = 0
    last_log: int = 0
    history: list[list[float]] = dataclasses.field(default_factory=list)
    pending: list[torch.Tensor] = dataclasses.field(default_factory=list)

    @property
    def grid_dir(self) -> Path:
        return self.run.run_dir / "samples"


def build_training(run: Run, args: Args, images: torch.Tensor, amp: bool) -> Training:
    """Networks, optimisers, data order and noise, seeded; on a resume, their saved state and counters."""
    device = run.device
    layout = torch.channels_last if args.arch == "dcgan" else torch.contiguous_format
    image_shape = tuple(int(s) for s in images.shape[1:])
    seed_everything(args.seed)
    G = Generator(args.arch, args.latent_dim, image_shape, args.width).to(device, memory_format=layout)
    D = Discriminator(args.arch, image_shape, args.width, bool(args.spectral_norm)).to(device, memory_format=layout)
    run.record(encoder_record=encoder_record(
        "gan_discriminator", image_shape, "signed", "discriminator",
        kwargs={"arch": args.arch, "width": args.width, "spectral_norm": bool(args.spectral_norm)},
        description=f"GAN ({args.arch}) discriminator without its last layer"))
    averaged = copy.deepcopy(G).requires_grad_(False) if args.ema else None
    t = Training(
        args=args, run=run, device=device, amp=amp, layout=layout, image_shape=image_shape,  # type: ignore[arg-type]
        n_images=len(images), G=G, D=D, averaged=averaged,
        g_opt=torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2)),
        d_opt=torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2)),
        ops=parse_diff_augment(args.diffaugment), aug_gen=torch.Generator().manual_seed(args.seed + 6),
        batches=Batches(images.to(device), args.batch_size, seed=args.seed + 1),
        noise=torch.Generator().manual_seed(args.seed + 2),
        fixed_z=torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed + 3)),
        monitor=CollapseMonitor(args.collapse_threshold * EQUILIBRIUM_D_LOSS[args.loss], args.collapse_patience),
        floor=d_loss_floor(args.loss, args.label_smoothing))
    ema = {"ema_generator": averaged} if averaged is not None else {}
    t.step, t.images_seen, t.last_log, saved_history = run.restore(
        generator=G, discriminator=D, **ema, g_optimizer=t.g_opt, d_optimizer=t.d_opt, batches=t.batches,
        noise=t.noise, aug_rng=t.aug_gen, monitor=t.monitor,
        counters=dict(step=0, images_seen=0, last_log=0, history=torch.zeros(0, 4)))
    t.history = saved_history.tolist()
    return t


def seen_by_d(t: Training, x: torch.Tensor) -> torch.Tensor:
    """What D is shown: the images, through DiffAugment when the run has a policy."""
    return diff_augment(x, t.ops, t.aug_gen).contiguous(memory_format=t.layout) if t.ops else x


def train_step(t: Training) -> None:
    """One step of Algorithm 1: ``--d-steps`` updates of D, each on a fresh real batch and fresh noise, then one
    update of G on fresh noise; then the weight average, and the step's stats into ``pending``."""
    args, device = t.args, t.device
    d_loss_fn, g_loss_fn = LOSSES[args.loss]
    for k in range(args.d_steps):
        real = seen_by_d(t, t.batches.next().contiguous(memory_format=t.layout))
        z = torch.randn(args.batch_size, args.latent_dim, generator=t.noise).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp):
            with torch.no_grad():
                fake = seen_by_d(t, t.G(z))
            real_out, fake_out = t.D(real).float(), t.D(fake).float()
        d_loss = d_loss_fn(real_out, fake_out, args.label_smoothing)
        t.d_opt.zero_grad(set_to_none=True)
        if args.r1 and (t.step * args.d_steps + k) % args.r1_every == 0:
            # in float32: the penalty is a gradient of a gradient, too fine for bf16
            (args.r1 * args.r1_every * r1_penalty(t.D, real.float())).backward()
        d_loss.backward()
        t.d_opt.step()
        t.images_seen += args.batch_size
    # D's weights need no gradient in G's update
    z = torch.randn(args.batch_size, args.latent_dim, generator=t.noise).to(device)
    t.D.requires_grad_(False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp):
        g_out = t.D(seen_by_d(t, t.G(z))).float()
    g_loss = g_loss_fn(g_out)
    t.g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    t.g_opt.step()
    t.D.requires_grad_(True)
    t.step += 1
    if t.averaged is not None:
        polyak_update(t.averaged, t.G, ramped_tau(args.ema, t.step))
    with torch.no_grad():
        t.pending.append(torch.stack([d_loss.detach(), g_loss.detach(), d_score(real_out, args.loss).mean(),
                                      d_score(fake_out, args.loss).mean()]))


def flush(t: Training) -> None:
    """Move pending stats into the history and feed the collapse monitor (which warns once when D has won)."""
    if not t.pending:
        return
    rows = torch.stack(t.pending).cpu().tolist()
    t.pending.clear()
    args, monitor, floor = t.args, t.monitor, t.floor
    for row in rows:
        t.history.append(row)
        s = len(t.history)
        if monitor.update(row[0] - floor, s) and args.collapse_threshold > 0:
            warnings.warn(f"GAN: the discriminator's loss collapsed (running mean {monitor.mean + floor:.3g}, "
                          f"less than {monitor.threshold:.3g} above its lowest possible value {floor:.3g}, for "
                          f"{args.collapse_patience} steps, at step {s}); {COLLAPSE_ADVICE[args.loss]}",
                          RuntimeWarning, stacklevel=2)


def log_window(t: Training, tracker: Tracker) -> None:
    """Log the means of the steps since the last log."""
    flush(t)
    means = dict(zip(STATS, np.asarray(t.history[t.last_log:t.step]).mean(0).tolist()))
    tracker.log({**{f"train/{k}": v for k, v in means.items()}, "train/d_loss_running": t.monitor.mean + t.floor,
                 "train/d_collapsed": int(t.monitor.collapsed), "train/epoch": t.images_seen / t.n_images}, t.step)
    t.last_log = t.step


def sampler(t: Training) -> Generator:
    """What samples are drawn from, in eval mode: the weight average with its own BatchNorm statistics, or G with
    its running ones. The caller puts G back in training mode."""
    if t.averaged is None:
        return t.G.eval()
    return recalibrate_batchnorm(t.averaged, seed=t.args.seed + 5)


def save_checkpoint(t: Training) -> None:
    flush(t)
    if t.averaged is not None:  # the saved average carries its own BatchNorm statistics
        recalibrate_batchnorm(t.averaged, seed=t.args.seed + 5)
    t.run.save(t.step, image_shape=list(t.image_shape), images_seen=t.images_seen, last_log=t.last_log,
               history=torch.tensor(t.history, dtype=torch.float64).reshape(-1, 4))


def save_fixed_grid(t: Training, tracker: Tracker) -> Path:
    """The sampler's images of the fixed noise, as ``samples/step_NNNNNN.png``."""
    was_training = t.G.training
    with torch.no_grad():  # the final sampler's weights and statistics: the grid shows what it will give
        imgs = sampler(t).decode(t.fixed_z.to(t.device)).cpu()
    t.G.train(was_training)
    path = save_grid(t.grid_dir / f"step_{t.step:06d}.png", imgs, nrow=8,
                     title=f"{t.args.arch} {t.args.loss}, step {t.step}")
    tracker.log_image("samples", path, step=t.step)
    return path


def score_samples(t: Training, progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """sample_quality of --fid-samples images from the sampler (always the same noise), plus ``fid_raw``, the raw
    G's distance, when the sampler is the weight average; {} for data without labels. ``progress(1)`` is called
    after each generator scored."""
    was_training = t.G.training
    quality = score_generator(t.args, sampler(t), progress) or {}
    if quality and t.averaged is not None:
        raw = score_generator(t.args, t.G.eval(), progress)
        quality["fid_raw"] = raw["fid"] if raw else None
    t.G.train(was_training)
    return quality


def score_generator(args: Args, model: Generator, progress: Callable[[int], Any] | None) -> dict[str, Any] | None:
    """sample_quality of --fid-samples images of ``model`` from the scoring noise; ``progress(1)`` after."""
    images = model.sample(args.fid_samples, generator=torch.Generator().manual_seed(args.seed + 4))
    quality = sample_quality(args.data, images, args.image_size, n=args.fid_samples)
    if progress is not None:
        progress(1)
    return quality


def save_final_pictures(t: Training, tracker: Tracker) -> None:
    """``samples.png`` (the last grid), ``training.gif`` (up to about 60 grids) and ``losses.png``."""
    args, run, step = t.args, t.run, t.step
    grids = sorted(t.grid_dir.glob("step_*.png"))
    final = [p for p in grids if int(p.stem.split("_")[1]) <= step]  # not those of a longer run killed here
    samples_png = run.run_dir / "samples.png"
    atomic_write_bytes(samples_png, final[-1].read_bytes())
    tracker.log_image("samples_final", samples_png, step=step)
    keep = final[:: max(1, math.ceil(len(final) / 60))]
    if keep[-1] != final[-1]:
        keep.append(final[-1])
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in keep]
    gif = save_gif(run.run_dir / "training.gif", frames, fps=4)
    # Pictures go to the last training step: W&B's own next step would run ahead of it and drop the quality
    # metrics logged at that step.
    tracker.log_video("training", gif, step=step)
    curves = save_loss_curves(run.run_dir / "losses.png", history_array(t), args.loss,
                              t.monitor.threshold + t.floor if args.collapse_threshold > 0 else None,
                              f"GAN ({args.loss}, {args.arch}) on {args.data}, {args.image_size} px, "
                              f"seed {args.seed}")
    tracker.log_image("losses", curves, step=step)


def final_scores(t: Training, tracker: Tracker) -> dict[str, Any]:
    """The classifier Fréchet distance of --fid-samples images and, with --inception-samples, the standard FID,
    each with its own progress bar; logged at the last step."""
    args = t.args
    quality: dict[str, Any] = {}
    if args.fid_samples:
        what = f"Fréchet distance of {args.fid_samples:,} samples"
        bar = tracker.progress(2 if t.averaged is not None else 1, unit="generator",
                               desc=f"{ALGO} final evaluation ({what})")
        quality = score_samples(t, bar.update)
        bar.close()
    if args.inception_samples:
        images = sampler(t).sample(args.inception_samples, generator=torch.Generator().manual_seed(args.seed + 7))
        bar = tracker.progress(3 * args.inception_samples, unit="image",
                               desc=f"{ALGO} final evaluation (Inception FID, {args.inception_samples:,} "
                                    "samples and as many real train and test images)")
        quality.update(inception_fid(args.data, images, args.image_size, args.inception_samples,
                                     progress=bar.update))
        bar.close()
    if quality:
        tracker.log({f"eval/{k}": v for k, v in quality.items() if isinstance(v, (int, float))}, t.step)
    return quality


def history_array(t: Training) -> np.ndarray:
    """The per-step STATS rows as a float64 (steps, 4) array."""
    return np.asarray(t.history, dtype=np.float64).reshape(-1, 4)


def gan_summary(t: Training, quality: dict[str, Any], stopped_early: bool) -> dict[str, Any]:
    """The run's own summary fields: its settings, counts, the means of the last --log-every steps and the
    scores."""
    args = t.args
    hist = history_array(t)
    tail = hist[-min(len(hist), args.log_every):]
    return {
        "data": args.data, "recipe": args.recipe, "loss": args.loss, "arch": args.arch,
        "image_size": args.image_size, "spectral_norm": args.spectral_norm, "diffaugment": args.diffaugment,
        "r1": args.r1, "lr_g": args.lr_g, "lr_d": args.lr_d, "beta1": args.beta1, "beta2": args.beta2,
        "updates": t.step, "epochs": round(t.images_seen / t.n_images, 3), "stopped_by_minutes": stopped_early,
        "d_loss": float(tail[:, 0].mean()) if len(tail) else None,
        "g_loss": float(tail[:, 1].mean()) if len(tail) else None,
        "d_real": float(tail[:, 2].mean()) if len(tail) else None,
        "d_fake": float(tail[:, 3].mean()) if len(tail) else None,
        "d_collapsed_at": t.monitor.collapsed_at,
        "ema": args.ema, "amp": t.amp, "threads": args.threads,
        "fid": quality.get("fid"), "fid_floor": quality.get("fid_floor"),
        "class_entropy": quality.get("class_entropy"),
        **{k: v for k, v in quality.items() if k not in ("fid", "fid_floor", "class_entropy")},
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict[str, Any]:
    """Train; returns the summary that is also written to ``summary.json``."""
    run = Run(args, ALGO, what=args.data, changeable=RESUME_CHANGEABLE, check=resolve)
    images = load_training_images(run.args)
    run.args = args = resolve_budget(run.args, run, images)  # the checkpoint and config.json hold them resolved
    amp = use_amp(args.amp, run.device)
    t = build_training(run, args, images, amp)

    with run.start(bar_keys=tuple(f"train/{k}" for k in STATS)) as tracker:
        if t.step == 0:
            save_fixed_grid(t, tracker)
        bar = tracker.progress(args.total_steps, initial=t.step)
        t.G.train()
        t.D.train()
        stopped_early = False
        while t.step < args.total_steps:
            if args.minutes is not None and run.train_clock.seconds >= 60.0 * args.minutes:
                stopped_early = True
                break
            with run.train_clock:  # the step, its logs, grids and checkpoints; not the scoring below
                train_step(t)
                if t.step % args.log_every == 0 or t.step == args.total_steps:
                    log_window(t, tracker)
                    bar.update(t.step - bar.n)
                if t.step % args.sample_every == 0:
                    save_fixed_grid(t, tracker)
                if run.checkpoint_due(t.step - 1, t.step, args.checkpoint_every):
                    save_checkpoint(t)
            if args.fid_every and args.fid_samples and t.step % args.fid_every == 0:
                scores = score_samples(t)
                tracker.log({f"eval/{k}": v for k, v in scores.items() if k in ("fid", "fid_raw", "fid_floor")}, t.step)
        bar.close()
        if t.last_log < t.step:  # stopped by --minutes between two logs
            log_window(t, tracker)
        if t.step % args.sample_every != 0:
            save_fixed_grid(t, tracker)
        save_checkpoint(t)

        with run.after_clock:  # pictures and the Fréchet distance: eval_seconds
            save_final_pictures(t, tracker)
            quality = final_scores(t, tracker)
        summary = gan_summary(t, quality, stopped_early)
        return run.finish(summary, results=gan_results(run.summary(**summary), args.fid_samples))


def gan_results(summary: dict[str, Any], fid_samples: int) -> list[str]:
    """The closing lines: the Fréchet distance beside its floor (or why there is none), then the final losses."""
    if summary.get("fid") is not None:
        n = f", {summary['fid_samples']:,} samples" if summary.get("fid_samples") is not None else ""
        line = (f"Fréchet distance {summary['fid']:.1f} (real-data floor {summary['fid_floor']:.1f}; classifier "
                f"features{n}; lower is better)")
        if summary.get("fid_raw") is not None:
            line += f"; raw generator {summary['fid_raw']:.1f}"
        lines = [line]
        if summary.get("class_entropy") is not None and summary.get("class_entropy_max") is not None:
            lines.append(f"predicted-class entropy {summary['class_entropy']:.2f} nats of "
                         f"{summary['class_entropy_max']:.2f} for full coverage")
    elif not fid_samples:
        lines = ["no Fréchet distance (--fid-samples 0)"]
    else:
        lines = [f"no Fréchet distance: {summary['data']} has no class labels to train its feature classifier on"]
    if summary.get("inception_fid") is not None:
        lines.append(describe(summary))
    if summary.get("d_loss") is not None:
        lines.append(f"last steps: D loss {summary['d_loss']:.3f}, G loss {summary['g_loss']:.3f}, D(x) "
                     f"{summary['d_real']:.2f}, D(G(z)) {summary['d_fake']:.2f}; {summary['updates']:,} generator "
                     f"updates in {summary['train_seconds'] / 60:.1f} min")
    return lines


if __name__ == "__main__":
    cli.run(main, Args)
