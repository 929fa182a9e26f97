"""Atari environments with the standard DQN preprocessing (Mnih et al. 2015; Machado et al. 2018).

Both paths below produce the same observations for the same actions from the same start: a stack of
the last ``stack`` frames (oldest first), each the pixel-wise max of the last two emulator frames of a
``frame_skip``-frame action repeat, in grayscale, area-resized to ``screen_size`` × ``screen_size``;
frames from before the start of an episode are zeros (what ale-py's vector env returns at reset).

* :func:`make_atari_vector_env` — collection. ale-py's native ``AtariVectorEnv`` (C++ threads) wrapped
  in :class:`AtariVecEnv`, which adds life-loss episodes that do not restart the game and full-game
  score tracking.
* :func:`evaluate_games` — evaluation: whole games in the vector env, side by side.
* :func:`make_atari_env` — video (and single-game evaluation). One gymnasium env with :class:`AtariPreprocess` and
  ``FrameStackObservation(padding_type="zero")``. It resizes with a NumPy area filter instead of
  gymnasium's ``AtariPreprocessing`` so that OpenCV is not needed; the vector env resizes with OpenCV's
  ``INTER_AREA`` and the two differ by at most one grey level after rounding (``tests/test_atari.py``).

Conventions shared by both paths:

* Rewards are the raw game rewards; clip them to their sign for learning, report the raw sum.
* FIRE is pressed for one emulator frame when a game is reset if the game's action set has FIRE
  (ale-py's ``use_fire_reset``); then 0..``noop_max`` no-op frames are played (Mnih et al. 2015).
  After a lost life the agent has to press FIRE itself.
* ``episodic_life``: a lost life ends the (training) episode — ``terminated`` is True — but the game goes
  on; the next episode starts from the current screen with the older frames of the stack zeroed. This
  is DeepMind's "end of life is end of episode, reset only on game over"; ale-py's own
  ``episodic_life=True`` instead restarts the whole game after every lost life, so it is not used.
* Sticky actions (Machado et al. 2018) are off by default; ``sticky_actions=True`` sets
  ``repeat_action_probability=0.25``.
* A game is truncated after ``max_episode_frames`` emulator frames (108,000 = 30 minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.augment import drq_augment
from rlgen.encoders import encoder_record
from rlgen.envnames import resolve_atari_id
from rlgen.errors import UsageError
from rlgen.images import area_resize_weights
from rlgen.nets import QNetwork, make_backbone
from rlgen.rl.atari_replay import FrameReplay
from rlgen.rl.tasks import Act, Task, initialise, train_encoder, trunk_from, trunk_record

STICKY_ACTION_PROB = 0.25
"""Machado et al. (2018)'s recommended ``repeat_action_probability``."""

# (random, human) scores of the 26 Atari 100k games, the reference points of the human-normalised score
# (score − random) / (human − random); the values of Mnih et al. 2015 / Badia et al. 2020 as Dopamine's
# labs/atari_100k/normalization_utils.py lists them.
RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0), "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5), "Boxing": (0.1, 12.1), "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8), "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6), "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5), "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MsPacman": (307.3, 6951.6), "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3), "Qbert": (163.9, 13455.0), "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7), "UpNDown": (533.4, 11693.2),
}


MAX_EPISODE_FRAMES = 108_000  # 30 minutes of play (Machado et al. 2018): 27,000 agent steps at frame skip 4


def episode_frames(max_episode_steps: int | None, frame_skip: int = 4) -> int:
    """A cap in agent steps as emulator frames; None: :data:`MAX_EPISODE_FRAMES`."""
    return frame_skip * max_episode_steps if max_episode_steps else MAX_EPISODE_FRAMES


def game_name(env_id_or_name: str) -> str:
    """``ALE/Breakout-v5`` or ``Breakout`` → ``Breakout``."""
    return resolve_atari_id(env_id_or_name).removeprefix("ALE/").rsplit("-v", 1)[0]


