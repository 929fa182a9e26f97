"""Tabular Q-learning: the TD rule and value iteration by hand, the discretiser's edges, the fast
steppers against gymnasium, fixed-seed learning, resume, replay and bad input."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from rlgen.rl import qlearning as ql
from rlgen.rl import tables


# -- the math by hand ---------------------------------------------------------------------------
def test_td_update_matches_hand_computation():
    q = [[0.0, 1.0], [2.0, 3.0]]
    # target = 1 + 0.9 * max(2, 3) = 3.7; δ = 3.7 − 1 = 2.7; Q ← 1 + 0.5 · 2.7 = 2.35
    delta = ql.td_update(q, 0, 1, 1.0, 1, False, alpha=0.5, gamma=0.9)
    assert delta == pytest.approx(2.7)
    assert q[0][1] == pytest.approx(2.35)
    assert q[0][0] == 0.0 and q[1] == [2.0, 3.0]


def test_td_update_does_not_bootstrap_from_a_terminal_state():
    q = np.array([[0.5, 0.0], [10.0, 10.0]])
    # terminal: target = r = −1; δ = −1.5; Q ← 0.5 + 0.1 · (−1.5) = 0.35
    assert ql.td_update(q, 0, 0, -1.0, 1, True, alpha=0.1, gamma=0.99) == pytest.approx(-1.5)
    assert q[0, 0] == pytest.approx(0.35)


def test_value_iteration_on_a_hand_solved_mdp():
    # s0: a0 → s1 (reward 0), a1 → end (reward 1); s1: a0 → end (reward 10), a1 → s0 (reward 0)
    P = {0: {0: [(1.0, 1, 0.0, False)], 1: [(1.0, 0, 1.0, True)]},
         1: {0: [(1.0, 0, 10.0, True)], 1: [(1.0, 0, 0.0, False)]}}
    q, _ = ql.value_iteration(P, 2, 2, gamma=0.5)
    # V*(s1) = 10, Q*(s0, a0) = 0.5 · 10 = 5, Q*(s0, a1) = 1, Q*(s1, a1) = 0.5 · V*(s0) = 2.5
    np.testing.assert_allclose(q, [[5.0, 1.0], [10.0, 2.5]], atol=1e-9)


def test_suboptimal_states_ignores_ties():
    q_star = np.array([[1.0, 1.0], [0.0, 2.0]])
    assert ql.suboptimal_states(np.array([1, 1]), q_star) == 0
    assert ql.suboptimal_states(np.array([0, 0]), q_star) == 1


def test_epsilon_schedule_is_linear_then_flat():
    assert ql.epsilon_at(0, 100, 1.0, 0.1, 0.5) == pytest.approx(1.0)
    assert ql.epsilon_at(25, 100, 1.0, 0.1, 0.5) == pytest.approx(0.55)
    assert ql.epsilon_at(50, 100, 1.0, 0.1, 0.5) == pytest.approx(0.1)
    assert ql.epsilon_at(99, 100, 1.0, 0.1, 0.5) == pytest.approx(0.1)


# -- discretiser ----------------------------------------------------------------------------------
def test_bin_edges():
    np.testing.assert_allclose(tables.bin_edges(-1.0, 1.0, 4), [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(tables.bin_edges(0.0, 3.0, 3), [1.0, 2.0])
    assert tables.bin_edges(-2.4, 2.4, 1).size == 0


def test_discretiser_cells_and_index():
    d = tables.Discretiser([1, 2, 4], [-1.0, -1.0, 0.0], [1.0, 1.0, 4.0])
    assert d.n_states == 8
    assert d.cell([0.3, -0.5, 0.5]) == (0, 0, 0)
    assert d([0.3, -0.5, 0.5]) == 0
    assert d([0.0, 0.5, 3.9]) == 1 * 4 + 3
    assert d([0.0, 0.0, 1.0]) == 4 + 1  # a value on an edge belongs to the bin above, as np.digitize says
    assert d([0.0, -9.0, -9.0]) == 0 and d([0.0, 9.0, 9.0]) == 7  # out of bounds: the end bins
    rng = np.random.default_rng(0)
    for obs in rng.uniform(-2, 5, size=(500, 3)):
        i, j, k = d.cell(obs)
        assert d(obs) == j * 4 + k


def test_parse_bins_needs_bounds_for_unbounded_dims():
    space = gym.make("CartPole-v1").observation_space
    d = tables.parse_bins("1,1,6,12", "-2.4:2.4,-3:3,-0.21:0.21,-3.5:3.5", space)
    assert d.n_states == 72
    np.testing.assert_allclose(d.edges[2], np.linspace(-0.21, 0.21, 7)[1:-1])
    with pytest.raises(ql.UsageError, match="unbounded"):
        tables.parse_bins("1,3,1,1", None, space)
    with pytest.raises(ql.UsageError, match="4 positive integers"):
        tables.parse_bins("3,3", None, space)


# -- the fast steppers are gymnasium's processes ---------------------------------------------------
@pytest.mark.parametrize("env_id", ["FrozenLake8x8-v1", "Taxi-v4", "CliffWalking-v1"])
def test_table_env_steps_like_gymnasium(env_id):
    env = gym.make(env_id)
    env.reset(seed=3)
    inner = env.unwrapped
    table = tables.TableEnv(inner.P, inner.initial_state_distrib, inner.observation_space.n, inner.action_space.n)
    inner.np_random = np.random.default_rng(11)  # both draw the same uniforms
    ours = np.random.default_rng(11)
    actions = np.random.default_rng(5).integers(inner.action_space.n, size=2000)
    start = int(np.flatnonzero(inner.initial_state_distrib)[-1])
    table.s = inner.s = start
    for a in actions:
        s, r, term, _, _ = inner.step(int(a))
        assert table.step(int(a), ours.random()) == (s, r, term)
        if term:
            inner.s = table.s = start


@pytest.mark.parametrize("env_name", ["FrozenLake8x8", "Taxi"])
def test_fast_evaluation_equals_stepping_gymnasium(env_name, monkeypatch):
    _, problem = ql.resolve(ql.Args(env=env_name))
    policy = np.random.default_rng(1).integers(problem.n_actions, size=problem.n_states)
    fast = ql.evaluate(policy, problem, 60, seed=7, max_steps=50)
    monkeypatch.setattr(problem, "table", None)  # now every step goes through env.step
    slow = ql.evaluate(policy, problem, 60, seed=7, max_steps=50)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])


def test_cartpole_physics_match_gymnasium_bit_for_bit():
    env = gym.make("CartPole-v1").unwrapped
    d = tables.Discretiser([1, 1, 6, 12], [-2.4, -3, -0.21, -3.5], [2.4, 3, 0.21, 3.5])
    ours = tables.CartPoleTable(d)
    rng = np.random.default_rng(0)
    for episode in range(5):
        env.reset(seed=episode)
        ours.state = tuple(env.state.tolist())
        done = False
        while not done:
            a = int(rng.integers(2))
            _, _, done, _, _ = env.step(a)
            _, _, our_done = ours.step(a, 0.0)
            assert ours.state == tuple(env.state.tolist())
            assert our_done == done


# -- learning with fixed seeds ---------------------------------------------------------------------
def test_frozenlake_not_slippery_learns_the_shortest_path_and_replays(run_dir):
    s = ql.main(ql.Args(env="FrozenLake", slippery=False, seed=0, run_dir=str(run_dir), eval_episodes=50))
    assert s["env"] == "FrozenLake-v1" and s["algo"] == "qlearning"
    assert s["eval_success_rate"] == 1.0 and s["eval_return_mean"] == 1.0
    assert s["optimal_eval_success_rate"] == 1.0 and s["states_where_policy_suboptimal"] <= 4
    for key in ("env_steps", "wall_seconds", "eval_return_std", "eval_episodes", "seed"):
        assert key in s
    for name in ("q_table.npz", "policy.txt", "policy.png", "policy.json", "learning_curve.png",
                 "greedy_episode.gif", "summary.json", "config.json", "metrics.jsonl", "checkpoint.pt"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "summary.json").read_text())["eval_success_rate"] == 1.0
    text = (run_dir / "policy.txt").read_text(encoding="utf-8").splitlines()
    assert len(text) == 4 and text[1].split()[1] == "H" and text[3].split()[3] == "G"
    q = np.load(run_dir / "q_table.npz")
    assert q["q"].shape == (16, 4) and q["policy"].shape == (16,)
    from rlgen import commands

    played = commands.play(commands.PlayArgs(run=str(run_dir)))  # rlgen play RUN
    assert played["returns"] == [1.0] and (run_dir / "play.gif").exists()


def test_value_iteration_mode_matches_its_own_reference(run_dir, capsys):
    s = ql.main(ql.Args(env="FrozenLake", value_iteration=True, run_dir=str(run_dir), eval_episodes=200,
                        gif=False))
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-3] == (f"greedy policy: return {s['eval_return_mean']:.3f} ± {s['eval_return_std']:.3f} over 200 "
                       f"evaluation episodes, reaching the goal in {100 * s['eval_success_rate']:.0f}%")
    assert out[-2].startswith("optimal policy (value iteration) on the same seeds: return ")
    assert s["algo"] == "value_iteration" and s["episodes"] == 0
    assert s["eval_success_rate"] == s["optimal_eval_success_rate"] > 0.6
    assert s["states_where_policy_differs"] == 0


def test_cartpole_discretised_learns(run_dir):
    s = ql.main(ql.Args(env="CartPole", seed=1, episodes=1500, eval_episodes=10, run_dir=str(run_dir), gif=False))
    assert s["eval_return_mean"] > 100  # a random policy lasts about 22 steps
    assert "eval_success_rate" not in s


def test_same_seed_same_numbers_and_resume_is_exact(run_dir, tmp_path, kill_after_saves):
    common = dict(env="FrozenLake", seed=3, episodes=2_000, eval_episodes=100, gif=False)
    full = ql.main(ql.Args(run_dir=str(tmp_path / "full"), checkpoint_every=500, **common))

    arm, disarm = kill_after_saves
    arm(2)  # the run is killed right after its second checkpoint
    with pytest.raises(KeyboardInterrupt):
        ql.main(ql.Args(run_dir=str(run_dir), checkpoint_every=500, **common))
    disarm()
    resumed = ql.main(ql.Args(resume=str(run_dir)))
    for key in ("env_steps", "episodes", "eval_return_mean", "eval_success_rate", "optimal_eval_return_mean"):
        assert resumed[key] == full[key], key
    np.testing.assert_array_equal(np.load(run_dir / "q_table.npz")["q"],
                                  np.load(tmp_path / "full" / "q_table.npz")["q"])
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)


# -- bad input: one line, exit code 2, nothing written -----------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--env", "MountainCar"], "continuous observation space"),
    (["--env", "Pendulum", "--bins", "3,3,3"], "continuous action space"),
    (["--gamma", "1.5"], "--gamma"),
    (["--gamma", "-0.1"], "--gamma"),
    (["--lr", "0"], "--lr"),
    (["--lr", "-0.5"], "--lr"),
    (["--env", "CartPole", "--bins", "1,2"], "--bins"),
    (["--env", "NoSuchEnv"], "unknown environment"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, bad_input):
    run_dir = tmp_path / "never"
    bad_input(ql.main, ql.Args, [*argv, "--run-dir", str(run_dir)], message)
    assert not run_dir.exists()


def test_every_file_a_run_writes_is_written_whole_by_a_rename(tmp_path, monkeypatch):
    import os

    from rlgen import files

    renamed = []
    real = os.replace
    monkeypatch.setattr(files.os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), real(src, dst)))
    run_dir = tmp_path / "run"
    ql.main(ql.Args(env="FrozenLake", slippery=False, seed=0, run_dir=str(run_dir), episodes=300, eval_episodes=5))
    written = {p.name for p in run_dir.iterdir() if p.is_file() and p.name != "metrics.jsonl"}
    assert {"q_table.npz", "policy.txt"} <= written
    assert written <= set(renamed), written - set(renamed)  # nothing written in place, where a reader sees half
