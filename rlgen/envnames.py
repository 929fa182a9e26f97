"""Environment names shared by every family: short names to gymnasium ids, Atari games to ALE ids.

Short names map to full gymnasium ids (``CartPole`` → ``CartPole-v1``); full ids pass through. An unknown
name is a :class:`~rlgen.errors.UsageError` that lists the short names and suggests close matches. The RL
algorithms and the Atari frame datasets name games the same way through this module.
"""

from __future__ import annotations

import difflib

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
    "Taxi": "Taxi-v4",
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
    games = list(atari_game_ids())
    close = difflib.get_close_matches(name, list(SHORT_NAMES) + games, n=3, cutoff=0.6) or \
        difflib.get_close_matches(name, [k for k in gym.registry if "/" not in k], n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown environment {name!r}; known short names: {', '.join(SHORT_NAMES)}, "
                     f"any of the {len(games)} Atari games (Breakout, Pong, ...), or a registered gymnasium id.{hint}")


def atari_game_ids() -> dict[str, str]:
    """``{"Breakout": "ALE/Breakout-v5", ...}`` for every ROM that ships inside ale-py."""
    import ale_py

    gym.register_envs(ale_py)
    return {k[len("ALE/"):-len("-v5")]: k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")}


def resolve_atari_id(name: str) -> str:
    """``Breakout``, ``breakout`` or ``ALE/Breakout-v5`` → ``ALE/Breakout-v5``; close names suggested."""
    games = atari_game_ids()
    if name in games.values():
        return name
    by_lower = {k.lower(): v for k, v in games.items()}
    key = name.removeprefix("ALE/").split("-v")[0].replace("NoFrameskip", "").lower()
    if key in by_lower:
        return by_lower[key]
    proper = {k.lower(): k for k in games}
    close = [proper[c] for c in difflib.get_close_matches(key, list(by_lower), n=3, cutoff=0.6)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown Atari game {name!r}; use a game name such as Breakout, Pong or SpaceInvaders "
                     f"({len(games)} games ship with ale-py), or a full id like ALE/Breakout-v5.{hint}")


def is_atari(name: str) -> bool:
    """True when ``name`` names an ALE game (short or full) rather than a classic-control task."""
    if name.startswith("ALE/") or "NoFrameskip" in name:
        return True
    if name in SHORT_NAMES or name.lower() in {k.lower() for k in SHORT_NAMES} or name in gym.registry:
        return False
    return name.lower() in {k.lower() for k in atari_game_ids()}
