"""rlgen backbones and pretrained rlgen encoders as Stable-Baselines3 features extractors.

SB3 policies take a ``features_extractor_class`` and its kwargs; :class:`RlgenExtractor` is one, so any
backbone built by name, or the encoder of any rlgen run folder (ST-DIM, SimCLR, MoCo, a VAE, a DQN, ...),
can sit in front of SB3's DQN, PPO or A2C::

    from stable_baselines3 import PPO
    from rlgen.rl.sb3 import RlgenExtractor

    PPO("CnnPolicy", env, policy_kwargs=dict(features_extractor_class=RlgenExtractor,
                                             features_extractor_kwargs=dict(backbone="nature_cnn")))
    # or dict(encoder="runs/stdim-...", freeze=True) for a pretrained encoder, kept fixed

SB3 hands image observations to the extractor scaled to [0, 1] (its ``normalize_images``); the extractor
turns them back into the uint8 images every rlgen encoder's own input scaling starts from, so a pretrained
encoder sees exactly what it was trained on. Vector observations pass through unchanged.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rlgen.encoders import load_fitting_encoder
from rlgen.errors import UsageError
from rlgen.nets.backbones import make_backbone


class RlgenExtractor(BaseFeaturesExtractor):
    """An rlgen backbone (``backbone="nature_cnn"``, ``"mlp"``, ...) or pretrained encoder (``encoder=RUN_DIR``,
    optionally ``freeze=True``) as an SB3 features extractor; ``features_dim`` is the backbone's ``out_dim``."""

    def __init__(self, observation_space: gym.spaces.Box, backbone: str | None = "nature_cnn",
                 encoder: str | None = None, freeze: bool = False, **backbone_kwargs: Any) -> None:
        shape = tuple(observation_space.shape)
        self.images = len(shape) == 3
        if encoder is not None:

            enc = load_fitting_encoder(encoder, shape, "encoder", "the observations")
            net, prepare, out_dim = enc.net, enc.prepare, enc.out_dim
            net.train(not freeze).requires_grad_(not freeze)
        elif backbone is not None:
            net = make_backbone(backbone, shape, **backbone_kwargs)
            prepare, out_dim = None, net.out_dim
        else:
            raise UsageError("RlgenExtractor needs a backbone name or an encoder run folder")
        super().__init__(observation_space, features_dim=int(out_dim))
        self.net = net
        self.prepare = prepare
        self.frozen = freeze and encoder is not None

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations
        if self.prepare is not None:
            # back to the uint8 images the encoder's own scaling starts from (exact for SB3's x / 255)
            x = self.prepare((x * 255.0).round_().clamp_(0, 255).to(torch.uint8) if self.images else x)
        if self.frozen:
            with torch.no_grad():
                return self.net(x).float()
        return self.net(x).float()

    def train(self, mode: bool = True) -> RlgenExtractor:
        """A frozen encoder stays in eval mode (its normalisation statistics fixed) whatever SB3 asks."""
        super().train(mode)
        if self.frozen:
            self.net.eval()
        return self
