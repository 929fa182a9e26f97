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
from typing import Any

import torch
from torch import nn

from rlgen import cli
from rlgen.lifecycle import Run
from rlgen.nets import ProjectionHead, make_backbone
from rlgen.selfsup.common import Method, PretrainArgs, check_common, prepare, pretrain, with_default_lr
from rlgen.selfsup.distributed import global_batchnorm, launch_rank, local_slice
from rlgen.selfsup.losses import NTXentLoss

ALGO = "simclr"
# What a continued run may change: its budget, its logging and monitor cadence.
RESUME_CHANGEABLE = frozenset({"total_steps", "minutes", "checkpoint_every", "log_every", "knn_every"})


@dataclasses.dataclass
class Args(PretrainArgs):
    temperature: float = 0.5
    """NT-Xent temperature τ (0.5: the paper's CIFAR value)"""

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
