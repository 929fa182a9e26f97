"""Any rlgen encoder, frozen, from its run folder: the input of every probe, of ``dqn --encoder`` and of
:class:`rlgen.rl.sb3.RlgenExtractor`.

Every command whose model holds an encoder writes an **encoder record** (:func:`encoder_record`) into its
checkpoints: the backbone's name and arguments, the input shape, the input scaling its training used, and
where its weights are in the checkpoint. :func:`load_encoder` rebuilds the encoder from that record alone,
with the backbones of :mod:`rlgen.nets`, whatever command wrote it:

* ``simclr``, ``moco``, ``supervised``: the pretrained backbone;
* ``vae``: the encoder trunk (the features under the μ/log σ² layer);
* ``gan``: the discriminator without its last layer (the features its score is read from);
* ``dqn``: the Q-network's trunk (the Nature CNN on Atari, the MLP on classic control, or the encoder it
  started from with ``--encoder``);
* ``stdim``: the AtariARI encoder pretrained by :mod:`rlgen.selfsup.stdim`.

A :class:`FrozenEncoder` carries the module and the input scaling its training used (scaling is
kept outside backbones), so callers hand it raw uint8 images.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from rlgen import checkpoint
from rlgen.errors import UsageError
from rlgen.nets import make_backbone
from rlgen.nets.discriminator import DiscriminatorTrunk

RECORD_KEY = "encoder_record"
"""The checkpoint key of the encoder record."""


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
    record: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The encoder record it was rebuilt from (see :func:`encoder_record`)."""

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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, out_dim)`` of raw inputs ``(N, *input_shape)`` (uint8 images or the vector observations it
        was trained on), scaled as in training (:attr:`scaling`)."""
        return self.features(x)

    @property
    def scaling(self) -> str:
        """The name of its input scaling (:data:`SCALINGS`)."""
        return str(self.record.get("scaling", ""))


def freeze(net: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...],
           out_dim: int, algo: str, description: str, record: dict[str, Any] | None = None) -> FrozenEncoder:
    """``net`` in eval mode without gradients, with its input convention."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return FrozenEncoder(net, prepare, tuple(input_shape), out_dim, algo, description, dict(record or {}))


def unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 → [0, 1]: the input convention of the contrastive encoders."""
    return x.float() / 255


def signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 → [−1, 1]: the input convention of the GAN discriminator and the logistic VAE."""
    return x.float() / 127.5 - 1.0


def binary_signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 → {−1, 1} at the threshold 128: the input convention of the Bernoulli VAE."""
    return (x >= 128).float() * 2.0 - 1.0


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Vector observations, as they are: the input convention of the classic-control DQN."""
    return x.float()


SCALINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "unit": unit, "signed": signed, "binary_signed": binary_signed, "float": as_float}
"""Input scalings by the name an encoder record gives."""


def image_shape_of(ckpt: dict[str, Any]) -> tuple[int, ...]:
    """The input shape a checkpoint's model takes: ``image_shape`` (ST-DIM checkpoints written before it was
    renamed say ``input_shape``, and still load)."""
    shape = ckpt.get("image_shape", ckpt.get("input_shape"))
    if shape is None:
        raise UsageError(f"the {ckpt.get('algo')} checkpoint records no image_shape; start a new run")
    return tuple(int(n) for n in shape)


