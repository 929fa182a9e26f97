"""What DQN's training loop needs of an environment family, behind one shape: a :class:`Task`.

A task bundles the environments that collect experience, the replay that stores it, the Q-network (its trunk
fresh from :mod:`rlgen.nets` or started from an rlgen encoder), the input scaling, and the evaluation.
:func:`vector_task` builds one for vector observations (classic control); :func:`rlgen.rl.atari.atari_task`
for Atari frames. :class:`GreedyPolicy` turns a Q-network into the batched ``act(obs) -> actions`` that
collection, evaluation and the episode GIF call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen import cli
from rlgen.encoders import FrozenEncoder, encoder_record, load_fitting_encoder
from rlgen.nets import QNetwork, make_backbone, xavier_init_
from rlgen.rl import envs as envlib
from rlgen.rl.replay import ReplayBuffer

# The smallest batch of observations that acting runs in bf16 autocast when amp is on (see GreedyPolicy).
AMP_MIN_BATCH = 8

Act = Callable[[np.ndarray], np.ndarray]
"""A batched policy: observations ``(B, *obs_shape)`` to actions ``(B,)``."""


@dataclass
class Task:
    """Environments, replay, network and evaluation of one DQN run; closing it closes its environments.

    ``pool.obs`` is what the agent acts on; ``pool.step(actions)`` returns ``(next_obs, rewards,
    terminated, truncated, finished)`` with each transition's true successor and the (score, length)
    of finished episodes; ``replay.add(actions, rewards, terminated, truncated, next_obs, pool.obs)``
    stores a vector step. ``prepare`` turns stored observations into network input; ``augment(obs, gen)`` is
    ``prepare`` with DrQ(ε)'s augmentation (image observations only). ``evaluate(act, episodes, seed,
    epsilon)`` returns the scores of whole episodes played by ``act``.
    """

    pool: Any
    replay: Any
    q_net: QNetwork
    prepare: Callable[[torch.Tensor], torch.Tensor]
    make_eval_env: Callable[[bool], gym.Env]
    evaluate: Callable[[Act, int, int, float], np.ndarray]
    threshold: float | None
    encoder_record: dict[str, Any]
    """What the Q-network's trunk is (:func:`rlgen.encoders.encoder_record`; its weights: ``q_net``)."""
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()


class GreedyPolicy:
    """The greedy actions of a Q-network for a batch of observations, without gradients.

    bf16 autocast (``amp``) runs only for a batch of at least :data:`AMP_MIN_BATCH`: one observation costs more
    to cast the weights for than to multiply in float32 (1.29 against 0.82 ms for the Atari network on an AMX
    CPU; bf16 wins from about 8 observations).
    """

    def __init__(self, net: torch.nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 amp: bool = False) -> None:
        self.net, self.prepare, self.device, self.amp = net, prepare, device, amp

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.amp and len(obs) >= AMP_MIN_BATCH):
            return self.net(self.prepare(torch.as_tensor(obs, device=self.device))).argmax(dim=1).cpu().numpy()


def hidden_widths(text: str) -> tuple[int, ...]:
    """``--hidden 64,64`` as a tuple of widths; a UsageError names a bad one."""
    return cli.int_list(text, "hidden")


def trunk_from(run_dir: str, obs_shape: tuple[int, ...], device: torch.device) -> FrozenEncoder:
    """The encoder of an rlgen run folder as a Q-network trunk; a UsageError unless its input is ``obs_shape``."""
    return load_fitting_encoder(run_dir, obs_shape, "--encoder", "this environment's observations", device)


def trunk_record(enc: FrozenEncoder) -> dict[str, Any]:
    """A trunk started from ``--encoder`` is that encoder: its record, with the weights now in the Q-network."""
    return {**enc.record, "weights": "q_net", "prefix": "backbone."}


def initialise(q_net: QNetwork, init: str, enc: FrozenEncoder | None) -> QNetwork:
    """``xavier``: Glorot-uniform weights, zero biases (Dopamine's); a loaded encoder keeps its trained weights."""
    if init == "xavier":
        xavier_init_(q_net.head if enc else q_net)
    return q_net


def train_encoder(q_net: QNetwork, enc: FrozenEncoder | None, freeze: bool) -> None:
    """An encoder loaded with --encoder comes frozen: thaw it to fine-tune, or keep it fixed in eval mode."""
    if enc is not None and not freeze:
        q_net.backbone.train().requires_grad_(True)


def vector_task(args: Any, device: torch.device, env_seed: int) -> Task:
    """Classic control: an MLP on float observations, a uniform replay of whole transitions.

    ``args`` is DQN's resolved :class:`~rlgen.rl.dqn.Args`.
    """
    limit = {"max_episode_steps": args.max_episode_steps} if args.max_episode_steps else {}
    pool = envlib.EnvPool(args.env, args.num_envs, env_seed, **limit)
    try:
        spec = pool.envs[0].spec
        enc = trunk_from(args.encoder, pool.obs.shape[1:], device) if args.encoder else None
        backbone = enc.net if enc else make_backbone("mlp", pool.obs.shape[1:], hidden=hidden_widths(args.hidden),
                                                     layer_norm=args.layer_norm)
        q_net = QNetwork(backbone, int(pool.envs[0].action_space.n), dueling=args.dueling)
        q_net = initialise(q_net, args.init, enc).to(device)
        train_encoder(q_net, enc, args.freeze_encoder)
        replay = ReplayBuffer(args.buffer_size, pool.obs.shape[1:], args.gamma, n_step=args.n_step)
    except BaseException:
        pool.close()
        raise

    def make(render: bool) -> gym.Env:
        return envlib.make_env(args.env, render_mode="rgb_array" if render else None, **limit)

    def evaluate(act: Act, episodes: int, seed: int, epsilon: float) -> np.ndarray:
        return envlib.evaluate(act, lambda: make(False), episodes, seed=seed, epsilon=epsilon)

    record = trunk_record(enc) if enc else encoder_record(
        "mlp", pool.obs.shape[1:], "float", "q_net", prefix="backbone.", description="DQN mlp trunk",
        kwargs={"hidden": list(hidden_widths(args.hidden)), "layer_norm": bool(args.layer_norm)})
    return Task(pool, replay, q_net, enc.prepare if enc else (lambda x: x), make, evaluate,
                spec.reward_threshold if spec else None, record)
