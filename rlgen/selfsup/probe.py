"""Linear and kNN probes: how much of the labels a frozen encoder's features already hold.

    python -m rlgen.selfsup.probe --checkpoint runs/simclr-mnist5k-... --data mnist5k
    python -m rlgen.selfsup.probe --random-init convnet --data mnist5k
    python -m rlgen.selfsup.probe --raw --data mnist5k

Protocol (fixed, so rows of a table compare):

1. Features of the train and test splits are extracted once, in eval mode, with no augmentation.
2. Linear: features are standardised with the training mean and standard deviation; a softmax
   regression is fit by full-batch L-BFGS. Its L2 weight is chosen from {1e-5, 1e-4, 1e-3, 1e-2}
   on a stratified, seeded 20 % of the training split, then the model is refit on all of it.
3. kNN: cosine similarity, the k = 20 nearest training features vote with weight
   exp(similarity / 0.1) (Wu et al. 2018). The training monitors use k = 200 as MoCo and lightly
   do on 50,000 images; with a few hundred images per class, 200 neighbours reach into other
   classes, so the probe's default is 20 (``--knn-k`` changes it).

Top-1 accuracies on the test split are fractions in [0, 1].
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from rlgen import cli
from rlgen.cli import BIG, Range
from rlgen.data import load_dataset
from rlgen.data.catalog import resolve as resolve_data
from rlgen.encoders import FrozenEncoder, freeze, load_encoder, unit
from rlgen.errors import UsageError
from rlgen.images import resize
from rlgen.lifecycle import Run
from rlgen.nets import BACKBONES, make_backbone
from rlgen.selfsup.knn import knn_predict
from rlgen.track import RunArgs

ALGO = "probe"
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)


@dataclasses.dataclass
class Args(RunArgs):
    THREADS: ClassVar[int] = 2
    LIMITS: ClassVar[dict[str, Range]] = {"image_size": Range(4, BIG)}

    checkpoint: str | None = None
    """run folder (or checkpoint file) of any rlgen encoder: simclr, moco, supervised, vae, gan, dqn, stdim"""
    random_init: str | None = None
    """instead of a checkpoint: a freshly initialised backbone of this name (the untrained baseline)"""
    raw: bool = False
    """instead of an encoder: the pixels themselves (scaled to [0, 1]) as features"""
    data: str = "mnist5k"
    """labelled dataset to probe on (train split to fit, test split to score)"""
    image_size: int | None = None
    """resize the data to this many pixels square, for an encoder trained at another size (default: native size)"""
    knn_k: int = 20
    """neighbours that vote in the kNN probe"""
    knn_tau: float = 0.1
    """temperature of the kNN vote weights"""
    resume: str | None = None
    """not supported here: a probe has no training state to continue (it takes seconds; run it again)"""


# ---------------------------------------------------------------------------------------------
# The linear probe
# ---------------------------------------------------------------------------------------------
def fit_softmax(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, max_iter: int = 100) -> torch.nn.Linear:
    """Multinomial logistic regression, mean cross-entropy + l2·‖W‖², full-batch L-BFGS from zero weights.

    The objective is strictly convex, so the optimum does not depend on the start; float32 and
    100 iterations reach it to the accuracy that top-1 can see, 4–5× faster than float64.
    """
    model = torch.nn.Linear(x.shape[1], n_classes).to(x.device)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    x = x.float()
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model


def stratified_holdout(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, holdout): ``fraction`` of each class, seeded."""
    gen = torch.Generator().manual_seed(seed)
    fit, hold = [], []
    for c in torch.unique(y.cpu()):
        idx = torch.nonzero(y.cpu() == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = max(1, int(round(len(idx) * fraction)))
        hold.append(idx[:k])
        fit.append(idx[k:])
    return torch.cat(fit), torch.cat(hold)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 seed: int = 0) -> dict[str, Any]:
    """The protocol's linear probe; returns ``top1`` and the chosen ``l2``."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    tr, te = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    fit, hold = stratified_holdout(train_y, 0.2, seed)
    scores = {}
    for l2 in L2_GRID:
        m = fit_softmax(tr[fit], train_y[fit], n_classes, l2)
        with torch.no_grad():
            scores[l2] = float((m(tr[hold]).argmax(1) == train_y[hold]).float().mean())
    best = max(L2_GRID, key=lambda v: (scores[v], v))  # ties go to the stronger penalty
    model = fit_softmax(tr, train_y, n_classes, best)
    with torch.no_grad():
        top1 = float((model(te).argmax(1) == test_y).float().mean())
    return {"top1": top1, "l2": best, "holdout_top1": scores}


def knn_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
              k: int = 200, tau: float = 0.1) -> float:
    pred = knn_predict(train_x, train_y, test_x, k, tau, n_classes=int(max(train_y.max(), test_y.max())) + 1)
    return float((pred == test_y).float().mean())


# ---------------------------------------------------------------------------------------------
# Encoders and data
# ---------------------------------------------------------------------------------------------
class _Pixels(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def build_encoder(args: Args, image_shape: tuple[int, ...], device: torch.device) -> FrozenEncoder:
    chosen = sum([args.checkpoint is not None, args.random_init is not None, args.raw])
    if chosen != 1:
        raise UsageError("give exactly one of --checkpoint RUN_DIR, --random-init BACKBONE or --raw")
    if args.raw:
        dim = int(torch.tensor(image_shape).prod())
        return freeze(_Pixels(), unit, image_shape, dim, "raw", f"raw pixels ({dim}-d)")
    if args.random_init is not None:

        torch.manual_seed(args.seed)
        net = make_backbone(args.random_init, image_shape).to(device)
        return freeze(net, unit, image_shape, net.out_dim, "random-init",
                      f"random-init {args.random_init} ({net.out_dim}-d)")
    assert args.checkpoint is not None
    return load_encoder(args.checkpoint, device)


def probe_data(data: str, image_size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 train/test images and class labels, resized if asked."""
    train, test = load_dataset(data, "train"), load_dataset(data, "test")
    if train.labels is None or test.labels is None or train.labels.dim() != 1:
        raise UsageError(f"dataset {data!r} has no class labels to probe; use a labelled dataset "
                         f"(mnist5k, mnist, fashion-mnist, cifar10, digits, faces), or "
                         f"rlgen.selfsup.atari_probe for Atari frames")
    xs = [train.images, test.images]
    if image_size is not None:
        xs = [resize(x, image_size) for x in xs]
    return xs[0], train.labels, xs[1], test.labels


