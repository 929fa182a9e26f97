"""DQN on classic control: the math by hand, bad input, learning, determinism and kill/resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlgen import cli
from rlgen.errors import UsageError
from rlgen.rl import dqn
from rlgen.rl.replay import Batch
from rlgen.track import read_metrics


class _FixedQ(torch.nn.Module):
    """Q-values looked up by the first observation feature (an integer state id)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float32)

    def forward(self, obs):
        return self.table[obs[:, 0].long()]


def _batch(gamma=0.5):
    # The second transition terminated: its discount is 0.
    return Batch(obs=torch.tensor([[0.0], [1.0]]), actions=torch.tensor([1, 0]),
                 rewards=torch.tensor([1.0, 2.0]), next_obs=torch.tensor([[1.0], [2.0]]),
                 discounts=torch.tensor([gamma, 0.0]))


ONLINE = [[0.0, 5.0], [3.0, 1.0], [0.0, 0.0]]
TARGET = [[0.0, 0.0], [10.0, 20.0], [7.0, 7.0]]


def test_double_and_plain_td_targets_by_hand():
    q_next_target = torch.tensor([TARGET[1], TARGET[2]])
    q_next_online = torch.tensor([ONLINE[1], ONLINE[2]])
    b = _batch()
    # Plain DQN: the max over the target network in s' = 1 is 20.
    assert dqn.td_target(b.rewards, b.discounts, q_next_target, None).tolist() == [1.0 + 0.5 * 20.0, 2.0]
    # Double DQN: the online argmax in s' = 1 is action 0, whose target value is 10.
    assert dqn.td_target(b.rewards, b.discounts, q_next_target, q_next_online).tolist() == [1.0 + 0.5 * 10.0, 2.0]


@pytest.mark.parametrize("double,expected", [
    # Q(s0, a1) = 5 vs y = 6 and Q(s1, a0) = 3 vs y = 2: both |d| = 1, Huber 0.5 d² each.
    (True, (0.5 + 0.5) / 2),
    # Plain: y = 1 + 0.5 · 20 = 11, |5 − 11| = 6 → 6 − 0.5 = 5.5; second as above.
    (False, (5.5 + 0.5) / 2),
])
def test_huber_loss_by_hand(double, expected):
    loss = dqn.dqn_loss(_FixedQ(ONLINE), _FixedQ(TARGET), _batch(), double=double)
    assert loss.item() == pytest.approx(expected)


@pytest.mark.parametrize("double,expected", [
    # Double: errors 5 − 6 = −1 and 3 − 2 = 1 → mean of squares 1. Plain: (5 − 11)² = 36 and 1 → 18.5.
    (True, 1.0), (False, 18.5),
])
def test_mse_loss_by_hand(double, expected):
    loss = dqn.dqn_loss(_FixedQ(ONLINE), _FixedQ(TARGET), _batch(), double=double, loss="mse")
    assert loss.item() == pytest.approx(expected)


def test_post_solve_fraction_by_hand():
    steps, returns = [1, 2, 3, 4, 5], [100.0, 480.0, 300.0, 475.0, 500.0]
    # solved at step 2; after it: 300 (below), 475 and 500 (at or above) → 2 of 3
    assert dqn.post_solve_fraction(steps, returns, 2, 475.0) == pytest.approx(2 / 3)
    assert dqn.post_solve_fraction(steps, returns, None, 475.0) is None
    assert dqn.post_solve_fraction(steps, returns, 5, 475.0) is None  # nothing came after the solve


def test_learning_waits_for_the_replay():
    args = dqn.resolve_args(dqn.Args(env="CartPole", learning_starts=0, batch_size=64, buffer_size=1000))
    assert not dqn.replay_ready(0, args) and not dqn.replay_ready(63, args) and dqn.replay_ready(64, args)
    args = dqn.resolve_args(dqn.Args(env="CartPole", learning_starts=5000, batch_size=64, buffer_size=1000))
    assert not dqn.replay_ready(999, args) and dqn.replay_ready(1000, args)  # a full buffer is enough


