"""One contiguous buffer for all of a module's parameters, and one for their gradients.

A small network's update is bound by per-call overhead: Adam, gradient clipping and zeroing each
loop over every weight and bias. With the parameters (and gradients) as views into one flat
tensor each of those is a single call on one tensor, whatever the number of layers.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def flatten_parameters(module: nn.Module) -> nn.Parameter:
    """Move ``module``'s parameters into one flat buffer; return it as a Parameter whose ``.grad`` holds every gradient.

    Afterwards each parameter is a view into the buffer and has a gradient that is a view into
    ``flat.grad``; backward adds into those in place (autograd accumulates into an existing
    gradient), so after ``flat.grad.zero_()`` and a backward pass ``flat.grad`` is the whole
    gradient. Give ``[flat]`` to the optimizer. Do not set the parameters' gradients to None, and
    do not move the module afterwards (``.to`` would replace the views). ``load_state_dict``
    copies in place and keeps them.
    """
    params = list(module.parameters())
    if not params:
        raise ValueError("flatten_parameters: the module has no parameters")
    if len({(p.dtype, p.device) for p in params}) != 1:
        raise ValueError("flatten_parameters: every parameter must share one dtype and device")
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    grad = torch.zeros_like(flat)
    start = 0
    for p in params:
        end = start + p.numel()
        p.data = flat[start:end].view_as(p)
        p.grad = grad[start:end].view_as(p)
        start = end
    flat_param = nn.Parameter(flat)
    flat_param.grad = grad
    return flat_param
