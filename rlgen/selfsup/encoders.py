"""Any rlgen encoder, frozen, from its run folder: the input of every probe.

:func:`load_encoder` reads a checkpoint and dispatches on its ``algo``:

* ``simclr``, ``moco``, ``supervised``: the pretrained backbone;
* ``vae``: the encoder trunk (the features under the μ/log σ² layer);
* ``gan``: the discriminator without its last layer (the features its score is read from);
* ``dqn``: the Q-network's backbone (the Nature CNN on Atari, the MLP on classic control);
* ``stdim``: the AtariARI encoder pretrained by :mod:`rlgen.selfsup.stdim`.

A :class:`FrozenEncoder` carries the module and the input scaling its training used (scaling is
kept outside backbones), so callers hand it raw uint8 images.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rlgen import checkpoint
from rlgen.errors import UsageError


@dataclasses.dataclass
class FrozenEncoder:
    """A frozen feature extractor with its input convention."""

    net: nn.Module
    """Eval mode, no gradients: float input → (N, out_dim) features."""
    prepare: Callable[[torch.Tensor], torch.Tensor]
    """uint8 (N, C, H, W) → the float tensor ``net`` was trained on."""
    input_shape: tuple[int, ...]
    out_dim: int
    algo: str
    description: str

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Features of uint8 images, computed in batches on the encoder's device; float32 on the CPU."""
        if tuple(images.shape[1:]) != tuple(self.input_shape):
            raise UsageError(f"the {self.algo} encoder takes images of shape {tuple(self.input_shape)}, "
                             f"got {tuple(images.shape[1:])}")
        device = next((p.device for p in self.net.parameters()), torch.device("cpu"))
        outs = [self.net(self.prepare(images[i: i + batch_size].to(device))).float().cpu()
                for i in range(0, len(images), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.out_dim)


def freeze(net: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...],
           out_dim: int, algo: str, description: str) -> FrozenEncoder:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return FrozenEncoder(net, prepare, tuple(input_shape), out_dim, algo, description)


def unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 → [0, 1]: the input convention of the contrastive encoders."""
    return x.float() / 255


def _signed(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def _binary_signed(x: torch.Tensor) -> torch.Tensor:
    return (x >= 128).float() * 2.0 - 1.0


class _Flat(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


def image_shape_of(ckpt: dict[str, Any]) -> tuple[int, ...]:
    """The input shape a checkpoint's encoder takes: ``image_shape`` (ST-DIM checkpoints written before it was
    renamed say ``input_shape``, and still load)."""
    shape = ckpt.get("image_shape", ckpt.get("input_shape"))
    if shape is None:
        raise UsageError(f"the {ckpt.get('algo')} checkpoint records no image_shape; start a new run")
    return tuple(int(n) for n in shape)


def _from_vae(ckpt: dict[str, Any], device: torch.device) -> FrozenEncoder:
    from rlgen.gen.vae import sampler_from_checkpoint

    vae = sampler_from_checkpoint(ckpt, device)
    shape = image_shape_of(ckpt)
    # The VAE saw binarized pixels as ±1 (bernoulli) or 8-bit levels in [−1, 1] (logistic).
    prepare = _binary_signed if vae.likelihood == "bernoulli" else _signed
    return freeze(vae.encoder, prepare, shape, vae.encoder.out_dim, "vae",
                  f"VAE {ckpt['args']['arch']} encoder trunk ({vae.encoder.out_dim}-d, under μ/log σ²)")


def _from_gan(ckpt: dict[str, Any], device: torch.device) -> FrozenEncoder:
    from rlgen.gen.gan import Discriminator

    a = ckpt["args"]
    shape = image_shape_of(ckpt)
    disc = Discriminator(a["arch"], shape, a["width"], bool(a.get("spectral_norm")))  # type: ignore[arg-type]
    disc.load_state_dict(ckpt["discriminator"])
    trunk = _Flat(nn.Sequential(*list(disc.net.children())[:-1])).to(device)
    with torch.no_grad():
        out_dim = trunk(torch.zeros(1, *shape, device=device)).shape[1]
    return freeze(trunk, _signed, shape, out_dim, "gan",
                  f"GAN ({a['arch']}) discriminator without its last layer ({out_dim}-d)")


def _from_dqn(ckpt: dict[str, Any], device: torch.device) -> FrozenEncoder:
    # The agent a run keeps: the running average of the weights where the run kept one (dqn --policy-average).
    weights = ckpt.get("avg_net", ckpt["q_net"])
    state = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
    from rlgen.nets import make_backbone

    if any(k.startswith("conv.") for k in state):
        shape = (4, 84, 84)
        name = ckpt["args"].get("backbone") or "nature_cnn"  # runs from before --backbone used the Nature CNN
        net = make_backbone(name, shape)
        net.load_state_dict(state)
        return freeze(net.to(device), unit, shape, net.out_dim, "dqn",
                      f"DQN {name} (4 stacked 84×84 greyscale frames)")
    linear = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]  # LayerNorm weights are 1-D
    first = linear[0]
    net = make_backbone("mlp", (first.shape[1],), hidden=[v.shape[0] for v in linear],
                        layer_norm=bool(ckpt["args"].get("layer_norm")))
    net.load_state_dict(state)
    return freeze(net.to(device), lambda x: x.float(), (first.shape[1],), net.out_dim, "dqn",
                  f"DQN MLP on {first.shape[1]}-d observations")


def backbone_from_checkpoint(ckpt: dict[str, Any], device: torch.device) -> FrozenEncoder:
    """The ``encoder`` backbone of a simclr/moco/supervised checkpoint (see :func:`save_encoder_state`)."""
    from rlgen.nets import make_backbone

    a = ckpt["args"]
    shape = image_shape_of(ckpt)
    net = make_backbone(a["backbone"], shape)
    net.load_state_dict(ckpt["encoder"])
    return freeze(net.to(device), unit, shape, net.out_dim, ckpt["algo"],
                  f"{ckpt['algo']} {a['backbone']} backbone ({net.out_dim}-d)")


_LOADERS: dict[str, Callable[[dict[str, Any], torch.device], FrozenEncoder] | str] = {
    "simclr": backbone_from_checkpoint,
    "moco": backbone_from_checkpoint,
    "supervised": backbone_from_checkpoint,
    "vae": _from_vae,
    "gan": _from_gan,
    "dqn": _from_dqn,
    "stdim": "rlgen.selfsup.stdim",
}


def load_fitting_encoder(run_dir: str | os.PathLike, input_shape: tuple[int, ...], name: str, inputs: str,
                         device: str | torch.device = "cpu") -> FrozenEncoder:
    """:func:`load_encoder`, then a UsageError unless it takes ``input_shape``; ``name`` (the flag or argument)
    and ``inputs`` (what is fed) word the error. The net exposes ``out_dim``, as every backbone does."""
    enc = load_encoder(run_dir, device)
    if tuple(enc.input_shape) != tuple(input_shape):
        raise UsageError(f"{name} {os.fspath(run_dir)}: its {enc.algo} encoder takes input of shape "
                         f"{tuple(enc.input_shape)}, but {inputs} have shape {tuple(input_shape)}")
    if not hasattr(enc.net, "out_dim"):
        enc.net.out_dim = enc.out_dim
    return enc


def load_encoder(run_dir_or_file: str | os.PathLike, device: str | torch.device = "cpu") -> FrozenEncoder:
    """The frozen encoder stored in a run folder (or checkpoint file) of any algorithm listed above."""
    ckpt = checkpoint.load(run_dir_or_file)
    algo = ckpt.get("algo")
    loader = _LOADERS.get(str(algo))
    if loader is None:
        raise UsageError(f"checkpoint {os.fspath(run_dir_or_file)!r} (algo {algo!r}) holds no encoder; "
                         f"encoders come from: {', '.join(sorted(_LOADERS))}")
    if isinstance(loader, str):
        loader = importlib.import_module(loader).encoder_from_checkpoint  # type: ignore[attr-defined]
    return loader(ckpt, torch.device(device))  # type: ignore[operator]
