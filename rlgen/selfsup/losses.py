"""Contrastive losses and MoCo's queue, as small modules.

Both losses take L2-normalised embeddings internally; both support data parallelism by gathering
the embeddings of every process (with gradients) so the negatives span the global batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from rlgen.errors import UsageError


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0 (rank order); gradients flow back to each."""
    _, size = world()
    if size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), 0)


class NTXentLoss(nn.Module):
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).

    For N pairs (z1[i], z2[i]) the 2N embeddings are compared by cosine similarity / τ; each one's
    positive is its partner and the other 2N − 2 are negatives. The loss is the mean over all 2N
    anchors, so at chance it equals ln(2N − 1). Under data parallelism every process's anchors are
    scored against the gathered global batch and the mean over processes equals the loss of the
    global batch on one process.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise UsageError(f"temperature {temperature} must be > 0")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.dim() != 2:
            raise UsageError(f"NT-Xent needs two (N, d) views of the same shape, got {tuple(z1.shape)} "
                             f"and {tuple(z2.shape)}")
        n = z1.shape[0]
        rank, size = world()
        if n * size < 2:
            raise UsageError(f"NT-Xent needs a batch of at least 2 pairs (the negatives are the other pairs), "
                             f"got {n * size}")
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
        keys = torch.cat([all1, all2], 0)  # (2·N_global, d): first views, then second views
        total = all1.shape[0]
        anchors = torch.cat([z1, z2], 0)
        logits = anchors @ keys.T / self.temperature
        local = torch.arange(n, device=z1.device) + rank * n
        self_idx = torch.cat([local, local + total])
        partner = torch.cat([local + total, local])
        logits[torch.arange(2 * n, device=z1.device), self_idx] = float("-inf")
        return F.cross_entropy(logits, partner)

    @staticmethod
    def chance(batch: int) -> float:
        """The loss of an encoder that learned nothing: ln(2N − 1)."""
        return math.log(2 * batch - 1)


class InfoNCEQueueLoss(nn.Module):
    """The InfoNCE loss of MoCo (He et al. 2019, eq. 1): each query's positive is its own key,
    the negatives are the queue of earlier keys. Logits are cosine similarities / τ.

    The loss at chance is ln(K + 1) with a full queue of K keys; ``queue_filled`` says how much of
    the queue holds real keys (the empty part is left out of the softmax).
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        if temperature <= 0:
            raise UsageError(f"temperature {temperature} must be > 0")
        self.temperature = temperature

    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        if q.shape != k.shape or q.dim() != 2:
            raise UsageError(f"InfoNCE needs queries and keys of the same (N, d) shape, got {tuple(q.shape)} "
                             f"and {tuple(k.shape)}")
        q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
        pos = (q * k).sum(1, keepdim=True)
        neg = q @ queue.T
        logits = torch.cat([pos, neg], 1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


class KeyQueue(nn.Module):
    """MoCo's first-in-first-out queue of normalised keys (He et al. 2019, sec. 3.2).

    ``size`` must be a multiple of the global batch so that each enqueue replaces whole batches.
    Under data parallelism the keys of every process are gathered first, so all queues agree.
    """

    def __init__(self, size: int, dim: int, batch: int) -> None:
        super().__init__()
        _, world_size = world()
        global_batch = batch * world_size
        if size < global_batch or size % global_batch:
            raise UsageError(f"queue size {size} must be a positive multiple of the global batch {global_batch} "
                             f"(e.g. {max(1, size // global_batch) * global_batch})")
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def active(self) -> torch.Tensor:
        """The keys filled so far (all of them once the queue has wrapped)."""
        return self.keys[: int(self.filled)]

    def fill_fraction(self) -> float:
        return int(self.filled) / len(self.keys)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        keys = F.normalize(keys, dim=1)
        _, size = world()
        if size > 1:
            parts = [torch.empty_like(keys) for _ in range(size)]
            dist.all_gather(parts, keys.contiguous())
            keys = torch.cat(parts, 0)
        p = int(self.ptr)
        self.keys[p: p + len(keys)] = keys
        self.ptr.fill_((p + len(keys)) % len(self.keys))
        self.filled.fill_(min(len(self.keys), int(self.filled) + len(keys)))
