"""Atari DQN throughput: rlgen against Stable-Baselines3 on Breakout, same settings, one process.

Both use the RL-Zoo Atari hyperparameters (``hyperparams/dqn.yml``: buffer 100k, lr 1e-4, batch 32,
train_freq 4, gradient_steps 1, target update every 1,000 environment steps, final ε 0.01) except
``learning_starts``, shortened so that the measured stretch, which starts when learning starts,
comes quickly, and ε, which falls over the whole short run (so both act greedily for part of it, as
they do for most of a real 10M-step run). The figure is environment steps per second from the first update
to the end. SB3 runs as its users run it: ``make_atari_env`` (AtariWrapper) with a 4-frame
``VecFrameStack``; rlgen with its defaults (ale-py's vector env with 4 games, Double DQN,
bf16 autocast where the CPU has bf16 units). Both get the same number of torch threads.

    python experiments/bench_dqn_atari.py [--steps 3000] [--learning-starts 1000] [--json out.json]
    python experiments/bench_dqn_atari.py --device cuda --skip-sb3      # the GPU figure, for the record
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time

import torch

from rlgen.machine import pick_device
from rlgen.rl import dqn
from rlgen.track import read_metrics

ZOO = dict(buffer_size=100_000, learning_rate=1e-4, batch_size=32, train_freq=4, gradient_steps=1,
           target_update_interval=1000, exploration_final_eps=0.01, optimize_memory_usage=False)


def run_rlgen(game: str, steps: int, learning_starts: int, device: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        total = learning_starts + steps
        args = dqn.Args(env=game, seed=seed, device=device, total_steps=total, learning_starts=learning_starts,
                        buffer_size=ZOO["buffer_size"], lr=ZOO["learning_rate"], batch_size=ZOO["batch_size"],
                        train_freq=ZOO["train_freq"], gradient_steps=ZOO["gradient_steps"],
                        # rlgen counts target updates in gradient steps: 1000 env steps / train_freq 4.
                        target_update=ZOO["target_update_interval"] // ZOO["train_freq"],
                        exploration_fraction=1.0,
                        eps_end=ZOO["exploration_final_eps"], eval_every=10 * total, eval_episodes=1,
                        checkpoint_every=0, gif=False, wandb="disabled", run_dir=f"{tmp}/run", threads=0)
        summary = dqn.main(args)
        rows = [r for r in read_metrics(f"{tmp}/run") if "train/loss" in r]
    first, last = rows[0], rows[-1]
    rate = (last["step"] - first["step"]) / (last["time"] - first["time"])
    amp = dqn.uses_amp(dqn.resolve_args(args), pick_device(args.device))
    return {"steps_per_second": rate, "updates": summary["updates"], "amp": amp,
            "measured_steps": last["step"] - first["step"]}


def run_sb3(game: str, steps: int, learning_starts: int, device: str, seed: int) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start_step = self.start = None

        def _on_step(self) -> bool:
            if self.start is None and self.num_timesteps > learning_starts:
                self.start_step, self.start = self.num_timesteps, time.perf_counter()
            return True

    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=1, seed=seed), n_stack=4)
    total = learning_starts + steps
    model = DQN("CnnPolicy", env, seed=seed, device=device, verbose=0, learning_starts=learning_starts,
                **{**ZOO, "exploration_fraction": 1.0})
    clock = Clock()
    model.learn(total_timesteps=total, callback=clock)
    elapsed = time.perf_counter() - clock.start
    return {"steps_per_second": (model.num_timesteps - clock.start_step) / elapsed,
            "measured_steps": model.num_timesteps - clock.start_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--steps", type=int, default=3000, help="environment steps measured after learning starts")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--json", help="write the results here")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    ours = run_rlgen(opts.game, opts.steps, opts.learning_starts, opts.device, opts.seed)
    torch.set_flush_denormal(False)  # rlgen's Atari run flushed denormals (this thread); SB3 runs as its users run it
    theirs = None if opts.skip_sb3 else run_sb3(opts.game, opts.steps, opts.learning_starts, opts.device, opts.seed)
    print(f"\nDQN on {opts.game}, {opts.device}, {opts.threads} torch threads: env steps per second after learning "
          f"starts (RL-Zoo settings, {opts.steps} steps measured)")
    print(f"{'':<8} {'steps/s':>9} {'ratio':>7}")
    print(f"{'rlgen':<8} {ours['steps_per_second']:>9.1f} "
          f"{'' if theirs is None else format(ours['steps_per_second'] / theirs['steps_per_second'], '7.2f')}")
    if theirs is not None:
        print(f"{'SB3':<8} {theirs['steps_per_second']:>9.1f} {1.0:>7.2f}")
        print(f"rlgen / SB3 = {ours['steps_per_second'] / theirs['steps_per_second']:.2f} (goal ≥ 1.5); "
              f"rlgen bf16 autocast: {ours['amp']}")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"game": opts.game, "device": opts.device, "threads": opts.threads, "rlgen": ours,
                       "sb3": theirs}, fh, indent=2)


if __name__ == "__main__":
    main()
