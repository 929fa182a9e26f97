"""Backbones, heads and the moving-average helper shared by all of rlgen."""

from rlgen.nets.backbones import (
    BACKBONES,
    MLP,
    AtariCNN,
    Backbone,
    ConvDecoder,
    ConvEncoder,
    NatureCNN,
    ResNet18,
    make_backbone,
)
from rlgen.nets.ema import polyak_update
from rlgen.nets.heads import ProjectionHead, QHead, QNetwork

__all__ = [
    "BACKBONES", "AtariCNN", "MLP", "Backbone", "ConvDecoder", "ConvEncoder", "NatureCNN", "ResNet18",
    "make_backbone", "polyak_update", "ProjectionHead", "QHead", "QNetwork",
]
