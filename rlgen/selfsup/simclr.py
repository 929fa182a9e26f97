"""SimCLR: contrastive pretraining with two augmented views and NT-Xent.

Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of Visual
Representations" (arXiv:2002.05709). Each image gives two random views; a backbone and an MLP
projection head embed them; NT-Xent with temperature τ pulls each view towards its partner and
away from the other 2N − 2 views of the batch. The backbone (not the head) is what probes judge.

    python -m rlgen.selfsup.simclr --data mnist5k --backbone convnet --minutes 10
    torchrun --nproc_per_node=2 -m rlgen.selfsup.simclr --data mnist5k --total-steps 500

Under ``torchrun`` every process draws the same global batch and the same views, keeps its own
slice, and NT-Xent gathers the embeddings of all processes, so the negatives span the global
batch; BatchNorm is synchronised so the loss equals that of one process on the global batch.
``--pairs temporal`` on ``atari-frames:GAME`` makes positives out of nearby frames of the same
episode instead of two views of one frame (as in ST-DIM and ATC).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rlgen import checkpoint, cli
from rlgen.errors import UsageError
from rlgen.nets import ProjectionHead, make_backbone
from rlgen.selfsup.augment import default_recipe, recipe_by_name
from rlgen.selfsup.common import (
    all_mean,
    check_common,
    cosine_lr,
    global_batchnorm,
    init_distributed,
    knn_accuracy,
    load_pretrain_data,
    local_slice,
    pretraining_results,
    record,
    two_views,
    write_pictures,
)
from rlgen.selfsup.losses import NTXentLoss
from rlgen.track import RunArgs, Tracker, default_run_dir
from rlgen.utils import pick_device, rng_state, seed_everything, set_rng_state, use_amp

ALGO = "simclr"


@dataclasses.dataclass
class Args(RunArgs):
    data: str = "mnist5k"
    """dataset (mnist5k, mnist, fashion-mnist, cifar10, faces, folder:PATH, atari-frames:GAME)"""
    backbone: str = "convnet"
    """encoder by name from rlgen.nets (convnet, resnet18, atari_cnn, mlp, nature_cnn)"""
    recipe: str = "auto"
    """augmentation recipe (digits, fashion, cifar, color, frames); auto picks the data's default"""
    pairs: Literal["augment", "temporal"] = "augment"
    """positives: two views of one image, or (frame data) views of nearby frames of one episode"""
    max_gap: int = 4
    """temporal pairs: the partner is 1..max-gap frames away"""
    frames: int | None = None
    """atari-frames: how many training frames to collect (default: the dataset's)"""
    temperature: float = 0.5
    """NT-Xent temperature τ (0.5: the paper's CIFAR value)"""
    proj_hidden: int = 512
    """projection head hidden width"""
    proj_dim: int = 128
    """projection head output width (the space NT-Xent works in)"""
    seed: int = 0
    """seed for initialisation, batches and every augmentation"""
    device: str = "auto"
    """auto, cpu or cuda"""
    total_steps: int = 3000
    """optimizer steps (sets the learning-rate schedule)"""
    minutes: float | None = None
    """pretraining wall-time budget; when given, the schedule follows elapsed time instead of steps"""
    batch_size: int = 256
    """global batch (pairs per step, over all processes)"""
    lr: float = 2e-3
    """peak AdamW learning rate (warm-up, then cosine to zero)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    knn_every: int = 500
    """steps between kNN-monitor evaluations (cosine, k 200, τ 0.1, on the held-out split)"""
    log_every: int = 20
    """steps between logged losses"""
    checkpoint_every: int = 1000
    """steps between checkpoints (0: only at the end)"""
    threads: int = 2
    """torch CPU threads per process"""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast for the encoder (auto: on CUDA and on CPUs with bf16 matrix units); the loss stays float32"""


def resolve(args: Args) -> Args:
    check_common(args)
    if args.recipe != "auto":
        recipe_by_name(args.recipe)
    return args


