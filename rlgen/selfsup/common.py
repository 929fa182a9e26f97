"""What the contrastive methods share: data, pairs of views, the learning-rate schedule, the flags, the encoder
checkpoint format read by :mod:`rlgen.encoders`, and the pretraining loop itself (:func:`pretrain`): SimCLR and
MoCo each bring their model, loss and update step (a :class:`Method`); the loop owns the data order, the
schedule, logging, the kNN monitor (:mod:`rlgen.selfsup.knn`), checkpoints and the end of the run. Data
parallelism is in :mod:`rlgen.selfsup.distributed`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from rlgen.augment import Recipe, augment, default_recipe, recipe_by_name
from rlgen.data import load_dataset, save_grid
from rlgen.data.catalog import resolve as resolve_data
from rlgen.encoders import encoder_record
from rlgen.errors import UsageError
from rlgen.lifecycle import Run
from rlgen.machine import use_amp
from rlgen.nets import BACKBONES
from rlgen.plots import save_learning_curve
from rlgen.schedules import warmup_cosine
from rlgen.seeding import seed_everything
from rlgen.selfsup.distributed import all_mean, init_distributed
from rlgen.selfsup.knn import knn_accuracy
from rlgen.track import RunArgs


@dataclasses.dataclass
class PretrainData:
    """uint8 images on the training device, with labels and episode ids where the data has them."""

    train: torch.Tensor
    train_labels: torch.Tensor | None
    test: torch.Tensor
    test_labels: torch.Tensor | None
    episode: torch.Tensor | None
    """Episode id of each training frame (``atari-frames`` and ``atari-stacks`` only): temporal pairs need it."""
    description: str


def is_frame_data(data: str) -> bool:
    """Atari frames with episode ids: ``atari-frames:GAME`` or ``atari-stacks:GAME``."""
    return data.lower().split(":")[0] in ("atari-frames", "atari-stacks") and ":" in data


def load_pretrain_data(data: str, device: torch.device, frames: int | None = None) -> PretrainData:
    """Both splits of ``data``; the kNN monitor uses labels where they are classes (not Atari RAM)."""
    options: dict[str, Any] = {"n": frames} if is_frame_data(data) and frames else {}
    train = load_dataset(data, "train", **options)
    test = load_dataset(data, "test", **({"n": max(1, frames // 5)} if options and frames else {}))
    is_class = train.labels is not None and train.labels.dim() == 1
    return PretrainData(
        train=train.images.to(device), test=test.images.to(device),
        train_labels=train.labels.to(device) if is_class else None,
        test_labels=test.labels.to(device) if is_class and test.labels is not None else None,
        episode=train.extras.get("episode"), description=train.description)


def temporal_partners(episode: torch.Tensor, idx: torch.Tensor, max_gap: int, gen: torch.Generator) -> torch.Tensor:
    """For each frame in ``idx``, a frame 1..``max_gap`` steps later in the same episode (earlier at its end).

    Positives as in ST-DIM / ATC (Anand et al. 2019; Stooke et al. 2021): nearby frames of one
    episode. ``episode`` holds contiguous runs of ids, as :mod:`rlgen.data.atari_frames` writes them.
    """
    _, counts = torch.unique_consecutive(episode, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1  # last index of each run
    run = torch.repeat_interleave(torch.arange(len(counts)), counts)[idx]
    last, first = ends[run], ends[run] - counts[run] + 1
    gap = torch.randint(1, max_gap + 1, (len(idx),), generator=gen)
    ahead = idx + torch.minimum(gap, last - idx)
    behind = idx - torch.minimum(gap, idx - first)
    # A one-frame episode has no neighbour: the frame is its own (augmented) partner.
    return torch.where(last > idx, ahead, behind)


def two_views(images: torch.Tensor, idx: torch.Tensor, recipe: Recipe, gen: torch.Generator,
              pairs: str = "augment", episode: torch.Tensor | None = None,
              max_gap: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views of the global batch ``idx`` (``temporal``: the second from a nearby frame)."""
    if pairs == "temporal":
        if episode is None:
            raise UsageError("--pairs temporal needs frame data with episode ids (atari-frames:GAME or "
                             "atari-stacks:GAME)")
        other = temporal_partners(episode, idx.cpu(), max_gap, gen).to(images.device)
    else:
        other = idx
    return augment(images[idx], recipe, gen), augment(images[other], recipe, gen)


def record(tracker: Any, history: dict[str, list[float]], step: int, metrics: dict[str, Any]) -> None:
    """Log ``metrics`` at ``step`` and keep the loss and kNN curves that :func:`write_pictures` plots."""
    if "train/loss" in metrics:
        history["step"].append(step)
        history["loss"].append(metrics["train/loss"])
    if metrics.get("eval/knn_top1") is not None:
        history["knn_step"].append(step)
        history["knn"].append(metrics["eval/knn_top1"])
    tracker.log(metrics, step)


