"""``atari-frames:GAME``: Atari frames with the console RAM of each frame, for state-representation probes.

Collection follows the AtariARI protocol (Anand et al. 2019, "Unsupervised State Representation
Learning in Atari", arXiv:1906.08226): the ALE v5 game with ``frameskip=1`` and no sticky actions
(equivalent to ``NoFrameskip-v4``), a random number (1–30) of no-op actions after every reset,
then each action repeated for 4 frames with the observation the pixel-wise max of the last two;
full 210×160 greyscale frames, no stacking, a uniformly random agent unless ``policy`` is given.
No FIRE-on-reset and no end-of-life resets: an episode is a whole game. The frame after the reset
no-ops is kept, then one frame per agent step; collection stops after exactly ``n`` frames (the
last episode may be cut short).

* :func:`load` returns ``(frames, ram)``: uint8 ``(N, 1, 210, 160)`` and the 128 RAM bytes of the
  last emulated frame of each step as int64 ``(N, 128)``. This departs from the ``(N,)`` label
  shape of the other datasets.
* :func:`load_atari_frames` returns an :class:`AtariFrames` that also holds each frame's episode
  id (for splitting by episode), action and reward.
* ``atari-stacks:GAME`` is the same collection as a DQN sees it (:func:`dqn_view`): each frame
  area-resized to 84×84 and stacked with the 3 before it, zeros before an episode's first frame,
  uint8 ``(N, 4, 84, 84)``. Encoders pretrained on it fit ``rlgen.rl.dqn --encoder``.

``train`` and ``test`` use different seeds (``[seed, 0]`` and ``[seed, 1]``) for the emulator and
the agent, so they come from different episodes. Frames from a custom ``policy`` are never cached
(a callable cannot be told apart from another one reliably).

:data:`RAM_ANNOTATIONS` lists AtariARI's labelled RAM bytes for a few games (the labels are the
raw byte values 0–255).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rlgen.data.cache import cached, data_root
from rlgen.data.core import SPLITS, Dataset, Source, check_positive_int
from rlgen.envnames import resolve_atari_id
from rlgen.errors import UsageError
from rlgen.images import area_resize_weights

NOOP_MAX = 30
SKIP = 4
FRAME_SHAPE = (210, 160)
DEFAULT_N = {"train": 5000, "test": 1000}
COLLECT_VERSION = 1

# AtariARI's RAM byte indices (Anand et al. 2019, atariari/benchmark/ram_annotations.py).
RAM_ANNOTATIONS: dict[str, dict[str, int | list[int]]] = {
    "Breakout": {"ball_x": 99, "ball_y": 101, "player_x": 72, "blocks_hit_count": 77,
                 "block_bit_map": list(range(30)), "score": 84},
    "Pong": {"player_y": 51, "player_x": 46, "enemy_y": 50, "enemy_x": 45, "ball_x": 49, "ball_y": 54,
             "enemy_score": 13, "player_score": 14},
    "SpaceInvaders": {"invaders_left_count": 17, "player_score": 104, "num_lives": 73, "player_x": 28,
                      "enemies_x": 26, "missiles_y": 9, "enemies_y": 24},
    "Boxing": {"player_x": 32, "player_y": 34, "enemy_x": 33, "enemy_y": 35, "enemy_score": 19, "clock": 17,
               "player_score": 18},
    "MsPacman": {"enemy_sue_x": 6, "enemy_inky_x": 7, "enemy_pinky_x": 8, "enemy_blinky_x": 9, "enemy_sue_y": 12,
                 "enemy_inky_y": 13, "enemy_pinky_y": 14, "enemy_blinky_y": 15, "player_x": 10, "player_y": 16,
                 "fruit_x": 11, "fruit_y": 17, "ghosts_count": 19, "player_direction": 56, "dots_eaten_count": 119,
                 "player_score": 120, "num_lives": 123},
}

Policy = Callable[[np.ndarray], int]


@dataclasses.dataclass
class AtariFrames:
    """Frames of one game with the RAM, episode id, action and reward of each."""

    game: str
    """Gymnasium id, e.g. ``ALE/Breakout-v5``."""
    split: str
    frames: torch.Tensor
    """uint8 (N, 1, 210, 160)."""
    ram: torch.Tensor
    """int64 (N, 128): the console RAM after the frame was emulated."""
    episode: torch.Tensor
    """int64 (N,): episode index within this collection, 0, 1, ..."""
    action: torch.Tensor
    """int64 (N,): the action that produced the frame (-1 for the first frame of an episode)."""
    reward: torch.Tensor
    """float32 (N,): the summed reward of the 4 emulated frames."""
    from_cache: bool
    seconds: float


def collect(game_id: str, n: int, seed: int | list[int], policy: Policy | None = None) -> dict[str, np.ndarray]:
    """Play ``game_id`` until ``n`` frames are gathered; the protocol is in the module docstring."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    seeds = np.random.SeedSequence(seed)
    env_seed, agent_seed = (int(s.generate_state(1)[0]) for s in seeds.spawn(2))
    rng = np.random.default_rng(agent_seed)
    env = gym.make(game_id, frameskip=1, repeat_action_probability=0.0, obs_type="grayscale",
                   full_action_space=False)
    frames = np.empty((n, 1, *FRAME_SHAPE), np.uint8)
    ram = np.empty((n, 128), np.int64)
    episode = np.empty(n, np.int64)
    actions = np.empty(n, np.int64)
    rewards = np.empty(n, np.float32)
    n_actions = int(env.action_space.n)
    try:
        ale = env.unwrapped.ale
        i, ep, need_reset, obs = 0, 0, True, None
        next_seed: int | None = env_seed
        while i < n:
            if need_reset:
                obs, _ = env.reset(seed=next_seed)
                next_seed = None
                for _ in range(int(rng.integers(1, NOOP_MAX + 1))):
                    obs, _, term, trunc, _ = env.step(0)
                    if term or trunc:
                        obs, _ = env.reset()
                frames[i, 0], ram[i], episode[i], actions[i], rewards[i] = obs, ale.getRAM(), ep, -1, 0.0
                i, need_reset = i + 1, False
                continue
            action = int(policy(frames[i - 1, 0])) if policy is not None else int(rng.integers(n_actions))
            if not 0 <= action < n_actions:
                raise UsageError(f"atari-frames: the policy returned action {action}; {game_id} has {n_actions}")
            total, last, prev = 0.0, None, None
            for _ in range(SKIP):
                prev = last
                last, r, term, trunc, _ = env.step(action)
                total += float(r)
                if term or trunc:
                    break
            done = term or trunc
            frames[i, 0] = last if prev is None else np.maximum(prev, last)
            ram[i], episode[i], actions[i], rewards[i] = ale.getRAM(), ep, action, total
            i += 1
            if done:
                ep, need_reset = ep + 1, True
    finally:
        env.close()
    return {"images": frames, "ram": ram, "episode": episode, "action": actions, "reward": rewards}