def test_n_step_with_learning_from_the_start_runs(tmp_path):
    """n-step windows keep the replay empty for the first steps: learning must wait instead of failing."""
    summary = dqn.main(_tiny(tmp_path / "run", n_step=3, learning_starts=0, total_steps=600, eval_every=600))
    assert summary["updates"] > 0 and summary["env_steps"] == 600


def test_a_run_that_cannot_learn_warns(tmp_path):
    with pytest.warns(UserWarning, match="--learning-starts 2000 is at or after the last step"):
        dqn.resolve_args(dqn.Args(env="CartPole", learning_starts=2000, total_steps=2000))


def test_replay_discounts_stop_only_at_terminations():
    from rlgen.rl.replay import ReplayBuffer

    buf = ReplayBuffer(4, (1,), gamma=0.9)
    obs = np.zeros((2, 1), np.float32)
    buf.start(obs)
    # env 0 terminated, env 1 was truncated by a time limit: only env 0 stops bootstrapping.
    buf.add(np.array([0, 1]), np.array([1.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), obs, obs)
    b = buf.sample(64, np.random.default_rng(0))
    by_action = {int(a): float(d) for a, d in zip(b.actions, b.discounts)}
    assert by_action == {0: 0.0, 1: pytest.approx(0.9)}


@pytest.mark.parametrize("argv,message", [
    (["--env", "CartPoel"], "unknown environment 'CartPoel'; known short names: CartPole"),
    (["--env", "Pendulum"], "needs a discrete action space"),
    (["--lr", "-0.1"], "--lr -0.1 must be a positive number"),
    (["--batch-size", "128", "--buffer-size", "64"], "--batch-size 128 is larger than --buffer-size 64"),
    (["--gamma", "1.5"], "--gamma 1.5 must be a number in [0, 1]"),
    (["--num-envs", "0"], "--num-envs 0 must be a positive integer"),
    (["--ema", "1"], "--ema 1.0 must be a number in [0, 1)"),
    (["--lr-end", "nan"], "--lr-end nan must be a number ≥ 0"),
    (["--adam-eps", "0"], "--adam-eps 0.0 must be a positive number"),
    (["--final-eval-episodes", "0"], "--final-eval-episodes 0 must be a positive integer"),
    (["--loss", "l1"], "argument --loss: invalid choice: 'l1' (choose from 'huber', 'mse')"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, bad_input, argv, message):
    run_dir = tmp_path / "run"
    bad_input(dqn.main, dqn.Args, argv + ["--run-dir", str(run_dir), "--wandb", "disabled"], message)
    assert not run_dir.exists()


def test_resume_from_a_folder_without_checkpoint(tmp_path, bad_input):
    (tmp_path / "empty").mkdir()
    bad_input(dqn.main, dqn.Args, ["--resume", str(tmp_path / "empty")], "no checkpoint")
    assert os.listdir(tmp_path / "empty") == []


def test_resume_with_an_optimizer_of_another_layout_is_one_line(tmp_path, bad_input):
    run_dir = tmp_path / "run"
    dqn.main(_tiny(run_dir, total_steps=600))
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    # an optimizer over the layers one by one, as checkpoints from before the flat buffer hold
    layered = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2)) for _ in range(6)])
    ckpt["optimizer"] = layered.state_dict()
    torch.save(ckpt, run_dir / "checkpoint.pt")
    before = (run_dir / "checkpoint.pt").read_bytes()
    bad_input(dqn.main, dqn.Args, ["--resume", str(run_dir)], "does not fit this version")
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def _tiny(run_dir, **kw):
    base = dict(env="CartPole", total_steps=1200, learning_starts=200, eval_every=600, eval_episodes=3,
                final_eval_episodes=3, checkpoint_every=600, buffer_size=2000, run_dir=str(run_dir),
                wandb="disabled", gif=False)
    return dqn.Args(**{**base, **kw})