def cosine_lr(base: float, progress: float, warmup: float = 0.05) -> float:
    """Linear warm-up over the first ``warmup`` of training, then a cosine to zero (Loshchilov & Hutter 2017)."""
    return base * warmup_cosine(progress, warmup)


def check_names(args: Any) -> None:
    """``--data``, ``--backbone`` and ``--recipe`` name things that exist: a typo fails in one line, before any
    data is loaded or anything written (``--recipe`` may also be ``auto``, and ``none`` where ``allow_none``)."""
    resolve_data(args.data)
    if args.backbone.lower().replace("-", "_") not in BACKBONES:
        raise UsageError(f"unknown backbone {args.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
    if args.recipe not in ("auto", "none"):
        recipe_by_name(args.recipe)


# Peak learning rate per backbone where the general 2e-3 fails: with the Nature CNNs' 7,744×512 layer the loss
# on atari-stacks:pong (seed 0) stayed at or returned to chance. SimCLR, 2 minutes (bf16): 2e-3 stayed at chance
# (6.236) throughout, 5e-4 left it only as the cosine fell (4.99), 2e-4 left it within 100 steps (4.80). MoCo,
# 8 minutes (float32, 20,000 frames): 2e-3 climbed back to chance (8.336 of 8.318 after 441 steps), 2e-4 ended at
# 7.978.
LR_BY_BACKBONE = {"nature_cnn": 2e-4, "nature_cnn_same": 2e-4}
DEFAULT_LR = 2e-3


def with_default_lr(args: Any) -> Any:
    """``args`` with an unset ``lr`` filled in by backbone (:data:`LR_BY_BACKBONE`, else :data:`DEFAULT_LR`)."""
    if args.lr is None:
        return dataclasses.replace(args, lr=LR_BY_BACKBONE.get(args.backbone, DEFAULT_LR))
    return args


@dataclasses.dataclass
class PretrainArgs(RunArgs):
    """The flags of the contrastive pretraining commands (simclr, moco); each adds its own loss's."""

    THREADS: ClassVar[int] = 2

    data: str = "mnist5k"
    """dataset (mnist5k, mnist, fashion-mnist, cifar10, faces, folder:PATH, atari-frames:GAME, atari-stacks:GAME)"""
    backbone: str = "convnet"
    """encoder by name from rlgen.nets (convnet, resnet18, atari_cnn, mlp, nature_cnn, nature_cnn_same)"""
    recipe: str = "auto"
    """augmentation recipe (digits, fashion, cifar, color, frames, dqn); auto picks the data's default"""
    pairs: Literal["augment", "temporal"] = "augment"
    """positives: two views of one image, or (frame data) views of nearby frames of one episode"""
    max_gap: int = 4
    """temporal pairs: the partner is 1..max-gap frames away"""
    frames: int | None = None
    """atari-frames / atari-stacks: how many training frames to collect (default: the dataset's)"""
    proj_hidden: int = 512
    """projection head hidden width"""
    proj_dim: int = 128
    """projection head output width (the space the contrastive loss works in)"""
    total_steps: int = 3000
    """optimizer steps (sets the learning-rate schedule)"""
    minutes: float | None = None
    """pretraining wall-time budget; when given, the schedule follows elapsed time (default: no time limit)"""
    batch_size: int = 256
    """global batch (pairs per step, over all processes)"""
    lr: float | None = None
    """peak AdamW learning rate, warm-up then cosine to zero (default: 2e-3; 2e-4 for nature_cnn and
    nature_cnn_same, whose 7,744×512 layer left the loss at chance on Pong at 2e-3)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    knn_every: int = 500
    """optimizer steps between kNN-monitor evaluations (cosine, k 200, τ 0.1, on the held-out split)"""
    log_every: int = 20
    """optimizer steps between logged losses"""
    checkpoint_every: int = 1000
    """optimizer steps between checkpoints (0: only at the end)"""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast for the encoder (auto: on CUDA and on CPUs with bf16 matrix units); the loss stays float32"""


def check_common(args: Any) -> None:
    """The checks SimCLR and MoCo make beyond the numeric ranges (:func:`rlgen.cli.check_numbers`)."""
    check_names(args)
    if args.recipe == "none":
        recipe_by_name(args.recipe)  # contrastive pairs need an augmentation
    if args.batch_size < 2:
        raise UsageError(f"--batch-size {args.batch_size}: a contrastive loss needs at least 2 images per batch")
    if args.pairs == "temporal" and not is_frame_data(args.data):
        raise UsageError(f"--pairs temporal needs frame data with episode ids (atari-frames:GAME or "
                         f"atari-stacks:GAME), not {args.data!r}")


def write_pictures(run_dir: Path, tracker: Any, history: dict[str, list[float]], images: torch.Tensor,
                   recipe: Recipe, seed: int, title: str, ylabel: str, chance: float) -> None:
    """The loss curve beside its chance level, and a grid of view pairs so the recipe can be checked by eye."""

    if history["loss"]:
        path = run_dir / "loss_curve.png"
        save_learning_curve(path, history["step"], history["loss"], threshold=chance, xlabel="step", ylabel=ylabel,
                            title=title, label="loss", threshold_label="chance")
        tracker.log_image("loss_curve", path)
    gen = torch.Generator().manual_seed(seed)
    pick = images[torch.randperm(len(images), generator=gen)[:16]].cpu()
    grid = torch.cat([pick.float() / 255, augment(pick, recipe, gen), augment(pick, recipe, gen)])
    save_grid(run_dir / "views.png", grid, nrow=16, value_range=(0, 1), title="images (top) and two augmented views")
    tracker.log_image("views", run_dir / "views.png")


# A final loss within 1% of chance: every anchor's positive scores like its negatives (SimCLR with the Nature
# CNN at lr 2e-3 on Pong sat at 6.236 of 6.236 for 10 minutes; a run that learns is well below, 4.5-5.0 there).
AT_CHANCE = 0.99


def pretraining_results(summary: dict[str, Any], loss_name: str) -> list[str]:
    """The lines a pretraining run ends with: the kNN monitor's top-1 and the final loss beside its chance level."""
    lines = []
    if summary.get("knn_top1") is not None:
        lines.append(f"kNN monitor top-1 {100 * summary['knn_top1']:.1f}% on the held-out split (cosine, k 200; "
                     f"probe the encoder with rlgen.selfsup.probe for linear / 20-NN accuracy)")
    if summary.get("final_loss") is not None:
        lines.append(f"final {loss_name} loss {summary['final_loss']:.3f} nats (chance {summary['loss_chance']:.3f}) "
                     f"after {summary['updates']:,} updates, {summary['train_seconds'] / 60:.1f} min of training")
        if summary.get("collapsed"):
            lines.append(f"warning: the loss ended at chance, so the encoder has learned nothing (collapsed); "
                         f"a lower --lr than {summary['lr']:g} usually lets it start")
    return lines


class EpochOrder:
    """The data order: a fresh permutation of the training images every epoch, drawn from ``gen``.

    Its state (the permutation and the place in it) goes into the checkpoint, so a resumed run continues
    the saved epoch; drawing a new one would move the shared generator on and change every later view.
    """

    def __init__(self, n: int, gen: torch.Generator) -> None:
        self.n, self.gen = n, gen
        self.perm, self.pos = torch.randperm(n, generator=gen), 0

    def next(self, batch_size: int) -> torch.Tensor:
        """The indices of the next batch (a new epoch starts where the current one has too few left)."""
        if self.pos + batch_size > len(self.perm):
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        self.pos += batch_size
        return self.perm[self.pos - batch_size: self.pos]

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


@dataclasses.dataclass
class Setting:
    """What a contrastive run has before it builds its model: processes, device, data, recipe, generator."""

    size: int
    """processes (1 without ``torchrun``)"""
    device: torch.device
    amp: bool
    """bfloat16 autocast of the encoder (``--amp``)"""
    data: PretrainData
    recipe_name: str
    recipe: Recipe
    gen: torch.Generator
    """the one CPU generator of batches and views, the same in every process (same seed)"""

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.data.train.shape[1:])


