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
episode instead of two views of one frame (as in ST-DIM and ATC). On ``atari-stacks:GAME`` (frames as
DQN sees them) the pretrained trunk starts a DQN agent (the ATC idea, Stooke et al. 2021):

    python -m rlgen.selfsup.simclr --data atari-stacks:breakout --frames 50000 --backbone nature_cnn_same \
        --pairs temporal --minutes 10 --run-dir runs/simclr-breakout
    python -m rlgen.rl.dqn --env Breakout --preset atari100k --encoder runs/simclr-breakout [--freeze-encoder]
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from rlgen import cli
from rlgen.lifecycle import Run
from rlgen.nets import ProjectionHead, make_backbone
from rlgen.selfsup.common import (
    Method,
    check_common,
    global_batchnorm,
    launch_rank,
    local_slice,
    prepare,
    pretrain,
    with_default_lr,
)
from rlgen.selfsup.losses import NTXentLoss
from rlgen.track import RunArgs

ALGO = "simclr"
# What a continued run may change: its budget, its logging and monitor cadence.
RESUME_CHANGEABLE = frozenset({"total_steps", "minutes", "checkpoint_every", "log_every", "knn_every"})


@dataclasses.dataclass
class Args(RunArgs):
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
    temperature: float = 0.5
    """NT-Xent temperature τ (0.5: the paper's CIFAR value)"""
    proj_hidden: int = 512
    """projection head hidden width"""
    proj_dim: int = 128
    """projection head output width (the space NT-Xent works in)"""
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
    """steps between kNN-monitor evaluations (cosine, k 200, τ 0.1, on the held-out split)"""
    log_every: int = 20
    """steps between logged losses"""
    checkpoint_every: int = 1000
    """steps between checkpoints (0: only at the end)"""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast for the encoder (auto: on CUDA and on CPUs with bf16 matrix units); the loss stays float32"""


def resolve(args: Args) -> Args:
    check_common(args)
    return with_default_lr(args)


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
    run = Run(args, ALGO, what=args.data, changeable=RESUME_CHANGEABLE, check=resolve, lead=launch_rank() == 0)
    args = run.args
    s = prepare(args, run)
    model = SimCLR(args.backbone, s.image_shape, args.proj_hidden, args.proj_dim).to(s.device)
    # Under torchrun: BatchNorm statistics over the global batch, gradients averaged over processes.
    net = nn.parallel.DistributedDataParallel(global_batchnorm(model, s.device)) if s.size > 1 else model
    loss_fn = NTXentLoss(args.temperature)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    def step(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """Embed this process's slice of both views; NT-Xent gathers the others' as negatives."""
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.amp):
            z1, z2 = net(local_slice(v1)), net(local_slice(v2))
        loss = loss_fn(z1.float(), z2.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    net.train()
    return pretrain(run, args, s, Method("SimCLR", "NT-Xent", model.encoder, optimizer, step,
                                         chance=NTXentLoss.chance(args.batch_size),
                                         keep=dict(model=model, optimizer=optimizer)))


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0])
