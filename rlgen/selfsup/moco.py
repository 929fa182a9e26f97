"""MoCo v2: contrastive pretraining against a queue of keys from a momentum encoder.

He, Fan, Wu, Xie & Girshick 2019, "Momentum Contrast for Unsupervised Visual Representation
Learning" (arXiv:1911.05722), with the v2 changes of Chen, Fan, Girshick & He 2020 (arXiv:2003.04297):
an MLP projection head, blur in the augmentations, a cosine schedule. A query encoder is trained
by InfoNCE: each query's positive is the key of the other view, made by a key encoder that is a
moving average of the query encoder (``polyak_update`` with τ = 1 − m); the negatives are the
queue of the last K keys. Symmetrised as in MoCo's CIFAR demo: each view is a query once.

    python -m rlgen.selfsup.moco --data mnist5k --backbone convnet --minutes 10

BatchNorm would let a query find its key through the batch statistics; MoCo shuffles the key
batch across GPUs. On one process we get the same effect by shuffling the keys and encoding them
in ``--bn-splits`` separate chunks, each with its own statistics (the queries are chunked in order).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rlgen import checkpoint, cli
from rlgen.errors import UsageError
from rlgen.nets import polyak_update
from rlgen.selfsup.augment import default_recipe, recipe_by_name
from rlgen.selfsup.common import (
    all_mean,
    check_common,
    cosine_lr,
    init_distributed,
    knn_accuracy,
    load_pretrain_data,
    local_slice,
    pretraining_results,
    record,
    two_views,
    write_pictures,
)
from rlgen.selfsup.losses import InfoNCEQueueLoss, KeyQueue
from rlgen.selfsup.simclr import SimCLR
from rlgen.track import RunArgs, Tracker, default_run_dir
from rlgen.utils import pick_device, rng_state, seed_everything, set_rng_state, use_amp

ALGO = "moco"


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
    queue_size: int = 4096
    """keys in the queue of negatives (a multiple of the global batch)"""
    momentum: float = 0.99
    """key-encoder momentum m: key ← m · key + (1 − m) · query after every step"""
    temperature: float = 0.3
    """InfoNCE temperature τ (MoCo v2 uses 0.2; 0.3 probed better on the 4,000 mnist5k images)"""
    bn_splits: int = 4
    """chunks with their own BatchNorm statistics (emulates MoCo's cross-GPU shuffle); 1: off"""
    proj_hidden: int = 512
    """projection head hidden width"""
    proj_dim: int = 128
    """projection head output width"""
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
    if not 0.0 <= args.momentum < 1.0:
        raise UsageError(f"--momentum {args.momentum} must be in [0, 1)")
    if args.bn_splits < 1 or args.batch_size % args.bn_splits:
        raise UsageError(f"--bn-splits {args.bn_splits} must be ≥ 1 and divide --batch-size {args.batch_size}")
    if args.queue_size < args.batch_size or args.queue_size % args.batch_size:
        raise UsageError(f"--queue-size {args.queue_size} must be a positive multiple of --batch-size "
                         f"{args.batch_size} (e.g. {max(1, args.queue_size // args.batch_size) * args.batch_size})")
    return args


def encode_in_splits(net: nn.Module, x: torch.Tensor, splits: int, order: torch.Tensor | None = None) -> torch.Tensor:
    """``net`` applied to ``splits`` chunks of ``x`` (each with its own BatchNorm statistics).

    With ``order`` the rows are shuffled before chunking and the outputs put back in place.
    """
    if order is not None:
        x = x[order]
    out = torch.cat([net(chunk) for chunk in x.chunk(splits)]) if splits > 1 else net(x)
    if order is not None:
        out = out[torch.argsort(order)]
    return out


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

    query = SimCLR(args.backbone, image_shape, args.proj_hidden, args.proj_dim).to(device)
    key = copy.deepcopy(query)
    for p in key.parameters():
        p.requires_grad_(False)
    net: nn.Module = nn.parallel.DistributedDataParallel(query) if size > 1 else query
    queue = KeyQueue(args.queue_size, args.proj_dim, args.batch_size // size).to(device)
    loss_fn = InfoNCEQueueLoss(args.temperature)
    opt = torch.optim.AdamW(query.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    step, train_seconds = 0, 0.0
    history: dict[str, list[float]] = {"step": [], "loss": [], "knn_step": [], "knn": []}
    if ckpt is not None:
        query.load_state_dict(ckpt["model"])
        key.load_state_dict(ckpt["key_model"])
        queue.load_state_dict(ckpt["queue"])
        opt.load_state_dict(ckpt["optimizer"])
        step, train_seconds = ckpt["step"], ckpt["train_seconds"]
        history = {k: v.tolist() for k, v in ckpt["history"].items()}
        set_rng_state(ckpt["rng"])
        gen.set_state(ckpt["gen"])

    lead = rank == 0
    tracker = Tracker.for_run(run_dir, args, algo=ALGO, resume_step=step if ckpt else None,
                              bar_keys=("loss", "queue_fill", "knn_top1")) if lead else None

    def save_checkpoint() -> None:
        if lead:
            checkpoint.save(checkpoint.checkpoint_path(run_dir), algo=ALGO, args=dataclasses.asdict(args), step=step,
                            image_shape=list(image_shape), encoder=query.encoder.state_dict(),
                            model=query.state_dict(), key_model=key.state_dict(), queue=queue.state_dict(),
                            optimizer=opt.state_dict(), train_seconds=train_seconds,
                            history={k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()},
                            rng=rng_state(), gen=gen.get_state(), perm=perm, pos=pos)

    chance = math.log(args.queue_size + 1)
    budget = args.minutes * 60 if args.minutes is not None else math.inf
    # A resumed run continues the saved epoch order (drawing a new one would move the generator on).
    perm, pos = (ckpt["perm"], ckpt["pos"]) if ckpt is not None else (torch.randperm(len(data.train), generator=gen), 0)
    # Non-lead processes have no tracker; for them the block guards nothing.
    with tracker if tracker is not None else contextlib.nullcontext():
        bar = tracker.progress(args.total_steps, initial=step) if tracker else None
        running, seen = 0.0, 0
        net.train()
        key.train()  # keys use batch statistics too, chunked (see the module docstring)
        local = args.batch_size // size
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
                v1, v2 = (local_slice(v) for v in two_views(data.train, idx, recipe, gen, args.pairs, data.episode,
                                                             args.max_gap))
                order = torch.randperm(local, generator=gen).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    q1, q2 = encode_in_splits(net, v1, args.bn_splits), encode_in_splits(net, v2, args.bn_splits)
                    with torch.no_grad():
                        k1 = encode_in_splits(key, v1, args.bn_splits, order)
                        k2 = encode_in_splits(key, v2, args.bn_splits, order)
                q1, q2, k1, k2 = q1.float(), q2.float(), k1.float(), k2.float()
                negatives = queue.active()
                loss = 0.5 * (loss_fn(q1, k2, negatives) + loss_fn(q2, k1, negatives))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                polyak_update(key, query, 1.0 - args.momentum)
                queue.enqueue(torch.cat([k1, k2])[:local])  # one key per image keeps K a whole number of batches
                step += 1
                running, seen = running + float(loss.detach()), seen + 1
                train_seconds += all_mean(time.perf_counter() - tick) if size > 1 else time.perf_counter() - tick
                # The kNN monitor keeps its own cadence: tied to the log steps it ran only when --knn-every was a
                # multiple of --log-every.
                log_now = step % args.log_every == 0 or step == args.total_steps
                knn_now = step % args.knn_every == 0
                if log_now or knn_now:
                    metrics: dict[str, Any] = {}
                    if log_now:
                        metrics.update({"loss": all_mean(running / seen), "loss_chance": chance,
                                        "queue_fill": queue.fill_fraction(), "lr": opt.param_groups[0]["lr"],
                                        "train_minutes": train_seconds / 60})
                        running, seen = 0.0, 0
                    if knn_now:
                        metrics["knn_top1"] = knn_accuracy(query.encoder, data)
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
        knn = knn_accuracy(query.encoder, data)
        summary: dict[str, Any] = {
            "algo": ALGO, "data": args.data, "backbone": args.backbone, "seed": args.seed, "steps": step,
            "batch_size": args.batch_size, "processes": size, "temperature": args.temperature,
            "queue_size": args.queue_size, "momentum": args.momentum, "pairs": args.pairs,
            "recipe": recipe_name, "recipe_detail": recipe.describe(), "amp_bf16": amp,
            "train_seconds": round(train_seconds, 2), "train_minutes": round(train_seconds / 60, 3),
            "final_loss": history["loss"][-1] if history["loss"] else None, "loss_chance": chance,
            "knn_top1": knn, "params": sum(p.numel() for p in query.encoder.parameters()),
        }
        if tracker:
            summary["wall_seconds"] = round(time.time() - tracker.start_time, 2)
            write_pictures(run_dir, tracker, history, data.train, recipe, args.seed, title=f"MoCo v2 on {args.data}",
                           ylabel="InfoNCE loss", chance=chance)
            tracker.finish(summary, results=pretraining_results(summary, "InfoNCE"))
    return summary


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