def prepare(args: Any, run: Run) -> Setting:
    """Join the process group, seed, load the data and pick the augmentation recipe (all before anything is
    written: data that cannot be read fails here)."""
    _, size, dist_device = init_distributed(args.device)
    if args.batch_size % size:
        raise UsageError(f"--batch-size {args.batch_size} must divide evenly over {size} processes")
    device = dist_device or run.device
    seed_everything(args.seed)
    data = load_pretrain_data(args.data, device, args.frames)
    recipe_name, recipe = default_recipe(args.data) if args.recipe == "auto" else (args.recipe,
                                                                                     recipe_by_name(args.recipe))
    return Setting(size, device, use_amp(args.amp, device), data, recipe_name, recipe,
                   torch.Generator().manual_seed(args.seed))


@dataclasses.dataclass
class Method:
    """What a contrastive method brings to :func:`pretrain`: its update step and how to report it."""

    name: str
    """for the loss plot's title (SimCLR, MoCo v2)"""
    loss_name: str
    """for the loss plot and the last lines (NT-Xent, InfoNCE)"""
    encoder: torch.nn.Module
    """the backbone that the kNN monitor and the probes judge (the projection head is not)"""
    optimizer: torch.optim.Optimizer
    """its learning rate follows the loop's schedule"""
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """one update from two views of the global batch (each process keeps its slice); returns the loss"""
    chance: float
    """the loss of features that tell nothing apart"""
    keep: dict[str, Any]
    """what the checkpoint keeps besides the loop's own state: model, optimizer, key encoder, queue ..."""
    metrics: Callable[[], dict[str, float]] = dict
    """numbers logged (and shown on the bar) with the loss, e.g. MoCo's queue fill"""
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    """the method's own summary fields"""


