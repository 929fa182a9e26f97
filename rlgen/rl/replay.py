"""Uniform experience replay for vector observations (Lin 1992; Mnih et al. 2015).

Transitions live in preallocated NumPy arrays written as a ring; sampling is uniform over
what has been stored. ``terminated`` and ``truncated`` are kept apart: only a termination
stops bootstrapping, so an episode cut by a time limit still learns from its last state.
Atari frames use :mod:`rlgen.rl.atari_replay`, which stores each frame once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from rlgen.errors import UsageError


class Batch(NamedTuple):
    """Sampled transitions; the TD target is ``rewards + discounts * Q(next_obs, ·)``.

    ``discounts`` is γ where the episode went on or was truncated and 0 where it terminated.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    discounts: torch.Tensor


class ReplayBuffer:
    """A ring of ``capacity`` transitions of ``obs_shape`` float32 observations, discounted by ``gamma``."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], gamma: float = 0.99) -> None:
        if capacity < 1:
            raise UsageError(f"--buffer-size {capacity} must be at least 1")
        self.capacity = capacity
        self.gamma = gamma
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.truncated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0
        self._last_obs: np.ndarray | None = None

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.obs, self.next_obs, self.actions, self.rewards,
                                       self.terminated, self.truncated))

    def start(self, obs: np.ndarray) -> None:
        """The observations the environments start from (after a reset or a resume)."""
        self._last_obs = np.array(obs, dtype=np.float32)

    def add(self, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
            next_obs: np.ndarray, obs: np.ndarray) -> None:
        """Store one vector step: ``len(actions)`` transitions, one per environment.

        ``next_obs`` holds each transition's true successor, ``obs`` what the environments return to
        act on next (a reset observation where an episode ended). Same call as the Atari frame replay.
        """
        if self._last_obs is None:
            raise RuntimeError("ReplayBuffer.add() before start(obs)")
        n = len(actions)
        idx = (self.pos + np.arange(n)) % self.capacity if self.pos + n > self.capacity \
            else slice(self.pos, self.pos + n)
        self.obs[idx] = self._last_obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.terminated[idx] = terminated
        self.truncated[idx] = truncated
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self._last_obs = np.array(obs, dtype=np.float32)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str | None = None) -> Batch:
        """A uniform batch (with replacement) as tensors, moved to ``device`` when one is given."""
        idx = rng.integers(0, self.size, size=batch_size)
        discounts = self.gamma * (1.0 - self.terminated[idx])
        batch = Batch(torch.from_numpy(self.obs[idx]), torch.from_numpy(self.actions[idx]),
                      torch.from_numpy(self.rewards[idx]), torch.from_numpy(self.next_obs[idx]),
                      torch.from_numpy(discounts))
        if device is not None and torch.device(device).type != "cpu":
            batch = Batch(*(t.to(device) for t in batch))
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Stored contents as tensors (readable by ``torch.load(weights_only=True)``)."""
        n = self.size
        return {"pos": self.pos, "size": n, "capacity": self.capacity,
                **{k: torch.from_numpy(getattr(self, k)[:n].copy())
                   for k in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise UsageError(f"replay capacity {state['capacity']} in the checkpoint != --buffer-size {self.capacity}")
        n = state["size"]
        for k in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated"):
            getattr(self, k)[:n] = state[k].numpy()
        self.pos, self.size = state["pos"], n
