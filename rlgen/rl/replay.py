"""Uniform experience replay for vector observations (Lin 1992; Mnih et al. 2015).

Transitions live in preallocated NumPy arrays written as a ring; sampling is uniform over
what has been stored. ``terminated`` and ``truncated`` are kept apart: only a termination
stops bootstrapping, so an episode cut by a time limit still learns from its last state.
With ``n_step > 1`` (Sutton 1988; Hessel et al. 2018 for DQN) each stored transition carries the
discounted sum of up to n rewards of one environment, the observation m ≤ n steps later and the
bootstrap discount γ^m (0 after a termination): the buffer holds each environment's last n − 1 steps
until their window is complete or the episode ends. Atari frames use :mod:`rlgen.rl.atari_replay`,
which stores each frame once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from rlgen.errors import UsageError

_STORED = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated", "horizon")


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

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], gamma: float = 0.99, n_step: int = 1) -> None:
        if capacity < 1:
            raise UsageError(f"--buffer-size {capacity} must be at least 1")
        if n_step < 1:
            raise UsageError(f"--n-step {n_step} must be at least 1")
        self.capacity = capacity
        self.gamma = gamma
        self.n_step = n_step
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.truncated = np.zeros(capacity, dtype=np.float32)
        self.horizon = np.ones(capacity, dtype=np.float32)  # m: the steps a stored transition spans
        # γ^m, or 0 after a termination: computed once when written, not on every sample
        self.discounts = np.zeros(capacity, dtype=np.float32)
        # Per environment, the (obs, action, reward) steps whose n-step window is still open.
        self._pending: list[list[tuple[np.ndarray, int, float]]] = []
        self.pos = 0
        self.size = 0
        self._last_obs: np.ndarray | None = None

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.obs, self.next_obs, self.actions, self.rewards,
                                       self.terminated, self.truncated, self.horizon, self.discounts))

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
        if self.n_step > 1:
            self._add_n_step(actions, rewards, terminated, truncated, next_obs)
        else:
            self._write(self._last_obs, actions, rewards, terminated, truncated, next_obs, np.ones(len(actions)))
        self._last_obs = np.array(obs, dtype=np.float32)

    def _write(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
               truncated: np.ndarray, next_obs: np.ndarray, horizon: np.ndarray) -> None:
        n = len(actions)
        idx = (self.pos + np.arange(n)) % self.capacity if self.pos + n > self.capacity \
            else slice(self.pos, self.pos + n)
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.terminated[idx] = terminated
        self.truncated[idx] = truncated
        self.horizon[idx] = horizon
        self.discounts[idx] = self.gamma ** self.horizon[idx] * (1.0 - self.terminated[idx])
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _add_n_step(self, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                    truncated: np.ndarray, next_obs: np.ndarray) -> None:
        """Close the windows this step completes: the oldest open step of each environment, or, where an
        episode ended, every open step (their windows end early, at the episode's end)."""
        if not self._pending:
            self._pending = [[] for _ in range(len(actions))]
        rows: list[tuple[np.ndarray, int, float, float, float, np.ndarray, int]] = []
        for e, window in enumerate(self._pending):
            window.append((self._last_obs[e].copy(), int(actions[e]), float(rewards[e])))
            ended = bool(terminated[e]) or bool(truncated[e])
            if len(window) < self.n_step and not ended:
                continue
            for j in range(len(window) if ended else 1):
                ret = sum(self.gamma ** k * r for k, (_, _, r) in enumerate(window[j:]))
                rows.append((window[j][0], window[j][1], ret, float(terminated[e]), float(truncated[e]),
                             next_obs[e], len(window) - j))
            del window[:len(window) if ended else 1]
        if rows:
            o, a, r, te, tr, no, m = zip(*rows)
            self._write(np.stack(o), np.array(a), np.array(r, np.float32), np.array(te), np.array(tr),
                        np.stack(no), np.array(m, np.float32))

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str | None = None) -> Batch:
        """A uniform batch (with replacement) as tensors, moved to ``device`` when one is given."""
        idx = rng.integers(0, self.size, size=batch_size)
        batch = Batch(torch.from_numpy(self.obs[idx]), torch.from_numpy(self.actions[idx]),
                      torch.from_numpy(self.rewards[idx]), torch.from_numpy(self.next_obs[idx]),
                      torch.from_numpy(self.discounts[idx]))
        if device is not None and torch.device(device).type != "cpu":
            batch = Batch(*(t.to(device) for t in batch))
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Stored contents as tensors (readable by ``torch.load(weights_only=True)``)."""
        n = self.size
        shape = self.obs.shape[1:]
        pending = [{"obs": torch.from_numpy(np.array([o for o, _, _ in w], np.float32).reshape(len(w), *shape)),
                    "actions": torch.tensor([a for _, a, _ in w], dtype=torch.int64),
                    "rewards": torch.tensor([r for _, _, r in w], dtype=torch.float64)} for w in self._pending]
        return {"pos": self.pos, "size": n, "capacity": self.capacity, "n_step": self.n_step, "pending": pending,
                **{k: torch.from_numpy(getattr(self, k)[:n].copy()) for k in _STORED}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise UsageError(f"replay capacity {state['capacity']} in the checkpoint != --buffer-size {self.capacity}")
        if state.get("n_step", 1) != self.n_step:
            raise UsageError(f"--n-step {self.n_step} differs from the checkpoint's replay ({state.get('n_step', 1)})")
        n = state["size"]
        for k in _STORED:
            if k in state:
                getattr(self, k)[:n] = state[k].numpy()
        self.discounts[:n] = self.gamma ** self.horizon[:n] * (1.0 - self.terminated[:n])
        self._pending = [[(o.numpy(), int(a), float(r)) for o, a, r in zip(w["obs"], w["actions"], w["rewards"])]
                         for w in state.get("pending", [])]
        self.pos, self.size = state["pos"], n
