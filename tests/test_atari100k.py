"""Atari 100k: DrQ(ε)'s pieces by hand, a tiny run of the preset, --encoder, and SB3 features extractors."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlgen import checkpoint
from rlgen.rl import dqn
from rlgen.rl.atari import human_normalized
from rlgen.rl.atari_replay import FrameReplay


class _Linear(nn.Module):
    """A tiny Q-network on (stack, H, W) frames: Q = W · flatten(x) + b."""

    def __init__(self, n_in: int, n_actions: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_actions)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x.flatten(1))


def test_ten_step_target_with_target_period_one_by_hand():
    """FrameReplay's 10-step batch and dqn_loss with the online network as its own target (DrQ(ε)'s period 1)
    against a hand computation: y = Σ_k γ^k r_k + γ^10 · Q(s_10, argmax_a Q(s_10, a)), one pass on the successors."""
    gamma, n = 0.99, 10
    rng = np.random.default_rng(0)
    replay = FrameReplay(64, 1, frame_shape=(2, 2), stack=4, n_step=n, gamma=gamma)
    first = np.zeros((1, 4, 2, 2), dtype=np.uint8)
    first[:, -1] = rng.integers(0, 255, (2, 2))  # an episode's first stack: older frames are zeros
    frames = [first]
    replay.start(frames[0])
    rewards = rng.normal(size=30).astype(np.float32)
    for t in range(30):
        obs = np.concatenate([frames[-1][:, 1:], rng.integers(0, 255, (1, 1, 2, 2), dtype=np.uint8)], axis=1)
        replay.add(np.array([t % 3]), rewards[t:t + 1], np.array([False]), np.array([False]), obs, obs)
        frames.append(obs)
    batch = replay.sample(8, np.random.default_rng(1))
    net = _Linear(16, 3)
    prepare = (lambda f: f.float() / 255)  # noqa: E731
    loss = dqn.dqn_loss(net, net, batch, double=True, prepare=prepare, loss="huber")
    assert net.calls == 2  # states with gradient, successors once (no separate target pass)

    expected = []
    for i in range(8):
        # which stored step this is: match its stack against the frames written
        t = next(k for k, f in enumerate(frames) if torch.equal(torch.from_numpy(f[0]), batch.obs[i]))
        assert torch.equal(torch.from_numpy(frames[t + n][0]), batch.next_obs[i])
        ret = sum(gamma ** k * float(rewards[t + k]) for k in range(n))
        with torch.no_grad():
            q_next = net(prepare(torch.from_numpy(frames[t + n])))[0]
            q = net(prepare(torch.from_numpy(frames[t])))[0, int(batch.actions[i])]
        y = ret + gamma ** n * float(q_next.max())  # double DQN with one network: its own argmax
        d = abs(float(q) - y)
        expected.append(0.5 * d * d if d < 1 else d - 0.5)
    assert float(loss.detach()) == pytest.approx(float(np.mean(expected)), rel=1e-4)


def test_preset_fills_dopamines_drq_eps_values_and_keeps_what_is_given():
    a = dqn.resolve_args(dqn.Args(env="Boxing", preset="atari100k", lr=3e-4))
    assert (a.total_steps, a.num_envs, a.train_freq, a.gradient_steps, a.learning_starts, a.batch_size) == \
        (100_000, 1, 1, 1, 1_600, 32)
    assert (a.n_step, a.target_update, a.tau, a.dueling, a.double, a.adam_eps, a.gamma) == \
        (10, 1, 1.0, True, True, 1.5e-4, 0.99)
    assert (a.eps_end, a.exploration_fraction * a.total_steps, a.eps_warmup, a.eval_epsilon) == \
        (0.01, 5_000, True, 0.001)
    assert (a.final_eval_episodes, a.augment, a.sticky_actions, a.loss) == (100, True, False, "huber")
    assert a.max_grad_norm == 0  # Dopamine's optimizer does not clip
    assert a.lr == 3e-4  # a flag given beats the preset
    plain = dqn.resolve_args(dqn.Args(env="Boxing"))
    assert (plain.dueling, plain.augment, plain.eps_warmup, plain.n_step) == (False, False, False, 1)
    assert plain.max_grad_norm == 10.0
    assert dqn.resolve_args(dqn.Args(env="Boxing", preset="atari100k", max_grad_norm=10.0)).max_grad_norm == 10.0


def test_human_normalised_score():
    assert human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("ALE/Pong-v5", -20.7) == pytest.approx(0.0)
    assert human_normalized("Boxing", 9.0) == pytest.approx((9.0 - 0.1) / 12.0)
    assert human_normalized("SpaceInvaders", 100.0) is None  # not an Atari 100k game


# The preset at a tiny budget on Boxing, with games cut at 200 agent steps (a whole game is about 1,800, and
# an update in float32 on a CPU without bf16 units costs ~80 ms): the suite stays short on every CPU.
TINY = dict(env="Boxing", preset="atari100k", total_steps=300, learning_starts=250, buffer_size=1_000,
            final_eval_episodes=2, eval_every=300, eval_episodes=1, max_episode_steps=200, gif=False,
            wandb="disabled")


@pytest.fixture(scope="module")
def preset_run(tmp_path_factory):
    """A tiny run of the preset on Boxing (a game of fixed length, so evaluation takes a bounded time)."""
    run = tmp_path_factory.mktemp("a100k") / "boxing"
    summary = dqn.main(dqn.Args(**TINY, run_dir=str(run)))
    return run, summary


def test_preset_smoke_run(preset_run):
    run, s = preset_run
    assert s["env_steps"] == 300 and s["updates"] == 50  # one update per agent step after the warm-up
    assert s["eval_episodes"] == 2 and s["eval_epsilon"] == 0.001
    assert s["human_normalized_score"] == pytest.approx(human_normalized("Boxing", s["final_eval_return_mean"]))
    saved = checkpoint.load(run, algo="dqn")
    assert "aug_rng" in saved and saved["args"]["preset"] == "atari100k"
    assert json.loads((run / "summary.json").read_text())["updates"] == 50
    # --max-episode-steps cut the first game (Boxing lasts about 1,800 steps) at 200 steps
    assert 150 < saved["history"]["episode_step"][0] <= 200


def test_preset_is_reproducible(preset_run, tmp_path):
    _, s = preset_run
    again = dqn.main(dqn.Args(**TINY, run_dir=str(tmp_path / "again")))
    assert again["final_eval_return_mean"] == s["final_eval_return_mean"]
    a = checkpoint.load(tmp_path / "again", algo="dqn")["q_net"]
    b = checkpoint.load(preset_run[0], algo="dqn")["q_net"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def tiny_boxing_agent(out: Path, encoder: Path, freeze: bool, total_steps: int = 300) -> dict:
    """A few updates of the preset on Boxing from ``encoder``; the Q-network's weights at the end."""
    dqn.main(dqn.Args(**{**TINY, "total_steps": total_steps, "eval_every": total_steps, "final_eval_episodes": 1},
                      encoder=str(encoder), freeze_encoder=freeze, run_dir=str(out)))
    return checkpoint.load(out, algo="dqn")["q_net"]


