"""Environments for the RL algorithms: making them, vector pools, evaluation and episode recording.

Names resolve through :mod:`rlgen.envnames`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.envnames import FACTORY_NAMESPACE
from rlgen.errors import UsageError


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` that turns a missing optional dependency (e.g. Box2D) into a clear error. A ``render_mode``
    of None is left out, so an environment written without the argument still builds."""
    if kwargs.get("render_mode", "") is None:
        kwargs.pop("render_mode")
    if kwargs.get("render_mode") == "rgb_array":
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen; no display wanted
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise UsageError(f"environment {env_id} needs an extra package: {err}") from None
    except gym.error.Error as err:
        if env_id.startswith(FACTORY_NAMESPACE + "/"):
            raise UsageError(f"environment {env_id} was made by a factory in another process; pass it again "
                             "(rlgen.load(RUN, env_factory=...), or rlgen.envnames.register_factory)") from None
        raise UsageError(f"environment {env_id}: {str(err).strip().splitlines()[0]}") from None


def spaces_of(env_id: str, **kwargs: Any) -> tuple[gym.Space, gym.Space, float | None]:
    """Observation space, action space and the registry's reward threshold of ``env_id``."""
    env = make_env(env_id, **kwargs)
    try:
        return env.observation_space, env.action_space, env.spec.reward_threshold if env.spec else None
    finally:
        env.close()


class EnvPool:
    """Several copies of one environment stepped in lockstep, resetting each as it ends.

    Unlike gymnasium's vector envs (whose default autoreset hands back the reset observation
    on the *next* step), :meth:`step` returns both the true successor of every transition and
    the observation to act on next, so a replay never pairs a final state with a reset state.
    A plain Python loop: for classic control it costs less than a vector env's bookkeeping.
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, **kwargs: Any) -> None:
        if num_envs < 1:
            raise UsageError(f"--num-envs {num_envs} must be at least 1")
        self.envs = [make_env(env_id, **kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(self.envs)]).astype(np.float32)
        self.ep_return = np.zeros(num_envs)
        self.ep_length = np.zeros(num_envs, dtype=np.int64)

    def step(self, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Step every env; returns ``(next_obs, rewards, terminated, truncated, finished)``.

        ``next_obs`` holds each transition's true successor; ``self.obs`` afterwards holds
        what to act on next (a fresh reset where an episode ended). ``finished`` lists
        ``(return, length)`` of the episodes that ended in this step.
        """
        n = self.num_envs
        next_obs = np.empty_like(self.obs)
        rewards = np.empty(n, dtype=np.float32)
        terminated = np.empty(n, dtype=np.float32)
        truncated = np.empty(n, dtype=np.float32)
        finished: list[tuple[float, int]] = []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(int(actions[i]))
            next_obs[i] = o
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            self.ep_return[i] += r
            self.ep_length[i] += 1
            if term or trunc:
                finished.append((float(self.ep_return[i]), int(self.ep_length[i])))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                self.obs[i] = env.reset()[0]
            else:
                self.obs[i] = o
        return next_obs, rewards, terminated, truncated, finished

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue mid-episode, where the env exposes its state."""
        return {"obs": torch.from_numpy(self.obs.copy()), "ep_return": torch.from_numpy(self.ep_return.copy()),
                "ep_length": torch.from_numpy(self.ep_length.copy()), "envs": [env_state(e) for e in self.envs]}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore :meth:`state_dict`; False (and fresh episodes kept) if an env cannot be restored."""
        if len(state["envs"]) != self.num_envs or any(s is None for s in state["envs"]):
            return False
        for env, s in zip(self.envs, state["envs"]):
            set_env_state(env, s)
        self.obs = state["obs"].numpy().copy()
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()
        return True

    def close(self) -> None:
        for env in self.envs:
            env.close()


def env_state(env: gym.Env) -> dict[str, Any] | None:
    """The mid-episode state of a classic-control env (its ``state``, RNG and time-limit count).

    Returns None for environments that keep their state elsewhere (those restart their
    episodes on resume instead).
    """
    inner = env.unwrapped
    if not hasattr(inner, "state") or inner.state is None:
        return None
    out: dict[str, Any] = {
        "state": torch.as_tensor(np.asarray(inner.state, dtype=np.float64)),
        "np_random": _plain_rng_state(inner.np_random.bit_generator.state),
        "elapsed": _time_limit(env)._elapsed_steps if _time_limit(env) is not None else None,
    }
    if hasattr(inner, "steps_beyond_terminated"):
        out["steps_beyond_terminated"] = inner.steps_beyond_terminated
    return out


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    inner = env.unwrapped
    inner.state = state["state"].numpy().copy()
    inner.np_random.bit_generator.state = state["np_random"]
    if state.get("elapsed") is not None and _time_limit(env) is not None:
        _time_limit(env)._elapsed_steps = state["elapsed"]
    if "steps_beyond_terminated" in state:
        inner.steps_beyond_terminated = state["steps_beyond_terminated"]
    # OrderEnforcing refuses step() before reset(); the env was reset when the pool was built.