def test_smoke_run_writes_everything(tmp_path, capsys):
    summary = dqn.main(_tiny(tmp_path / "run", gif=True, num_envs=2))
    files = set(os.listdir(tmp_path / "run"))
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "best.pt", "learning_curve.png",
            "eval_episode.gif"} <= files
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("algo", "env", "seed", "env_steps", "wall_seconds", "eval_return_mean", "eval_return_std",
                "eval_episodes", "solved_at_env_step", "final_eval_return_mean", "final_eval_return_std",
                "best_eval_return", "best_eval_step", "post_solve_fraction"):
        assert key in saved
    assert saved == json.loads(json.dumps(summary))
    assert saved["env"] == "CartPole-v1" and saved["env_steps"] == 1200 and saved["eval_episodes"] == 3
    assert saved["eval_return_mean"] == saved["final_eval_return_mean"]
    # the best evaluation's weights, with its step and score, beside the last ones
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["step"] == saved["best_eval_step"] and best["eval_return"] == saved["best_eval_return"]
    rows = [r for r in read_metrics(tmp_path / "run") if "eval/return_mean" in r]
    assert saved["best_eval_return"] == max(r["eval/return_mean"] for r in rows)
    from rlgen.encoders import load_encoder

    assert load_encoder(tmp_path / "run" / "best.pt").out_dim == load_encoder(tmp_path / "run").out_dim
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"run folder: {tmp_path / 'run'}"
    assert out[-3].startswith(f"final evaluation {saved['final_eval_return_mean']:.1f} ± ")
    assert "over 3 episodes" in out[-3] and out[-2].startswith("training ")
    assert any(line.startswith("best evaluation") and "best.pt" in line for line in out)


def test_same_seed_same_numbers(tmp_path):
    a = dqn.main(_tiny(tmp_path / "a", seed=3))
    b = dqn.main(_tiny(tmp_path / "b", seed=3))
    strip = ("time", "time/train_seconds", "time/steps_per_second")  # clocks
    rows_a = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(tmp_path / "a")]
    rows_b = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(tmp_path / "b")]
    assert rows_a == rows_b and len(rows_a) > 10
    assert a["eval_return_mean"] == b["eval_return_mean"]


def test_cartpole_return_improves(tmp_path):
    summary = dqn.main(_tiny(tmp_path / "run", total_steps=10_000, learning_starts=1000, eval_every=2000,
                             eval_episodes=10, checkpoint_every=0, seed=0))
    rows = [r for r in read_metrics(tmp_path / "run") if "rollout/episode_return" in r]
    first = np.mean([r["rollout/episode_return"] for r in rows[:20]])  # random play
    assert summary["best_eval_return"] >= 100 and summary["best_eval_return"] > 4 * first


def test_max_episode_steps_cuts_training_and_evaluation_episodes(tmp_path):
    summary = dqn.main(_tiny(tmp_path / "run", total_steps=600, learning_starts=100, eval_every=600,
                             eval_episodes=2, final_eval_episodes=3, max_episode_steps=7, checkpoint_every=0))
    lengths = [r["rollout/episode_length"] for r in read_metrics(tmp_path / "run") if "rollout/episode_length" in r]
    assert lengths and max(lengths) <= 7
    assert summary["final_eval_return_mean"] <= 7  # CartPole pays 1 per step


def test_default_cartpole_stays_solved(tmp_path):
    """The README's first command as a user runs it (defaults, whole budget): the agent it ends with is solved,
    and once solved no evaluation falls far (experiments/bench_dqn_cartpole.py measures seeds 0-9)."""
    summary = dqn.main(dqn.Args(seed=SOLID_SEED, run_dir=str(tmp_path / "run"), wandb="disabled", gif=False))
    assert summary["env_steps"] == 75_000 and summary["eval_episodes"] == 100
    assert summary["final_eval_return_mean"] >= 475
    solved = summary["solved_at_env_step"]
    assert solved is not None
    evals = [r for r in read_metrics(tmp_path / "run") if "eval/return_mean" in r]
    assert evals and all(r["eval/return_mean"] >= 400 for r in evals if r["step"] > solved)


