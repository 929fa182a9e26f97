"""PixelCNN and Gated PixelCNN: autoregressive image models with exact likelihoods.

* **PixelCNN** (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks",
  ICML): p(x) = ∏_i p(x_i | x_<i) in raster order, computed for every pixel at once by
  convolutions whose kernels are masked so no output sees its own pixel or a later one. The first
  layer uses mask A (the centre tap excluded), later layers mask B (centre included), with the
  paper's residual blocks (1×1 → k×k → 1×1). Its receptive field has a blind spot: pixels up and
  to the right that a stack of masked k×k kernels never reaches.
* **Gated PixelCNN** (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016,
  "Conditional Image Generation with PixelCNN Decoders", NeurIPS): a vertical stack that sees the
  rows above (all columns) and a horizontal stack that sees the current row to the left, joined
  so the receptive field has no blind spot, with gated activations tanh(a) ⊙ σ(b), residual
  connections in the horizontal stack, and optional class conditioning (a learned bias per class
  added to every gate's input).

Outputs are Bernoulli logits for binarized images (the default for one-channel data) or a 256-way
softmax per channel (``--likelihood categorical``). For RGB the channels of a pixel are predicted
in the order R, G, B: feature maps are split into three interleaved groups (channel c belongs to
group c mod 3) and the centre tap connects group g only to groups ≥ g (mask B) or > g (mask A).

Masked k×k kernels are stored cropped to their k//2 + 1 rows (the rows below the centre are all
zero in a mask), which saves a third of the work of a 3×3 layer; a layer applied to a full image
and the same layer applied to a window of k//2 + 1 rows therefore run the same convolution.

**Fast sampling.** The naive sampler runs the whole network once per pixel (and channel). The fast
one (:meth:`PixelCNN.sample`) keeps, per layer, the rows already final and per step recomputes only
the current row of every layer from a window of k//2 + 1 cached rows (for the gated model: the
vertical stack once per row, then only the cheap horizontal stack per pixel). Both samplers draw
every uniform up front from the generator and set each pixel by comparing its uniform with the
model's probability (inverse CDF for the softmax), and both evaluate every layer with the same
convolutions on rows of the same width, so for the same seed they give identical images (a test
and ``experiments/bench_sampling.py`` assert it). On the CPU both samplers call oneDNN's
convolution directly, because ``F.conv2d`` chooses its backend by tensor size (a one-row window
and a whole image could round differently); on a GPU cuDNN may pick different algorithms for
different shapes, so there the two agree up to float rounding, not bit for bit.

    python -m rlgen.gen.pixelcnn --data mnist5k
    python -m rlgen.gen.pixelcnn --data mnist5k --gated --conditional --minutes 8
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from rlgen import cli
from rlgen.cli import BIG, Range
from rlgen.data.grid import save_grid
from rlgen.errors import UsageError
from rlgen.gen.common import binarize, load_images
from rlgen.lifecycle import Run
from rlgen.machine import use_amp
from rlgen.nets import polyak_update, ramped_tau
from rlgen.schedules import warmup_cosine
from rlgen.seeding import seed_everything
from rlgen.track import RunArgs, Tracker

ALGO = "pixelcnn"
LN2 = math.log(2.0)


@dataclass
class Args(RunArgs):
    data: str = "mnist5k"
    """dataset (rlgen.data name: mnist5k, mnist, fashion-mnist, cifar10, faces, folder:PATH, ...)"""
    image_size: int | None = None
    """resize images to this many pixels a side (default: native size)"""
    gated: bool = False
    """Gated PixelCNN (vertical + horizontal stacks, no blind spot) instead of the residual PixelCNN"""
    conditional: bool = False
    """condition on the class label (needs a labelled dataset)"""
    likelihood: Literal["auto", "bernoulli", "categorical"] = "auto"
    """output distribution: bernoulli (binarized images) or categorical (256-way softmax per channel);
    auto: bernoulli for one-channel data unless --binarize none, else categorical"""
    binarize: Literal["threshold", "stochastic", "none"] = "threshold"
    """how grey images become {0, 1} for the Bernoulli model: threshold at 128, stochastic (redrawn
    every epoch, the test set once with a fixed seed), or none (keep 256 levels)"""
    width: int | None = None
    """feature channels (PixelCNN: h of the 2h-wide residual stream; gated: per stack); default per model"""
    layers: int | None = None
    """residual blocks (PixelCNN) or gated layers; default per model"""
    kernel: int = 3
    """kernel size of the masked layers (odd)"""
    first_kernel: int | None = None
    """kernel size of the first (mask A) layer (odd; default per model)"""
    head_channels: int | None = None
    """width of the hidden 1×1 layer of the output head (default: per model)"""
    lr: float | None = None
    """peak Adam learning rate (default: per model)"""
    batch_size: int | None = None
    """images per gradient step (default: per model)"""
    epochs: int = 30
    """training epochs at most (with --minutes, whichever ends first)"""
    minutes: float | None = None
    """wall-clock training budget in minutes: training stops at the first batch boundary past it, and the
    learning-rate schedule runs over the budget instead of the epochs (default: no time limit)"""
    schedule: Literal["cosine", "constant"] = "cosine"
    """learning rate: linear warm-up then cosine decay to zero over the run, or constant"""
    warmup: float = 0.03
    """fraction of the run spent warming the learning rate up linearly"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """clip the gradient norm to this (0: no clipping)"""
    ema: float = 0.999
    """decay of an exponential moving average of the weights (Polyak averaging, as in PixelCNN++, Salimans
    et al. 2017), which is what gets validated, tested, sampled and saved; 0: the raw weights"""
    train_limit: int | None = None
    """train on only this many training images (after the validation split), for quick checks (default: all)"""
    val_size: int = 0
    """images held out from the training split (never the test split) to pick the best epoch by; 0: none"""
    eval_every: int = 1
    """evaluate validation NLL every this many epochs"""
    log_every: int = 10
    """optimizer steps between logged rows of the training loss and learning rate"""
    checkpoint_every: int = 0
    """epochs between checkpoints, as --epochs counts them (0: only at the end; a stop signal saves mid-epoch)"""
    samples: int = 64
    """images in the samples grid at the end (0: none)"""
    sample_class: int | None = None
    """class of the samples grid of a conditional model (default: one row per class)"""
    completions: int = 8
    """test images whose bottom half is hidden and completed at the end (0: none)"""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast of the training passes (auto: on CUDA and on CPUs with bf16 units, where it trains
    about 1.4× faster); the loss and every reported likelihood are computed in float32"""

    LIMITS: ClassVar[dict[str, Range]] = {"sample_class": Range(0, BIG)}  # class 0 is a class