def encoder_record(backbone: str, input_shape: Sequence[int], scaling: str, weights: str, *, prefix: str = "",
                   kwargs: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    """What a checkpoint says of the encoder it holds, enough to rebuild it without the command that wrote it.

    ``backbone`` and ``kwargs`` build the module (:func:`rlgen.nets.make_backbone`, or ``gan_discriminator``
    for a GAN's discriminator trunk); ``scaling`` names its input convention (:data:`SCALINGS`); its weights
    are the entries of ``checkpoint[weights]`` whose keys start with ``prefix``.
    """
    if scaling not in SCALINGS:
        raise UsageError(f"encoder scaling {scaling!r} is not one of {', '.join(SCALINGS)}")
    return {"backbone": backbone, "kwargs": dict(kwargs or {}), "input_shape": [int(n) for n in input_shape],
            "scaling": scaling, "weights": weights, "prefix": prefix, "description": description}


def build_backbone(record: dict[str, Any]) -> nn.Module:
    """The untrained module an encoder record describes."""
    shape, kwargs = tuple(record["input_shape"]), dict(record["kwargs"])
    if record["backbone"] == "gan_discriminator":
        return DiscriminatorTrunk(shape, **kwargs)  # type: ignore[arg-type]
    return make_backbone(record["backbone"], shape, **kwargs)


def from_record(ckpt: dict[str, Any], record: dict[str, Any], device: torch.device, algo: str,
                where: str = "the checkpoint") -> FrozenEncoder:
    """The frozen encoder a record describes, with the weights ``ckpt`` holds for it."""
    net = build_backbone(record)
    weights = ckpt.get(record["weights"])
    if weights is None:
        raise UsageError(f"{where} has no {record['weights']!r} weights for its encoder")
    prefix = record["prefix"]
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise UsageError(f"{where}: its {record['weights']!r} weights lack {missing[0]!r} of the "
                         f"{record['backbone']} encoder its record describes")
    net.load_state_dict({k: state[k] for k in own})  # a layer beyond the trunk (a head, D's score) stays out
    out_dim = int(net.out_dim)  # type: ignore[arg-type]
    description = record["description"] or f"{algo} {record['backbone']} encoder ({out_dim}-d)"
    return freeze(net.to(device), SCALINGS[record["scaling"]], tuple(record["input_shape"]), out_dim, algo,
                  description, record)


def _fits(algo: str, record: dict[str, Any], run_dir: str | os.PathLike, input_shape: tuple[int, ...], name: str,
          inputs: str) -> None:
    if tuple(record["input_shape"]) != tuple(input_shape):
        raise UsageError(f"{name} {os.fspath(run_dir)}: its {algo} encoder takes input of shape "
                         f"{tuple(record['input_shape'])}, but {inputs} have shape {tuple(input_shape)}")


def check_fitting_encoder(run_dir: str | os.PathLike, input_shape: tuple[int, ...], name: str, inputs: str) -> None:
    """A UsageError unless the run's encoder takes ``input_shape``; reads only its record, not its weights."""
    ckpt = checkpoint.load(run_dir)
    _fits(str(ckpt.get("algo")), _record_of(ckpt, f"checkpoint {os.fspath(run_dir)!r}"), run_dir, input_shape, name,
          inputs)


def load_fitting_encoder(run_dir: str | os.PathLike, input_shape: tuple[int, ...], name: str, inputs: str,
                         device: str | torch.device = "cpu") -> FrozenEncoder:
    """:func:`load_encoder`, then a UsageError unless it takes ``input_shape``; ``name`` (the flag or argument)
    and ``inputs`` (what is fed) word the error. The net exposes ``out_dim``, as every backbone does."""
    enc = load_encoder(run_dir, device)
    _fits(enc.algo, enc.record, run_dir, input_shape, name, inputs)
    if not hasattr(enc.net, "out_dim"):
        enc.net.out_dim = enc.out_dim
    return enc


def load_encoder(run_dir_or_file: str | os.PathLike, device: str | torch.device = "cpu") -> FrozenEncoder:
    """The frozen encoder stored in a run folder (or checkpoint file) of any command that trains one."""
    ckpt = checkpoint.load(run_dir_or_file)
    where = f"checkpoint {os.fspath(run_dir_or_file)!r}"
    return from_record(ckpt, _record_of(ckpt, where), torch.device(device), str(ckpt.get("algo")), where)


def _record_of(ckpt: dict[str, Any], where: str) -> dict[str, Any]:
    record = ckpt.get(RECORD_KEY)
    if record is None:
        raise UsageError(f"{where} (algo {ckpt.get('algo')!r}) holds no {RECORD_KEY}: it is not a run that trains "
                         "an encoder (simclr, moco, supervised, stdim, vae, gan, dqn), or an older rlgen wrote it")
    return record
