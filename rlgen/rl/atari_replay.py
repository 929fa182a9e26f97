"""Replay memory for Atari DQN that stores each 84×84 frame once (about 7 KB per transition).

The replay memory of Mnih et al. (2015) holds the last million transitions of stacked 84×84×4
observations; storing ``obs`` and ``next_obs`` stacks costs 56 KB per transition (56 GB for a million).
:class:`FrameReplay` keeps one frame per agent step in a preallocated uint8 ring per environment and
rebuilds the stacks at sample time by index arithmetic.

Layout: environment ``e`` owns ``L = ceil(capacity / num_envs)`` consecutive slots, used as a ring.
Each slot holds one frame, the number of earlier frames of its episode (capped at ``stack - 1``), and,
once the agent has acted on it, the transition taken from it (action, reward, terminated, truncated).
An episode ``f0 … fT`` fills ``T + 1`` consecutive slots; the last holds the final frame and no
transition. When the next episode's first frame is the same picture — a lost life, where the game goes
on from the current screen — it reuses that slot, so lost lives cost nothing; a real game over costs one
extra slot. Frames older than an episode's first frame are zeros in the rebuilt stacks, as in the
observation ale-py's vector env returns at reset (``rlgen.rl.atari``), so a sampled stack equals what
the agent saw, and no stack ever spans two episodes.

Terminations and truncations are kept apart: ``discounts`` is ``gamma**m`` after a truncation (bootstrap
from the true last observation) and 0 after a termination. With ``n_step > 1`` a sample carries the
discounted sum of up to ``n_step`` rewards, cut at the end of the episode, the observation ``m`` steps
later and ``gamma**m`` (Mnih et al. 2015; Machado et al. 2018 for the Atari protocol).

The collection loop, with :func:`rlgen.rl.atari.make_atari_vector_env`::

    venv = make_atari_vector_env("Breakout", num_envs, seed)
    replay = FrameReplay(capacity, num_envs, n_step=n, gamma=gamma, batch_size=batch, clip_rewards=True)
    obs, _ = venv.reset()
    replay.start(obs)
    while venv.steps < total_steps:
        actions = policy(obs)
        obs, rewards, terminated, truncated, info = venv.step(actions)
        replay.add(actions, rewards, terminated, truncated, info["next_obs"], obs)
        for game in venv.pop_finished():
            log(score=game.score, length=game.length)
        b = replay.sample(batch, np_rng)  # target: b.rewards + b.discounts * max_a Q'(b.next_obs, a)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from rlgen.errors import UsageError

_TENSORS = ("frames", "actions", "rewards", "terminated", "truncated", "has_transition", "age", "head")


class FrameBatch(NamedTuple):
    """A sampled batch; ``discounts`` is ``gamma**m`` (0 after a termination) for the bootstrap term."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    discounts: torch.Tensor
    steps: torch.Tensor