def check(args: Args) -> Args:
    """Before any data is loaded: one source of features, and names that exist."""
    if sum([args.checkpoint is not None, args.random_init is not None, args.raw]) != 1:
        raise UsageError("give exactly one of --checkpoint RUN_DIR, --random-init BACKBONE or --raw")
    resolve_data(args.data)
    if args.random_init is not None and args.random_init.lower().replace("-", "_") not in BACKBONES:
        raise UsageError(f"unknown backbone {args.random_init!r}; known: {', '.join(sorted(BACKBONES))}")
    return args


def main(args: Args) -> dict[str, Any]:
    """Probe one encoder; returns the summary also written to ``summary.json``."""
    if args.resume:
        # An evaluation has nothing to continue; refused rather than ignored (that silently wrote a fresh run).
        raise UsageError(f"--resume is not supported by probe (a probe has no training state to continue); "
                         f"run it again without --resume {args.resume}")
    run = Run(args, ALGO, what=args.data, check=check)
    args = run.args
    # Fail on a bad encoder before touching the data, and on mismatched data before any work.
    train_x, train_y, test_x, test_y = probe_data(args.data, args.image_size)
    enc = build_encoder(args, tuple(train_x.shape[1:]), run.device)
    if tuple(train_x.shape[1:]) != tuple(enc.input_shape):
        hint = ""
        if len(enc.input_shape) == 3 and enc.input_shape[0] == train_x.shape[1] \
                and enc.input_shape[1] == enc.input_shape[2]:
            hint = f"; pass --image-size {enc.input_shape[1]} to resize"
        raise UsageError(f"the {enc.algo} encoder takes images of shape {tuple(enc.input_shape)}, but {args.data} "
                         f"gives {tuple(train_x.shape[1:])}{hint}")
    with run.start() as tracker:
        with run.after_clock:  # a probe is all evaluation: no training clock runs
            bar = tracker.progress(3, unit="stage", desc="probe")
            start = time.perf_counter()
            ftr, fte = enc.features(train_x), enc.features(test_x)
            extract = time.perf_counter() - start
            bar.update(1)
            lin = linear_probe(ftr, train_y, fte, test_y, seed=args.seed)
            bar.update(1)
            knn = knn_probe(ftr, train_y, fte, test_y, args.knn_k, args.knn_tau)
            bar.update(1)
        tracker.log({"eval/linear_top1": lin["top1"], "eval/knn_top1": knn}, 0)
        summary: dict[str, Any] = {
            "encoder": enc.algo, "encoder_description": enc.description, "checkpoint": args.checkpoint,
            "data": args.data, "train_images": len(train_x), "test_images": len(test_x),
            "feature_dim": ftr.shape[1], "linear_top1": lin["top1"], "linear_l2": lin["l2"], "knn_top1": knn,
            "knn_k": args.knn_k, "knn_tau": args.knn_tau, "extract_seconds": round(extract, 2),
        }
        return run.finish(summary, results=[f"{enc.description} on {args.data}: linear top-1 "
                                            f"{100 * lin['top1']:.1f}% / {args.knn_k}-NN top-1 {100 * knn:.1f}% "
                                            f"(test split)"])


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