def load_atari_frames(game: str, split: str = "train", n: int | None = None, seed: int = 0,
                      policy: Policy | None = None, root: str | os.PathLike | None = None,
                      cache: bool = True) -> AtariFrames:
    """Frames, RAM and episode ids of ``game`` (``breakout``, ``Breakout`` or ``ALE/Breakout-v5``)."""

    if split not in SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    game_id = resolve_atari_id(game)
    n = check_positive_int(f"atari-frames:{game}", "n", DEFAULT_N[split] if n is None else n)
    seed = check_positive_int(f"atari-frames:{game}", "seed", seed, minimum=0)
    if policy is not None and not callable(policy):
        raise UsageError(f"atari-frames:{game}: policy must be a callable frame -> action, got {type(policy).__name__}")
    stream = [seed, SPLITS.index(split)]
    start = time.perf_counter()
    if policy is None:
        key = {"game": game_id, "n": n, "seed": seed, "split": split, "version": COLLECT_VERSION,
               "noop_max": NOOP_MAX, "skip": SKIP}
        tag = f"atari-{game_id.removeprefix('ALE/')}-{split}"
        arrays, hit = cached(data_root(root), tag, key, lambda: collect(game_id, n, stream), cache)
    else:
        arrays, hit = collect(game_id, n, stream, policy), False
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return AtariFrames(game=game_id, split=split, frames=t["images"], ram=t["ram"], episode=t["episode"],
                       action=t["action"], reward=t["reward"], from_cache=hit, seconds=time.perf_counter() - start)


