"""Data parallelism for pretraining under ``torchrun``: joining the process group, each process's share of a
batch, BatchNorm statistics over every process, and scalar means reduced where the backend reduces."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from rlgen.selfsup.losses import world


def local_slice(x: torch.Tensor) -> torch.Tensor:
    """This process's share of a global batch: contiguous rows, rank order."""
    rank, size = world()
    if size == 1:
        return x
    n = len(x) // size
    return x[rank * n: (rank + 1) * n]


def launch_rank() -> int:
    """This process's rank as ``torchrun`` gives it (0 without ``torchrun``), known before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device_name: str) -> tuple[int, int, torch.device | None]:
    """Join the process group ``torchrun`` describes (gloo on the CPU, NCCL on GPUs); ``(rank, size, device)``.

    Without ``torchrun`` (no ``WORLD_SIZE`` > 1) nothing happens and ``device`` is None.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1, None
    if not dist.is_initialized():
        cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank()
    if torch.cuda.is_available() and device_name in ("auto", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, size, torch.device("cuda", local)
    return rank, size, torch.device("cpu")


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose batch statistics span every process (the CPU/gloo stand-in for SyncBatchNorm,
    which PyTorch only runs on GPUs). Sums and squared sums are all-reduced with gradients, so the
    forward and backward passes equal those of BatchNorm on the global batch on one process."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dtype, x = x.dtype, x.float()  # statistics in float32 under bf16 autocast too
        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), x.pow(2).sum(dims), count.view(1)]))
        c = x.shape[1]
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c: 2 * c] / total - mean.pow(2)).clamp_min(0)
        with torch.no_grad():
            assert self.running_mean is not None and self.running_var is not None
            self.running_mean.lerp_(mean.detach(), self.momentum or 0.1)
            self.running_var.lerp_(var.detach() * total / (total - 1).clamp_min(1), self.momentum or 0.1)
            self.num_batches_tracked += 1  # type: ignore[operator]
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        out = out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out
        return out.to(dtype)


def global_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Replace every BatchNorm in ``model`` by one synchronised over processes (in place; returns it)."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            bn = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats).to(device)
            bn.load_state_dict(child.state_dict())
            setattr(model, name, bn)
        else:
            global_batchnorm(child, device)
    return model


def all_mean(value: float) -> float:
    """The mean of a scalar over processes (itself without a process group)."""
    _, size = world()
    if size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=reduction_device())
    dist.all_reduce(t)
    return float(t.item()) / size


def reduction_device(backend: str | None = None) -> torch.device:
    """Where a collective's tensors must live: NCCL reduces only CUDA tensors (on this process's GPU), gloo and
    the others reduce CPU tensors. ``backend`` defaults to the process group's."""
    backend = str(backend or dist.get_backend()).lower()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