def check_replay_args(capacity: int, num_envs: int, batch_size: int | None = None, *, stack: int = 4,
                      n_step: int = 1, gamma: float = 0.99) -> None:
    """Raise :class:`UsageError` for settings that cannot work, before anything is allocated."""
    if num_envs < 1:
        raise UsageError(f"--num-envs {num_envs}: need at least 1 environment")
    if capacity < 1:
        raise UsageError(f"replay capacity {capacity}: must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    if batch_size is not None and capacity < batch_size:
        raise UsageError(f"replay capacity {capacity} is smaller than --batch-size {batch_size}; "
                         f"use a capacity of at least {batch_size}")
    if stack < 1:
        raise UsageError(f"frame stack {stack}: must be at least 1")
    if n_step < 1:
        raise UsageError(f"--n-step {n_step}: must be at least 1")
    if not 0.0 <= gamma <= 1.0:
        raise UsageError(f"--gamma {gamma}: must be between 0 and 1")
    per_env = -(-capacity // num_envs)
    if per_env < stack + n_step:
        raise UsageError(f"replay capacity {capacity} leaves {per_env} frames per environment for "
                         f"{num_envs} environments; need at least stack + n_step = {stack + n_step} each")


class FrameReplay:
    """Uniform replay memory of frame-stacked Atari transitions from ``num_envs`` parallel games.

    Per vector step the training loop calls :meth:`add` once; :meth:`start` once after ``reset()``.
    ``capacity`` counts frame slots over all environments (one per transition, plus one per game over).
    ``pin_memory=True`` puts the storage in page-locked memory when CUDA is available (ignored otherwise)
    so that batches move to the GPU asynchronously. ``clip_rewards`` stores ``sign(reward)``, so that
    n-step sums are sums of clipped rewards (Mnih et al. 2015).
    """

    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, int] = (84, 84), stack: int = 4,
                 n_step: int = 1, gamma: float = 0.99, *, batch_size: int | None = None,
                 clip_rewards: bool = False, pin_memory: bool = False) -> None:
        check_replay_args(capacity, num_envs, batch_size, stack=stack, n_step=n_step, gamma=gamma)
        self.capacity = int(capacity)
        self.num_envs = int(num_envs)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.stack = int(stack)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.clip_rewards = bool(clip_rewards)
        self.per_env = -(-self.capacity // self.num_envs)
        slots = self.per_env * self.num_envs
        self.pinned = bool(pin_memory and torch.cuda.is_available())
        kw: dict[str, Any] = {"pin_memory": True} if self.pinned else {}
        # Frames are only read where a flag says they were written, so they need no zeroing (and stay
        # out of resident memory until used).
        self._t: dict[str, torch.Tensor] = {
            "frames": torch.empty((slots, *self.frame_shape), dtype=torch.uint8, **kw),
            "actions": torch.zeros(slots, dtype=torch.int64, **kw),
            "rewards": torch.zeros(slots, dtype=torch.float32, **kw),
            "terminated": torch.zeros(slots, dtype=torch.bool, **kw),
            "truncated": torch.zeros(slots, dtype=torch.bool, **kw),
            "has_transition": torch.zeros(slots, dtype=torch.bool, **kw),
            "age": torch.zeros(slots, dtype=torch.uint8, **kw),
            "head": torch.zeros(self.num_envs, dtype=torch.int64),
        }
        self._views()
        self._base = np.arange(self.num_envs, dtype=np.int64) * self.per_env
        self._all = np.arange(self.num_envs)
        self._count = 0
        self._started = False

    def _views(self) -> None:
        # NumPy views share the tensors' memory: fast fancy indexing, tensors for checkpoints and pinning.
        v = {k: t.numpy() for k, t in self._t.items()}
        self._frames, self._actions, self._rewards = v["frames"], v["actions"], v["rewards"]
        self._term, self._trunc, self._has = v["terminated"], v["truncated"], v["has_transition"]
        self._age, self._head = v["age"], v["head"]

    # ----------------------------------------------------------------------------------------- writing

    def start(self, obs: Any) -> None:
        """Begin an episode in every environment from ``obs`` (stacks ``(N, stack, H, W)`` or frames)."""
        frames = self._last_frames(obs)
        self._write(self._all, frames, np.zeros(self.num_envs, dtype=np.uint8))
        self._started = True

    def add(self, actions: Any, rewards: Any, terminated: Any, truncated: Any, next_obs: Any,
            obs: Any = None) -> None:
        """Store one vector step.

        ``next_obs`` is each transition's true successor (``info["next_obs"]`` of
        :class:`~rlgen.rl.atari.AtariVecEnv`); ``obs`` is what the env returned to act on next, needed
        where an episode ended (its first frame starts the next episode there). Arrays have ``num_envs``
        rows; stacks or single frames are accepted (only the newest frame is read).
        """
        if not self._started:
            raise RuntimeError("FrameReplay.add() before start(): call start(obs) after env.reset()")
        n = self.num_envs
        term = np.asarray(terminated, dtype=bool).reshape(n)
        trunc = np.asarray(truncated, dtype=bool).reshape(n) & ~term
        rew = np.asarray(rewards, dtype=np.float32).reshape(n)
        cur = self._base + (self._head - 1) % self.per_env
        self._actions[cur] = np.asarray(actions, dtype=np.int64).reshape(n)
        self._rewards[cur] = np.sign(rew) if self.clip_rewards else rew
        self._term[cur] = term
        self._trunc[cur] = trunc
        self._has[cur] = True
        self._count += n
        succ = self._last_frames(next_obs)
        self._write(self._all, succ, np.minimum(self._age[cur] + 1, self.stack - 1).astype(np.uint8))
        ended = np.flatnonzero(term | trunc)
        if ended.size:
            if obs is None:
                raise ValueError("FrameReplay.add(): an episode ended, so obs (the reset observation) is needed")
            first = self._last_frames(obs)[ended]
            same = (first == succ[ended]).reshape(ended.size, -1).all(axis=1)
            # Same picture (a lost life): the final frame's slot doubles as the next episode's first.
            self._age[self._base[ended[same]] + (self._head[ended[same]] - 1) % self.per_env] = 0
            if (~same).any():
                self._write(ended[~same], first[~same], np.zeros(int((~same).sum()), dtype=np.uint8))

    def _last_frames(self, obs: Any) -> np.ndarray:
        arr = obs.numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
        if arr.shape == (self.num_envs, *self.frame_shape):
            return arr
        if arr.ndim == 4 and arr.shape[0] == self.num_envs and arr.shape[2:] == self.frame_shape:
            return arr[:, -1]
        raise ValueError(f"FrameReplay: observations of shape {arr.shape}, expected "
                         f"({self.num_envs}, {self.stack}, {', '.join(map(str, self.frame_shape))}) or frames")

    def _write(self, envs: np.ndarray, frames: np.ndarray, ages: np.ndarray) -> None:
        slots = self._base[envs] + self._head[envs] % self.per_env
        self._count -= int(self._has[slots].sum())
        self._frames[slots] = frames
        self._age[slots] = ages
        self._has[slots] = False
        self._term[slots] = False
        self._trunc[slots] = False
        self._head[envs] += 1

    # ---------------------------------------------------------------------------------------- sampling

    def __len__(self) -> int:
        """Transitions held (a few at the oldest end of each ring may lack frames to stack)."""
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes allocated for the storage."""
        return sum(t.numel() * t.element_size() for t in self._t.values())

    def sample(self, batch_size: int, generator: np.random.Generator | None = None,
               device: torch.device | str | None = None) -> FrameBatch:
        """``batch_size`` transitions drawn uniformly with replacement from those that can be sampled.

        A transition can be sampled once all ``n_step`` steps after it (or those up to its episode's end)
        are stored and its stack's frames have not been overwritten.
        """
        if batch_size < 1 or batch_size > self.capacity:
            raise UsageError(f"batch size {batch_size} does not fit a replay of capacity {self.capacity}; "
                             f"use 1..{self.capacity}")
        rng = generator if generator is not None else np.random.default_rng()
        envs, pos = self._draw(batch_size, rng)
        batch = self._gather(envs, pos)
        if device is not None and torch.device(device).type != "cpu":
            batch = FrameBatch(*(t.pin_memory().to(device, non_blocking=True) if self.pinned else t.to(device)
                                 for t in batch))
        return batch

    def _written(self) -> tuple[np.ndarray, np.ndarray]:
        held = np.minimum(self._head, self.per_env)
        return held, self._head - held

    def _draw(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        held, oldest = self._written()
        total = int(held.sum())
        ends = np.cumsum(held)
        got_e: list[np.ndarray] = []
        got_p: list[np.ndarray] = []
        need = batch_size
        # Rejection keeps the draw uniform over samplable transitions; few slots are rejected once the
        # memory has some content (final frames, the newest n steps, the oldest stack - 1 frames).
        for _ in range(16):
            if total == 0:
                break
            u = rng.integers(0, total, size=max(2 * need, 64))
            envs = np.searchsorted(ends, u, side="right")
            pos = oldest[envs] + u - (ends[envs] - held[envs])
            ok = self._samplable(envs, pos)
            got_e.append(envs[ok][:need])
            got_p.append(pos[ok][:need])
            need -= len(got_e[-1])
            if need == 0:
                return np.concatenate(got_e), np.concatenate(got_p)
        envs, pos = self._valid_positions()
        if envs.size == 0:
            raise RuntimeError("FrameReplay.sample(): no complete transition stored yet")
        pick = rng.integers(0, envs.size, size=need)
        return np.concatenate([*got_e, envs[pick]]), np.concatenate([*got_p, pos[pick]])

    def _valid_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every samplable (env, absolute position), oldest first per environment."""
        held, oldest = self._written()
        envs = np.repeat(self._all, held)
        pos = np.concatenate([np.arange(o, o + h) for o, h in zip(oldest, held)]) if envs.size else envs
        ok = self._samplable(envs, pos)
        return envs[ok], pos[ok]

    def _slot(self, envs: np.ndarray, pos: np.ndarray) -> np.ndarray:
        base = self._base[envs]
        return (base.reshape(base.shape + (1,) * (pos.ndim - base.ndim))) + pos % self.per_env

    def _window(self, envs: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The n steps from ``pos``: which are used (before the episode ends) and whether all are stored."""
        p = pos[:, None] + np.arange(self.n_step)
        slots = self._slot(envs, p)
        # The newest slot (head - 1) holds the frame the agent is acting on: no transition yet.
        stored = self._has[slots] & (p < self._head[envs][:, None] - 1)
        done = self._term[slots] | self._trunc[slots]
        used = np.ones_like(stored)
        used[:, 1:] = np.cumprod(~done[:, :-1], axis=1, dtype=bool)
        return {"slots": slots, "stored": stored, "used": used, "complete": (stored | ~used).all(axis=1)}

    def _samplable(self, envs: np.ndarray, pos: np.ndarray) -> np.ndarray:
        if pos.size == 0:
            return np.zeros(0, dtype=bool)
        slot = self._slot(envs, pos)
        oldest = self._head[envs] - self.per_env
        # The stack reaches back age frames; those must not have been overwritten.
        return (pos - self._age[slot].astype(np.int64) >= oldest) & self._window(envs, pos)["complete"]

    def _stacks(self, envs: np.ndarray, pos: np.ndarray, ages: np.ndarray) -> torch.Tensor:
        back = np.arange(self.stack - 1, -1, -1)
        slots = self._slot(envs, pos[:, None] - back)
        out = self._frames[slots]
        out[back[None, :] > ages[:, None]] = 0
        return torch.from_numpy(out)

    def _gather(self, envs: np.ndarray, pos: np.ndarray) -> FrameBatch:
        w = self._window(envs, pos)
        used, slots = w["used"], w["slots"]
        steps = used.sum(axis=1)
        powers = self.gamma ** np.arange(self.n_step)
        rewards = (used * powers * self._rewards[slots]).sum(axis=1)
        term = (used & self._term[slots]).any(axis=1)
        trunc = (used & self._trunc[slots]).any(axis=1)
        last = slots[np.arange(len(pos)), steps - 1]
        next_age = np.minimum(self._age[last].astype(np.int64) + 1, self.stack - 1)
        discounts = np.where(term, 0.0, self.gamma ** steps)
        return FrameBatch(
            obs=self._stacks(envs, pos, self._age[slots[:, 0]].astype(np.int64)),
            actions=torch.from_numpy(self._actions[slots[:, 0]]),
            rewards=torch.from_numpy(rewards.astype(np.float32)),
            next_obs=self._stacks(envs, pos + steps, next_age),
            terminated=torch.from_numpy(term),
            truncated=torch.from_numpy(trunc),
            discounts=torch.from_numpy(discounts.astype(np.float32)),
            steps=torch.from_numpy(steps.astype(np.int64)),
        )

    # ------------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Contents and layout, tensors and plain values only (``torch.load(weights_only=True)`` reads it).

        Only the slots written so far are kept (each environment's ring fills from its start), so a
        checkpoint early in a run is not the size of the whole capacity. Once every ring is full the
        tensors are the live storage, not copies: save them before the next :meth:`add`. After a
        resume the env restarts its games, so call :meth:`start` again; the episodes cut there keep
        their transitions (the last ``n_step - 1`` of each can no longer be sampled with n-step returns).
        """
        written = self._written_slots()
        slots = {k: t if written is None else t[written] for k, t in self._t.items() if k != "head"}
        return {**slots, "head": self._t["head"], "count": self._count, "started": self._started,
                "capacity": self.capacity, "num_envs": self.num_envs, "frame_shape": list(self.frame_shape),
                "stack": self.stack, "clip_rewards": self.clip_rewards}

    def _written_slots(self) -> torch.Tensor | None:
        """The slots written so far, each ring's in order; None when every ring is full."""
        held, _ = self._written()
        if (held == self.per_env).all():
            return None
        # An index, not a slice: torch.save writes a view's whole storage.
        return torch.from_numpy(np.concatenate([np.arange(b, b + h) for b, h in zip(self._base, held)]))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; ``n_step`` and ``gamma`` may differ (they act at sample time)."""
        for key in ("capacity", "num_envs", "frame_shape", "stack", "clip_rewards"):
            mine = list(self.frame_shape) if key == "frame_shape" else getattr(self, key)
            if state.get(key) != mine:
                raise UsageError(f"saved replay has {key}={state.get(key)!r} but this run uses {mine!r}; "
                                 f"resume with the same settings")
        self._t["head"].copy_(state["head"])
        written = self._written_slots()
        for key in _TENSORS:
            if key == "head":
                continue
            if written is None or len(state[key]) == len(self._t[key]):  # full rings (or a whole-storage save)
                self._t[key].copy_(state[key])
            else:
                self._t[key][written] = state[key]
        self._count = int(state["count"])
        self._started = bool(state["started"])
