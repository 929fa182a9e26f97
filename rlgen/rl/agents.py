"""Trained agents, loaded from their run folders, that act, evaluate and make their own environment.

Every agent rebuilds itself from what its checkpoint records (the arguments of the run, the encoder record of
its trunk, the weights), never from guesses, and answers Stable-Baselines3's call::

    agent = rlgen.load("runs/dqn-CartPole-s0-...")
    action, _ = agent.predict(obs, deterministic=True)        # one observation or a batch
    returns = agent.evaluate()                                 # the run's own final evaluation, again
    env = agent.make_env(render_mode="rgb_array")              # exactly the preprocessing of training

so SB3's ``evaluate_policy(agent, agent.make_env())`` accepts it. ``deterministic=False`` acts as the
algorithm explores: DQN ε-greedily with the run's evaluation ε, REINFORCE by sampling its policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen import checkpoint
from rlgen.encoders import SCALINGS, build_backbone
from rlgen.envnames import is_atari, register_factory
from rlgen.errors import UsageError
from rlgen.nets import QNetwork
from rlgen.rl import dqn, qlearning, reinforce
from rlgen.rl import envs as envlib
from rlgen.rl.atari import episode_frames, evaluate_games, human_normalized, make_atari_env
from rlgen.rl.tasks import GreedyPolicy

AGENT_ALGOS = ("dqn", "reinforce", "qlearning")
"""The commands whose runs hold an agent."""


class Agent:
    """A trained policy with its environment. Subclasses give :meth:`act`, :meth:`make_env` and :meth:`evaluate`."""

    algo: str
    args: Any
    """The run's resolved arguments (the command's ``Args``)."""
    observation_space: gym.Space
    action_space: gym.Space

    def __init__(self, path: Path, which: str) -> None:
        self.path, self.which = path, which
        self._rng = np.random.default_rng(0)

    @property
    def env_id(self) -> str:
        return str(self.args.env)

    @property
    def eval_seed(self) -> int:
        """The reset seed of the first episode of the run's own evaluation (episode i: ``eval_seed + i``)."""
        return 10_000 * (self.args.seed + 1)

    @property
    def eval_epsilon(self) -> float:
        """The chance of a random action in the run's evaluation (DQN's ``--eval-epsilon``; 0 for the others)."""
        return 0.0

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions ``(B,)`` for a batch of observations ``(B, *obs_shape)``."""
        raise NotImplementedError

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's signature: ``(action, state)`` for one observation or a batch (``state`` is
        always None: these agents keep no recurrent state)."""
        obs = np.asarray(observation)
        shape = tuple(self.observation_space.shape or ())
        single = obs.shape == shape
        if not single and obs.shape[1:] != shape:
            raise UsageError(f"predict: observation of shape {obs.shape}; this {self.algo} agent takes {shape} "
                             f"or a batch of them")
        actions = np.asarray(self.act(obs[None] if single else obs, deterministic))
        return (actions[0] if single else actions), None

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        raise NotImplementedError

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> np.ndarray:
        """Returns (raw game scores on Atari) of ``episodes`` episodes from reset seed ``seed`` on; by default the
        run's own final evaluation: its episode count and seeds, so the numbers of ``summary.json`` come back."""
        raise NotImplementedError

    def human_normalized(self, score: float) -> float | None:
        """(score − random) / (human − random) for an Atari 100k game, else None."""
        return human_normalized(self.env_id, score) if is_atari(self.env_id) else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.algo} on {self.env_id} from {self.path} ({self.which})>"


def _args(cls: type, saved: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in saved.items() if k in fields})


class DQNAgent(Agent):
    """The Q-network the run evaluated and kept (its weight average where it has one), acting greedily."""

    algo = "dqn"

    def __init__(self, path: Path, which: str, ckpt: dict[str, Any], device: torch.device) -> None:
        super().__init__(path, which)
        self.args = _args(dqn.Args, ckpt["args"])
        record = ckpt.get("encoder_record")
        if record is None:
            raise UsageError(f"{path}: the checkpoint records no encoder_record (what its Q-network's trunk is); "
                             "an older rlgen wrote it, so train the run again to load it")
        weights = ckpt.get(record["weights"])  # best.pt's record names its q_net, the kept agent's weights
        if weights is None:
            raise UsageError(f"{path}: the checkpoint has no {record['weights']!r} weights")
        n_actions = int(weights["head.adv.weight"].shape[0])
        net = QNetwork(build_backbone(record), n_actions, dueling=bool(self.args.dueling))
        net.load_state_dict(dict(weights))
        atari = is_atari(self.args.env)
        # the layout training used, so the same kernels give the same numbers
        self.net = net.to(device, memory_format=torch.channels_last if atari else torch.contiguous_format).eval()
        self.net.requires_grad_(False)
        scale = SCALINGS[record["scaling"]]
        self.prepare = (lambda x: scale(x.contiguous(memory_format=torch.channels_last))) if atari else scale
        self.policy = GreedyPolicy(self.net, self.prepare, device, dqn.uses_amp(self.args, device))
        self.observation_space = gym.spaces.Box(
            *(0, 255) if atari else (-np.inf, np.inf), shape=tuple(record["input_shape"]),
            dtype=np.uint8 if atari else np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)

    @property
    def eval_epsilon(self) -> float:
        return float(self.args.eval_epsilon)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        actions = self.policy(obs)
        if not deterministic and self.args.eval_epsilon > 0:
            explore = self._rng.random(len(actions)) < self.args.eval_epsilon
            actions = np.where(explore, self._rng.integers(0, self.action_space.n, len(actions)), actions)
        return actions

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        a = self.args
        if is_atari(a.env):  # whole games, the stack restarted after a lost life as training restarted it
            return make_atari_env(a.env, sticky_actions=a.sticky_actions, render=render_mode is not None,
                                  max_episode_frames=episode_frames(a.max_episode_steps),
                                  fresh_stack_on_life_loss=True)
        limit = {"max_episode_steps": a.max_episode_steps} if a.max_episode_steps else {}
        return envlib.make_env(a.env, render_mode=render_mode, **limit)

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> np.ndarray:
        a = self.args
        episodes = a.final_eval_episodes if episodes is None else episodes
        seed = self.eval_seed if seed is None else seed
        if is_atari(a.env):
            return evaluate_games(self.policy, a.env, episodes, seed, a.eval_epsilon, sticky_actions=a.sticky_actions,
                                  max_episode_frames=episode_frames(a.max_episode_steps))
        return envlib.evaluate(self.policy, lambda: self.make_env(), episodes, seed=seed, epsilon=a.eval_epsilon)


