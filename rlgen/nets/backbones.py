"""Encoder backbones shared by every algorithm, built by name with :func:`make_backbone`.

Every backbone maps a float tensor of shape ``(B, *input_shape)`` to ``(B, out_dim)`` features
and exposes ``out_dim`` and ``input_shape``. Flatten sizes come from a dummy forward pass, so
any image size the strides allow works. Input scaling (uint8 → [0, 1]) and augmentation stay
with the caller: a backbone sees exactly the tensor it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.errors import UsageError


class Backbone(nn.Module):
    """Base class: records ``input_shape`` and ``out_dim``."""

    input_shape: tuple[int, ...]
    out_dim: int


def _flat_size(body: nn.Module, input_shape: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """The flattened size and map shape ``body`` gives for one input. The dummy pass runs in eval mode, so a
    fresh BatchNorm keeps its initial running statistics (mean 0, variance 1) instead of one zero batch's."""
    mode = body.training
    body.eval()
    with torch.no_grad():
        out = body(torch.zeros(1, *input_shape))
    body.train(mode)
    return out[0].numel(), tuple(out.shape[1:])


class MLP(Backbone):
    """Flatten, then ``Linear → activation`` for each hidden width."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (256, 256),
                 activation: type[nn.Module] = nn.ReLU, layer_norm: bool = False) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        # Vector inputs skip the Flatten: one module call less per forward pass in tight RL loops.
        layers: list[nn.Module] = [nn.Flatten()] if len(self.input_shape) > 1 else []
        width = int(torch.tensor(self.input_shape).prod())
        for h in hidden:
            layers += [nn.Linear(width, h), *([nn.LayerNorm(h)] if layer_norm else []), activation()]
            width = h
        self.net = nn.Sequential(*layers)
        self.out_dim = width
        # With ReLU, forward calls the layers' functions directly: in a tight RL loop a module call's
        # dispatch costs more than a 64-wide layer's arithmetic.
        plain = activation is nn.ReLU and not layer_norm
        self.linears = [m for m in layers if isinstance(m, nn.Linear)] if plain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linears is None:
            return self.net(x)
        x = x.flatten(1) if len(self.input_shape) > 1 else x
        for layer in self.linears:
            x = torch.relu(F.linear(x, layer.weight, layer.bias))
        return x


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Flax ``SAME`` padding of one dimension: output ceil(size / stride), the odd pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class NatureCNN(Backbone):
    """The DQN encoder of Mnih et al. 2015 (Nature): conv 32×8/4, 64×4/2, 64×3/1, dense 512.

    ``padding="valid"`` is the paper's (84 → 20 → 9 → 7, 3,136 features); ``"same"`` pads as Flax does by
    default, which is the network of Dopamine's Atari 100k agents (DER, DrQ(ε), SPR: 84 → 21 → 11 → 11,
    7,744 features).
    """

    def __init__(self, input_shape: Sequence[int] = (4, 84, 84), features: int = 512, padding: str = "valid") -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise UsageError(f"NatureCNN padding {padding!r} is not one of valid, same")
        self.input_shape = tuple(input_shape)
        self.padding = padding
        layers: list[nn.Module] = []
        c, h, w = self.input_shape
        for out_c, k, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            pad = 0
            if padding == "same":
                (top, bottom), (left, right) = same_padding(h, k, stride), same_padding(w, k, stride)
                if top == bottom == left == right:
                    pad = top  # the convolution pads by itself: no extra copy
                else:
                    layers.append(nn.ZeroPad2d((left, right, top, bottom)))
                h, w = h + top + bottom, w + left + right
            layers += [nn.Conv2d(c, out_c, k, stride=stride, padding=pad), nn.ReLU()]
            c, h, w = out_c, (h - k) // stride + 1, (w - k) // stride + 1
        self.conv = nn.Sequential(*layers, nn.Flatten())
        flat, _ = _flat_size(self.conv, self.input_shape)
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


def xavier_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every conv and linear layer (Flax's Dense/Conv defaults as
    Dopamine sets them; Glorot & Bengio 2010); returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class ConvEncoder(Backbone):
    """A small strided-conv encoder for 28–64 px images: k4 s2 convs (BatchNorm, ReLU), then dense.

    With ``features=None`` the flattened conv map itself is the output.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (32, 64, 128),
                 features: int | None = 256, batchnorm: bool = True) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        layers: list[nn.Module] = []
        c = self.input_shape[0]
        for out_c in channels:
            layers += [nn.Conv2d(c, out_c, 4, stride=2, padding=1, bias=not batchnorm)]
            layers += [nn.BatchNorm2d(out_c)] if batchnorm else []
            layers += [nn.ReLU()]
            c = out_c
        self.conv = nn.Sequential(*layers)
        flat, self.map_shape = _flat_size(self.conv, self.input_shape)
        if min(self.map_shape[1:]) < 1:
            raise UsageError(f"image size {self.input_shape[1:]} is too small for {len(channels)} stride-2 convs")
        self.fc: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(flat, features), nn.ReLU()) if features \
            else nn.Flatten()
        self.out_dim = features or flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: dense, then k4 s2 transposed convs back to ``output_shape``.

    The spatial sizes on the way up are those of the encoder on the way down, so odd sizes
    such as 28 → 14 → 7 → 3 come back exactly (``output_padding`` absorbs the rounding).
    The last layer has no activation: the likelihood or loss decides what the outputs mean.
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int] = (1, 28, 28),
                 channels: Sequence[int] = (32, 64, 128), batchnorm: bool = True) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        sizes = [tuple(self.output_shape[1:])]
        for _ in channels:
            h, w = sizes[-1]
            sizes.append(((h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1))
        self.map_shape = (channels[-1], *sizes[-1])
        self.fc = nn.Sequential(nn.Linear(latent_dim, int(torch.tensor(self.map_shape).prod())), nn.ReLU())
        layers: list[nn.Module] = []
        ups = list(reversed(channels))
        for i, c in enumerate(ups):
            last = i == len(ups) - 1
            out_c = self.output_shape[0] if last else ups[i + 1]
            (h_in, w_in), (h_out, w_out) = sizes[len(ups) - i], sizes[len(ups) - i - 1]
            pad = (h_out - ((h_in - 1) * 2 - 2 + 4), w_out - ((w_in - 1) * 2 - 2 + 4))
            layers.append(nn.ConvTranspose2d(c, out_c, 4, stride=2, padding=1, output_padding=pad,
                                             bias=last or not batchnorm))
            if not last:
                layers += [nn.BatchNorm2d(out_c)] if batchnorm else []
                layers += [nn.ReLU()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, *self.map_shape))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(Backbone):
    """CIFAR-style ResNet-18 (He et al. 2016): 3×3 stem, no max-pool, [2, 2, 2, 2] basic blocks, GAP."""

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), width: int = 64) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.stem = nn.Sequential(nn.Conv2d(self.input_shape[0], width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        c = width
        for i, mult in enumerate((1, 2, 4, 8)):
            for j in range(2):
                blocks.append(_BasicBlock(c, width * mult, 2 if (j == 0 and i > 0) else 1))
                c = width * mult
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x)))


