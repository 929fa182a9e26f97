"""Heads that sit on a backbone's ``out_dim`` features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QHead(nn.Module):
    """Action values from features; with ``dueling`` the head of Wang et al. 2016,
    Q(s, a) = V(s) + A(s, a) − mean_a A(s, a)."""

    def __init__(self, in_dim: int, n_actions: int, dueling: bool = False) -> None:
        super().__init__()
        self.dueling = dueling
        self.adv = nn.Linear(in_dim, n_actions)
        self.value = nn.Linear(in_dim, 1) if dueling else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        a = F.linear(features, self.adv.weight, self.adv.bias)  # no module dispatch: see MLP.forward
        if self.value is None:
            return a
        return self.value(features) + a - a.mean(dim=1, keepdim=True)


class ProjectionHead(nn.Module):
    """The MLP projection head of SimCLR (Chen et al. 2020): Linear → BN → ReLU → Linear."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class QNetwork(nn.Module):
    """A backbone followed by a :class:`QHead`."""

    def __init__(self, backbone: nn.Module, n_actions: int, dueling: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = QHead(backbone.out_dim, n_actions, dueling)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
