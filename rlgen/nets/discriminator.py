"""The GAN discriminator (Radford et al. 2016's DCGAN, or an MLP), here beside the other backbones because
its trunk is an encoder too: :class:`DiscriminatorTrunk` is the discriminator without its last layer, the
features its score is read from, which probes and agents can reuse (:mod:`rlgen.encoders`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rlgen.nets.backbones import Backbone, _flat_size


def dcgan_discriminator(channels: int, size: int, width: int, batchnorm: bool = True) -> nn.Sequential:
    """(n, channels, size, size) → (n, 1, 1, 1) raw scores: halve to 4×4, then one 4×4 convolution."""
    n_down = int(math.log2(size)) - 2
    ch = width
    layers: list[nn.Module] = [nn.Conv2d(channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]  # no BN
    for _ in range(n_down - 1):
        norm: nn.Module = nn.BatchNorm2d(ch * 2) if batchnorm else nn.Identity()
        layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), norm, nn.LeakyReLU(0.2, True)]
        ch *= 2
    layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: all weights from N(0, 0.02); BatchNorm scales from N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Discriminator(nn.Module):
    """D: images (n, C, H, W) in [−1, 1] → raw scores (n,) (logits for bce, values for lsgan and hinge).

    ``spectral_norm=True`` divides every layer's weight by an estimate of its largest singular value, refined by
    one power iteration per training forward pass (Miyato et al. 2018, "Spectral normalization for generative
    adversarial networks", ICLR), and drops BatchNorm, as their discriminators do."""

    def __init__(self, arch: str, image_shape: tuple[int, int, int], width: int, spectral_norm: bool = False) -> None:
        super().__init__()
        c, h, w = image_shape
        if arch == "dcgan":
            self.net = dcgan_discriminator(c, h, width, batchnorm=not spectral_norm)
            self.apply(dcgan_init)
        else:
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(c * h * w, 2 * width), nn.LeakyReLU(0.2, True),
                nn.Linear(2 * width, width), nn.LeakyReLU(0.2, True),
                nn.Linear(width, 1))
        if spectral_norm:
            for m in self.net.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1)


class DiscriminatorTrunk(Backbone):
    """A discriminator's layers but the last, flattened: ``(n, C, H, W)`` in [−1, 1] → ``(n, out_dim)``.

    Its parameters are named as the discriminator's (``net.0.weight``, ...), so a discriminator's weights load
    into it once the last layer's are left out."""

    def __init__(self, input_shape: Sequence[int], arch: str = "dcgan", width: int = 64,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        self.input_shape = tuple(int(n) for n in input_shape)
        disc = Discriminator(arch, self.input_shape, width, spectral_norm)  # type: ignore[arg-type]
        self.net = nn.Sequential(*list(disc.net.children())[:-1])
        self.out_dim = _flat_size(self.net, self.input_shape)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)
