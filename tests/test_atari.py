"""Atari env helpers: the C++ vector path and the gymnasium path agree; scores, lives, flags, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlgen.errors import UsageError
from rlgen.rl import atari
from rlgen.rl.atari import atari_rom_name, make_atari_env, make_atari_vector_env
from rlgen.rl.atari_replay import FrameReplay

torch.set_num_threads(1)

# The vector env resizes with OpenCV's INTER_AREA, the gymnasium path with a NumPy area filter; measured
# over 3,000 Breakout steps: at most 1 grey level apart, about 6e-6 of a level on average.
MAX_GREY_DIFF = 1
MEAN_GREY_DIFF = 1e-3


@pytest.mark.parametrize("name", ["Breakout", "breakout", "ALE/Breakout-v5"])
def test_rom_names(name):
    assert atari_rom_name(name) == "breakout"
    assert atari_rom_name("MsPacman") == "ms_pacman"


def test_unknown_game_and_bad_num_envs():
    with pytest.raises(UsageError, match="Breakot") as err:
        make_atari_vector_env("Breakot", 1, 0)
    assert "Did you mean Breakout" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="Breakot"):
        make_atari_env("Breakot")
    with pytest.raises(UsageError, match="--num-envs 0") as err:
        make_atari_vector_env("Breakout", 0, 0)
    assert "\n" not in str(err.value)


def _grey_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a.astype(np.int16) - np.asarray(b, dtype=np.int16))
    return int(d.max()), float(d.mean())


@pytest.mark.parametrize("episodic_life", [False, True])
def test_vector_and_gymnasium_paths_agree(episodic_life):
    """Same actions from the same start (no random no-ops): same stacks up to resize rounding."""
    venv = make_atari_vector_env("Breakout", 1, seed=3, noop_max=0, episodic_life=episodic_life)
    env = make_atari_env("Breakout", seed=5, noop_max=0, episodic_life=episodic_life)
    v_obs, _ = venv.reset()
    s_obs, _ = env.reset()
    rng = np.random.default_rng(0)
    diffs, ends, game_scores, score, game_frames = [], 0, [], 0.0, []
    for _ in range(700):
        diffs.append(_grey_diff(v_obs[0], s_obs))
        action = int(rng.integers(0, venv.n_actions))
        v_obs, v_rew, v_term, v_trunc, info = venv.step([action])
        s_obs, s_rew, s_term, s_trunc, s_info = env.step(action)
        assert (v_rew[0], v_term[0], v_trunc[0]) == (s_rew, s_term, s_trunc)
        if not info["game_over"][0]:  # after a game over the vector env already shows the new game's lives
            assert info["lives"][0] == s_info["lives"]
        # the successor the replay stores is the episode's true last stack, not the reset one
        diffs.append(_grey_diff(info["next_obs"][0], s_obs))
        score += s_rew
        if s_term or s_trunc:
            ends += 1
            if s_info["game_over"]:
                game_scores.append(score)
                game_frames.append(s_info["episode_frame_number"])
                score = 0.0
            s_obs, _ = env.reset()
    diffs = np.array(diffs)
    assert diffs[:, 0].max() <= MAX_GREY_DIFF
    assert diffs[:, 1].mean() <= MEAN_GREY_DIFF
    games = venv.pop_finished()
    assert len(games) >= 2, "700 random steps should end a few Breakout games"
    assert ends > len(games) if episodic_life else ends == len(games)
    assert [g.score for g in games] == game_scores
    assert [g.frames for g in games] == game_frames
    assert venv.frames >= sum(game_frames)
    venv.close()


def test_life_loss_ends_episode_not_game_and_replay_matches_agent_view():
    venv = make_atari_vector_env("Breakout", 2, seed=0, episodic_life=True)
    obs, _ = venv.reset()
    replay = FrameReplay(4_000, 2, stack=4, n_step=1)
    replay.start(obs)
    rng = np.random.default_rng(1)
    seen = {}  # (env, position) -> (obs, next_obs) as the agent had them
    pos = [0, 0]
    life_losses = 0
    for _ in range(300):
        actions = rng.integers(0, venv.n_actions, size=2)
        new_obs, rewards, term, trunc, info = venv.step(actions)
        for i in range(2):
            seen[(i, pos[i])] = (obs[i].copy(), info["next_obs"][i].copy(), actions[i])
            pos[i] += 1
            if (term[i] or trunc[i]) and info["game_over"][i]:
                pos[i] += 1  # the game's final frame keeps a slot of its own
        for i in np.flatnonzero(info["life_lost"]):
            life_losses += 1
            assert term[i] and not info["game_over"][i] and 0 < info["lives"][i] < 5
            assert not new_obs[i, :3].any() and new_obs[i, 3].any()
            np.testing.assert_array_equal(new_obs[i, 3], info["next_obs"][i, 3])
        replay.add(actions, rewards, term, trunc, info["next_obs"], new_obs)
        obs = new_obs
    assert life_losses >= 3
    envs, positions = replay._valid_positions()
    batch = replay._gather(envs, positions)
    assert len(envs) >= 590
    for b, key in enumerate(zip(envs.tolist(), positions.tolist())):
        want_obs, want_next, want_action = seen[key]
        np.testing.assert_array_equal(batch.obs[b].numpy(), want_obs)
        np.testing.assert_array_equal(batch.next_obs[b].numpy(), want_next)
        assert batch.actions[b] == want_action
    venv.close()


def test_sticky_actions_flag(monkeypatch):
    env = make_atari_env("Breakout", sticky_actions=True)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert make_atari_env("Breakout").unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    seen = []
    from ale_py import vector_env

    original = vector_env.AtariVectorEnv.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["repeat_action_probability"])
        original(self, *args, **kwargs)

    monkeypatch.setattr(vector_env.AtariVectorEnv, "__init__", spy)
    make_atari_vector_env("Breakout", 1, 0, sticky_actions=True).close()
    make_atari_vector_env("Breakout", 1, 0).close()
    assert seen == [atari.STICKY_ACTION_PROB, 0.0]


def test_shapes_raw_rewards_and_render():
    venv = make_atari_vector_env("Breakout", 2, seed=0)
    obs, _ = venv.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert venv.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    venv.close()
    env = make_atari_env("Breakout", seed=0, render=True)
    obs, _ = env.reset()
    assert np.asarray(obs).shape == (4, 84, 84)
    assert env.render().shape == (210, 160, 3)
    # Breakout's top rows of bricks are worth 7 points: rewards come back unclipped
    venv = make_atari_vector_env("Breakout", 1, seed=0, noop_max=0)
    venv.reset()
    assert venv.step([1])[1].dtype == np.float32
    venv.close()
