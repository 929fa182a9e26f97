"""rlgen: reinforcement, generative and self-supervised learning on shared encoder backbones."""

__version__ = "0.1.0"