_FLAGS_DURING_A_RUN = """
import sys, numpy as np, torch
from rlgen import cli
from rlgen.machine import denormals_flushed
from rlgen.rl import dqn
x = torch.from_numpy(np.full(1 << 22, 0x000AE398, dtype=np.uint32).view(np.float32))  # about 1e-39, by its bits
seen, loss_and_q = [], dqn.dqn_loss_and_q

def first_update_counts_denormals(*a, **k):  # at the first update: a parallel op over every thread
    if not seen:
        seen.append(int(((x * 1.0).view(torch.int32) != 0).sum()))
    return loss_and_q(*a, **k)

dqn.dqn_loss_and_q = first_update_counts_denormals
before = denormals_flushed()
cli.run(dqn.main, dqn.Args, sys.argv[1:])
print(seen[0], int(denormals_flushed() == before))
"""


def test_an_atari_run_flushes_denormals_in_all_its_threads(tmp_path):
    # As `python -m rlgen.rl.dqn` runs: a fresh process, two threads. Every OpenMP thread must carry the
    # flags while the run trains, so nothing before the flush_denormals() call in main may start them.
    argv = ["--env", "Boxing", "--preset", "atari100k", "--total-steps", "80", "--learning-starts", "60",
            "--buffer-size", "1000", "--eval-every", "80", "--eval-episodes", "1", "--final-eval-episodes", "1",
            "--max-episode-steps", "50", "--no-gif", "--wandb", "disabled", "--threads", "2",
            "--run-dir", str(tmp_path / "run")]
    resume = ["--resume", str(tmp_path / "run"), "--total-steps", "100"]  # the args come from the checkpoint
    for given in (argv, resume):
        out = subprocess.run([sys.executable, "-c", _FLAGS_DURING_A_RUN, *given], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU cannot flush denormals")
        unflushed, restored = (int(v) for v in out.stdout.split()[-2:])
        assert unflushed == 0, given  # during the run: every thread flushes
        assert restored == 1, given  # after it: the calling thread's flags are as they were


@pytest.mark.parametrize("freeze", [False, True])
def test_encoder_from_another_run_starts_the_trunk(preset_run, tmp_path, freeze):
    run, _ = preset_run
    source = checkpoint.load(run, algo="dqn")["q_net"]
    after = tiny_boxing_agent(tmp_path / "transfer", run, freeze)
    trunk = [k for k in source if k.startswith("backbone.")]
    assert trunk
    same = all(torch.equal(after[k], source[k]) for k in trunk)
    assert same == freeze  # frozen: untouched after 50 updates; fine-tuned: moved
    assert not torch.equal(after["head.adv.weight"], source["head.adv.weight"])


def test_encoder_that_does_not_fit_is_one_line(tmp_path, bad_input):
    cartpole = tmp_path / "cartpole"
    dqn.main(dqn.Args(env="CartPole", total_steps=200, learning_starts=100, eval_every=200, eval_episodes=1,
                      final_eval_episodes=1, gif=False, run_dir=str(cartpole), wandb="disabled"))
    out = tmp_path / "out"
    bad_input(dqn.main, dqn.Args, ["--env", "Boxing", "--preset", "atari100k", "--encoder", str(cartpole),
                                   "--run-dir", str(out), "--wandb", "disabled"],
              "takes input of shape (4,), but this environment's observations have shape (4, 84, 84)")
    assert not out.exists()
    bad_input(dqn.main, dqn.Args, ["--env", "CartPole", "--preset", "atari100k", "--run-dir", str(out)],
              "--preset atari100k is for Atari games")
    bad_input(dqn.main, dqn.Args, ["--env", "CartPole", "--freeze-encoder", "--run-dir", str(out)],
              "--freeze-encoder needs --encoder")
    assert not out.exists()


class _Frames(gym.Env):
    """Random 4×84×84 uint8 frames, two actions, reward for action 1: enough for SB3 to take a few steps."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(action), self.t >= 20, False, {}


@pytest.fixture
def sb3_logs_here(monkeypatch, tmp_path):
    """SB3 makes a log folder for every model it trains, in /tmp unless $SB3_LOGDIR names one: keep it here."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3_log"))