# What a continued run (--resume) may change: its budget (the learning-rate schedule stretches to it), cadences and
# the pictures drawn at the end.
RESUME_CHANGEABLE = frozenset({"epochs", "minutes", "checkpoint_every", "log_every", "eval_every", "samples",
                               "sample_class",
                               "completions"})


DEFAULTS: dict[bool, dict[str, Any]] = {
    # Picked by validation NLL (400 images held out of the training split) after 8-minute runs on one
    # CPU thread: narrow and deep beats wide at this budget, and PixelCNN gains from smaller batches. A 7×7
    # first layer (as in both papers) took the gated model from 72.0 to 68.3 nats at the same budget.
    False: dict(width=16, layers=10, head_channels=32, lr=6e-3, batch_size=16, first_kernel=7),  # PixelCNN
    True: dict(width=16, layers=8, head_channels=32, lr=3e-3, batch_size=32, first_kernel=7),  # Gated
}
# Args fields under their earlier names, so models saved then still sample
RENAMED = {"channels": "width"}
BINARY_DATA = ("mnist", "mnist5k", "fashion-mnist", "digits")


# ---------------------------------------------------------------------------------------------
# Masked convolutions
# ---------------------------------------------------------------------------------------------
def channel_group(n: int, groups: int) -> torch.Tensor:
    """Group of each of ``n`` channels: c mod ``groups`` (so halves of a 2C-wide layer line up)."""
    return torch.arange(n) % groups


def conv_mask(c_out: int, c_in: int, kh: int, kw: int, centre: int, mask: str | None, groups: int) -> torch.Tensor:
    """Mask of a (c_out, c_in, kh, kw) kernel whose last row holds the current pixel at column ``centre``.

    Rows above are all visible; in the last row, columns left of the centre are visible, right of it
    hidden, and the centre itself connects input group gi to output group go when gi < go (mask A)
    or gi ≤ go (mask B). ``mask=None`` keeps every tap (the vertical stack, which is shifted instead).
    """
    m = torch.ones(c_out, c_in, kh, kw)
    if mask is None:
        return m
    m[:, :, -1, centre + 1:] = 0
    go, gi = channel_group(c_out, groups)[:, None], channel_group(c_in, groups)[None, :]
    m[:, :, -1, centre] = (gi < go).float() if mask == "A" else (gi <= go).float()
    return m