def _time_limit(env: gym.Env) -> Any:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _plain_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (_plain_rng_state(v) if isinstance(v, dict) else v) for k, v in state.items()}


def evaluate(act: Callable[[np.ndarray], np.ndarray], make: Callable[[], gym.Env], episodes: int, seed: int,
             epsilon: float = 0.0) -> np.ndarray:
    """Returns of ``episodes`` episodes run side by side, episode i reset with ``seed + i``.

    ``act`` maps a batch of observations to a batch of actions; with ``epsilon`` > 0 each action is
    replaced by a uniformly random one with that probability (drawn from a generator seeded with
    ``seed``). Running the episodes together lets the policy act on one batch per step.
    """
    envs: list[gym.Env] = []
    try:
        for _ in range(episodes):
            envs.append(make())
        rng = np.random.default_rng(seed)
        obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
        n_actions = int(envs[0].action_space.n)
        returns = np.zeros(episodes)
        alive = np.ones(episodes, dtype=bool)
        while alive.any():
            idx = np.flatnonzero(alive)
            actions = np.asarray(act(obs[idx]))
            if epsilon > 0:
                explore = rng.random(len(idx)) < epsilon
                actions = np.where(explore, rng.integers(0, n_actions, len(idx)), actions)
            for j, i in enumerate(idx):
                o, r, term, trunc, _ = envs[i].step(int(actions[j]))
                returns[i] += r
                obs[i] = o
                if term or trunc:
                    alive[i] = False
    finally:
        for e in envs:
            e.close()
    return returns


class EpisodeFrames:
    """The rendered frames of one episode that a GIF of at most ``max_frames`` can show, chosen while it runs.

    Every ``stride``-th frame is kept, the stride doubling (and every other kept frame dropped) whenever
    ``2 · max_frames`` are held, and the episode's last frame always: an Atari game played to its 27,000-step
    cap holds at most ``2 · max_frames + 1`` screens instead of all of them (about 2.7 GB).
    """

    def __init__(self, max_frames: int = 250) -> None:
        self.max_frames, self.count, self.stride = max_frames, 0, 1
        self._kept: list[tuple[int, np.ndarray]] = []

    def add(self, render: Callable[[], np.ndarray], last: bool = False) -> None:
        """Count one frame; ``render()`` is called only when the frame is kept."""
        t, self.count = self.count, self.count + 1
        if t % self.stride and not last:
            return
        self._kept.append((t, render()))
        if len(self._kept) > 2 * self.max_frames:
            self.stride *= 2
            self._kept = [(i, f) for i, f in self._kept if i % self.stride == 0 or i == t]

    def frames(self) -> list[np.ndarray]:
        """At most ``max_frames`` of the kept frames, evenly spaced over the episode."""
        frames = [f for _, f in self._kept]
        if len(frames) > self.max_frames:
            keep = np.linspace(0, len(frames) - 1, self.max_frames).round().astype(int)
            frames = [frames[i] for i in keep]
        return frames


def record_episode(act: Callable[[np.ndarray], np.ndarray], make_render: Callable[[], gym.Env], seed: int,
                   epsilon: float = 0.0, max_frames: int = 250,
                   on_frame: Callable[[np.ndarray], None] | None = None) -> tuple[list[np.ndarray], float]:
    """Frames (``env.render()`` arrays, at most ``max_frames``, evenly spaced; see :class:`EpisodeFrames`) and
    the return of one episode. ``make_render`` builds the environment with ``render_mode="rgb_array"``.
    With ``on_frame`` every frame goes to it as it is rendered (a video writer) and none is kept."""
    env = make_render()
    try:
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        frames, total, done = EpisodeFrames(max_frames), 0.0, False
        add = (lambda last=False: on_frame(env.render())) if on_frame is not None else (  # noqa: E731
            lambda last=False: frames.add(env.render, last=last))
        add()
        while not done:
            action = int(np.asarray(act(np.asarray(obs)[None]))[0])
            if epsilon > 0 and rng.random() < epsilon:
                action = int(rng.integers(0, env.action_space.n))
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
            add(last=done)
    finally:
        env.close()
    return frames.frames(), total