class AtariCNN(Backbone):
    """The encoder of AtariARI / ST-DIM (Anand et al. 2019) for full 210×160 frames.

    Conv 32×8/4, 64×4/2, 128×4/2, 64×3/1 (ReLU after each), then a linear layer to ``features``
    (256) with no activation. Weights are orthogonal with the ReLU gain and biases zero, as in the
    paper's code, so a random-init encoder matches its "random CNN" baseline.
    :meth:`local_features` returns the 128-channel map after the third conv, which ST-DIM's
    spatial objectives use.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 210, 160), features: int = 256) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        c = self.input_shape[0]
        self.early = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
        )
        self.late = nn.Sequential(nn.Conv2d(128, 64, 3, stride=1), nn.ReLU(), nn.Flatten())
        _, self.local_shape = _flat_size(self.early, self.input_shape)
        flat, _ = _flat_size(nn.Sequential(self.early, self.late), self.input_shape)
        self.fc = nn.Linear(flat, features)
        self.out_dim = features
        gain = nn.init.calculate_gain("relu")
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(m.weight, gain)
                nn.init.zeros_(m.bias)

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 128, H', W') feature map after the third conv (11×8 for 210×160 frames)."""
        return self.early(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.late(self.early(x)))


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "mlp": MLP,
    "nature_cnn": NatureCNN,
    "nature_cnn_same": lambda input_shape, **kw: NatureCNN(input_shape, padding="same", **kw),
    "convnet": ConvEncoder,
    "resnet18": ResNet18,
    "atari_cnn": AtariCNN,
}


def make_backbone(name: str, input_shape: Sequence[int], **kwargs: Any) -> Backbone:
    """Build a backbone by name (``mlp``, ``nature_cnn``, ``nature_cnn_same``, ``convnet``, ``resnet18``,
    ``atari_cnn``)."""
    key = name.lower().replace("-", "_")
    if key not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    needs_image = key != "mlp"
    if needs_image and len(input_shape) != 3:
        raise UsageError(f"backbone {name!r} takes images (C, H, W), got input shape {tuple(input_shape)}")
    try:
        return BACKBONES[key](tuple(input_shape), **kwargs)
    except RuntimeError as err:  # a conv stack that shrinks the image to nothing
        raise UsageError(f"backbone {name!r} cannot take input shape {tuple(input_shape)}: "
                         f"{str(err).splitlines()[0]}") from None
