"""Environment names shared by every family: short names to gymnasium ids, Atari games to ALE ids.

Short names map to full gymnasium ids (``CartPole`` → ``CartPole-v1``); full ids pass through. An unknown
name is a :class:`~rlgen.errors.UsageError` that lists the short names and suggests close matches. The RL
algorithms and the Atari frame datasets name games the same way through this module.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable

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


FACTORY_NAMESPACE = "rlgen-factory"
"""The gymnasium namespace of environments given to a command as a factory."""


def register_factory(factory: Callable[..., gym.Env], env_id: str | None = None) -> str:
    """Register ``factory`` (a callable returning a ``gym.Env``) with gymnasium and return its id:
    ``rlgen-factory/<its name>-v0`` unless ``env_id`` names one (a run's recorded id, to act in it again)."""
    if env_id is None:
        name = re.sub(r"[^A-Za-z0-9_]", "_", getattr(factory, "__name__", "env")) or "env"
        env_id = f"{FACTORY_NAMESPACE}/{name}-v0"
    if env_id in gym.registry and gym.registry[env_id].entry_point is not factory:
        del gym.registry[env_id]  # the same name for a new factory: the newest wins, as a redefinition would
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=factory)
    return env_id


def resolve_env_id(name: str | Callable[..., gym.Env]) -> str:
    """Full gymnasium id for a short name, a registered id (also one your code registered) or gymnasium's
    ``module:Env-v0`` form; a callable that returns a ``gym.Env`` is registered (:func:`register_factory`).
    A clear error for anything unknown."""
    if callable(name):
        return register_factory(name)
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    lowered = {k.lower(): v for k, v in SHORT_NAMES.items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    if name in gym.registry:
        return name
    if ":" in name:  # gymnasium's "module:Env-v0": importing the module registers the environment
        module, env_name = name.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UsageError(f"environment {name!r}: its module {module!r} cannot be imported ({err})") from None
        if env_name in gym.registry:
            return name  # kept whole, so every later gym.make (a loaded agent, another process) imports it too
        raise UsageError(f"environment {name!r}: importing {module!r} registered no {env_name!r} "
                         "(gymnasium.register(id=..., entry_point=...) at the module's top level)")
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
    if not isinstance(name, str):
        return False  # an environment factory
    if name.startswith(FACTORY_NAMESPACE + "/") or ":" in name:
        return False
    if name.startswith("ALE/") or "NoFrameskip" in name:
        return True
    if name in SHORT_NAMES or name.lower() in {k.lower() for k in SHORT_NAMES} or name in gym.registry:
        return False
    return name.lower() in {k.lower() for k in atari_game_ids()}
