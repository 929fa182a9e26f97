"""Fixes in the shared machinery: fresh BatchNorm statistics, collectives on the process group's device, episode
recordings that keep only what their GIF shows."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from rlgen.nets import make_backbone
from rlgen.rl import envs
from rlgen.selfsup import distributed


@pytest.mark.parametrize("name,shape", [("convnet", (1, 28, 28)), ("resnet18", (3, 32, 32))])
def test_a_fresh_backbone_keeps_batchnorms_initial_statistics(name, shape):
    net = make_backbone(name, shape)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and net.training
    for m in norms:
        assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        assert torch.equal(m.running_var, torch.ones_like(m.running_var))
        assert int(m.num_batches_tracked) == 0


def test_reductions_run_where_the_backend_reduces(monkeypatch):
    assert distributed.reduction_device("gloo") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert distributed.reduction_device("nccl") == torch.device("cuda", 0)


def test_all_mean_reduces_on_a_gloo_group(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        seen = []
        reduce = dist.all_reduce
        monkeypatch.setattr(distributed, "world", lambda: (0, 2))  # as if a second process had sent 0.0
        monkeypatch.setattr(dist, "all_reduce", lambda t: (seen.append(t.device), reduce(t))[1])
        assert distributed.all_mean(3.0) == 1.5
        assert seen == [torch.device("cpu")]
    finally:
        dist.destroy_process_group()


class LongEpisode:
    """A stand-in environment whose episode lasts ``length`` steps; it counts the frames alive at once."""

    def __init__(self, length: int) -> None:
        import gymnasium as gym

        self.length, self.t, self.alive, self.peak = length, 0, 0, 0
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None):
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, dtype=np.float32), 0.0, self.t >= self.length, False, {}

    def render(self):
        env = self

        class Frame(np.ndarray):
            def __del__(self):
                env.alive -= 1

        frame = np.full((2, 2, 3), self.t % 256, dtype=np.uint8).view(Frame)
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        frame.step = self.t
        return frame

    def close(self):
        pass


def test_recording_a_long_episode_keeps_only_the_frames_the_gif_can_show():
    env = LongEpisode(27_000)
    frames, _ = envs.record_episode(lambda obs: np.zeros(len(obs), dtype=int), lambda: env, seed=0, max_frames=250)
    assert len(frames) == 250
    assert frames[0].step == 0 and frames[-1].step == 27_000  # the whole episode, to its end
    steps = [f.step for f in frames]
    assert steps == sorted(steps) and max(np.diff(steps)) <= 2 * 27_000 / 250
    assert env.peak <= 2 * 250 + 2  # not 27,001 screens


def test_a_resumed_run_keeps_no_second_copy_of_what_it_restored(tmp_path):
    from rlgen.lifecycle import Run
    from rlgen.rl import dqn

    run_dir = str(tmp_path / "run")
    dqn.main(dqn.Args(env="CartPole", total_steps=300, learning_starts=100, eval_every=300, eval_episodes=1,
                      final_eval_episodes=1, gif=False, wandb="disabled", run_dir=run_dir))

    class Holder:
        def load_state_dict(self, state):
            self.state = state

    run = Run(dqn.Args(resume=run_dir, wandb="disabled"), "dqn", what="CartPole",
              changeable=dqn.RESUME_CHANGEABLE, check=dqn.resolve_args)
    net, replay = Holder(), Holder()
    step = run.restore(q_net=net, replay=replay, counters=dict(step=0))
    assert step >= 300 and "backbone.net.0.weight" in net.state and replay.state
    assert "q_net" not in run.ckpt and "replay" not in run.ckpt  # only plain values stay behind
    assert run.ckpt["step"] == step and "envs" in run.ckpt


def test_the_atari_pool_is_closed_when_a_run_fails_before_training(tmp_path, monkeypatch):
    """The pool (ale-py's C++ threads) was built before the try/finally that closes it."""
    from rlgen.lifecycle import Run
    from rlgen.rl import atari, dqn

    closed = []
    real_close = atari.AtariPool.close

    def close(self):
        closed.append(self)
        real_close(self)

    def fail(*a, **k):
        raise RuntimeError("restore failed")

    monkeypatch.setattr(atari.AtariPool, "close", close)
    monkeypatch.setattr(Run, "restore", fail)
    with pytest.raises(RuntimeError, match="restore failed"):
        dqn.main(dqn.Args(env="Breakout", total_steps=64, learning_starts=32, buffer_size=64, batch_size=8,
                          num_envs=1, gif=False, wandb="disabled", threads=1, run_dir=str(tmp_path / "run")))
    assert len(closed) == 1