class SimCLR(nn.Module):
    """Backbone + projection head; ``forward`` gives the projections NT-Xent compares."""

    def __init__(self, backbone: str, image_shape: tuple[int, ...], proj_hidden: int, proj_dim: int) -> None:
        super().__init__()
        self.encoder = make_backbone(backbone, image_shape)
        self.head = ProjectionHead(self.encoder.out_dim, proj_hidden, proj_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def main(args: Args) -> dict[str, Any]:
    """Pretrain; returns the summary that is also written to ``summary.json`` (by process 0)."""
    ckpt = None
    if args.resume:
        args, ckpt = checkpoint.resume_args(Args, args, ALGO)
    args = resolve(args)
    rank, size, dist_device = init_distributed(args.device)
    if args.batch_size % size:
        raise UsageError(f"--batch-size {args.batch_size} must divide evenly over {size} processes")
    torch.set_num_threads(args.threads)
    device = dist_device or pick_device(args.device)
    amp = use_amp(args.amp, device)
    seed_everything(args.seed)
    data = load_pretrain_data(args.data, device, args.frames)
    if args.pairs == "temporal" and data.episode is None:
        raise UsageError(f"--pairs temporal needs frame data with episode ids (atari-frames:GAME), not {args.data!r}")
    image_shape = tuple(data.train.shape[1:])
    recipe_name, recipe = default_recipe(args.data) if args.recipe == "auto" else (args.recipe,
                                                                                     recipe_by_name(args.recipe))
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(ALGO, args.data)
    args = dataclasses.replace(args, run_dir=str(run_dir))

    model = SimCLR(args.backbone, image_shape, args.proj_hidden, args.proj_dim).to(device)
    if size > 1:
        model = global_batchnorm(model, device)
        net: nn.Module = nn.parallel.DistributedDataParallel(model)
    else:
        net = model
    loss_fn = NTXentLoss(args.temperature)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # Batches and views come from one CPU generator that every process shares (same seed).
    gen = torch.Generator().manual_seed(args.seed)
    step, train_seconds = 0, 0.0
    history: dict[str, list[float]] = {"step": [], "loss": [], "knn_step": [], "knn": []}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, train_seconds = ckpt["step"], ckpt["train_seconds"]
        history = {k: v.tolist() for k, v in ckpt["history"].items()}
        set_rng_state(ckpt["rng"])
        gen.set_state(ckpt["gen"])

    lead = rank == 0
    tracker = Tracker.for_run(run_dir, args, algo=ALGO, resume_step=step if ckpt else None,
                              bar_keys=("loss", "knn_top1")) if lead else None

    def save_checkpoint() -> None:
        if lead:
            checkpoint.save(checkpoint.checkpoint_path(run_dir), algo=ALGO, args=dataclasses.asdict(args), step=step,
                            image_shape=list(image_shape), encoder=model.encoder.state_dict(),
                            model=model.state_dict(), optimizer=opt.state_dict(), train_seconds=train_seconds,
                            history={k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()},
                            rng=rng_state(), gen=gen.get_state(), perm=perm, pos=pos)

    chance = NTXentLoss.chance(args.batch_size)
    budget = args.minutes * 60 if args.minutes is not None else math.inf
    # A resumed run continues the saved epoch order (drawing a new one would move the generator on).
    perm, pos = (ckpt["perm"], ckpt["pos"]) if ckpt is not None else (torch.randperm(len(data.train), generator=gen), 0)
    # Non-lead processes have no tracker; for them the block guards nothing.
    with tracker if tracker is not None else contextlib.nullcontext():
        bar = tracker.progress(args.total_steps, initial=step) if tracker else None
        running, seen = 0.0, 0
        net.train()
        try:
            while step < args.total_steps and train_seconds < budget:
                tick = time.perf_counter()
                progress = max(step / args.total_steps, train_seconds / budget)
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(args.lr, progress)
                if pos + args.batch_size > len(perm):
                    perm, pos = torch.randperm(len(data.train), generator=gen), 0
                idx = perm[pos: pos + args.batch_size].to(device)
                pos += args.batch_size
                v1, v2 = two_views(data.train, idx, recipe, gen, args.pairs, data.episode, args.max_gap)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    z1, z2 = net(local_slice(v1)), net(local_slice(v2))
                loss = loss_fn(z1.float(), z2.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                running, seen = running + float(loss.detach()), seen + 1
                # Every process must agree on when the time budget ends, or the collectives deadlock.
                # The kNN monitor below is not pretraining, so it stays out of the clock.
                train_seconds += all_mean(time.perf_counter() - tick) if size > 1 else time.perf_counter() - tick
                # The kNN monitor keeps its own cadence: tied to the log steps it ran only when --knn-every was a
                # multiple of --log-every.
                log_now = step % args.log_every == 0 or step == args.total_steps
                knn_now = step % args.knn_every == 0
                if log_now or knn_now:
                    metrics: dict[str, Any] = {}
                    if log_now:
                        metrics.update({"loss": all_mean(running / seen), "loss_chance": chance,
                                        "lr": opt.param_groups[0]["lr"],
                                        "train_minutes": train_seconds / 60})
                        running, seen = 0.0, 0
                    if knn_now:
                        metrics["knn_top1"] = knn_accuracy(model.encoder, data)
                    if tracker:
                        record(tracker, history, step, metrics)
                if bar:
                    bar.update(1)
                if args.checkpoint_every and step % args.checkpoint_every == 0:
                    save_checkpoint()
        finally:
            if bar:
                bar.close()
        save_checkpoint()
        knn = knn_accuracy(model.encoder, data)
        summary: dict[str, Any] = {
            "algo": ALGO, "data": args.data, "backbone": args.backbone, "seed": args.seed, "steps": step,
            "batch_size": args.batch_size, "processes": size, "temperature": args.temperature, "pairs": args.pairs,
            "recipe": recipe_name, "recipe_detail": recipe.describe(), "amp_bf16": amp,
            "train_seconds": round(train_seconds, 2), "train_minutes": round(train_seconds / 60, 3),
            "final_loss": history["loss"][-1] if history["loss"] else None, "loss_chance": chance,
            "knn_top1": knn, "params": sum(p.numel() for p in model.encoder.parameters()),
        }
        if tracker:
            summary["wall_seconds"] = round(time.time() - tracker.start_time, 2)
            write_pictures(run_dir, tracker, history, data.train, recipe, args.seed, title=f"SimCLR on {args.data}",
                           ylabel="NT-Xent loss", chance=chance)
            tracker.finish(summary, results=pretraining_results(summary, "NT-Xent"))
    return summary


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
