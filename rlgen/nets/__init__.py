"""Backbones, heads, the moving-average helper and flat parameters, shared by all of rlgen."""

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
    xavier_init_,
)
from rlgen.nets.ema import polyak_update, ramped_tau
from rlgen.nets.flat import flatten_parameters
from rlgen.nets.heads import ProjectionHead, QHead, QNetwork

__all__ = [
    "BACKBONES", "AtariCNN", "MLP", "Backbone", "ConvDecoder", "ConvEncoder", "NatureCNN", "ResNet18",
    "flatten_parameters", "make_backbone", "xavier_init_", "polyak_update", "ramped_tau", "ProjectionHead", "QHead",
    "QNetwork",
]