def human_normalized(env_id_or_name: str, score: float) -> float | None:
    """(score − random) / (human − random) for a game of :data:`RANDOM_HUMAN`, else None."""
    ref = RANDOM_HUMAN.get(game_name(env_id_or_name))
    return None if ref is None else (score - ref[0]) / (ref[1] - ref[0])


def atari_rom_name(env_id_or_name: str) -> str:
    """ROM name that ale-py's vector env wants: ``Breakout``/``ALE/Breakout-v5`` → ``breakout``."""
    from ale_py import roms
    from ale_py.registration import rom_id_to_name

    game = game_name(env_id_or_name)
    by_name = {rom_id_to_name(rom): rom for rom in roms.get_all_rom_ids()}
    if game not in by_name:
        raise UsageError(f"Atari game {env_id_or_name!r} has no ROM in ale-py's vector env")
    return by_name[game]


def _check_common(num_envs: int | None, noop_max: int, frame_skip: int, stack: int, screen_size: int) -> None:
    if num_envs is not None and num_envs < 1:
        raise UsageError(f"--num-envs {num_envs}: need at least 1 environment")
    if noop_max < 0:
        raise UsageError(f"noop_max {noop_max}: must be 0 or more")
    if frame_skip < 1:
        raise UsageError(f"frame_skip {frame_skip}: must be 1 or more")
    if stack < 1:
        raise UsageError(f"frame stack {stack}: must be 1 or more")
    if screen_size < 1:
        raise UsageError(f"screen_size {screen_size}: must be 1 or more")


@dataclass(frozen=True)
class GameResult:
    """One finished game: raw score, agent steps, emulator frames, and which sub-environment played it."""

    score: float
    length: int
    frames: int
    env: int


class GameScoreTracker:
    """Raw game score, length and emulator frames per sub-environment, kept until the game really ends.

    Lost lives (which end training episodes) do not end a game; game over and truncation do.
    """

    def __init__(self, num_envs: int) -> None:
        self.scores = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.start_frame = np.zeros(num_envs, dtype=np.int64)
        self.finished: list[GameResult] = []

    def reset(self, frame_number: np.ndarray, episode_frame_number: np.ndarray) -> None:
        """All games start now (the reset's FIRE and no-op frames count towards the game)."""
        self.scores[:] = 0.0
        self.lengths[:] = 0
        self.start_frame[:] = frame_number - episode_frame_number

    def update(self, rewards: np.ndarray, game_over: np.ndarray, frame_number: np.ndarray,
               episode_frame_number: np.ndarray) -> None:
        """Add one vector step; ``frame_number``/``episode_frame_number`` are read after any auto-reset."""
        self.scores += rewards
        self.lengths += 1
        for i in np.flatnonzero(game_over):
            # The game's last frame is the frame before the new game's reset began.
            end = int(frame_number[i] - episode_frame_number[i])
            self.finished.append(GameResult(float(self.scores[i]), int(self.lengths[i]),
                                            end - int(self.start_frame[i]), int(i)))
            self.scores[i] = 0.0
            self.lengths[i] = 0
            self.start_frame[i] = end

    def pop_finished(self) -> list[GameResult]:
        """Games finished since the last call, oldest first."""
        done, self.finished = self.finished, []
        return done