@pytest.mark.usefixtures("sb3_logs_here")
@pytest.mark.parametrize("algo", ["DQN", "PPO"])
def test_sb3_trains_with_an_rlgen_backbone(algo):
    import stable_baselines3 as sb3

    from rlgen.rl.sb3 import RlgenExtractor

    kw = dict(learning_starts=16, buffer_size=200, batch_size=8, train_freq=4) if algo == "DQN" else \
        dict(n_steps=32, batch_size=16, n_epochs=1)
    model = getattr(sb3, algo)("CnnPolicy", _Frames(), seed=0, device="cpu", policy_kwargs=dict(
        features_extractor_class=RlgenExtractor, features_extractor_kwargs=dict(backbone="nature_cnn")), **kw)
    extractor = model.policy.q_net.features_extractor if algo == "DQN" else model.policy.features_extractor
    assert type(extractor.net).__name__ == "NatureCNN" and extractor.features_dim == 512
    before = [p.detach().clone() for p in extractor.parameters()]
    model.learn(64)
    assert any(not torch.equal(a, b) for a, b in zip(before, extractor.parameters()))


@pytest.mark.usefixtures("sb3_logs_here")
def test_sb3_with_a_pretrained_rlgen_encoder(preset_run):
    import stable_baselines3 as sb3

    from rlgen.errors import UsageError
    from rlgen.rl.sb3 import RlgenExtractor

    run, _ = preset_run
    source = checkpoint.load(run, algo="dqn")["q_net"]
    model = sb3.DQN("CnnPolicy", _Frames(), seed=0, device="cpu", learning_starts=16, buffer_size=200, batch_size=8,
                    train_freq=4, policy_kwargs=dict(features_extractor_class=RlgenExtractor,
                                                     features_extractor_kwargs=dict(encoder=str(run), freeze=True)))
    extractor = model.policy.q_net.features_extractor
    obs = torch.from_numpy(_Frames.observation_space.sample()[None])
    with torch.no_grad():  # SB3 scales to [0, 1]; the encoder sees exactly the frames / 255 it was trained on
        ref = extractor.net(obs.float() / 255)
        assert torch.allclose(extractor(obs.float() / 255), ref)
    model.learn(64)
    trunk = {k.removeprefix("backbone."): v for k, v in source.items() if k.startswith("backbone.")}
    assert all(torch.equal(extractor.net.state_dict()[k], v) for k, v in trunk.items())  # frozen
    with pytest.raises(UsageError, match=r"takes input of shape \(4, 84, 84\), but the observations have shape"):
        RlgenExtractor(gym.spaces.Box(0, 255, (3, 32, 32), dtype=np.uint8), encoder=str(run))