class MaskedConv(nn.Module):
    """A convolution that sees the ``kh - 1`` rows above each pixel and the current row up to ``centre``.

    ``forward`` takes a whole image; :meth:`rows` takes a window whose first ``kh - 1`` rows are the
    context above (the caller pads with zero rows at the top of the image) and returns the rows
    below them, running the very same convolution.
    """

    exact = True
    """Sample through oneDNN on the CPU (see :meth:`_conv`); False only to time the default backends."""

    def __init__(self, c_in: int, c_out: int, kh: int, kw: int, centre: int, mask: str | None, groups: int = 1):
        super().__init__()
        self.kh, self.kw, self.centre = kh, kw, centre
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kh, kw))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("mask", conv_mask(c_out, c_in, kh, kw, centre, mask, groups), persistent=False)
        # Fan-in counts only the taps the mask keeps, so masked layers start at the intended scale.
        fan_in = max(1.0, float(self.mask.sum(dim=(1, 2, 3)).mean()))
        nn.init.uniform_(self.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self._frozen: torch.Tensor | None = None

    def masked_weight(self) -> torch.Tensor:
        return self._frozen if self._frozen is not None else self.weight * self.mask

    def rows(self, window: torch.Tensor) -> torch.Tensor:
        """(N, C, R + kh - 1, W) with ``kh - 1`` context rows on top → (N, C_out, R, W)."""
        if self.kw > 1:
            window = F.pad(window, (self.centre, self.kw - 1 - self.centre, 0, 0))
        return self._conv(window)

    def _conv(self, window: torch.Tensor) -> torch.Tensor:
        if self._frozen is not None and self.exact and window.device.type == "cpu" \
                and torch.backends.mkldnn.is_available():
            # Sampling: F.conv2d picks its CPU backend by batch, kernel and tensor size, so a one-row
            # window and a whole image may take different kernels (and round differently); oneDNN alone
            # gives each output the same value at any height.
            return torch.ops.aten.mkldnn_convolution(window.contiguous(), self._frozen, self.bias.detach(),
                                                     [0, 0], [1, 1], [1, 1], 1)
        return F.conv2d(window, self.masked_weight(), self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kh == 1:
            return self.rows(x)
        x = F.pad(x, (self.centre, self.kw - 1 - self.centre, self.kh - 1, 0))  # one copy, not two
        return self._conv(x)


def square(c_in: int, c_out: int, k: int, mask: str | None, groups: int) -> MaskedConv:
    """A masked k×k convolution, stored as its k//2 + 1 upper rows."""
    return MaskedConv(c_in, c_out, k // 2 + 1, k, k // 2, mask, groups)


def pointwise(c_in: int, c_out: int, groups: int, mask: str | None = "B") -> MaskedConv:
    """A 1×1 convolution (channel-masked for RGB)."""
    return MaskedConv(c_in, c_out, 1, 1, 0, mask, groups)



def gate(t: torch.Tensor) -> torch.Tensor:
    """tanh(a) ⊙ σ(b) for the two halves of the channels.

    Without gradients (sampling, evaluation) the halves are made contiguous first, so a row and a
    whole image go through the same vectorised loops and round the same way; training skips the copies.
    """
    a, b = t.chunk(2, dim=1)
    if not torch.is_grad_enabled():
        a, b = a.contiguous(), b.contiguous()
    return torch.tanh(a) * torch.sigmoid(b)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class AutoregressiveModel(nn.Module):
    """What both models share: likelihoods, the pixel decision rule and the two samplers.

    Subclasses define ``logits(x, y)`` (a whole image at once) and the row-wise pieces of the fast
    sampler: ``_init_state``, ``_begin_row`` and ``_row_logits``.
    """

    canvas_pad: int

    def __init__(self, image_shape: tuple[int, int, int], likelihood: str, n_classes: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.likelihood = likelihood
        self.levels = 1 if likelihood == "bernoulli" else 256
        self.n_classes = n_classes

    # -- likelihood --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(x, y)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Images must be (N, C, H, W) floats in [0, 1]; binary for the Bernoulli model."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise UsageError(f"images of shape {tuple(x.shape[1:])} given to a model of {self.image_shape}")
        if self.likelihood == "bernoulli" and not bool(((x == 0) | (x == 1)).all()):
            bad = x[(x != 0) & (x != 1)][0].item()
            raise UsageError(f"the Bernoulli model takes binary images (every pixel 0 or 1), got a pixel of {bad:.4g}; "
                             "binarize them (--binarize threshold|stochastic) or use --likelihood categorical")
        if self.likelihood == "categorical" and not bool(((x >= 0) & (x <= 1)).all()):
            raise UsageError("the categorical model takes images in [0, 1] (256 levels)")

    def nll(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact negative log-likelihood of each image in nats, shape (N,)."""
        self.check_input(x)
        logits = self.logits(x, y)
        n = x.shape[0]
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").reshape(n, -1).sum(1)
        c, h, w = self.image_shape
        target = (x * 255).round().long()
        logits = logits.reshape(n, self.levels, c, h, w)
        return F.cross_entropy(logits, target, reduction="none").reshape(n, -1).sum(1)

    # -- sampling ----------------------------------------------------------------------------
    def _decide(self, logits: torch.Tensor, channel: int, u: torch.Tensor) -> torch.Tensor:
        """Pixel values of one channel at one position from its logits (N, C·levels) and uniforms (N,).

        Bernoulli: 1 when u < σ(logit). Categorical: the inverse CDF of the softmax at u.
        """
        n, c = logits.shape[0], self.image_shape[0]
        z = logits.reshape(n, self.levels, c)[:, :, channel].contiguous()
        if self.likelihood == "bernoulli":
            return (u < torch.sigmoid(z[:, 0].contiguous())).float()
        cdf = torch.softmax(z, dim=1).cumsum(dim=1)
        k = (cdf < u[:, None] * cdf[:, -1:]).sum(dim=1).clamp(max=self.levels - 1)
        return k.float() / (self.levels - 1)

    def _draws(self, n: int, generator: torch.Generator | None,
               y: torch.Tensor | int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Labels (drawn first when needed) and one uniform per pixel and channel, all from ``generator``."""
        if self.n_classes:
            if y is None:
                y = torch.randint(self.n_classes, (n,), generator=generator)
            y = torch.as_tensor(y, dtype=torch.long).expand(n).clone() if torch.as_tensor(y).dim() == 0 \
                else torch.as_tensor(y, dtype=torch.long)
            if len(y) != n or bool(((y < 0) | (y >= self.n_classes)).any()):
                bad = y[(y < 0) | (y >= self.n_classes)]
                raise UsageError(f"class {int(bad[0]) if len(bad) else y.tolist()} is out of range: this model has "
                                 f"{self.n_classes} classes (0..{self.n_classes - 1})")
        else:
            y = None
        u = torch.rand((n, *self.image_shape), generator=generator)
        return u, y

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Eval mode, no gradients, masked weights computed once, and the convolution kernels that give
        a window of rows the same values as a whole image (see :meth:`MaskedConv.rows`)."""
        was_training = self.training
        convs = [m for m in self.modules() if isinstance(m, MaskedConv)]
        self.eval()
        try:
            with torch.no_grad():
                for m in convs:
                    m._frozen = (m.weight * m.mask).contiguous()
                yield
        finally:
            for m in convs:
                m._frozen = None
            self.train(was_training)

    def _run(self, fn: Callable[..., torch.Tensor], n: int, generator: torch.Generator | None,
             y: torch.Tensor | int | None, **kw: Any) -> torch.Tensor:
        u, y = self._draws(n, generator, y)
        device = next(self.parameters()).device
        with self.sampling():
            out = fn(u.to(device), y.to(device) if y is not None else None, **kw)
        return out.cpu()

    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | int | None = None,
               ) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [0, 1] with the fast sampler; ``y``: class(es) of a conditional model."""
        return self._run(self._sample_fast, n, generator, y)

    def sample_naive(self, n: int, generator: torch.Generator | None = None,
                     y: torch.Tensor | int | None = None) -> torch.Tensor:
        """The same images as :meth:`sample` for the same generator state, one full forward pass per pixel."""
        return self._run(self._sample_naive, n, generator, y)

    def complete(self, known: torch.Tensor, rows: int, generator: torch.Generator | None = None,
                 y: torch.Tensor | int | None = None, naive: bool = False) -> torch.Tensor:
        """Keep the first ``rows`` rows of ``known`` (n, C, H, W) and sample the rest."""
        fn = self._sample_naive if naive else self._sample_fast
        return self._run(fn, known.shape[0], generator, y, known=known, start=rows)

    def _sample_naive(self, u: torch.Tensor, y: torch.Tensor | None, known: torch.Tensor | None = None,
                      start: int = 0) -> torch.Tensor:
        c, h, w = self.image_shape
        canvas = torch.zeros_like(u)
        if known is not None:
            canvas[:, :, :start] = known[:, :, :start].to(u.device)
        for i in range(start, h):
            for j in range(w):
                for ch in range(c):
                    logits = self.logits(canvas, y)
                    canvas[:, ch, i, j] = self._decide(logits[:, :, i, j], ch, u[:, ch, i, j])
        return canvas

    def _sample_fast(self, u: torch.Tensor, y: torch.Tensor | None, known: torch.Tensor | None = None,
                     start: int = 0) -> torch.Tensor:
        c, h, w = self.image_shape
        p = self.canvas_pad
        # The canvas carries p zero rows on top, the context the first rows' windows read.
        canvas = torch.zeros(u.shape[0], c, h + p, w, device=u.device)
        if known is not None:
            canvas[:, :, p:p + start] = known[:, :, :start].to(u.device)
        state = self._init_state(canvas, y)
        for i in range(h):
            self._begin_row(state, i)
            if i < start:
                self._row_logits(state, i)  # fills the caches of a known row
                continue
            for j in range(w):
                for ch in range(c):
                    logits = self._row_logits(state, i)
                    canvas[:, ch, p + i, j] = self._decide(logits[:, :, 0, j], ch, u[:, ch, i, j])
        return canvas[:, :, p:]

    def _init_state(self, canvas: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        raise NotImplementedError

    def _begin_row(self, state: dict[str, Any], i: int) -> None:
        pass

    def _row_logits(self, state: dict[str, Any], i: int) -> torch.Tensor:
        raise NotImplementedError


class ResidualBlock(nn.Module):
    """PixelCNN's residual block: ReLU → 1×1 (2h → h) → ReLU → masked k×k → ReLU → 1×1 (h → 2h), added."""

    def __init__(self, h: int, k: int, groups: int, n_classes: int) -> None:
        super().__init__()
        self.inner = pointwise(2 * h, h, groups)
        self.conv = square(h, h, k, "B", groups)
        self.outer = pointwise(h, 2 * h, groups)
        self.embed = nn.Embedding(n_classes, h) if n_classes else None

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.inner(F.relu(x)))

    def post(self, x: torch.Tensor, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is not None:
            u = u + cond
        return x + self.outer(F.relu(u))

    def cond(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return self.embed(y)[:, :, None, None] if self.embed is not None and y is not None else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.post(x, self.conv(self.pre(x)), cond)


class PixelCNN(AutoregressiveModel):
    """Masked k×k mask-A stem, residual blocks of mask-B convolutions, a 1×1 head (van den Oord et al. 2016a)."""

    def __init__(self, image_shape: tuple[int, int, int], likelihood: str = "bernoulli", channels: int = 32,
                 layers: int = 8, kernel: int = 3, first_kernel: int = 7, head_channels: int = 64,
                 n_classes: int = 0) -> None:
        super().__init__(image_shape, likelihood, n_classes)
        c = image_shape[0]
        groups = c
        self.stem = square(c, 2 * channels, first_kernel, "A", groups)
        self.blocks = nn.ModuleList(ResidualBlock(channels, kernel, groups, n_classes) for _ in range(layers))
        self.head1 = pointwise(2 * channels, head_channels, groups)
        self.head2 = pointwise(head_channels, c * self.levels, groups)
        self.canvas_pad = first_kernel // 2

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(h))))

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, block.cond(y))
        return self.head(h)

    # The fast sampler keeps, per block, the input of its k×k convolution with k//2 zero rows on top.
    def _init_state(self, canvas: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        n, _, hp, w = canvas.shape
        h = hp - self.canvas_pad
        caches = [torch.zeros(n, b.conv.weight.shape[1], h + b.conv.kh - 1, w, device=canvas.device)
                  for b in self.blocks]
        return {"canvas": canvas, "caches": caches, "conds": [b.cond(y) for b in self.blocks]}

    def _row_logits(self, state: dict[str, Any], i: int) -> torch.Tensor:
        h = self.stem.rows(state["canvas"][:, :, i:i + self.stem.kh])
        for block, cache, cond in zip(self.blocks, state["caches"], state["conds"]):
            p = block.conv.kh - 1
            cache[:, :, i + p] = block.pre(h)[:, :, 0]
            h = block.post(h, block.conv.rows(cache[:, :, i:i + p + 1]), cond)
        return self.head(h)


class GatedLayer(nn.Module):
    """One layer of Gated PixelCNN (van den Oord et al. 2016b, figure 2).

    Vertical: a (k//2 + 1)×k convolution over the rows above and the current row, gated. Its
    pre-activation, shifted down one row (so a pixel sees only rows above), feeds the horizontal
    stack through a 1×1; horizontal: a 1×(k//2 + 1) convolution over the current row up to the pixel
    (excluding it in the first layer), gated, a 1×1, and a residual connection.
    """

    def __init__(self, c_in: int, c: int, k: int, first: bool, groups: int, n_classes: int) -> None:
        super().__init__()
        self.vconv = MaskedConv(c_in, 2 * c, k // 2 + 1, k, k // 2, None, groups)
        self.hconv = MaskedConv(c_in, 2 * c, 1, k // 2 + 1, k // 2, "A" if first else "B", groups)
        self.link = pointwise(2 * c, 2 * c, groups, mask=None)  # from rows above: no channel order to keep
        self.out = pointwise(c, c, groups)
        self.residual = not first
        self.v_embed = nn.Embedding(n_classes, 2 * c) if n_classes else None
        self.h_embed = nn.Embedding(n_classes, 2 * c) if n_classes else None

    def conds(self, y: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.v_embed is None or y is None:
            return None, None
        return self.v_embed(y)[:, :, None, None], self.h_embed(y)[:, :, None, None]

    def vertical(self, vc: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return gate(vc + cond if cond is not None else vc)

    def horizontal(self, h: torch.Tensor, link: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        a = self.hconv(h) + link
        if cond is not None:
            a = a + cond
        out = self.out(gate(a))
        return h + out if self.residual else out


class GatedPixelCNN(AutoregressiveModel):
    """Vertical and horizontal stacks of gated layers, then a 1×1 head (van den Oord et al. 2016b).

    The first layer may use a larger kernel (``first_kernel``, 7 in the paper's models), which widens
    the receptive field at the cost of one layer's work.
    """

    def __init__(self, image_shape: tuple[int, int, int], likelihood: str = "bernoulli", channels: int = 32,
                 layers: int = 8, kernel: int = 3, head_channels: int = 64, n_classes: int = 0,
                 first_kernel: int | None = None) -> None:
        super().__init__(image_shape, likelihood, n_classes)
        c = image_shape[0]
        first_kernel = kernel if first_kernel is None else first_kernel
        self.layers = nn.ModuleList(GatedLayer(c if i == 0 else channels, channels, first_kernel if i == 0 else kernel,
                                               i == 0, c, n_classes) for i in range(layers))
        self.head1 = pointwise(channels, head_channels, c)
        self.head2 = pointwise(head_channels, c * self.levels, c)
        self.canvas_pad = max(first_kernel, kernel) // 2

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(h))))

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v = h = x
        for layer in self.layers:
            cv, ch = layer.conds(y)
            vc = layer.vconv(v)
            shifted = F.pad(vc, (0, 0, 1, 0))[:, :, :-1].contiguous()
            h = layer.horizontal(h, layer.link(shifted), ch)
            v = layer.vertical(vc, cv)
        return self.head(h)

    # The fast sampler keeps every layer's vertical input with k//2 zero rows on top (the canvas is the
    # first layer's) and, per row, each layer's link from the row above; per pixel only the horizontal
    # stack runs, on one row.
    def _init_state(self, canvas: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        n, _, hp, w = canvas.shape
        vcaches = [canvas] + [torch.zeros(n, layer.out.weight.shape[0], hp, w, device=canvas.device)
                              for layer in self.layers[:-1]]
        conds = [layer.conds(y) for layer in self.layers]
        zero = torch.zeros(n, self.layers[0].link.weight.shape[1], 1, w, device=canvas.device)
        return {"canvas": canvas, "v": vcaches, "conds": conds, "zero": zero, "links": None}

    def _begin_row(self, state: dict[str, Any], i: int) -> None:
        p = self.canvas_pad
        links = []
        for k, layer in enumerate(self.layers):
            if i == 0:
                links.append(layer.link(state["zero"]))
                continue
            # vertical row i − 1 from its kh input rows (the canvas's p zero rows count as above the image)
            vc = layer.vconv.rows(state["v"][k][:, :, p + i - layer.vconv.kh:p + i])
            links.append(layer.link(vc))
            if k + 1 < len(self.layers):
                state["v"][k + 1][:, :, p + i - 1] = layer.vertical(vc, state["conds"][k][0])[:, :, 0]
        state["links"] = links

    def _row_logits(self, state: dict[str, Any], i: int) -> torch.Tensor:
        p = self.canvas_pad
        h = state["canvas"][:, :, p + i:p + i + 1]
        for layer, link, (_, ch) in zip(self.layers, state["links"], state["conds"]):
            h = layer.horizontal(h, link, ch)
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------
def build_model(args: Args, image_shape: tuple[int, int, int], likelihood: str, n_classes: int
                ) -> AutoregressiveModel:
    """The model ``args`` describe (resolved args: no None sizes)."""
    if args.gated:
        return GatedPixelCNN(image_shape, likelihood, args.width, args.layers, args.kernel, args.head_channels,
                             n_classes, first_kernel=args.first_kernel)
    return PixelCNN(image_shape, likelihood, args.width, args.layers, args.kernel, args.first_kernel,
                    args.head_channels, n_classes)


def sampler_from_checkpoint(ckpt: dict[str, Any], device: torch.device) -> AutoregressiveModel:
    """Rebuild the model a checkpoint's args describe and load its weights (for ``rlgen.gen.generate``)."""
    saved = {RENAMED.get(k, k): v for k, v in ckpt["args"].items()}
    args = Args(**{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(Args)}})
    model = build_model(args, tuple(ckpt["image_shape"]), ckpt["likelihood"], int(ckpt["n_classes"]))
    # A finished run's final weights (averaged, best epoch); a run still training: its weight average, else the raw
    model.load_state_dict(ckpt.get("sampler") or ckpt.get("ema") or ckpt["model"])
    return model.to(device).eval()


def check_odd(name: str, k: int) -> None:
    if k < 1 or k % 2 == 0:
        raise UsageError(f"--{name} {k}: masked kernels need an odd size (1, 3, 5, ...) so the current pixel "
                         "is the kernel's centre")


def check(args: Args) -> Args:
    """Fill per-model defaults and make the checks the generic ranges (:func:`rlgen.cli.check_numbers`) cannot."""
    filled = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in DEFAULTS[args.gated].items()}
    args = dataclasses.replace(args, **filled)
    check_odd("kernel", args.kernel)
    check_odd("first-kernel", args.first_kernel)
    return args


def resolve(args: Args) -> tuple[Args, dict[str, Any]]:
    """:func:`check`, then :func:`prepare`: the filled args and the data."""
    return prepare(check(args))


def prepare(args: Args) -> tuple[Args, dict[str, Any]]:
    """Load the data and check what depends on it (channels, labels, sizes) before anything is written; resolves
    ``--likelihood auto``."""
    train, labels, classes = load_images(args.data, "train", args.image_size)
    test, test_labels, _ = load_images(args.data, "test", args.image_size)
    c = train.shape[1]
    if c not in (1, 3):
        raise UsageError(f"{args.data} has {c}-channel images; PixelCNN here models grey (1) or RGB (3) images")
    likelihood = args.likelihood
    if likelihood == "auto":
        likelihood = "bernoulli" if c == 1 and args.binarize != "none" else "categorical"
    if likelihood == "bernoulli" and args.binarize == "none" and not bool(((train == 0) | (train == 255)).all()):
        raise UsageError(f"--binarize none keeps {args.data}'s 256 grey levels, but the Bernoulli model takes binary "
                         "images: use --binarize threshold|stochastic or --likelihood categorical")
    if likelihood == "categorical" and c == 3 and (args.width % 3 or args.head_channels % 3):
        raise UsageError(f"RGB images need --width and --head-channels divisible by 3 (one group per colour), "
                         f"got {args.width} and {args.head_channels}")
    n_classes = 0
    if args.conditional:
        if labels is None or classes is None:
            raise UsageError(f"--conditional needs class labels, and {args.data} has none")
        n_classes = len(classes)
    if args.sample_class is not None:
        if not args.conditional:
            raise UsageError("--sample-class needs a --conditional model")
        if not 0 <= args.sample_class < n_classes:
            raise UsageError(f"--sample-class {args.sample_class} is out of range: {args.data} has {n_classes} "
                             f"classes (0..{n_classes - 1})")
    if args.val_size >= len(train):
        raise UsageError(f"--val-size {args.val_size} leaves no training images (the split has {len(train)})")
    args = dataclasses.replace(args, likelihood=likelihood)
    info = {"train": train, "labels": labels, "test": test, "test_labels": test_labels,
            "classes": classes, "n_classes": n_classes, "image_shape": tuple(train.shape[1:])}
    return args, info


def to_model_input(images: torch.Tensor, args: Args, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images → what the model takes: {0, 1} for Bernoulli, k/255 for categorical."""
    if args.likelihood == "bernoulli":
        if args.binarize == "none":
            return images.float() / 255.0
        return binarize(images, args.binarize, generator=generator)
    return images.float() / 255.0


def lr_factor(progress: float, args: Args) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine decay to zero (or constant)."""
    if args.schedule == "constant" and progress >= args.warmup:
        return 1.0
    return warmup_cosine(progress, args.warmup, floor=1e-3)


@torch.no_grad()
def evaluate_nll(model: AutoregressiveModel, x: torch.Tensor, y: torch.Tensor | None, device: torch.device,
                 batch: int = 250, progress: Callable[[int], Any] | None = None) -> float:
    """Mean NLL in nats per image over ``x``; ``progress(n)`` after each batch of ``n`` images."""
    model.eval()
    total = 0.0
    for k in range(0, len(x), batch):
        yb = y[k:k + batch].to(device) if y is not None else None
        total += model.nll(x[k:k + batch].to(device), yb).double().sum().item()
        if progress is not None:
            progress(len(x[k:k + batch]))
    model.train()
    return total / len(x)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict[str, Any]:
    """Train; returns the summary that is also written to ``summary.json``."""
    what = ("gated-" if args.gated else "") + args.data
    run = Run(args, ALGO, what=what, changeable=RESUME_CHANGEABLE, check=check)
    args, info = prepare(run.args)  # a bad --data fails here, before anything is written
    run.args = args  # --likelihood auto resolved: the checkpoint says what the model predicts
    device = run.device
    amp = use_amp(args.amp, device)
    seed_everything(args.seed)
    n_classes, image_shape = info["n_classes"], info["image_shape"]
    model = build_model(args, image_shape, args.likelihood, n_classes).to(device)
    averaged = copy.deepcopy(model).requires_grad_(False) if args.ema else None
    judged = averaged if averaged is not None else model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    # Validation images come from the training split (shuffled with the seed); the test split only
    # ever gives the final number.
    split = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(info["train"]), generator=split)
    val_idx, train_idx = order[:args.val_size], order[args.val_size:]
    if args.train_limit is not None:
        train_idx = train_idx[:args.train_limit]
    labels = info["labels"] if args.conditional else None
    train_u8 = info["train"][train_idx]
    train_y = labels[train_idx] if labels is not None else None
    val_x = to_model_input(info["train"][val_idx], args, torch.Generator().manual_seed(args.seed + 1))
    val_y = labels[val_idx] if labels is not None else None
    test_x = to_model_input(info["test"], args, torch.Generator().manual_seed(12345))
    test_y = info["test_labels"] if args.conditional else None
    model.check_input(test_x[:1])
    data_gen = torch.Generator().manual_seed(args.seed + 2)  # batch order and stochastic binarization
    stochastic = args.binarize == "stochastic" and args.likelihood == "bernoulli"
    fixed_train = None if stochastic else to_model_input(train_u8, args)

    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    # The schedule is a function of the progress through the budget: a resume with a larger --epochs or --minutes
    # stretches it to the new budget from the saved step (the rate goes back up to where the longer run would be).
    total_steps = steps_per_epoch * args.epochs
    ema = {"ema": averaged} if averaged is not None else {}
    step, epoch, batch_in_epoch, perm, epoch_x, best_val, best_epoch, best_state = run.restore(
        model=model, optimizer=opt, **ema, data_gen=data_gen, counters=dict(
            step=0, epoch=0, batch_in_epoch=0, perm=None, epoch_x=None, best_val=math.inf, best_epoch=None,
            best_state=None))
    epoch_x = fixed_train if fixed_train is not None else epoch_x  # only a re-drawn binarization is saved
    budget = args.minutes * 60.0 if args.minutes is not None else None

    def save_checkpoint(**final: Any) -> None:
        run.save(step, epoch=epoch, batch_in_epoch=batch_in_epoch, image_shape=list(image_shape),
                 likelihood=args.likelihood, n_classes=n_classes, perm=perm, epoch_x=epoch_x if stochastic else None,
                 best_val=best_val, best_epoch=best_epoch, best_state=best_state, **final)

    def done() -> bool:
        return epoch >= args.epochs or (budget is not None and run.train_clock.seconds >= budget)

    with run.start(bar_keys=("train/loss", "eval/val_nll")) as tracker:
        bar = tracker.progress(total_steps, initial=step)
        model.train()
        while not done():
            if perm is None:  # a new epoch
                perm = torch.randperm(len(train_idx), generator=data_gen)
                if fixed_train is None:
                    epoch_x = to_model_input(train_u8, args, data_gen)
                batch_in_epoch = 0
            progress = step / total_steps if budget is None else max(step / total_steps,
                                                                      run.train_clock.seconds / budget)
            with run.train_clock:
                idx = perm[batch_in_epoch * args.batch_size:(batch_in_epoch + 1) * args.batch_size]
                xb = epoch_x[idx].to(device)
                yb = train_y[idx].to(device) if train_y is not None else None
                lr = args.lr * lr_factor(progress, args)
                for group in opt.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = model.nll(xb, yb).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if args.max_grad_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                opt.step()
                step += 1
                if averaged is not None:
                    polyak_update(averaged, model, ramped_tau(args.ema, step))
                batch_in_epoch += 1
            bar.update(1)
            if step % args.log_every == 0:
                tracker.log({"train/loss": loss.item(), "train/lr": lr, "time/train_seconds": run.train_clock.seconds},
                            step)
            epoch_ended = batch_in_epoch >= steps_per_epoch
            if epoch_ended:
                epoch += 1
                perm = None
                if args.val_size and (epoch % args.eval_every == 0 or done()):
                    val = evaluate_nll(judged, val_x, val_y, device)
                    if val < best_val:
                        best_val, best_epoch = val, epoch
                        best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
                    tracker.log({"eval/val_nll": val, "train/epoch": epoch}, step)
            if run.checkpoint_due(epoch - epoch_ended, epoch, args.checkpoint_every):
                save_checkpoint()
        bar.close()
        if args.val_size and batch_in_epoch and perm is not None:  # stopped mid-epoch by the time budget
            val = evaluate_nll(judged, val_x, val_y, device)
            tracker.log({"eval/val_nll": val, "train/epoch": epoch + batch_in_epoch / steps_per_epoch}, step)
            if val < best_val:
                best_val, best_epoch, best_state = val, epoch, None
        # What is tested, sampled and rebuilt by generate: the averaged weights of the epoch with the lowest
        # validation NLL. The checkpoint keeps the training state beside them, so a resume trains on from it.
        final = best_state if best_state is not None else {k: v.clone() for k, v in judged.state_dict().items()}
        save_checkpoint(sampler=final)
        model.load_state_dict(final)

        with run.after_clock:  # the exact test NLL and the pictures: eval_seconds
            n_drawn = picture_count(args, n_classes, len(test_x))
            bar = tracker.progress(len(test_x) + n_drawn, unit="img", desc=f"{ALGO} final evaluation (test NLL, "
                                   f"{n_drawn:,} images sampled)")
            test_nll = evaluate_nll(model, test_x, test_y, device, progress=bar.update)
            dims = math.prod(image_shape)
            tracker.log({"eval/test_nll_nats": test_nll, "eval/test_bits_per_dim": test_nll / (dims * LN2)}, step)
            images = save_pictures(model, args, info, test_x, run.run_dir, tracker, step, progress=bar.update)
            bar.close()
        summary = {
            "model": "gated_pixelcnn" if args.gated else "pixelcnn", "data": args.data,
            "epochs": round(epoch + (batch_in_epoch / steps_per_epoch if perm is not None else 0.0), 3),
            "updates": step, "test_nll_nats": test_nll,
            "test_bits_per_dim": test_nll / (dims * LN2), "likelihood": args.likelihood, "binarize": args.binarize,
            "conditional": args.conditional, "params": sum(p.numel() for p in model.parameters()),
            "threads": args.threads, "amp": amp, "ema": args.ema, "val_nll": best_val if args.val_size else None,
            "best_epoch": best_epoch,
            "images": images,
        }
        nats, bpd = summary["test_nll_nats"], summary["test_bits_per_dim"]
        return run.finish(summary, results=[f"test NLL {nats:.2f} nats per image ({bpd:.3f} bits/dim), exact, on "
                                            f"{len(test_x):,} test images; {step:,} updates in "
                                            f"{run.summary()['train_seconds'] / 60:.1f} min"])


def picture_count(args: Args, n_classes: int, n_test: int) -> int:
    """How many images :func:`save_pictures` samples or completes (the final progress bar's share of them)."""
    n = args.samples
    if args.conditional and args.sample_class is None and args.samples:
        k = min(n_classes, 10)
        n += k * min(8, max(1, args.samples // k))
    return n + min(args.completions, n_test)


def save_pictures(model: AutoregressiveModel, args: Args, info: dict[str, Any], test_x: torch.Tensor,
                  run_dir: Path, tracker: Tracker, step: int, progress: Callable[[int], Any] | None = None
                  ) -> list[str]:
    """Samples grid, class-conditional grid (one row per class), completions of half-hidden test images;
    ``progress(n)`` after each grid of ``n`` images."""

    written: list[str] = []
    name = "Gated PixelCNN" if args.gated else "PixelCNN"
    gen = torch.Generator().manual_seed(args.seed)
    if args.samples:
        y = args.sample_class if args.sample_class is not None else None
        imgs = model.sample(args.samples, gen, y=y)
        what = f" of class {info['classes'][y]}" if y is not None else ""
        path = save_grid(run_dir / "samples.png", imgs, title=f"{name} samples{what} ({args.data})")
        tracker.log_image("samples", path, step)
        written.append(path.name)
        if progress is not None:
            progress(len(imgs))
    if args.conditional and args.sample_class is None and args.samples:
        k = min(info["n_classes"], 10)
        per = min(8, max(1, args.samples // k))
        y = torch.arange(k).repeat_interleave(per)
        imgs = model.sample(len(y), gen, y=y)
        path = save_grid(run_dir / "samples_by_class.png", imgs, nrow=per,
                         title=f"{name}: one row per class ({', '.join(info['classes'][:k])})")
        tracker.log_image("samples_by_class", path, step)
        written.append(path.name)
        if progress is not None:
            progress(len(imgs))
    if args.completions:
        k = min(args.completions, len(test_x))
        pick = torch.randperm(len(test_x), generator=gen)[:k]
        orig = test_x[pick]
        rows = model.image_shape[1] // 2
        y = info["test_labels"][pick] if args.conditional else None
        done = model.complete(orig, rows, gen, y=y)
        masked = orig.clone()
        masked[:, :, rows:] = 0.5
        path = save_grid(run_dir / "completions.png", torch.cat([orig, masked, done]), nrow=k,
                         title=f"{name}: test images, bottom half hidden, completions")
        tracker.log_image("completions", path, step)
        written.append(path.name)
        if progress is not None:
            progress(k)
    return written


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