def _load(root: Path, split: str, cache: bool, arg: str | None, n: int | None, seed: int,
          policy: Policy | None) -> Dataset:
    assert arg is not None
    f = load_atari_frames(arg, split, n=n, seed=seed, policy=policy, root=root, cache=cache)
    desc = (f"{f.game} frames (1×210×160 greyscale, AtariARI protocol, "
            f"{'random agent' if policy is None else 'given policy'}); labels are the 128 RAM bytes")
    return Dataset(name=f"atari-frames:{arg}", split=split, images=f.frames, labels=f.ram, classes=None,
                   description=desc, from_cache=f.from_cache, seconds=f.seconds,
                   extras={"episode": f.episode, "action": f.action, "reward": f.reward})





DQN_SIZE = 84
DQN_STACK = 4


@torch.no_grad()
def dqn_view(frames: torch.Tensor, episode: torch.Tensor, size: int = DQN_SIZE, stack: int = DQN_STACK,
             chunk: int = 2048) -> torch.Tensor:
    """uint8 (N, 1, 210, 160) frames → uint8 (N, stack, size, size): what ``rlgen.rl.dqn`` feeds its CNN.

    Each frame is area-resized as :class:`rlgen.rl.atari.AtariPreprocess` resizes it (the same weights and
    rounding), and frame i is stacked with frames i − stack + 1 .. i − 1 of its own episode, oldest first,
    zeros where those fall before the episode's start (as the agent's stack starts)."""

    n, _, h, w = frames.shape
    rows = torch.from_numpy(area_resize_weights(h, size).astype(np.float32))
    cols = torch.from_numpy(area_resize_weights(w, size).T.astype(np.float32).copy())
    small = torch.empty(n, size, size, dtype=torch.uint8)
    for i in range(0, n, chunk):  # float copies of all frames at once would take 13 GB for 50,000
        pooled = frames[i: i + chunk, 0].float()
        small[i: i + chunk] = torch.round(rows @ (pooled @ cols)).clamp_(0, 255).to(torch.uint8)
    out = torch.zeros(n, stack, size, size, dtype=torch.uint8)
    for k in range(stack):  # slot stack − 1 − k holds the frame k steps back
        back = torch.arange(n) - k
        same = (back >= 0) & (episode[back.clamp(min=0)] == episode)
        idx = torch.nonzero(same).squeeze(1)
        out[idx, stack - 1 - k] = small[back[idx]]
    return out


def _load_stacks(root: Path, split: str, cache: bool, arg: str | None, n: int | None, seed: int,
                 policy: Policy | None) -> Dataset:
    assert arg is not None
    f = load_atari_frames(arg, split, n=n, seed=seed, policy=policy, root=root, cache=cache)
    desc = (f"{f.game} frames as DQN sees them ({DQN_STACK}×{DQN_SIZE}×{DQN_SIZE}: area-resized greyscale, "
            f"stacks of {DQN_STACK}; {'random agent' if policy is None else 'given policy'}); labels are the 128 "
            "RAM bytes of the newest frame")
    return Dataset(name=f"atari-stacks:{arg}", split=split, images=dqn_view(f.frames, f.episode), labels=f.ram,
                   classes=None, description=desc, from_cache=f.from_cache, seconds=f.seconds,
                   extras={"episode": f.episode, "action": f.action, "reward": f.reward})


SOURCES = (
    Source("atari-frames", _load, {"n": None, "seed": 0, "policy": None},
           "Atari frames with console RAM labels (AtariARI protocol)", takes_arg=True),
    Source("atari-stacks", _load_stacks, {"n": None, "seed": 0, "policy": None},
           "Atari frames as DQN sees them (84×84, stacks of 4), from the atari-frames collection", takes_arg=True),
)
