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
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rlgen import cli
from rlgen.augment import augment, default_recipe, recipe_by_name
from rlgen.encoders import encoder_record
from rlgen.errors import UsageError
from rlgen.lifecycle import Run
from rlgen.nets import make_backbone
from rlgen.seeding import seed_everything
from rlgen.selfsup.common import EpochOrder, check_names, cosine_lr, load_pretrain_data
from rlgen.selfsup.knn import embed
from rlgen.track import RunArgs

ALGO = "supervised"
# What a continued run may change: its budget and its logging cadence.
RESUME_CHANGEABLE = frozenset({"total_steps", "minutes", "checkpoint_every", "log_every"})


@dataclasses.dataclass
class Args(RunArgs):
    THREADS: ClassVar[int] = 2

    data: str = "mnist5k"
    """labelled dataset (mnist5k, mnist, fashion-mnist, cifar10, digits, faces, folder:PATH)"""
    backbone: str = "convnet"
    """encoder by name from rlgen.nets"""
    recipe: str = "auto"
    """augmentation recipe name, auto (the data's default) or none"""
    total_steps: int = 2000
    """optimizer steps (sets the learning-rate schedule)"""
    minutes: float | None = None
    """training wall-time budget; when given, the schedule follows elapsed time (default: no time limit)"""
    batch_size: int = 256
    """minibatch size"""
    lr: float = 2e-3
    """peak AdamW learning rate"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    log_every: int = 50
    """steps between logged losses"""
    checkpoint_every: int = 1000
    """steps between checkpoints (0: only at the end)"""


def resolve(args: Args) -> Args:
    check_names(args)  # data, backbone and recipe (or none) exist
    return args


def main(args: Args) -> dict[str, Any]:
    """Train; returns the summary that is also written to ``summary.json``."""
    run = Run(args, ALGO, what=args.data, changeable=RESUME_CHANGEABLE, check=resolve)
    args, device = run.args, run.device
    recipe = None if args.recipe == "none" else (default_recipe(args.data)[1] if args.recipe == "auto"
                                                 else recipe_by_name(args.recipe))
    seed_everything(args.seed)
    data = load_pretrain_data(args.data, device)
    if data.train_labels is None or data.test_labels is None:
        raise UsageError(f"dataset {args.data!r} has no class labels to train on")
    image_shape = tuple(data.train.shape[1:])
    encoder = make_backbone(args.backbone, image_shape).to(device)
    head = nn.Linear(encoder.out_dim, int(data.train_labels.max()) + 1).to(device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=args.lr,
                                  weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)  # batches and augmentation
    order = EpochOrder(len(data.train), gen)
    run.record(encoder_record=encoder_record(args.backbone, image_shape, "unit", "encoder",
                                             description=f"supervised {args.backbone} backbone"))
    step = run.restore(encoder=encoder, head=head, optimizer=optimizer, gen=gen, order=order, counters=dict(step=0))
    budget = args.minutes * 60 if args.minutes is not None else math.inf
    with run.start(bar_keys=("train/loss",)) as tracker:
        bar = tracker.progress(args.total_steps, initial=step)
        running, seen = 0.0, 0
        while step < args.total_steps and run.train_clock.seconds < budget:
            with run.train_clock:
                # The schedule follows the budget as it stands now: a run resumed with a larger --total-steps or
                # --minutes stretches the rest of its cosine over the new budget.
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(args.lr, max(step / args.total_steps, run.train_clock.seconds / budget))
                idx = order.next(args.batch_size).to(device)
                x = augment(data.train[idx], recipe, gen) if recipe else data.train[idx].float() / 255
                loss = F.cross_entropy(head(encoder(x)), data.train_labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            step += 1
            running, seen = running + float(loss.detach()), seen + 1
            if step % args.log_every == 0:
                tracker.log({"train/loss": running / seen, "train/lr": optimizer.param_groups[0]["lr"]}, step)
                running, seen = 0.0, 0
            bar.update(1)
            if run.checkpoint_due(step - 1, step, args.checkpoint_every):
                run.save(step, image_shape=list(image_shape))  # the encoder as the contrastive methods store it
        bar.close()
        run.save(step, image_shape=list(image_shape))
        with run.after_clock, torch.no_grad():
            top1 = float((head(embed(encoder, data.test)).argmax(1) == data.test_labels).float().mean())
        summary = {"data": args.data, "backbone": args.backbone, "updates": step, "recipe": args.recipe,
                   "train_seconds": run.train_clock.seconds, "end_to_end_top1": top1}
        return run.finish(summary, results=[f"end-to-end test top-1 {100 * top1:.1f}% ({args.backbone} + linear "
                                            f"layer, {step:,} steps)"])


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
