"""Variational autoencoder (Kingma & Welling 2014, "Auto-encoding variational Bayes"; Rezende et al.
2014), with the importance-weighted bound of Burda et al. 2015 ("Importance weighted autoencoders")
as the test log-likelihood estimate.

An encoder q(z|x) = N(μ(x), diag σ²(x)) and a decoder p(x|z) with a standard-normal prior p(z):

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))        (reconstruction + KL, both per image)
    KL      = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)          (closed form for Gaussians)
    IWAE_k  = E[log (1/k) Σ_i p(x, z_i) / q(z_i|x)],  z_i ~ q(z|x)

IWAE_1 is the ELBO (in expectation), IWAE_k only grows with k and tends to log p(x). Every number
this module reports is a *negated* bound, in nats per image: ``neg_elbo`` = −ELBO and ``neg_iwae`` =
−IWAE_k are upper bounds on the negative log-likelihood −log p(x), positive, lower is better, as
papers report them (``test_neg_elbo_nats: 96.7`` is an ELBO of −96.7 nats).

The k-sample bound costs k decoder passes per image (about 0.3 s per image at k = 1000 on one CPU
thread), so it runs on ``--iwae-images`` test images: all of them by default, and with ``--minutes
M`` a seeded, class-spread subset of 125·M (at least 100), which keeps this evaluation to about
0.6× the training time; it has its own progress bar and ``eval_seconds`` in the summary.

Likelihoods: Bernoulli (logits) for binarized images, by default a fixed threshold at 128 so
numbers compare across models (``--binarize stochastic`` re-draws pixels each epoch as Burda et al.
do); a discretized logistic per pixel and channel (Salimans et al. 2017, "PixelCNN++", one
component) for grey or colour 8-bit images. Encoders and decoders come from :mod:`rlgen.nets`:
an MLP or the convolutional encoder with its mirrored decoder.

    python -m rlgen.gen.vae --data mnist5k                    # conv VAE, binarized digits
    python -m rlgen.gen.vae --data mnist5k --arch mlp --latent-dim 2   # with the manifold grid
    python -m rlgen.gen.vae --data faces --image-size 32      # colour, discretized logistic
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen import cli
from rlgen.augment import random_shift
from rlgen.data import save_grid
from rlgen.encoders import encoder_record
from rlgen.errors import UsageError
from rlgen.gen.common import binarize, latent_walk, load_images, to_uint8_frames
from rlgen.lifecycle import Run
from rlgen.nets import MLP, ConvDecoder, ConvEncoder
from rlgen.plots import save_curves, save_gif
from rlgen.seeding import seed_everything
from rlgen.track import RunArgs

ALGO = "vae"


@dataclass
class Args(RunArgs):
    data: str = "mnist5k"
    """dataset name (mnist5k, mnist, fashion-mnist, cifar10, faces, folder:PATH, ...)"""
    arch: Literal["conv", "mlp"] = "conv"
    """encoder/decoder pair: conv (ConvEncoder + mirrored ConvDecoder) or mlp"""
    likelihood: Literal["auto", "bernoulli", "logistic"] = "auto"
    """p(x|z): bernoulli on binarized pixels, logistic (discretized, 256 levels); auto: bernoulli for grey data"""
    binarize: Literal["threshold", "stochastic"] = "threshold"
    """how grey pixels become {0, 1} for bernoulli: threshold at 128, or Bernoulli(x/255) re-drawn every epoch"""
    image_size: int | None = None
    """resize images to this many pixels square (default: the data's own size)"""
    latent_dim: int = 32
    """size of z (2 also writes the decoded manifold grid)"""
    hidden: str = "512,256"
    """hidden widths of the mlp encoder (the decoder mirrors them)"""
    channels: str = "32,64,128"
    """channels of the conv encoder's stride-2 layers (the decoder mirrors them)"""
    epochs: int = 80
    """passes over the training split (sets the one-cycle learning-rate schedule; a resume with more stretches it)"""
    minutes: float | None = None
    """also stop at the first minibatch after this much training wall time (default: no time limit); only whole
    epochs count as done, and a --resume finishes the cut one"""
    batch_size: int = 64
    """minibatch size"""
    lr: float = 2e-3
    """peak Adam learning rate (one-cycle schedule over --epochs)"""
    weight_decay: float = 0.0
    """Adam weight decay"""
    shift: int = 2
    """random translations of training images by up to this many pixels (regularises small datasets; 0: off)"""
    kl_warmup: int = 5
    """epochs over which the KL weight ramps from 0 to 1 (Sønderby et al. 2016); reported ELBOs use 1"""
    iwae_k: int = 1000
    """importance samples for the final test bound (Burda et al. 2015); 0 skips it"""
    iwae_images: int | None = None
    """test images the k-sample bound averages over, a seeded subset spread over the classes (default: the whole
    test split; with --minutes M, 125·M images, at least 100, so the bound does not outlast training)"""
    log_every: int = 1
    """epochs between logged rows of the training ELBO, KL weight and learning rate (the last epoch's)"""
    eval_every: int = 10
    """epochs between test-ELBO evaluations (logged with them)"""
    checkpoint_every: int = 10
    """epochs between checkpoints (0: only at the end)"""


# What a continued run (--resume) may change: its budget (a larger --epochs stretches the one-cycle schedule),
# cadences and the work done only at the end.
RESUME_CHANGEABLE = frozenset({"epochs", "minutes", "checkpoint_every", "log_every", "eval_every", "iwae_k",
                               "iwae_images"})


# ---------------------------------------------------------------------------------------------
# Small parts: likelihoods and the bounds
# ---------------------------------------------------------------------------------------------
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent dimensions: one value per row."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for {0, 1} pixels, summed per image; ``logits`` may carry extra leading sample dims."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-3).sum(-1)