def test_bench_atari100k_runs_reuses_and_reports(tmp_path):
    """The benchmark script end to end at a tiny budget: an encoder pretrained for the game, a preset run
    (stopped by Ctrl-C, continued by the same command), a run from the frozen encoder and an SB3 run, then a
    second call that reuses every folder instead of training."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "bench_atari100k.py"
    argv = [sys.executable, str(script), "--games", "Boxing", "--seeds", "0", "--sb3", "--sb3-game", "Boxing",
            "--variants", "preset,frozen", "--pretrain-steps", "2", "--pretrain-frames", "300",
            "--total-steps", "300", "--eval-episodes", "1", "--max-episode-steps", "100", "--threads", "1",
            "--wandb", "disabled", "--results", str(tmp_path / "results"),
            "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "out.json")]
    # Ctrl-C once the first agent run has started: it saves a checkpoint, and the same command continues it
    stopped = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    preset = tmp_path / "runs" / "preset-Boxing-s0"
    deadline = time.monotonic() + 300
    while not (preset / "metrics.jsonl").exists() and stopped.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped.send_signal(signal.SIGINT)
    out, err = stopped.communicate(timeout=300)
    assert stopped.returncode == 130, out[-2000:] + err[-2000:]
    assert "preset Boxing seed 0: stopped, checkpoint kept: the same bench command continues it" in out, out
    assert (preset / "checkpoint.pt").exists() and not (preset / "summary.json").exists()
    first = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "1 of 1 runs already finished" in first.stdout and "0 of 3 runs already finished" in first.stdout
    assert f"-m rlgen.rl.dqn --resume {preset}" in first.stdout
    assert json.loads((preset / "bench.json").read_text())["launches"] == 2
    assert json.loads((preset / "summary.json").read_text())["resumes"] == 1
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["pretraining"]["Boxing"]["updates"] == 2 and out["pretraining"]["Boxing"]["frames"] == 300
    assert out["variants"]["frozen"]["games"]["Boxing"]["runs"]
    agent = json.loads((tmp_path / "runs" / "frozen-Boxing-s0" / "config.json").read_text())
    assert agent["encoder"] == str(tmp_path / "runs" / "simclr-Boxing") and agent["freeze_encoder"]
    boxing = out["variants"]["preset"]["games"]["Boxing"]
    assert boxing["published"]["DrQ(ε)"] == 9.0 and boxing["hns"] == pytest.approx(human_normalized("Boxing",
                                                                                                    boxing["mean"]))
    assert out["variants"]["sb3"]["games"]["Boxing"]["runs"]  # SB3's run evaluated by rlgen's protocol
    assert json.loads((tmp_path / "runs" / "preset-Boxing-s0" / "bench.json").read_text())["cpu_seconds"] > 0
    assert "270 of 300 steps" in (tmp_path / "runs" / "sb3-Boxing-s0.log").read_text()  # SB3's run is not silent
    sb3_config = json.loads((tmp_path / "runs" / "sb3-Boxing-s0" / "config.json").read_text())
    assert sb3_config["n_steps"] == 10 and sb3_config["learning_starts"] == 1_600 and sb3_config["total_steps"] == 300
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "3 of 3 runs already finished" in again.stdout
    assert "start " not in again.stdout  # no agent waits for an encoder, so none is pretrained either
    # --profile with a finished run's network and Adam state, its denormals kept
    prof = subprocess.run(argv + ["--report-only", "--profile", "1", "--profile-state", str(preset),
                                  "--keep-denormals"], capture_output=True, text=True, timeout=300)
    assert prof.returncode == 0, prof.stderr[-2000:]
    assert f"network and Adam state of {preset} (step 300)" in prof.stdout and "denormals kept" in prof.stdout
    # the run folders gone (another machine): the records under --results still make the same table
    records = sorted(p.name for p in (tmp_path / "results").glob("*.json"))
    assert records == ["frozen-Boxing-s0.json", "preset-Boxing-s0.json", "sb3-Boxing-s0.json", "simclr-Boxing.json"]
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "out.json").unlink()
    third = subprocess.run(argv + ["--report-only"], capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr[-2000:]
    rebuilt = json.loads((tmp_path / "out.json").read_text())
    assert rebuilt["variants"] == out["variants"] and rebuilt["pretraining"] == out["pretraining"]
    assert not (tmp_path / "runs").exists()  # nothing was run
    # SB3's run alone, as a variant (here its record, read back)
    alone = [a for a in argv if a != "--sb3"]
    alone[alone.index("--variants") + 1] = "sb3"
    fourth = subprocess.run(alone + ["--report-only"], capture_output=True, text=True, timeout=120)
    assert fourth.returncode == 0, fourth.stderr[-2000:]
    assert json.loads((tmp_path / "out.json").read_text())["variants"] == {"sb3": out["variants"]["sb3"]}
    alone[alone.index("--variants") + 1] = "preset,bogus"
    bad = subprocess.run(alone, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --variants 'bogus' is not one of preset, frozen, finetune, sb3"]
    bad = subprocess.run(argv + ["--profile", "1", "--profile-state", str(tmp_path / "nowhere")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --profile-state {tmp_path / 'nowhere'}: no checkpoint.pt there; give the folder of a finished or "
        "stopped rlgen.rl.dqn Atari run"]
    assert not (tmp_path / "runs").exists()


# -- encoders pretrained on frames as DQN sees them ----------------------------------------------------------
def test_dqn_view_resizes_as_the_agent_does_and_stacks_within_episodes():
    from rlgen.data.atari_frames import dqn_view
    from rlgen.images import area_resize_weights

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (9, 1, 210, 160), dtype=torch.uint8, generator=g)
    episode = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2])
    out = dqn_view(frames, episode, chunk=4)  # chunks smaller than the data: the seams must not show
    assert out.shape == (9, 4, 84, 84) and out.dtype == torch.uint8
    rows, cols = area_resize_weights(210, 84), area_resize_weights(160, 84)
    small = [np.clip(np.round(rows @ f[0].numpy().astype(np.float64) @ cols.T), 0, 255) for f in frames]
    for i in range(9):
        for slot in range(4):
            back = i - (3 - slot)  # slot 3 is the newest frame
            if back >= 0 and episode[back] == episode[i]:
                # float32 products against float64 here: at most one grey level apart, as the agent's resize is
                assert np.abs(out[i, slot].numpy().astype(int) - small[back]).max() <= 1, (i, slot)
            else:
                assert not out[i, slot].any(), (i, slot)  # before the episode's first frame: zeros
    assert torch.equal(out[4, 2], out[5, 1]) and torch.equal(out[3, 3], out[6, 0])


def test_dqn_recipe_is_drq_augment():
    from rlgen.augment import RECIPES, augment, default_recipe, drq_augment

    x = torch.randint(0, 256, (6, 4, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours = augment(x, RECIPES["dqn"], torch.Generator().manual_seed(7))
    drq = drq_augment(x.float() / 255, torch.Generator().manual_seed(7))
    assert torch.allclose(ours, drq, atol=1e-6)
    assert default_recipe("atari-stacks:breakout")[0] == "dqn" and "shift ±4" in RECIPES["dqn"].describe()


def test_simclr_on_atari_stacks_gives_a_dqn_encoder(tmp_path, bad_input):
    """SimCLR on DQN-view Boxing frames (temporal pairs, the dqn recipe) → the trunk of a Boxing agent."""
    from rlgen.selfsup import simclr

    pre = tmp_path / "simclr"
    s = simclr.main(simclr.Args(data="atari-stacks:boxing", frames=300, backbone="nature_cnn_same",
                                pairs="temporal", batch_size=16, total_steps=12, log_every=4,
                                run_dir=str(pre), wandb="disabled", amp="off"))
    assert s["updates"] == 12
    source = checkpoint.load(pre, algo="simclr")["encoder"]
    after = tiny_boxing_agent(tmp_path / "agent", pre, freeze=True, total_steps=260)
    assert all(torch.equal(after[f"backbone.{k}"], v) for k, v in source.items())
    # the raw-frame collection does not fit the agent: one line naming both shapes
    raw = tmp_path / "raw"
    simclr.main(simclr.Args(data="atari-frames:boxing", frames=300, backbone="atari_cnn", batch_size=8,
                            total_steps=1, run_dir=str(raw), wandb="disabled", amp="off"))
    bad_input(dqn.main, dqn.Args, ["--env", "Boxing", "--preset", "atari100k", "--encoder", str(raw),
                                   "--run-dir", str(tmp_path / "no")], "(1, 210, 160)")



def test_evaluation_plays_whole_games_in_the_vector_env_and_is_seeded():
    from rlgen.rl.atari import evaluate_games

    calls = []

    def random_policy(obs):  # a policy that looks at nothing, so the games are the emulator's and the seed's
        calls.append(len(obs))
        assert obs.shape[1:] == (4, 84, 84) and obs.dtype == np.uint8
        return np.random.default_rng(len(calls)).integers(0, 4, len(obs))

    scores = evaluate_games(random_policy, "Breakout", 3, seed=7, epsilon=0.5)
    assert scores.shape == (3,) and np.isfinite(scores).all() and (scores >= 0).all()
    assert calls[0] == 3 and calls == sorted(calls, reverse=True)  # only running games are asked for actions
    calls.clear()
    assert np.array_equal(evaluate_games(random_policy, "Breakout", 3, seed=7, epsilon=0.5), scores)


def test_grad_norms_script_reports_every_update_reproducibly(tmp_path):
    """experiments/grad_norms_atari100k.py: one norm per update, none clipped, the same under the seed."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "experiments" / "grad_norms_atari100k.py"
    spec = importlib.util.spec_from_file_location("grad_norms_atari100k", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    first = mod.norms_of_run("Boxing", 1_650, seed=0)
    assert len(first) == 50 and np.isfinite(first).all() and (first > 0).all()  # updates start after step 1,600
    assert np.array_equal(first, mod.norms_of_run("Boxing", 1_650, seed=0))
    bad = subprocess.run([sys.executable, str(script), "--steps", "100"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--steps 100" in bad.stderr and bad.stdout == ""
