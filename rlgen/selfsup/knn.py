"""The kNN monitor of representation quality (Wu et al. 2018): frozen features of the training images vote
for the class of each held-out image."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, k: int = 200,
                tau: float = 0.1, n_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN (Wu et al. 2018): cosine neighbours vote with weight exp(similarity / τ)."""
    n_classes = n_classes or int(train_labels.max()) + 1
    bank = F.normalize(train_feats, dim=1)
    k = min(k, len(bank))
    preds = []
    for i in range(0, len(query), chunk):
        sims = F.normalize(query[i: i + chunk], dim=1) @ bank.T
        top, where = sims.topk(k, dim=1)
        votes = torch.zeros(len(top), n_classes, device=top.device, dtype=top.dtype)
        votes.scatter_add_(1, train_labels[where], (top / tau).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


@torch.no_grad()
def embed(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Features of uint8 images in eval mode (BatchNorm running statistics), then back to train mode."""
    was = net.training
    net.eval()
    out = torch.cat([net(images[i: i + batch_size].float() / 255) for i in range(0, len(images), batch_size)])
    net.train(was)
    return out


def knn_accuracy(net: torch.nn.Module, data: Any, k: int = 200, tau: float = 0.1) -> float | None:
    """The kNN monitor on a :class:`~rlgen.selfsup.common.PretrainData`: training images as the bank, held-out images
    as queries; None without labels."""
    if data.train_labels is None or data.test_labels is None:
        return None
    pred = knn_predict(embed(net, data.train), data.train_labels, embed(net, data.test), k, tau)
    return float((pred == data.test_labels).float().mean())