class ReinforceAgent(Agent):
    """The policy network, acting greedily (its most probable action) or sampling."""

    algo = "reinforce"

    def __init__(self, path: Path, which: str, ckpt: dict[str, Any], device: torch.device) -> None:
        super().__init__(path, which)
        if which != "last":
            raise UsageError("a reinforce run keeps only its last weights (accepted: which='last')")
        self.args, info = reinforce.resolve(_args(reinforce.Args, ckpt["args"]))
        self.device = device
        self.net = reinforce.Net(self.args.backbone, info["obs_shape"], info["n_actions"], info["hidden"],
                                 info["scale"]).to(device)
        self.net.load_state_dict(dict(ckpt["policy"]))
        self.net.eval().requires_grad_(False)
        env = self.make_env()
        self.observation_space, self.action_space = env.observation_space, env.action_space
        env.close()

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.inference_mode():
            logits = self.net(torch.as_tensor(obs, device=self.device))
        if deterministic:
            return logits.argmax(-1).cpu().numpy()
        probs = torch.softmax(logits.double(), -1).cpu().numpy()
        return np.array([reinforce.sample_action(p, self._rng.random()) for p in probs])

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        if render_mode not in (None, "rgb_array"):
            raise UsageError(f"render_mode {render_mode!r}: a reinforce agent's environment renders rgb_array frames")
        return reinforce.make_env(self.args, render=render_mode is not None)

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> np.ndarray:
        a = self.args
        returns, _ = reinforce.evaluate(self.net, a, self.device, a.eval_episodes if episodes is None else episodes,
                                        seed=self.eval_seed if seed is None else seed)
        return returns


class QTableAgent(Agent):
    """The greedy policy of a Q-table (or of value iteration's optimal table)."""

    algo = "qlearning"

    def __init__(self, path: Path, which: str, ckpt: dict[str, Any]) -> None:
        super().__init__(path, which)
        if which != "last":
            raise UsageError("a qlearning run keeps only its last table (accepted: which='last')")
        self.args, self.problem = qlearning.resolve(_args(qlearning.Args, ckpt["args"]))
        q = ckpt.get("q")
        if q is None:
            raise UsageError(f"{path}: the checkpoint holds no Q-table")
        self.q = np.asarray(q, dtype=np.float64)
        self.policy = self.q.argmax(axis=1)
        env = self.make_env()
        self.observation_space, self.action_space = env.observation_space, env.action_space
        env.close()

    @property
    def eval_seed(self) -> int:
        return qlearning.eval_seed(self.args.seed)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        index = self.problem.discretiser or int
        return np.array([self.policy[index(o)] for o in obs])

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        return envlib.make_env(self.problem.env_id, max_episode_steps=self.args.max_episode_steps,
                               render_mode=render_mode, **self.problem.kwargs)

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> np.ndarray:
        a = self.args
        returns, _, _ = qlearning.evaluate(self.policy, self.problem, a.eval_episodes if episodes is None else episodes,
                                           self.eval_seed if seed is None else seed, a.max_episode_steps)
        return returns


def load_agent(run_dir_or_file: str | Path, which: str = "last", device: str | torch.device = "cpu",
               env_factory: Callable[..., gym.Env] | None = None) -> Agent:
    """The agent of a dqn, reinforce or qlearning run folder (or checkpoint file); ``which``: ``last`` (the
    weights the run ended with, those its final evaluation scored) or ``best`` (DQN: its best evaluation's).
    A run trained on an environment factory needs that factory again in a new process (``env_factory``)."""
    if which not in ("last", "best"):
        raise UsageError(f"which={which!r} is not one of last, best")
    path = Path(run_dir_or_file)
    if which == "best":
        folder = path if path.is_dir() else path.parent
        best = folder / dqn.BEST_FILENAME
        if not best.exists():
            raise UsageError(f"no {dqn.BEST_FILENAME} in {folder} (only dqn runs keep their best evaluation's weights)")
        ckpt = checkpoint.load(best)
    else:
        ckpt = checkpoint.load(path)
    algo = ckpt.get("algo")
    device = torch.device(device)
    if env_factory is not None:
        register_factory(env_factory, str(ckpt["args"]["env"]))
    if algo == "dqn":
        return DQNAgent(path, which, ckpt, device)
    if algo == "reinforce":
        return ReinforceAgent(path, which, ckpt, device)
    if algo in ("qlearning", "value_iteration"):
        return QTableAgent(path, which, ckpt)
    raise UsageError(f"{checkpoint.checkpoint_path(path)} holds a {algo!r} run, which has no agent "
                     f"(agents: {', '.join(AGENT_ALGOS)})")
