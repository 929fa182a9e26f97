"""Environment names and checks shared by the RL algorithms.

Short names map to full gymnasium ids (``CartPole`` → ``CartPole-v1``); full ids pass
through. An unknown name is a :class:`~rlgen.errors.UsageError` that lists the short names
and suggests close matches.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym

from rlgen.errors import UsageError

SHORT_NAMES: dict[str, str] = {
    "CartPole": "CartPole-v1",
    "Acrobot": "Acrobot-v1",
    "MountainCar": "MountainCar-v0",
    "MountainCarContinuous": "MountainCarContinuous-v0",
    "Pendulum": "Pendulum-v1",
    "LunarLander": "LunarLander-v3",
    "FrozenLake": "FrozenLake-v1",
    "FrozenLake8x8": "FrozenLake8x8-v1",
    "Taxi": "Taxi-v3",
    "CliffWalking": "CliffWalking-v1",
    "Blackjack": "Blackjack-v1",
}


def resolve_env_id(name: str) -> str:
    """Full gymnasium id for a short name or an id; a clear error for anything unknown."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    lowered = {k.lower(): v for k, v in SHORT_NAMES.items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    if name in gym.registry:
        return name
    candidates = list(SHORT_NAMES) + [k for k in gym.registry if "/" not in k]
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown environment {name!r}; known short names: {', '.join(SHORT_NAMES)} "
                     f"(or any registered gymnasium id).{hint}")


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` that turns a missing optional dependency (e.g. Box2D) into a clear error."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise UsageError(f"environment {env_id} needs an extra package: {err}") from None


def spaces_of(env_id: str, **kwargs: Any) -> tuple[gym.Space, gym.Space, float | None]:
    """Observation space, action space and the registry's reward threshold of ``env_id``."""
    env = make_env(env_id, **kwargs)
    try:
        return env.observation_space, env.action_space, env.spec.reward_threshold if env.spec else None
    finally:
        env.close()