# A seed whose default run is measured stable on both CPU kinds we have (Intel Xeon with AMX, AMD EPYC with
# AVX-512): float32 kernels differ between them, so a run's trajectory does too (seed 4 ends at 500.0 on the Xeon
# and 333.5 on the AMD machine; bench_dqn_cartpole.py). The test guards against a change that breaks it.
SOLID_SEED = 3


def test_sigkill_then_resume_finishes_like_an_uninterrupted_run(tmp_path):
    """A run killed mid-training resumes from its last checkpoint and ends exactly as one never stopped."""
    argv = ["--env", "CartPole", "--total-steps", "3000", "--learning-starts", "300", "--eval-every", "1000",
            "--eval-episodes", "3", "--checkpoint-every", "500", "--no-gif", "--wandb", "disabled", "--seed", "5"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.rl.dqn", *argv, "--run-dir", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_mtime > 0 and _ckpt_step(ckpt) >= 1000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "rlgen.rl.dqn", "--resume", str(killed)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"run folder: {killed}" in resumed.stdout
    whole = dqn.main(cli.parse(dqn.Args, argv + ["--run-dir", str(tmp_path / "whole")]))
    after = json.loads((killed / "summary.json").read_text())
    for key in ("env_steps", "updates", "eval_return_mean", "eval_return_std", "best_eval_return"):
        assert after[key] == whole[key], key
    steps = [r["step"] for r in read_metrics(killed)]
    assert steps == sorted(steps) and steps == [r["step"] for r in read_metrics(tmp_path / "whole")]


def _ckpt_step(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["step"]
    except Exception:
        return -1


@pytest.mark.parametrize("ending", ["terminated", "truncated"])
def test_n_step_replay_matches_hand_computed_returns(ending):
    from rlgen.rl.replay import ReplayBuffer

    g, n = 0.5, 3
    buf = ReplayBuffer(16, (1,), gamma=g, n_step=n)
    buf.start(np.zeros((1, 1), np.float32))
    for k in range(4):  # rewards 1..4; the fourth step ends the episode
        end = k == 3
        nxt = np.full((1, 1), k + 1, np.float32)
        buf.add(np.array([k]), np.array([k + 1.0]), np.array([end and ending == "terminated"]),
                np.array([end and ending == "truncated"]), nxt, np.full((1, 1), 100, np.float32) if end else nxt)
        if k == 2:  # the first window is complete; later steps wait for theirs
            assert len(buf) == 1
            state = buf.state_dict()
    stop = 0.0 if ending == "terminated" else 1.0
    expected = {  # first step → (n-step return, successor, bootstrap discount)
        0: (1 + g * 2 + g * g * 3, 3.0, g ** 3),
        1: (2 + g * 3 + g * g * 4, 4.0, stop * g ** 3),
        2: (3 + g * 4, 4.0, stop * g ** 2),
        3: (4.0, 4.0, stop * g),
    }
    b = buf.sample(256, np.random.default_rng(0))
    got = {int(a): (float(r), float(o), float(d)) for a, r, o, d in zip(b.actions, b.rewards, b.next_obs[:, 0],
                                                                        b.discounts)}
    assert got.keys() == expected.keys() and len(buf) == 4
    for k, want in expected.items():
        assert got[k] == pytest.approx(want), k
    assert torch.equal(b.obs[:, 0], b.actions.float())  # each sample starts where its first step did
    # A resumed buffer holds the open windows too, so it finishes them the same way.
    again = ReplayBuffer(16, (1,), gamma=g, n_step=n)
    again.load_state_dict(state)
    again.start(np.full((1, 1), 3, np.float32))
    again.add(np.array([3]), np.array([4.0]), np.array([ending == "terminated"]), np.array([ending == "truncated"]),
              np.full((1, 1), 4, np.float32), np.full((1, 1), 100, np.float32))
    for k in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated", "horizon"):
        assert np.array_equal(getattr(again, k)[:4], getattr(buf, k)[:4]), k


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    # a channels-last weight, as a CNN's are: its gradient is not contiguous, so it takes the norm's other path
    conv = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    a = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True), conv.requires_grad_(True)]
    b = [t.detach().clone().requires_grad_(True) for t in a]
    for params in (a, b):
        (sum((p * p).sum() for p in params) * 3).backward()
    assert not a[2].grad.is_contiguous()
    want = torch.nn.utils.clip_grad_norm_(b, 0.5)
    got = dqn.clip_grad_norm(a, 0.5)
    assert torch.allclose(got, want)
    assert all(torch.allclose(x.grad, y.grad) for x, y in zip(a, b))
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in a])) == pytest.approx(0.5, rel=1e-4)
    flat = torch.cat([t.detach().flatten() for t in a[:1]]).requires_grad_(True)  # one flat tensor: its own path
    (flat * flat).sum().mul(3).backward()
    ref = flat.detach().clone().requires_grad_(True)
    (ref * ref).sum().mul(3).backward()
    assert torch.allclose(dqn.clip_grad_norm([flat], 0.5), torch.nn.utils.clip_grad_norm_([ref], 0.5))
    assert torch.allclose(flat.grad, ref.grad)
    # under the limit the gradients are untouched, bit for bit (on a CPU the multiply by 1 is skipped)
    before = [p.grad.clone() for p in a]
    assert dqn.clip_grad_norm(a, 10.0) == pytest.approx(0.5, rel=1e-4)
    assert all(torch.equal(p.grad, g) for p, g in zip(a, before))