def logistic_log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(x|z) of 8-bit pixels under a discretized logistic per pixel and channel, summed per image.

    ``params`` holds mean and log-scale stacked on the channel axis (2C channels); ``x`` is uint8
    mapped to [−1, 1]. Each of the 256 levels gets the logistic mass of its bin of width 2/255;
    the end levels take the whole tail (Salimans et al. 2017, eq. 2).
    """
    c = x.shape[-3]
    mean, log_scale = params[..., :c, :, :], params[..., c:, :, :].clamp(min=-7.0)
    y = x.float() / 127.5 - 1.0
    inv = torch.exp(-log_scale)
    upper = inv * (y - mean + 1.0 / 255)
    lower = inv * (y - mean - 1.0 / 255)
    # log(σ(u) − σ(l)) written stably; the edges use log σ(u) and log(1 − σ(l)) = −softplus(l).
    log_cdf_upper = F.logsigmoid(upper)
    log_one_minus_cdf_lower = -F.softplus(lower)
    mid = torch.log((torch.sigmoid(upper) - torch.sigmoid(lower)).clamp_min(1e-12))
    # Where the bin is so thin that the difference underflows, use the density times the width.
    centre = inv * (y - mean)
    log_pdf_mid = centre - log_scale - 2.0 * F.softplus(centre) + math.log(2.0 / 255)
    mid = torch.where(torch.sigmoid(upper) - torch.sigmoid(lower) > 1e-5, mid, log_pdf_mid)
    logp = torch.where(x == 0, log_cdf_upper, torch.where(x == 255, log_one_minus_cdf_lower, mid))
    return logp.flatten(-3).sum(-1)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class VAE(nn.Module):
    """Encoder → (μ, log σ²); decoder → likelihood parameters; ``sample`` and ``decode`` give [0, 1] means."""

    def __init__(self, image_shape: tuple[int, int, int], arch: str, latent_dim: int, likelihood: str,
                 hidden: tuple[int, ...], channels: tuple[int, ...]) -> None:
        super().__init__()
        self.image_shape, self.latent_dim, self.likelihood = tuple(image_shape), latent_dim, likelihood
        c, h, w = image_shape
        out_c = c if likelihood == "bernoulli" else 2 * c
        if arch == "conv":
            self.encoder: nn.Module = ConvEncoder(image_shape, channels=channels, features=None)
            self.decoder: nn.Module = ConvDecoder(latent_dim, (out_c, h, w), channels=channels)
        else:
            self.encoder = MLP(image_shape, hidden=hidden)
            widths = (latent_dim, *reversed(hidden))
            layers: list[nn.Module] = []
            for a, b in zip(widths, widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.decoder = nn.Sequential(*layers, nn.Linear(widths[-1], out_c * h * w), nn.Unflatten(1, (out_c, h, w)))
        self.to_latent = nn.Linear(self.encoder.out_dim, 2 * latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) as (μ, log σ²); ``x`` is {0, 1} for bernoulli, uint8 otherwise."""
        inp = x * 2.0 - 1.0 if self.likelihood == "bernoulli" else x.float() / 127.5 - 1.0
        mu, logvar = self.to_latent(self.encoder(inp)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.latent_dim))
        return out.reshape(*lead, *out.shape[1:])

    def log_px(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(params, x)
        return logistic_log_prob(params, x)

    def elbo(self, x: torch.Tensor, beta: float = 1.0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image (ELBO with KL weight ``beta``, reconstruction log-likelihood, KL), one z sample each."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device) if generator is not None \
            else torch.randn_like(mu)
        z = mu + eps * (0.5 * logvar).exp()
        rec = self.log_px(self.decoder_params(z), x)
        kl = gaussian_kl(mu, logvar)
        return rec - beta * kl, rec, kl

    @torch.no_grad()
    def iwae(self, x: torch.Tensor, k: int, generator: torch.Generator, chunk: int = 100) -> torch.Tensor:
        """log (1/k) Σ_i p(x, z_i)/q(z_i|x) per image, streaming over chunks of samples (Burda et al. 2015)."""
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        total = torch.full((len(x),), -math.inf, device=x.device)
        done = 0
        while done < k:
            m = min(chunk, k - done)
            eps = torch.randn((m, *mu.shape), generator=generator).to(mu.device)
            z = mu + eps * std
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
            log_w = self.log_px(self.decoder_params(z), x) + log_pz - log_qz
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            done += m
        return total - math.log(k)

    def mean_image(self, params: torch.Tensor) -> torch.Tensor:
        """The decoder's mean in [0, 1] (pixel probabilities, or the logistic's location)."""
        c = self.image_shape[0]
        if self.likelihood == "bernoulli":
            return torch.sigmoid(params)
        return ((params[:, :c] + 1.0) / 2.0).clamp(0, 1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean_image(self.decoder_params(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` decoder means for z drawn from the prior, float (n, C, H, W) in [0, 1], on the CPU (as every
        sampler of :mod:`rlgen.gen` returns them); the noise is drawn on the CPU, so a seed fixes the images."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator)
        return self.decode(z.to(device)).cpu()


def _ints(text: str, flag: str) -> tuple[int, ...]:
    return cli.int_list(text, flag, example="32,64,128")


def vae_encoder_record(args: Args, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The encoder record (:func:`rlgen.encoders.encoder_record`) of the VAE's trunk, under the μ/log σ² layer."""
    scaling = "binary_signed" if args.likelihood == "bernoulli" else "signed"
    if args.arch == "conv":
        return encoder_record("convnet", image_shape, scaling, "model", prefix="encoder.",
                              kwargs={"channels": list(_ints(args.channels, "channels")), "features": None},
                              description="VAE conv encoder trunk (under μ/log σ²)")
    return encoder_record("mlp", image_shape, scaling, "model", prefix="encoder.",
                          kwargs={"hidden": list(_ints(args.hidden, "hidden"))},
                          description="VAE mlp encoder trunk (under μ/log σ²)")


def build_model(args: Args, image_shape: tuple[int, int, int]) -> VAE:
    return VAE(image_shape, args.arch, args.latent_dim, args.likelihood, _ints(args.hidden, "hidden"),
               _ints(args.channels, "channels"))


def sampler_from_checkpoint(ckpt: dict[str, Any], device: torch.device) -> VAE:
    """Rebuild a trained VAE from its checkpoint (the sampler contract of :mod:`rlgen.gen.common`)."""
    args = Args(**{k: v for k, v in ckpt["args"].items() if k in {f.name for f in dataclasses.fields(Args)}})
    model = build_model(args, tuple(ckpt["image_shape"]))  # type: ignore[arg-type]
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def resolve(args: Args) -> Args:
    """The checks the generic ranges (:func:`rlgen.cli.check_numbers`) cannot make."""
    _ints(args.hidden, "hidden"), _ints(args.channels, "channels")
    return args


def prepare(args: Args) -> tuple[Args, dict[str, torch.Tensor | None]]:
    """Train and test tensors as the likelihood wants them; resolves ``--likelihood auto``."""
    train_x, train_y, _ = load_images(args.data, "train", args.image_size)
    test_x, test_y, _ = load_images(args.data, "test", args.image_size)
    if args.likelihood == "auto":
        args = dataclasses.replace(args, likelihood="bernoulli" if train_x.shape[1] == 1 else "logistic")
    if args.arch == "conv":
        # The decoder mirrors the encoder's sizes; a map shrunk to nothing is the user's image size.
        n_down = len(_ints(args.channels, "channels"))
        if min(train_x.shape[2:]) < 2 ** n_down:
            raise UsageError(f"image size {tuple(train_x.shape[2:])} is too small for {n_down} stride-2 conv "
                             f"layers; use at least {2 ** n_down} px or fewer --channels")
    data: dict[str, torch.Tensor | None] = {"train_raw": train_x, "train_y": train_y, "test_y": test_y}
    if args.likelihood == "bernoulli":
        # The test split is binarized once (a fixed draw for 'stochastic') so every evaluation agrees.
        data["test"] = binarize(test_x, args.binarize, torch.Generator().manual_seed(12345))
        data["train"] = binarize(train_x, "threshold") if args.binarize == "threshold" else None
    else:
        data["test"], data["train"] = test_x, train_x
    return args, data


@torch.no_grad()
def evaluate_elbo(model: VAE, x: torch.Tensor, device: torch.device, seed: int, batch: int = 500,
                  progress: Callable[[int], Any] | None = None) -> dict[str, float]:
    """Mean test ELBO, reconstruction and KL (nats per image) with one fixed-seed z per image.

    ``progress(n)`` is called after each batch of ``n`` images (a progress bar's ``update``).
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = np.zeros(3)
    for chunk in x.split(batch):
        elbo, rec, kl = model.elbo(chunk.to(device), generator=gen)
        sums += [float(elbo.sum()), float(rec.sum()), float(kl.sum())]
        if progress is not None:
            progress(len(chunk))
    model.train()
    return dict(zip(("elbo", "rec", "kl"), (sums / len(x)).tolist()))


@torch.no_grad()
def evaluate_iwae(model: VAE, x: torch.Tensor, k: int, device: torch.device, seed: int,
                  batch: int = 50, progress: Callable[[int], Any] | None = None) -> float:
    """Mean IWAE_k bound over ``x`` (nats per image, a lower bound on log p(x)); ``progress`` as in
    :func:`evaluate_elbo`."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for chunk in x.split(batch):
        total += float(model.iwae(chunk.to(device), k, gen).sum())
        if progress is not None:
            progress(len(chunk))
    model.train()
    return total / len(x)


def iwae_image_count(args: Args, n_test: int) -> int:
    """How many test images the k-sample bound uses (see ``--iwae-images``).

    A ``--minutes`` budget scales the default with the training time: at k = 1000 one image costs about
    0.3 s on one CPU thread, so 125 images per minute of training keep the bound to about 0.6× the training
    time; the whole mnist5k test split (1,000 images) at 8 minutes, as in the measured README row.
    """
    if args.iwae_images is not None:
        return min(args.iwae_images, n_test)
    if args.minutes is None:
        return n_test
    return min(n_test, max(100, round(125 * args.minutes)))


def iwae_subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` images of ``x``: all of them in order when ``n`` covers the split, else a seeded sample kept in
    split order (test splits are sorted by class, so the first ``n`` would be a few classes only)."""
    if n >= len(x):
        return x
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[pick.sort().values]


@dataclass
class EpochInProgress:
    """One pass over the training images: their order, this epoch's binarization (when re-drawn each epoch), the
    minibatches done and the running sums of the ELBO. Saved with the run when a --minutes budget ends it early,
    so a resume finishes the very same epoch, as an uninterrupted run would have."""

    train: torch.Tensor
    perm: torch.Tensor
    redrawn: bool  # a stochastic binarization of this epoch's own (saved with it)
    batches_done: int = 0
    sums: float = 0.0
    seen: int = 0

    @classmethod
    def start(cls, args: Args, data: dict[str, torch.Tensor | None], gen: torch.Generator) -> EpochInProgress:
        """A new epoch: the stochastic binarization re-drawn (when asked for), then the order, both from ``gen``."""
        redrawn = args.likelihood == "bernoulli" and args.binarize == "stochastic"
        train = binarize(data["train_raw"], "stochastic", gen) if redrawn else data["train"]  # type: ignore[arg-type]
        assert train is not None
        return cls(train, torch.randperm(len(train), generator=gen), redrawn)

    def remaining(self, batch_size: int) -> list[torch.Tensor]:
        """The index batches not trained on yet."""
        return list(self.perm.split(batch_size))[self.batches_done:]

    def add(self, elbo_sum: float, n: int) -> None:
        """One minibatch done, with the sum of its images' ELBOs."""
        self.sums += elbo_sum
        self.seen += n
        self.batches_done += 1

    def state(self) -> dict[str, Any]:
        return {"perm": self.perm, "batches_done": self.batches_done, "sums": self.sums, "seen": self.seen,
                "train": self.train.to(torch.uint8) if self.redrawn else None}  # {0, 1} pixels: bytes suffice

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, data: dict[str, torch.Tensor | None]) -> EpochInProgress | None:
        if state is None:
            return None
        redrawn = state["train"] is not None
        train = state["train"].float() if redrawn else data["train"]
        assert train is not None
        return cls(train, state["perm"], redrawn, state["batches_done"], state["sums"], state["seen"])


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict[str, Any]:
    """Train; returns the summary that is also written to ``summary.json``."""
    run = Run(args, ALGO, what=args.data, changeable=RESUME_CHANGEABLE, check=resolve)
    args, data = prepare(run.args)  # a bad --data or image size fails here, before anything is written
    run.args = args  # --likelihood auto resolved: the checkpoint says what the decoder models
    device = run.device
    seed_everything(args.seed)
    order_gen = torch.Generator().manual_seed(args.seed)  # minibatch order and stochastic binarization

    train_raw, test = data["train_raw"], data["test"]
    assert train_raw is not None and test is not None
    image_shape = tuple(train_raw.shape[1:])
    model = build_model(args, image_shape).to(device)  # type: ignore[arg-type]
    run.record(encoder_record=vae_encoder_record(args, image_shape))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_raw) / args.batch_size)
    epoch, step, history = run.restore(model=model, optimizer=opt, order_rng=order_gen, counters=dict(
        epoch=0, step=0, history={"epoch": [], "train_elbo": [], "eval_epoch": [], "test_elbo": []}))
    # The one-cycle schedule is a function of (step, total steps) alone, so it is rebuilt at the saved step rather
    # than restored: the same --epochs gives the very learning rates of an uninterrupted run, and a resume with a
    # larger --epochs stretches the schedule to the new total from where the run stopped (the rate steps up to
    # where the longer schedule would be at that step). ``initial_lr``/``max_lr`` come from the optimizer's state.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, pct_start=0.1, last_epoch=step - 1,
                                                total_steps=max(args.epochs * steps_per_epoch, step, 1))

    # An epoch a --minutes budget cut short, saved with the run: a resume finishes it where it stopped
    part = EpochInProgress.from_state((run.ckpt or {}).get("epoch_in_progress"), data)

    with run.start(bar_keys=("train/neg_elbo", "eval/neg_elbo")) as tracker:
        budget = args.minutes * 60 if args.minutes is not None else math.inf
        bar = tracker.progress(args.epochs, initial=epoch, unit="epoch")
        model.train()
        while epoch < args.epochs and run.train_clock.seconds < budget:
            with run.train_clock:
                if part is None:
                    part = EpochInProgress.start(args, data, order_gen)
                beta = min(1.0, (epoch + 1) / args.kl_warmup) if args.kl_warmup > 0 else 1.0
                for idx in part.remaining(args.batch_size):
                    x = random_shift(part.train[idx].to(device), args.shift, order_gen)
                    elbo, rec, kl = model.elbo(x, beta=beta)
                    loss = -elbo.mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    part.add(float((rec - kl).sum().detach()), len(x))
                    if run.train_clock.seconds >= budget:
                        break
            if part.batches_done < steps_per_epoch:  # cut by --minutes: only whole epochs count
                tracker.log({"train/neg_elbo": -part.sums / part.seen, "train/kl_weight": beta,
                             "train/lr": sched.get_last_lr()[0],
                             "train/epoch": epoch + part.batches_done / steps_per_epoch},
                            step)
                break
            epoch += 1
            # Logged as −ELBO (nats per image, lower is better), the sign the summary uses too.
            history["epoch"].append(epoch)
            history["train_elbo"].append(part.sums / part.seen)
            metrics: dict[str, float] = {}
            if epoch % args.log_every == 0 or epoch == args.epochs:
                metrics.update({"train/neg_elbo": -part.sums / part.seen, "train/kl_weight": beta,
                                "train/lr": sched.get_last_lr()[0], "train/epoch": epoch})
            part = None
            if epoch % args.eval_every == 0 or epoch == args.epochs:
                ev = evaluate_elbo(model, test, device, seed=args.seed)
                metrics.update({"eval/neg_elbo": -ev["elbo"], "eval/rec_loss": -ev["rec"], "eval/kl": ev["kl"],
                                "train/epoch": epoch})
                history["eval_epoch"].append(epoch)
                history["test_elbo"].append(ev["elbo"])
            if metrics:
                tracker.log(metrics, step)
            bar.update(1)
            if run.checkpoint_due(epoch - 1, epoch, args.checkpoint_every):
                run.save(step, epoch=epoch, history=history, image_shape=list(image_shape), epoch_in_progress=None)
        bar.close()
        run.save(step, epoch=epoch, history=history, image_shape=list(image_shape),
                 epoch_in_progress=part.state() if part is not None else None)

        # -- after training: its own bar and clock (the k-sample bound can outlast a --minutes budget) ----------
        with run.after_clock:
            iwae_x = iwae_subset(test, iwae_image_count(args, len(test)), args.seed) if args.iwae_k else test[:0]
            what = f" (k = {args.iwae_k} bound on {len(iwae_x):,} images)" if args.iwae_k else ""
            bar = tracker.progress(len(test) + len(iwae_x), unit="img", desc=f"{ALGO} final evaluation{what}")
            final = evaluate_elbo(model, test, device, seed=args.seed, progress=bar.update)
            iwae = evaluate_iwae(model, iwae_x, args.iwae_k, device, seed=args.seed,
                                 progress=bar.update) if args.iwae_k else None
            bar.close()
            files = save_pictures(model, args, test, history, run.run_dir)
        for key, path in files.items():
            if path.suffix == ".gif":
                tracker.log_video(key, path, step=step)
            else:
                tracker.log_image(key, path, step=step)
        # Every likelihood number is a negated bound: positive nats per image, an upper bound on the NLL.
        summary: dict[str, Any] = {
            "data": args.data, "arch": args.arch, "likelihood": args.likelihood, "latent_dim": args.latent_dim,
            "epochs": epoch, "updates": step, "binarize": args.binarize,
            "test_neg_elbo_nats": -final["elbo"], "test_rec_loss_nats": -final["rec"], "test_kl_nats": final["kl"],
            "test_images": len(test), "iwae_k": args.iwae_k, "iwae_images": len(iwae_x) if iwae is not None else None,
            "test_neg_iwae_nats": -iwae if iwae is not None else None,
            "params": sum(p.numel() for p in model.parameters()),
        }
        bits = int(np.prod(image_shape)) * math.log(2)  # nats per image → bits per dimension
        if args.likelihood == "logistic":
            summary["test_neg_elbo_bits_per_dim"] = -final["elbo"] / bits
            if iwae is not None:
                summary["test_neg_iwae_bits_per_dim"] = -iwae / bits
        return run.finish(summary, results=vae_results(run.summary(**summary), args.likelihood))


def save_pictures(model: VAE, args: Args, test: torch.Tensor, history: dict[str, list[float]],
                  run_dir: Path) -> dict[str, Path]:
    """Reconstructions, prior samples, an interpolation and a latent walk, the 2-D manifold, the learning curve."""
    device = next(model.parameters()).device
    image_shape = model.image_shape
    model.eval()
    gen = torch.Generator().manual_seed(args.seed)
    # The test splits are sorted by class; a fixed shuffle shows every class.
    picks = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:48]
    with torch.no_grad():
        show = test[picks[:32]].to(device)
        mu, _ = model.encode(show)
        recon = model.decode(mu).cpu()
        shown = show.cpu().float() if args.likelihood == "bernoulli" else show.cpu().float() / 255
        pairs = torch.stack([shown, recon], 1).reshape(-1, *image_shape)  # input, reconstruction, ...
        files = {
            "reconstructions": save_grid(run_dir / "reconstructions.png", pairs, nrow=16, value_range=(0, 1),
                                         title="test inputs (odd columns) and reconstructions (even)"),
            "samples": save_grid(run_dir / "samples.png", model.sample(64, gen), nrow=8, value_range=(0, 1),
                                 title=f"VAE prior samples (decoder means), {args.data}"),
        }
        # A walk between encoded test images shows what the latent space has organised.
        a, b = model.encode(test[picks[32:40]].to(device))[0], model.encode(test[picks[40:48]].to(device))[0]
        t = torch.linspace(0, 1, 16, device=device)
        ts = torch.cat([t, t.flip(0)])
        frames = [to_uint8_frames(model.decode((1 - s) * a + s * b).cpu()) for s in ts]
        grids = [np.concatenate(list(f), axis=1) for f in frames]
        files["interpolation"] = save_gif(run_dir / "interpolation.gif", grids, fps=12)
        if args.latent_dim == 2:
            # Decode an evenly spaced grid of prior quantiles (Kingma & Welling 2014, fig. 4).
            q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.03, 0.97, 20))
            zz = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)
            files["manifold"] = save_grid(run_dir / "manifold.png", model.decode(zz.to(device)).cpu(), nrow=20,
                                          value_range=(0, 1), padding=0, min_cell=28, title="decoded latent grid")
        walk = latent_walk(model, 6, 10, gen)
        files["latent_walk"] = save_gif(run_dir / "latent_walk.gif", to_uint8_frames(walk), fps=10)
    files["learning_curve"] = save_curves(
        run_dir / "learning_curve.png",
        {"train −ELBO": (history["epoch"], [-v for v in history["train_elbo"]]),
         "test −ELBO": (history["eval_epoch"], [-v for v in history["test_elbo"]])},
        xlabel="epoch", ylabel="−ELBO, nats per image (bounds the NLL; lower is better)",
        title=f"VAE ({args.arch}) on {args.data}")
    return files


def vae_results(summary: dict[str, Any], likelihood: str) -> list[str]:
    """The closing lines: the test bounds in words, signs and units spelled out."""
    def per_dim(key: str) -> str:
        return f" = {summary[key]:.3f} bits/dim" if likelihood == "logistic" and summary.get(key) is not None else ""

    neg = summary["test_neg_elbo_nats"]
    lines = [f"test ELBO −{neg:.1f} nats per image, so NLL ≤ {neg:.1f} nats{per_dim('test_neg_elbo_bits_per_dim')} "
             f"({summary['test_images']:,} test images)"]
    if summary.get("test_neg_iwae_nats") is not None:
        lines.append(f"k = {summary['iwae_k']:,} importance-weighted bound: NLL ≤ {summary['test_neg_iwae_nats']:.1f} "
                     f"nats per image{per_dim('test_neg_iwae_bits_per_dim')} ({summary['iwae_images']:,} test images, "
                     f"{summary['eval_seconds']:.0f} s of evaluation after {summary['train_seconds'] / 60:.1f} min of "
                     "training)")
    return lines


if __name__ == "__main__":
    cli.run(main, Args)
