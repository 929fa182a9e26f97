"""The supervised upper bound of a probe table: the same backbone trained end to end on the labels.

    python -m rlgen.selfsup.supervised --data mnist5k --backbone convnet --minutes 3

A backbone plus a linear layer, cross-entropy, AdamW with warm-up and cosine decay, the data's
augmentation recipe (or none). The checkpoint stores the backbone like the contrastive methods do,
so :mod:`rlgen.selfsup.probe` judges it with the same frozen-feature protocol; the summary also
reports the end-to-end classifier's own test accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlgen import checkpoint, cli
from rlgen.errors import UsageError
from rlgen.nets import make_backbone
from rlgen.selfsup.augment import augment, default_recipe, recipe_by_name
from rlgen.selfsup.common import cosine_lr, embed, load_pretrain_data
from rlgen.track import RunArgs, Tracker, default_run_dir
from rlgen.utils import pick_device, seed_everything

ALGO = "supervised"


@dataclasses.dataclass
class Args(RunArgs):
    data: str = "mnist5k"
    """labelled dataset (mnist5k, mnist, fashion-mnist, cifar10, digits, faces, folder:PATH)"""
    backbone: str = "convnet"
    """encoder by name from rlgen.nets"""
    recipe: str = "auto"
    """augmentation recipe name, auto (the data's default) or none"""
    seed: int = 0
    """seed for initialisation, batches and augmentation"""
    device: str = "auto"
    """auto, cpu or cuda"""
    total_steps: int = 2000
    """optimizer steps (sets the learning-rate schedule)"""
    minutes: float | None = None
    """training wall-time budget; when given, the schedule follows elapsed time instead of steps"""
    batch_size: int = 256
    """minibatch size"""
    lr: float = 2e-3
    """peak AdamW learning rate"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    log_every: int = 50
    """steps between logged losses"""
    threads: int = 2
    """torch CPU threads"""
    resume: str | None = None
    """not supported here: supervised saves no checkpoint mid-run, so a run is started again instead (minutes)"""


def main(args: Args) -> dict[str, Any]:
    """Train; returns the summary that is also written to ``summary.json``."""
    if args.resume:
        # Refused rather than ignored: ignoring it silently started a fresh run in a new folder.
        raise UsageError(f"--resume is not supported by supervised (it saves no mid-run checkpoint); "
                         f"start the run again without --resume {args.resume}")
    if args.total_steps < 1 or args.batch_size < 1 or args.lr <= 0 or args.log_every < 1:
        raise UsageError("--total-steps, --batch-size and --log-every must be ≥ 1 and --lr positive")
    if args.minutes is not None and args.minutes <= 0:
        raise UsageError(f"--minutes {args.minutes} must be positive")
    recipe = None if args.recipe == "none" else (default_recipe(args.data)[1] if args.recipe == "auto"
                                                 else recipe_by_name(args.recipe))
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    seed_everything(args.seed)
    data = load_pretrain_data(args.data, device)
    if data.train_labels is None or data.test_labels is None:
        raise UsageError(f"dataset {args.data!r} has no class labels to train on")
    image_shape = tuple(data.train.shape[1:])
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(ALGO, args.data)
    args = dataclasses.replace(args, run_dir=str(run_dir))
    encoder = make_backbone(args.backbone, image_shape).to(device)
    n_classes = int(data.train_labels.max()) + 1
    head = nn.Linear(encoder.out_dim, n_classes).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    tracker = Tracker.for_run(run_dir, args, algo=ALGO, bar_keys=("loss",))
    with tracker:
        budget = args.minutes * 60 if args.minutes is not None else math.inf
        step, train_seconds, running = 0, 0.0, 0.0
        perm, pos = torch.randperm(len(data.train), generator=gen), 0
        bar = tracker.progress(args.total_steps)
        try:
            while step < args.total_steps and train_seconds < budget:
                tick = time.perf_counter()
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(args.lr, max(step / args.total_steps, train_seconds / budget))
                if pos + args.batch_size > len(perm):
                    perm, pos = torch.randperm(len(data.train), generator=gen), 0
                idx = perm[pos: pos + args.batch_size].to(device)
                pos += args.batch_size
                x = augment(data.train[idx], recipe, gen) if recipe else data.train[idx].float() / 255
                loss = F.cross_entropy(head(encoder(x)), data.train_labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                running += float(loss.detach())
                train_seconds += time.perf_counter() - tick
                if step % args.log_every == 0:
                    tracker.log({"loss": running / args.log_every, "lr": opt.param_groups[0]["lr"]}, step)
                    running = 0.0
                bar.update(1)
        finally:
            bar.close()
        checkpoint.save(checkpoint.checkpoint_path(run_dir), algo=ALGO, args=dataclasses.asdict(args), step=step,
                        image_shape=list(image_shape), encoder=encoder.state_dict(), head=head.state_dict())
        with torch.no_grad():
            logits = head(embed(encoder, data.test))
        summary = {"algo": ALGO, "data": args.data, "backbone": args.backbone, "seed": args.seed, "steps": step,
                   "train_seconds": round(train_seconds, 2), "train_minutes": round(train_seconds / 60, 3),
                   "end_to_end_top1": float((logits.argmax(1) == data.test_labels).float().mean()),
                   "recipe": args.recipe, "wall_seconds": round(time.time() - tracker.start_time, 2)}
        top1 = summary["end_to_end_top1"]
        tracker.finish(summary, results=[f"end-to-end test top-1 {100 * top1:.1f}% ({args.backbone} + linear layer, "
                                         f"{step:,} steps)"])
    return summary


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
