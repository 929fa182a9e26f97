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

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from rlgen import cli
from rlgen.errors import UsageError
from rlgen.lifecycle import Run
from rlgen.nets import polyak_update
from rlgen.selfsup.common import Method, PretrainArgs, check_common, prepare, pretrain, with_default_lr
from rlgen.selfsup.distributed import launch_rank, local_slice
from rlgen.selfsup.losses import InfoNCEQueueLoss, KeyQueue
from rlgen.selfsup.simclr import SimCLR

ALGO = "moco"
# What a continued run may change: its budget, its logging and monitor cadence.
RESUME_CHANGEABLE = frozenset({"total_steps", "minutes", "checkpoint_every", "log_every", "knn_every"})


@dataclasses.dataclass
class Args(PretrainArgs):
    queue_size: int = 4096
    """keys in the queue of negatives (a multiple of the global batch)"""
    momentum: float = 0.99
    """key-encoder momentum m: key ← m · key + (1 − m) · query after every step"""
    temperature: float = 0.3
    """InfoNCE temperature τ (MoCo v2 uses 0.2; 0.3 probed better on the 4,000 mnist5k images)"""
    bn_splits: int = 4
    """chunks with their own BatchNorm statistics (emulates MoCo's cross-GPU shuffle); 1: off"""

def resolve(args: Args) -> Args:
    check_common(args)
    if args.batch_size % args.bn_splits:
        raise UsageError(f"--bn-splits {args.bn_splits} must divide --batch-size {args.batch_size}")
    if args.queue_size < args.batch_size or args.queue_size % args.batch_size:
        raise UsageError(f"--queue-size {args.queue_size} must be a positive multiple of --batch-size "
                         f"{args.batch_size} (e.g. {max(1, args.queue_size // args.batch_size) * args.batch_size})")
    return with_default_lr(args)


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
    run = Run(args, ALGO, what=args.data, changeable=RESUME_CHANGEABLE, check=resolve, lead=launch_rank() == 0)
    args = run.args
    s = prepare(args, run)
    query = SimCLR(args.backbone, s.image_shape, args.proj_hidden, args.proj_dim).to(s.device)
    key = copy.deepcopy(query).requires_grad_(False)
    net: nn.Module = nn.parallel.DistributedDataParallel(query) if s.size > 1 else query
    local = args.batch_size // s.size
    queue = KeyQueue(args.queue_size, args.proj_dim, local).to(s.device)
    loss_fn = InfoNCEQueueLoss(args.temperature)
    optimizer = torch.optim.AdamW(query.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    def step(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """Each view is a query once, its partner's key the positive, the queue the negatives (symmetrised)."""
        v1, v2 = local_slice(v1), local_slice(v2)
        order = torch.randperm(local, generator=s.gen).to(s.device)  # the key batch's shuffle
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.amp):
            q1, q2 = encode_in_splits(net, v1, args.bn_splits), encode_in_splits(net, v2, args.bn_splits)
            with torch.no_grad():
                k1 = encode_in_splits(key, v1, args.bn_splits, order)
                k2 = encode_in_splits(key, v2, args.bn_splits, order)
        q1, q2, k1, k2 = q1.float(), q2.float(), k1.float(), k2.float()
        negatives = queue.active()
        loss = 0.5 * (loss_fn(q1, k2, negatives) + loss_fn(q2, k1, negatives))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        polyak_update(key, query, 1.0 - args.momentum)
        queue.enqueue(torch.cat([k1, k2])[:local])  # one key per image keeps K a whole number of batches
        return loss

    net.train()
    key.train()  # keys use batch statistics too, chunked (see the module docstring)
    return pretrain(run, args, s, Method("MoCo v2", "InfoNCE", query.encoder, optimizer, step,
                                         chance=math.log(args.queue_size + 1),
                                         keep=dict(model=query, key_model=key, queue=queue, optimizer=optimizer),
                                         metrics=lambda: {"train/queue_fill": queue.fill_fraction()},
                                         summary=dict(queue_size=args.queue_size, momentum=args.momentum)))


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
