"""The one moving-average helper: DQN target networks and MoCo's key encoder both use it.

Convention (Polyak averaging, as in Lillicrap et al. 2016): ``tau`` is the weight given to the
*online* network, ``target ← (1 − tau) · target + tau · online``. ``tau = 1`` is a hard copy.
MoCo's momentum m (He et al. 2019) is ``tau = 1 − m``; a weight average with decay d (PixelCNN,
GAN generators) is ``tau = 1 − d``, with the decay ramped up by :func:`ramped_tau`.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Move ``target``'s parameters (and copy its buffers) towards ``online``'s by ``tau``."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if tau >= 1.0:
        for t, o in zip(t_params, o_params):
            t.copy_(o)
    else:
        torch._foreach_lerp_(t_params, o_params, tau)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


def ramped_tau(decay: float, step: int) -> float:
    """``tau`` for a weight average of decay ``decay`` after ``step`` updates: 1 − min(decay, (1 + step) / (10 + step)).

    The decay ramps up from 0.1, as TensorFlow's ExponentialMovingAverage does with ``num_updates``,
    so a short run averages its own steps rather than the initial weights.
    """
    return 1.0 - min(decay, (1 + step) / (10 + step))