def pretrain(run: Run, args: Any, s: Setting, method: Method) -> dict[str, Any]:
    """The loop SimCLR and MoCo share: batches in epoch order, two views each, the method's step under a warm-up +
    cosine learning rate, the loss every ``--log-every`` steps, the kNN monitor every ``--knn-every``, a checkpoint
    every ``--checkpoint-every``; then the final kNN monitor, the pictures and the summary (returned)."""
    data, gen = s.data, s.gen
    order = EpochOrder(len(data.train), gen)
    step, history = run.restore(**method.keep, gen=gen, order=order, counters=dict(
        step=0, history={"step": [], "loss": [], "knn_step": [], "knn": []}))
    budget = args.minutes * 60 if args.minutes is not None else math.inf

    def seconds_spent() -> float:
        # Every process must agree on when the time budget ends (or the collectives deadlock) and on the lr.
        return all_mean(run.train_clock.seconds) if args.minutes is not None else 0.0

    run.record(encoder_record=encoder_record(args.backbone, s.image_shape, "unit", "encoder",
                                             description=f"{run.algo} {args.backbone} backbone"))

    def save() -> None:
        run.save(step, history=history, image_shape=list(s.image_shape), encoder=method.encoder.state_dict())

    with run.start(bar_keys=("train/loss", *method.metrics(), "eval/knn_top1")) as tracker:
        bar = tracker.progress(args.total_steps, initial=step)
        running, seen = 0.0, 0
        while step < args.total_steps and (spent := seconds_spent()) < budget:
            with run.train_clock:  # the kNN monitor and checkpoints below are not pretraining
                # The schedule follows the budget as it stands now: a run resumed with a larger --total-steps or
                # --minutes stretches the rest of its cosine over the new budget.
                for group in method.optimizer.param_groups:
                    group["lr"] = cosine_lr(args.lr, max(step / args.total_steps, spent / budget))
                idx = order.next(args.batch_size).to(s.device)
                loss = method.step(*two_views(data.train, idx, s.recipe, gen, args.pairs, data.episode,
                                              args.max_gap))
            step += 1
            running, seen = running + float(loss.detach()), seen + 1
            # The kNN monitor keeps its own cadence: tied to the log steps it ran only when --knn-every was a
            # multiple of --log-every.
            log_now = step % args.log_every == 0 or step == args.total_steps
            knn_now = step % args.knn_every == 0
            if log_now or knn_now:
                metrics: dict[str, Any] = {}
                if log_now:
                    metrics.update({"train/loss": all_mean(running / seen), "train/loss_chance": method.chance,
                                    **method.metrics(), "train/lr": method.optimizer.param_groups[0]["lr"],
                                    "time/train_seconds": run.train_clock.seconds})
                    running, seen = 0.0, 0
                if knn_now:
                    metrics["eval/knn_top1"] = knn_accuracy(method.encoder, data)
                record(tracker, history, step, metrics)
            bar.update(1)
            if run.checkpoint_due(step - 1, step, args.checkpoint_every):
                save()
        bar.close()
        save()
        with run.after_clock:
            final = tracker.progress(1, desc="final kNN monitor")
            knn = knn_accuracy(method.encoder, data)
            final.update(1)
            if run.lead:
                write_pictures(run.run_dir, tracker, history, data.train, s.recipe, args.seed,
                               title=f"{method.name} on {args.data}", ylabel=f"{method.loss_name} loss",
                               chance=method.chance)
        summary: dict[str, Any] = {
            "data": args.data, "backbone": args.backbone, "updates": step, "batch_size": args.batch_size,
            "processes": s.size, "temperature": args.temperature, **method.summary, "pairs": args.pairs,
            "recipe": s.recipe_name, "recipe_detail": s.recipe.describe(), "amp": s.amp,
            "train_seconds": run.train_clock.seconds,
            "final_loss": history["loss"][-1] if history["loss"] else None, "loss_chance": method.chance,
            "knn_top1": knn, "params": sum(p.numel() for p in method.encoder.parameters()), "lr": args.lr,
        }
        summary["collapsed"] = summary["final_loss"] is not None and summary["final_loss"] >= AT_CHANCE * method.chance
        return run.finish(summary, results=pretraining_results(summary, method.loss_name))