def test_resume_with_a_larger_budget_ends_at_it(tmp_path, bad_input):
    run_dir = tmp_path / "run"
    dqn.main(_tiny(run_dir, total_steps=1200))
    before = (run_dir / "checkpoint.pt").read_bytes()
    # a flag that changes what is learned is refused, and the checkpoint is left as it was
    bad_input(dqn.main, dqn.Args, ["--resume", str(run_dir), "--batch-size", "32"],
              "--batch-size 32 differs from the run being resumed (512)")
    bad_input(dqn.main, dqn.Args, ["--resume", str(run_dir), "--env", "Acrobot-v1"], "differs from the run")
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    summary = dqn.main(cli.parse(dqn.Args, ["--resume", str(run_dir), "--total-steps", "1800"]))
    assert summary["env_steps"] == 1800
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == 1800


@pytest.mark.parametrize("kw,words", [(dict(env="Breakout", stop_on_solve=True), "--stop-on-solve"),
                                      (dict(env="CartPole", sticky_actions=True), "--sticky-actions")])
def test_a_flag_that_would_do_nothing_is_refused(tmp_path, kw, words):
    with pytest.raises(UsageError, match=words):
        dqn.main(dqn.Args(run_dir=str(tmp_path / "run"), **kw))
    assert not (tmp_path / "run").exists()


def test_the_speed_paths_are_parameters_that_change_no_number(tmp_path):
    kw = dict(env="CartPole", total_steps=1200, learning_starts=200, eval_every=600, eval_episodes=2,
              final_eval_episodes=3, gif=False, wandb="disabled")
    fast = dqn.main(dqn.Args(run_dir=str(tmp_path / "fast"), **kw))
    plain = dqn.main(dqn.Args(run_dir=str(tmp_path / "plain"), flat_params=False, fused_clip=False, **kw))
    assert fast["updates"] > 0
    for key in ("eval_return_mean", "best_eval_return", "updates"):
        assert fast[key] == pytest.approx(plain[key], rel=1e-6), key


def test_log_every_sets_the_cadence_of_the_training_rows(run_dir):
    s = dqn.main(dqn.Args(env="CartPole", total_steps=800, learning_starts=100, eval_every=800, eval_episodes=1,
                          final_eval_episodes=1, gif=False, log_every=4, wandb="disabled", run_dir=str(run_dir)))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r["train/updates"] for r in rows if "train/loss" in r]
    assert s["updates"] >= 50 and logged == list(range(4, s["updates"] + 1, 4))  # two updates per round of 8 envs
