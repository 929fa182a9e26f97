"""REINFORCE: reward-to-go, advantages and the solved rule by hand, Karpathy's preprocessing,
fixed-seed CartPole learning with exact resume, a Pong-from-pixels smoke run, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlgen import plots
from rlgen.errors import UsageError
from rlgen.rl import reinforce as rf


# -- the math by hand ---------------------------------------------------------------------------
def test_rewards_to_go_by_hand():
    # γ = 0.5: G2 = 1, G1 = 1 + 0.5 · 1 = 1.5, G0 = 1 + 0.5 · 1.5 = 1.75
    np.testing.assert_allclose(rf.rewards_to_go([1.0, 1.0, 1.0], 0.5), [1.75, 1.5, 1.0])
    # a time-limited episode starts from V(s_T) = 4: G2 = 1 + 2 = 3, G1 = 2.5, G0 = 2.25
    np.testing.assert_allclose(rf.rewards_to_go([1.0, 1.0, 1.0], 0.5, bootstrap=4.0), [2.25, 2.5, 3.0])
    np.testing.assert_allclose(rf.rewards_to_go([0.0, 0.0, 2.0], 1.0), [2.0, 2.0, 2.0])
    assert rf.rewards_to_go([], 0.9).shape == (0,)


def test_advantages_by_hand():
    np.testing.assert_allclose(rf.advantages(np.array([3.0, 2.0, 1.0]), np.array([1.0, 1.5, 1.0]), False),
                               [2.0, 0.5, 0.0])
    np.testing.assert_allclose(rf.advantages(np.array([3.0, 2.0, 1.0]), None, False), [3.0, 2.0, 1.0])
    # normalised: (A − mean) / std with mean 2, std sqrt(2/3)
    z = rf.advantages(np.array([3.0, 2.0, 1.0]), None, True)
    np.testing.assert_allclose(z, np.array([1.0, 0.0, -1.0]) / np.sqrt(2 / 3), rtol=1e-6)


def test_moving_average_solved_rule():
    ema = rf.EMA_START
    assert rf.update_ema(ema, 500.0) == pytest.approx(0.05 * 500 + 0.95 * 10)
    # even perfect episodes need 59 of them to lift the average from 10 to 475
    needed = next(k for k in range(1, 100) if (ema := rf.update_ema(ema, 500.0)) >= 475)
    assert needed == 59


def test_sample_action_is_the_inverse_cdf():
    assert rf.sample_action([0.2, 0.5, 0.3], 0.0) == 0
    assert rf.sample_action([0.2, 0.5, 0.3], 0.19) == 0
    assert rf.sample_action([0.2, 0.5, 0.3], 0.21) == 1
    assert rf.sample_action([0.2, 0.5, 0.3], 0.71) == 2
    assert rf.sample_action([0.2, 0.5, 0.3], 0.999999) == 2


def test_numpy_actor_matches_the_torch_policy():
    torch.manual_seed(0)
    net = rf.Net("mlp", (4,), 2, (16, 8), False)
    act = rf.numpy_actor(net)
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with torch.no_grad():
        want = torch.softmax(net(torch.as_tensor(obs)), -1).numpy()
    np.testing.assert_allclose([act(o) for o in obs], want, atol=1e-6)
    assert rf.numpy_actor(rf.Net("nature_cnn", (4, 84, 84), 6, (), True)) is None


def test_karpathy_preprocessing():
    frame = np.full((210, 160, 3), 144, dtype=np.uint8)  # background colour 1
    frame[100:120, :, 0] = 109  # background colour 2
    frame[151, 40, :] = 236  # the ball (on a kept row and column)
    img = rf.karpathy_preprocess(frame)
    assert img.shape == (80, 80) and img.dtype == np.float32
    assert img.sum() == 1.0 and img[(151 - 35) // 2, 40 // 2] == 1.0


def test_karpathy_wrapper_gives_frame_differences():
    env = rf.make_env(rf.Args(env="Pong", preprocess="karpathy"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 80, 80) and not obs.any()  # no previous frame yet
    seen = set()
    for _ in range(40):
        obs, *_ = env.step(0)
        seen |= set(np.unique(obs).tolist())
    assert seen <= {-1.0, 0.0, 1.0} and len(seen) > 1
    env.close()


# -- learning with fixed seeds, and exact resume --------------------------------------------------
def test_cartpole_learns_and_resume_reproduces_the_uninterrupted_run(run_dir, tmp_path, kill_after_saves):
    common = dict(env="CartPole", seed=0, episodes=60, batch_episodes=2, checkpoint_every=20, eval_episodes=3,
                  gif=False, device="cpu")
    full = rf.main(rf.Args(run_dir=str(tmp_path / "full"), **common))
    returns = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert returns["episodes"] == 60 and returns["solved_at_episode"] is None
    history = np.asarray(torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["history"]["return"])
    assert history[-20:].mean() > 2 * history[:20].mean()  # learning, not noise: ~22 → well above 44

    arm, disarm = kill_after_saves
    arm(2)  # killed right after the checkpoint at episode 40
    with pytest.raises(KeyboardInterrupt):
        rf.main(rf.Args(run_dir=str(run_dir), **common))
    disarm()
    resumed = rf.main(rf.Args(resume=str(run_dir)))
    for key in ("env_steps", "episodes", "updates", "eval_return_mean", "final_ema_return"):
        assert resumed[key] == full[key], key
    a = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    for k in a["policy"]:
        assert torch.equal(a["policy"][k], b["policy"][k]), k


def test_solved_rule_stops_training(run_dir, capsys):
    # an easy threshold shows the rule end to end: solved at the first episode whose average reaches it
    s = rf.main(rf.Args(env="CartPole", seed=1, episodes=200, solve_threshold=12.0, eval_episodes=2, gif=False,
                        run_dir=str(run_dir), device="cpu"))
    assert capsys.readouterr().out.strip().splitlines()[-2] == (
        f"solved at episode {s['solved_at_episode']:,} (moving average of returns ≥ 12); greedy evaluation "
        f"{s['eval_return_mean']:.1f} ± {s['eval_return_std']:.1f} over 2 episodes")
    ema = np.asarray(torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"]["ema"])
    assert s["solved_at_episode"] == s["episodes"] == int(np.argmax(ema >= 12.0)) + 1


def test_resume_with_a_larger_budget_ends_exactly_there(run_dir, kill_after_saves, bad_input):
    common = dict(env="CartPole", seed=0, batch_episodes=2, checkpoint_every=4, eval_episodes=2, gif=False,
                  device="cpu")
    arm, disarm = kill_after_saves
    arm(1)  # killed right after the checkpoint at episode 4
    with pytest.raises(KeyboardInterrupt):
        rf.main(rf.Args(run_dir=str(run_dir), episodes=10, **common))
    disarm()
    before = (run_dir / "checkpoint.pt").read_bytes()
    for argv, flag in ((["--batch-episodes", "3"], "--batch-episodes"), (["--env", "Acrobot"], "--env")):
        bad_input(rf.main, rf.Args, ["--resume", str(run_dir), *argv], flag)
        assert (run_dir / "checkpoint.pt").read_bytes() == before
    s = rf.main(rf.Args(resume=str(run_dir), episodes=14))
    assert s["episodes"] == 14 and s["updates"] == 7 and s["resumes"] == 1
    assert json.loads((run_dir / "summary.json").read_text())["episodes"] == 14


# -- Pong from pixels: a smoke run --------------------------------------------------------------------
@pytest.mark.parametrize("preprocess", ["karpathy", "stack"])
def test_pong_smoke_trains_checkpoints_resumes_and_writes_a_gif(preprocess, run_dir, kill_after_saves):
    args = rf.Args(env="Pong", preprocess=preprocess, episodes=3, batch_episodes=1, max_episode_steps=12,
                   checkpoint_every=1, eval_episodes=1, run_dir=str(run_dir), device="cpu")
    arm, disarm = kill_after_saves
    arm(2)
    with pytest.raises(KeyboardInterrupt):
        rf.main(args)
    disarm()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["episode"] == 2
    s = rf.main(rf.Args(resume=str(run_dir)))
    assert s["env"] == "ALE/Pong-v5" and s["episodes"] == 3 and s["env_steps"] == 36
    recording = "greedy_episode.mp4" if plots.video_available() else "greedy_episode.gif"  # MP4 with the video extra
    for name in (recording, "learning_curve.png", "summary.json", "checkpoint.pt"):
        assert (run_dir / name).exists(), name


# -- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--env", "Pendulum"], "continuous action space"),
    (["--gamma", "1.01"], "--gamma"),
    (["--gamma", "-1"], "--gamma"),
    (["--lr", "0"], "--lr"),
    (["--value-lr=-0.001"], "--value-lr"),
    (["--hidden", "a,b"], "--hidden"),
    (["--env", "Pongg"], "unknown"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, bad_input):
    run_dir = tmp_path / "never"
    bad_input(rf.main, rf.Args, [*argv, "--run-dir", str(run_dir)], message)
    assert not run_dir.exists()


def test_pongs_preprocessing_is_refused_on_another_game_and_the_default_follows_the_game(tmp_path):
    with pytest.raises(UsageError, match="--preprocess karpathy"):
        rf.main(rf.Args(env="Breakout", preprocess="karpathy", run_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()
    assert rf.resolve(rf.Args(env="Breakout"))[0].preprocess == "stack"
    assert rf.resolve(rf.Args(env="Pong"))[0].preprocess == "karpathy"


def test_log_every_averages_the_episodes_since_the_last_row(run_dir):
    from rlgen import checkpoint

    rf.main(rf.Args(env="CartPole", episodes=6, batch_episodes=1, log_every=2, stop_on_solve=False, eval_episodes=1,
                    gif=False, device="cpu", run_dir=str(run_dir)))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r["rollout/episode_return"] for r in rows if "rollout/episode_return" in r]
    returns = checkpoint.load(run_dir)["history"]["return"]
    assert logged == pytest.approx([np.mean(returns[i:i + 2]) for i in (0, 2, 4)])