class AtariVecEnv:
    """ale-py's ``AtariVectorEnv`` with DeepMind-style life-loss episodes and full-game scores.

    ``step`` returns ``(obs, rewards, terminated, truncated, info)``:

    * ``obs`` (``num_envs, stack, H, W`` uint8): what the agent acts on next. Where an episode ended
      this is already the first observation of the next episode (auto-reset in the same step).
    * ``rewards`` float32, raw (not clipped).
    * ``terminated``: game over, or a lost life when ``episodic_life``. ``truncated``: the emulator's
      frame limit was reached (bootstrap from ``next_obs``). Never both.
    * ``info["next_obs"]``: the true successor of the transition just taken: equal to ``obs`` where no
      episode ended, the episode's last observation where one did (ale-py's ``final_obs``, which is only
      meaningful for those rows). Store ``(obs_before, action, reward, next_obs)``, never the reset frame.
    * ``info["game_over"]``: the game really ended (game over or truncation); ``info["life_lost"]``;
      ``info["lives"]``, ``info["frame_number"]``.

    Finished games (raw score, agent steps, emulator frames) come from :meth:`pop_finished`; the total
    number of emulator frames played so far is :attr:`frames`.
    """

    def __init__(self, rom: str, num_envs: int, seed: int | None, *, sticky_actions: bool = False,
                 episodic_life: bool = True, noop_max: int = 30, frame_skip: int = 4, stack: int = 4,
                 screen_size: int = 84, max_episode_frames: int = MAX_EPISODE_FRAMES, num_threads: int = 0) -> None:
        from ale_py.vector_env import AtariVectorEnv

        _check_common(num_envs, noop_max, frame_skip, stack, screen_size)
        self.rom = rom
        self.num_envs = num_envs
        self.seed = seed
        self.episodic_life = episodic_life
        self.stack = stack
        self.env = AtariVectorEnv(
            rom, num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=max_episode_frames,
            repeat_action_probability=STICKY_ACTION_PROB if sticky_actions else 0.0,
            # SameStep: the successor of a finished episode comes back in info["final_obs"] and obs is
            # already the new episode's first stack, so no step is spent on a reset whose action is ignored.
            autoreset_mode="SameStep",
            img_height=screen_size, img_width=screen_size, grayscale=True, stack_num=stack,
            frameskip=frame_skip, maxpool=True, noop_max=noop_max,
            # ale-py's episodic_life restarts the game after each lost life; life loss is handled here.
            episodic_life=False, life_loss_info=False,
            reward_clipping=False, use_fire_reset=True,
        )
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.n_actions = int(self.env.single_action_space.n)
        self.tracker = GameScoreTracker(num_envs)
        self.frames = 0
        self.steps = 0
        self._lives = np.zeros(num_envs, dtype=np.int64)
        self._frame_number = np.zeros(num_envs, dtype=np.int64)
        # Frames of the current episode before the newest one, capped at stack - 1: rows with fewer
        # than stack - 1 get their oldest frames zeroed, as at a reset.
        self._age = np.zeros(num_envs, dtype=np.int64)
        self._reset_once = False

    @property
    def action_meanings(self) -> list[str]:
        """Names of the minimal action set, e.g. ``['NOOP', 'FIRE', 'RIGHT', 'LEFT']`` for Breakout."""
        return [a.name for a in self.env.ale.get_action_set()]

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every game; the first call uses the constructor's seed (env ``i`` gets ``seed + i``)."""
        if seed is None and not self._reset_once:
            seed = self.seed
        self._reset_once = True
        obs, info = self.env.reset(seed=seed)
        frame_number = info["frame_number"].astype(np.int64)
        # A seeded reset reloads the ROM, which restarts ALE's frame counter.
        self.frames += int(frame_number.sum() if seed is not None else (frame_number - self._frame_number).sum())
        self._frame_number = frame_number
        self._lives = info["lives"].astype(np.int64)
        self._age[:] = 0
        self.tracker.reset(frame_number, info["episode_frame_number"].astype(np.int64))
        return obs, dict(info)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One agent step in every sub-environment; see the class docstring for what comes back."""
        if not self._reset_once:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        obs, rewards, env_terminated, env_truncated, info = self.env.step(actions)
        rewards = rewards.astype(np.float32)
        game_over = env_terminated | env_truncated
        lives = info["lives"].astype(np.int64)
        # Same test as ale-py's own life_loss_info, but only where the game did not restart.
        life_lost = (lives < self._lives) & (lives > 0) & ~game_over
        self._lives = lives
        terminated = env_terminated | (life_lost if self.episodic_life else False)
        truncated = env_truncated & ~terminated
        ended = terminated | truncated

        frame_number = info["frame_number"].astype(np.int64)
        self.frames += int((frame_number - self._frame_number).sum())
        self._frame_number = frame_number
        self.steps += self.num_envs
        self.tracker.update(rewards, game_over, frame_number, info["episode_frame_number"].astype(np.int64))

        next_age = np.minimum(self._age + 1, self.stack - 1)
        if ended.any():
            next_obs = obs.copy()
            if game_over.any():
                next_obs[game_over] = info["final_obs"][game_over]
            self._mask(next_obs, next_age)
            next_age[ended] = 0
        else:
            next_obs = obs
        self._age = next_age
        self._mask(obs, next_age)
        out = {"next_obs": next_obs, "game_over": game_over, "life_lost": life_lost, "lives": lives,
               "frame_number": frame_number}
        return obs, rewards, terminated, truncated, out

    def _mask(self, stacks: np.ndarray, age: np.ndarray) -> None:
        for i in np.flatnonzero(age < self.stack - 1):
            stacks[i, : self.stack - 1 - age[i]] = 0

    def pop_finished(self) -> list[GameResult]:
        """Games finished since the last call (raw score, agent steps, emulator frames, env index)."""
        return self.tracker.pop_finished()

    def close(self) -> None:
        """Stop the emulator threads."""
        self.env.close()

    def __enter__(self) -> AtariVecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_atari_vector_env(env_id_or_name: str, num_envs: int, seed: int | None, *, sticky_actions: bool = False,
                          episodic_life: bool = True, noop_max: int = 30, frame_skip: int = 4, stack: int = 4,
                          screen_size: int = 84, max_episode_frames: int = MAX_EPISODE_FRAMES,
                          num_threads: int = 0) -> AtariVecEnv:
    """``num_envs`` games in ale-py's C++ vector env with the standard DQN preprocessing (module docstring).

    ``env_id_or_name`` is ``Breakout``, ``breakout`` or ``ALE/Breakout-v5``; an unknown name or
    ``num_envs < 1`` is a :class:`~rlgen.errors.UsageError`. Call ``reset()`` first.
    """
    _check_common(num_envs, noop_max, frame_skip, stack, screen_size)
    return AtariVecEnv(atari_rom_name(env_id_or_name), num_envs, seed, sticky_actions=sticky_actions,
                       episodic_life=episodic_life, noop_max=noop_max, frame_skip=frame_skip, stack=stack,
                       screen_size=screen_size, max_episode_frames=max_episode_frames, num_threads=num_threads)


def evaluate_games(act: Any, env_id_or_name: str, games: int, seed: int, epsilon: float = 0.0, *,
                   sticky_actions: bool = False, max_episode_frames: int = MAX_EPISODE_FRAMES,
                   num_threads: int = 0) -> np.ndarray:
    """Raw scores of ``games`` whole games, one per sub-environment of one vector env, played side by side.

    The games are what training plays (:class:`AtariVecEnv` with ``episodic_life``: FIRE at the reset, up to 30
    no-ops, the stack started afresh after a lost life, the emulator's frame cap) except that the score is the
    whole game's. ``act`` maps a batch of stacks to actions and is called only on the games still running; with
    ``epsilon`` > 0 each action is replaced by a uniformly random one with that probability (a generator seeded
    with ``seed``; game ``i`` gets emulator seed ``seed + i``). The emulators run in ale-py's C++ threads, which
    is what makes a 100-game evaluation a small part of an Atari 100k run.
    """
    venv = make_atari_vector_env(env_id_or_name, games, seed, sticky_actions=sticky_actions,
                                 max_episode_frames=max_episode_frames, num_threads=num_threads)
    rng = np.random.default_rng(seed)
    scores = np.full(games, np.nan)
    try:
        obs, _ = venv.reset()
        while np.isnan(scores).any():
            alive = np.isnan(scores)
            actions = np.zeros(games, dtype=np.int64)  # a finished game idles until the others end
            actions[alive] = np.asarray(act(obs[alive]))
            if epsilon > 0:
                explore = rng.random(games) < epsilon
                actions = np.where(explore, rng.integers(0, venv.n_actions, games), actions)
            obs, *_ = venv.step(actions)
            for game in venv.pop_finished():
                if np.isnan(scores[game.env]):  # each sub-environment's first game counts
                    scores[game.env] = game.score
    finally:
        venv.close()
    return scores



class AtariPreprocess(gym.Wrapper):
    """Frame skip with a max over the last two frames, grayscale, area resize, FIRE and no-op resets.

    Wraps an ALE env made with ``frameskip=1``; observations are (H, W) uint8. Mirrors ale-py's vector env
    step for step (same frames captured, same early stop at game over) so that both paths agree. With
    ``terminal_on_life_loss`` a lost life returns ``terminated=True`` and the next ``reset()`` continues
    the game from the current screen instead of restarting it.
    """

    def __init__(self, env: gym.Env, *, noop_max: int = 30, frame_skip: int = 4, screen_size: int = 84,
                 terminal_on_life_loss: bool = False, fire_reset: bool = True) -> None:
        super().__init__(env)
        _check_common(None, noop_max, frame_skip, 1, screen_size)
        if getattr(env.unwrapped, "_frameskip", None) != 1:
            raise ValueError("AtariPreprocess needs the ALE env made with frameskip=1")
        self.ale = env.unwrapped.ale
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        self.terminal_on_life_loss = terminal_on_life_loss
        meanings = env.unwrapped.get_action_meanings()
        self.fire_action = meanings.index("FIRE") if fire_reset and "FIRE" in meanings else None
        self._action_set = env.unwrapped._action_set
        height, width = self.ale.getScreenDims()
        self._buffers = np.zeros((2, height, width), dtype=np.uint8)
        # float32, columns first: closest to OpenCV's INTER_AREA (measured: about one pixel in 150,000 differs).
        # torch rather than NumPy for the products: NumPy's OpenBLAS would spawn a thread per core for
        # these tiny products, which is slow on a busy machine; torch follows torch.set_num_threads.
        self._rows = torch.from_numpy(area_resize_weights(height, screen_size).astype(np.float32))
        self._cols = torch.from_numpy(area_resize_weights(width, screen_size).T.astype(np.float32).copy())
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size), dtype=np.uint8)
        self.lives = 0
        self.game_over = True
        self._last_obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """New game (FIRE, then no-ops), or after a lost life the current screen with a fresh stack."""
        if not self.game_over and self.terminal_on_life_loss and seed is None and self._last_obs is not None:
            return self._last_obs, {"lives": self.lives, "game_over": False}
        _, info = self.env.reset(seed=seed, options=options)
        if self.fire_action is not None:
            _, _, terminated, truncated, info = self.env.step(self.fire_action)
        noops = int(self.env.unwrapped.np_random.integers(0, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            _, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                _, info = self.env.reset()
        self.lives = self.ale.lives()
        self.game_over = False
        self.ale.getScreenGrayscale(self._buffers[0])
        self._buffers[1].fill(0)
        self._last_obs = self._observe()
        return self._last_obs, {**info, "game_over": False}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Repeat ``action`` for ``frame_skip`` frames; the reward is the raw sum."""
        total, terminated, truncated = 0.0, False, False
        # ALE directly, as the ALE env's own step does it with frameskip 1, minus the screen copy and info dict
        # it builds for every frame: that halves the time of an evaluation step.
        ale_action = self._action_set[int(action)]
        for t in range(self.frame_skip):
            total += float(self.ale.act(ale_action))
            terminated, truncated = self.ale.game_over(with_truncation=False), self.ale.game_truncated()
            # A lost life does not cut the repeat short: ale-py's vector env (episodic_life=False) plays on.
            if terminated or truncated:
                break
            # The last two frames of the repeat are max-pooled (flicker; Mnih et al. 2015).
            if t == self.frame_skip - 2:
                self.ale.getScreenGrayscale(self._buffers[1])
            elif t == self.frame_skip - 1:
                self.ale.getScreenGrayscale(self._buffers[0])
        self.game_over = bool(terminated or truncated)
        lives = self.ale.lives()
        life_lost = 0 < lives < self.lives and not self.game_over
        self.lives = lives
        if self.terminal_on_life_loss and life_lost and not self.game_over:
            terminated = True
        self._last_obs = self._observe()
        return self._last_obs, total, bool(terminated), bool(truncated) and not terminated, \
            {"lives": lives, "episode_frame_number": self.ale.getEpisodeFrameNumber(),
             "frame_number": self.ale.getFrameNumber(), "game_over": self.game_over, "life_lost": life_lost}

    def _observe(self) -> np.ndarray:
        pooled = torch.from_numpy(np.maximum(self._buffers[0], self._buffers[1]).astype(np.float32))
        # Round half to even like OpenCV's saturate_cast.
        return torch.round(self._rows @ (pooled @ self._cols)).clamp_(0, 255).to(torch.uint8).numpy()


def make_atari_env(env_id_or_name: str, seed: int | None = None, *, sticky_actions: bool = False,
                   episodic_life: bool = False, render: bool = False, noop_max: int = 30, frame_skip: int = 4,
                   stack: int = 4, screen_size: int = 84, max_episode_frames: int = MAX_EPISODE_FRAMES,
                   fresh_stack_on_life_loss: bool = False) -> gym.Env:
    """One Atari game for evaluation and video, preprocessed like :func:`make_atari_vector_env`.

    Observations are (stack, H, W) uint8 with zeros before the episode's first frame. ``render=True``
    makes ``env.render()`` return the real RGB game screen (210×160×3) for videos. ``seed`` is used by
    the first ``reset()`` unless that call passes its own. Rewards are raw; by default (evaluation) a
    lost life does not end the episode, so an episode is a whole game. ``fresh_stack_on_life_loss``
    starts the stack afresh (older frames zero) after a lost life while the game goes on: what an agent
    trained with ``episodic_life`` saw after each lost life (Dopamine resets its agent's stack there too).
    """
    import ale_py

    _check_common(None, noop_max, frame_skip, stack, screen_size)
    gym.register_envs(ale_py)
    env = gym.make(resolve_atari_id(env_id_or_name), frameskip=1, obs_type="grayscale",
                   repeat_action_probability=STICKY_ACTION_PROB if sticky_actions else 0.0,
                   full_action_space=False, max_num_frames_per_episode=max_episode_frames,
                   render_mode="rgb_array" if render else None)
    env = AtariPreprocess(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
                          terminal_on_life_loss=episodic_life or fresh_stack_on_life_loss)
    # Zero padding, as ale-py's vector env (and the replay) do at the start of an episode.
    env = gym.wrappers.FrameStackObservation(env, stack, padding_type="zero")
    if fresh_stack_on_life_loss and not episodic_life:
        env = _FreshStackOnLifeLoss(env)
    return _FirstResetSeed(env, seed) if seed is not None else env


class _FreshStackOnLifeLoss(gym.Wrapper):
    """A lost life restarts the frame stack (the preprocessor's life-loss reset) but not the episode."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated and not info["game_over"]:
            obs, _ = self.env.reset()  # the same game, from the current screen, older frames zeroed
            terminated = False
        return obs, reward, terminated, truncated, info


class _FirstResetSeed(gym.Wrapper):
    """Seeds the first ``reset()`` that does not bring its own seed."""

    def __init__(self, env: gym.Env, seed: int) -> None:
        super().__init__(env)
        self._pending: int | None = seed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        seed, self._pending = (self._pending if seed is None else seed), None
        return self.env.reset(seed=seed, options=options)


# -- DQN's Atari task: the vector env, frame replay and CNN behind the loop's one shape (rlgen.rl.tasks) ----
class AtariPool:
    """ale-py's vector env (:class:`AtariVecEnv`) behind the same calls as :class:`rlgen.rl.envs.EnvPool`.

    Finished episodes are whole games with raw scores, even though a lost life ends a training episode.
    """

    def __init__(self, env: str, num_envs: int, seed: int, *, sticky_actions: bool = False,
                 max_episode_steps: int | None = None) -> None:
        self.venv = make_atari_vector_env(env, num_envs, seed, sticky_actions=sticky_actions,
                                          max_episode_frames=episode_frames(max_episode_steps))
        self.obs, _ = self.venv.reset()
        self.frames_before = 0

    @property
    def frames(self) -> int:
        """Emulator frames played by this run so far."""
        return self.frames_before + self.venv.frames

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
        self.obs, rewards, terminated, truncated, info = self.venv.step(actions)
        finished = [(g.score, g.length) for g in self.venv.pop_finished()]
        return info["next_obs"], rewards, terminated, truncated, finished

    def state_dict(self) -> dict[str, Any]:
        return {"frames": self.frames}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Emulator states are not saved: a resumed run starts new games (and says so in the log)."""
        self.frames_before = int(state["frames"])
        return False

    def close(self) -> None:
        self.venv.close()


def atari_task(args: Any, device: torch.device, env_seed: int) -> Task:
    """Atari: a CNN on stacked uint8 frames scaled to [0, 1], a replay storing each frame once.

    ``args`` is DQN's resolved :class:`~rlgen.rl.dqn.Args`.
    """
    pool = AtariPool(args.env, args.num_envs, env_seed, sticky_actions=args.sticky_actions,
                     max_episode_steps=args.max_episode_steps)
    try:
        enc = trunk_from(args.encoder, pool.obs.shape[1:], device) if args.encoder else None
        backbone = enc.net if enc else make_backbone(args.backbone, pool.obs.shape[1:])
        q_net = initialise(QNetwork(backbone, pool.venv.n_actions, dueling=args.dueling), args.init, enc)
        # Channels-last is oneDNN's preferred layout: with bf16 it halves the CNN's update time on a CPU.
        q_net = q_net.to(device, memory_format=torch.channels_last)
        train_encoder(q_net, enc, args.freeze_encoder)
        replay = FrameReplay(args.buffer_size, args.num_envs, n_step=args.n_step, gamma=args.gamma,
                             batch_size=args.batch_size, clip_rewards=True, pin_memory=device.type == "cuda")
    except BaseException:
        pool.close()
        raise
    scale = enc.prepare if enc else (lambda frames: frames.float().div_(255.0))
    max_frames = episode_frames(args.max_episode_steps)

    def make(render: bool) -> gym.Env:
        # whole games, with the stack restarted after a lost life as training restarted it
        return make_atari_env(args.env, sticky_actions=args.sticky_actions, render=render,
                              max_episode_frames=max_frames, fresh_stack_on_life_loss=True)

    def evaluate(act: Act, episodes: int, seed: int, epsilon: float) -> np.ndarray:
        # whole games in ale-py's threaded vector env, preprocessed exactly as training's
        return evaluate_games(act, args.env, episodes, seed, epsilon, sticky_actions=args.sticky_actions,
                              max_episode_frames=max_frames)

    def prepare(frames: torch.Tensor) -> torch.Tensor:
        return scale(frames.contiguous(memory_format=torch.channels_last))

    def augment(frames: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return drq_augment(frames, gen, prepare=prepare)  # shifts the uint8 frames, then scales them

    record = trunk_record(enc) if enc else encoder_record(
        args.backbone, pool.obs.shape[1:], "unit", "q_net", prefix="backbone.",
        description=f"DQN {args.backbone} trunk")
    return Task(pool, replay, q_net, prepare, make, evaluate, None, record, augment)
