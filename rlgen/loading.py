"""One loader for every run: ``rlgen.load(RUN_DIR)`` gives back what the run trained.

    agent = rlgen.load("runs/dqn-CartPole-s0-...")                  # dqn, reinforce, qlearning: an Agent
    gen = rlgen.load("runs/gan-mnist5k-s0-...")                      # vae, gan, pixelcnn: a Generator
    enc = rlgen.load("runs/simclr-mnist5k-s0-...")                   # simclr, moco, supervised, stdim: an encoder
    enc = rlgen.load("runs/dqn-Breakout-s0-...", kind="encoder")     # the encoder inside any run that has one

Everything is rebuilt from what the checkpoint records (the run's arguments, the encoder record, the weights).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from rlgen import checkpoint
from rlgen.encoders import FrozenEncoder, load_encoder
from rlgen.errors import UsageError
from rlgen.gen.common import SAMPLERS, Sampler, load_sampler
from rlgen.rl.agents import AGENT_ALGOS, Agent, load_agent

Kind = Literal["agent", "generator", "encoder"]


@dataclass
class Generator:
    """A trained generative model (GAN, VAE or PixelCNN) in eval mode."""

    model: Sampler
    algo: str
    args: dict[str, Any]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images, float ``(n, C, H, W)`` in [0, 1] on the CPU; the same generator state gives the same
        images as ``rlgen sample`` writes."""
        with torch.no_grad():
            return self.model.sample(n, generator=generator)


def run_algo(run_dir_or_file: str | os.PathLike) -> str:
    """The command that wrote a run folder or checkpoint; a one-line UsageError where there is none."""
    path = Path(run_dir_or_file)
    if not path.exists():
        raise UsageError(f"{path}: no such run folder or checkpoint")
    if path.is_dir() and not (path / checkpoint.FILENAME).exists():
        raise UsageError(f"{path} holds no rlgen run (no {checkpoint.FILENAME})")
    return str(checkpoint.load(path).get("algo"))


def default_kind(algo: str) -> Kind:
    """What a run of ``algo`` trained: an agent, a generator, or (every other command) an encoder."""
    if algo in AGENT_ALGOS or algo == "value_iteration":
        return "agent"
    if algo in SAMPLERS:
        return "generator"
    return "encoder"


def load(run_dir_or_file: str | os.PathLike, which: Literal["last", "best"] = "last", *,
         kind: Kind | None = None, device: str | torch.device = "cpu",
         env_factory: Callable[..., Any] | None = None) -> Agent | Generator | FrozenEncoder:
    """What the run in ``run_dir_or_file`` (a run folder or a checkpoint file) trained.

    ``which``: ``last`` (the weights the run ended with) or ``best`` (a DQN's best evaluation, ``best.pt``).
    ``kind``: ``agent``, ``generator`` or ``encoder``; by default what the command trains. Raises
    :class:`~rlgen.errors.UsageError` with one line for a folder without a run, or a kind the run lacks.
    ``env_factory``: the callable an agent's run was trained on, where ``--env`` was one (in a new process).
    """
    path = Path(run_dir_or_file)
    algo = run_algo(path)
    kind = kind or default_kind(algo)
    if kind == "agent":
        return load_agent(path, which, device, env_factory)
    if which != "last":
        raise UsageError(f"which={which!r}: only a dqn agent has best weights (accepted here: which='last')")
    if kind == "generator":
        model, ckpt = load_sampler(path, device)
        return Generator(model, str(ckpt["algo"]), dict(ckpt["args"]))
    if kind == "encoder":
        return load_encoder(path, device)
    raise UsageError(f"kind={kind!r} is not one of agent, generator, encoder")
