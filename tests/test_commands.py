"""The rlgen command and what it does with a finished run; runs that never collide; resume as promised;
a library call that leaves the process as it found it; any gymnasium environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import rlgen
from rlgen import checkpoint, commands, plots
from rlgen.registry import COMMANDS
from rlgen.rl import dqn, qlearning, reinforce

CARTPOLE = dict(env="CartPole", total_steps=2000, learning_starts=500, eval_every=1000, eval_episodes=2,
                final_eval_episodes=5, gif=False, wandb="disabled")


def rlgen_cli(argv, capsys):
    """``rlgen ARGV`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        commands.main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished run of each agent kind and a tiny GAN."""
    from rlgen.gen import gan

    root = tmp_path_factory.mktemp("runs")
    dqn.main(dqn.Args(run_dir=str(root / "dqn"), **CARTPOLE))
    reinforce.main(reinforce.Args(env="CartPole", episodes=8, batch_episodes=2, eval_episodes=2, gif=False,
                                  stop_on_solve=False, device="cpu", wandb="disabled", run_dir=str(root / "reinforce")))
    qlearning.main(qlearning.Args(env="FrozenLake", slippery=False, episodes=1000, eval_episodes=10, gif=False,
                                  wandb="disabled", run_dir=str(root / "qlearning")))
    gan.main(gan.Args(data="mnist5k", arch="dcgan", image_size=16, width=8, batch_size=16, fid_samples=0,
                      device="cpu", total_steps=4, wandb="disabled", run_dir=str(root / "gan")))
    return root


def test_rlgen_lists_every_command_and_prints_its_version(capsys):
    code, out, _ = rlgen_cli([], capsys)
    assert code == 0
    for name in [*COMMANDS, *commands.VERBS]:
        assert f"  {name} " in out, name
    code, out, _ = rlgen_cli(["--version"], capsys)
    assert (code, out.strip()) == (0, f"rlgen {rlgen.__version__}")
    code, out, _ = rlgen_cli(["dqn", "--version"], capsys)
    assert code == 0 and out.strip() == f"rlgen {rlgen.__version__}"
    # python -m rlgen is the same command
    done = subprocess.run([sys.executable, "-m", "rlgen", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"rlgen {rlgen.__version__}"


def test_rlgen_runs_a_command_with_its_flags(tmp_path, capsys):
    code, out, _ = rlgen_cli(["qlearning", "--env", "FrozenLake", "--no-slippery", "--episodes", "200",
                              "--eval-episodes", "5", "--no-gif", "--wandb", "disabled", "--run-dir",
                              str(tmp_path / "q")], capsys)
    assert code == 0 and (tmp_path / "q" / "summary.json").exists()
    assert out.strip().splitlines()[-1] == f"run folder: {tmp_path / 'q'}"


@pytest.mark.parametrize("kind", ["dqn", "reinforce", "qlearning"])
def test_play_writes_a_gif_of_each_agent_kind(runs, kind, tmp_path, capsys):
    gif = tmp_path / f"{kind}.gif"
    code, out, err = rlgen_cli(["play", str(runs / kind), "--gif", str(gif), "--episodes", "2"], capsys)
    assert code == 0, err
    with Image.open(gif) as im:
        assert im.n_frames > 2
    agent = rlgen.load(runs / kind)
    first = agent.evaluate(1)[0]  # the played episode 1 is the evaluation's first
    played = float(out.split("return ")[1].split(" ")[0])
    second = agent.evaluate(1, seed=agent.eval_seed + 1)[0]
    assert played == pytest.approx((first + second) / 2)


def test_play_records_an_mp4_with_the_video_extra(runs, tmp_path, capsys):
    if not plots.video_available():
        pytest.skip("imageio-ffmpeg is not installed (pip install 'rlgen[video]')")
    import imageio.v2 as imageio

    video = tmp_path / "cartpole.mp4"
    code, _, err = rlgen_cli(["play", str(runs / "dqn"), "--video", str(video)], capsys)
    assert code == 0, err
    reader = imageio.get_reader(video)
    assert reader.count_frames() > 5 and reader.get_data(0).shape[2] == 3
    reader.close()


def test_eval_reproduces_the_summary_and_writes_a_json(runs, capsys):
    s = json.loads((runs / "dqn" / "summary.json").read_text())
    code, out, _ = rlgen_cli(["eval", str(runs / "dqn")], capsys)
    assert code == 0
    written = json.loads((runs / "dqn" / "eval-last-seed10000-5ep.json").read_text())
    assert written["return_mean"] == s["final_eval_return_mean"] and written["episodes"] == 5
    assert f"return {s['final_eval_return_mean']:.2f} ± {s['final_eval_return_std']:.2f} over 5 episodes" in out
    code, _, _ = rlgen_cli(["eval", str(runs / "dqn"), "--best", "--episodes", "3", "--seed", "7"], capsys)
    assert code == 0 and json.loads((runs / "dqn" / "eval-best-seed7-3ep.json").read_text())["weights"] == "best"


def test_export_writes_a_model_card_and_weights_that_load_back(runs, tmp_path, capsys):
    out_dir = tmp_path / "export"
    code, _, err = rlgen_cli(["export", str(runs / "dqn"), str(out_dir)], capsys)
    assert code == 0, err
    s = json.loads((runs / "dqn" / "summary.json").read_text())
    card = (out_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: rlgen\n")
    assert f"final evaluation {s['final_eval_return_mean']:.1f} ± {s['final_eval_return_std']:.1f} over 5 episodes" \
        in card
    assert "rlgen dqn --total-steps 2000 --learning-starts 500" in card  # env: the default
    machine = json.loads((runs / "dqn" / "config.json").read_text())["machine"]
    assert f"CPU: {machine['cpu']}, {machine['cores']} cores" in card
    assert f"torch {machine['versions']['torch']}" in card and f"device: {machine['device']}" in card
    assert json.loads((out_dir / "config.json").read_text())["machine"] == machine
    assert {"checkpoint.pt", "config.json", "summary.json", "learning_curve.png", "episode.gif", "results.json"} <= {
        p.name for p in out_dir.iterdir()}
    assert json.loads((out_dir / "results.json").read_text())["mean_reward"] == s["final_eval_return_mean"]
    saved = checkpoint.load(out_dir)
    assert "optimizer" not in saved and "replay" not in saved and "target_net" not in saved
    assert float(rlgen.load(out_dir).evaluate().mean()) == s["final_eval_return_mean"]
    # a generator exports too, and its folder samples what the run samples
    code, _, err = rlgen_cli(["export", str(runs / "gan"), str(tmp_path / "gan")], capsys)
    assert code == 0, err
    a = rlgen.load(runs / "gan").sample(4, torch.Generator().manual_seed(3))
    b = rlgen.load(tmp_path / "gan").sample(4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # without huggingface_hub (or a network) the upload is one line and the folder stays
    code, _, err = rlgen_cli(["export", str(runs / "qlearning"), str(tmp_path / "q"), "--push-to-hub", "me/q"],
                             capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the folder is ready at" in err
    assert (tmp_path / "q" / "README.md").exists()


def test_a_generator_samples_exactly_what_rlgen_sample_writes(runs, tmp_path, capsys):
    from rlgen.data import save_grid

    png = tmp_path / "samples.png"
    code, _, err = rlgen_cli(["sample", str(runs / "gan"), "--n", "8", "--seed", "5", "--out", str(png)], capsys)
    assert code == 0, err
    images = rlgen.load(runs / "gan").sample(8, torch.Generator().manual_seed(5))
    ckpt = checkpoint.load(runs / "gan")
    mine = save_grid(tmp_path / "mine.png", images, value_range=(0, 1),
                     title=f"{ckpt['algo']} {ckpt['args'].get('data', '')} · seed 5")
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(mine)))


def test_bad_input_is_one_line_exit_2_and_writes_nothing(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    before = sorted(p.name for p in (runs / "gan").iterdir())
    cases = [
        (["play", str(empty)], "holds no rlgen run"),
        (["play", str(runs / "gan")], "a gan run, which has no agent to play"),
        (["play", str(runs / "dqn"), "--episodes", "0"], "--episodes 0 must be a positive integer"),
        (["eval", str(runs / "dqn"), "--episodes", "0"], "--episodes 0 must be a positive integer"),
        (["play", str(runs / "dqn"), "--video", "x.gif"], "must name a .mp4 file"),
        (["export", str(runs / "dqn"), str(runs / "gan")], "is not an empty folder"),
        (["nosuchcommand"], "unknown command 'nosuchcommand'"),
    ]
    for argv, message in cases:
        code, _, err = rlgen_cli(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert sorted(p.name for p in (runs / "gan").iterdir()) == before and not any(empty.iterdir())
    assert not (runs / "dqn" / "play.gif").exists()


# -- runs never collide -----------------------------------------------------------------------------------
def test_runs_started_together_get_separate_complete_folders(tmp_path):
    argv = ["-m", "rlgen.rl.dqn", "--env", "CartPole", "--total-steps", "600", "--learning-starts", "300",
            "--eval-every", "600", "--eval-episodes", "1", "--final-eval-episodes", "2", "--no-gif",
            "--wandb", "disabled"]
    seeds = [0, 1, 2, 2, 2]  # three seeds, and the last one three times over: a race for one folder name
    procs = [subprocess.Popen([sys.executable, *argv, "--seed", str(s)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in seeds]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 5
    said = sorted(o[0].strip().splitlines()[-1].removeprefix("run folder: ") for o in outs)
    assert said == sorted(str(f.relative_to(tmp_path)) for f in folders)
    seen = []
    for folder in folders:
        s = json.loads((folder / "summary.json").read_text())
        rows = (folder / "metrics.jsonl").read_text().splitlines()
        assert s["run_dir"] == str(folder.relative_to(tmp_path)) and f"-s{s['seed']}-" in folder.name
        assert checkpoint.load(folder)["args"]["seed"] == s["seed"] and rows
        seen.append(s["seed"])
    assert sorted(seen) == seeds


def test_an_explicit_folder_holding_a_run_is_never_reused(runs, bad_input):
    bad_input(dqn.main, dqn.Args, ["--env", "CartPole", "--run-dir", str(runs / "dqn")], "already holds a run")


# -- resume as promised -----------------------------------------------------------------------------------
def test_resume_takes_a_checkpoint_file_and_compares_every_given_flag(tmp_path, bad_input, capsys):
    run = tmp_path / "run"
    args = ["--env", "CartPole", "--total-steps", "1000", "--learning-starts", "500", "--eval-every", "1000",
            "--eval-episodes", "1", "--final-eval-episodes", "1", "--no-gif", "--wandb", "disabled"]
    rlgen_cli(["dqn", *args, "--eps-start", "0.5", "--run-dir", str(run)], capsys)
    before = (run / "checkpoint.pt").read_bytes()
    # --eps-start 1.0 is the class default: given on the line, it is still a change, and refused
    bad_input(dqn.main, dqn.Args, ["--resume", str(run), "--eps-start", "1.0"], "--eps-start 1.0 differs")
    bad_input(dqn.main, dqn.Args, ["--resume", str(run), "--run-dir", str(tmp_path / "other")],
              "continues in its own folder")
    assert (run / "checkpoint.pt").read_bytes() == before
    code, out, err = rlgen_cli(["dqn", "--resume", str(run / "checkpoint.pt"), "--total-steps", "2000"], capsys)
    assert code == 0, err
    s = json.loads((run / "summary.json").read_text())
    assert s["env_steps"] == 2000 and s["resumes"] == 1 and s["run_dir"] == str(run)


# -- the process as it was --------------------------------------------------------------------------------
def test_a_library_call_leaves_the_process_as_it_found_it(tmp_path):
    from rlgen.machine import denormals_flushed

    torch.set_num_threads(2)
    threads, flushed, umask = torch.get_num_threads(), denormals_flushed(), os.umask(0o022)
    os.umask(umask)
    dqn.main(dqn.Args(env="Breakout", total_steps=200, learning_starts=100, buffer_size=200, batch_size=8,
                      num_envs=1, eval_every=200, eval_episodes=1, final_eval_episodes=1, max_episode_steps=100,
                      gif=False, threads=1, wandb="disabled", run_dir=str(tmp_path / "run")))
    assert torch.get_num_threads() == threads and denormals_flushed() == flushed
    assert os.umask(umask) == umask


def test_threads_0_means_the_cpus_this_process_may_use():
    from rlgen.machine import available_cpus

    assert 1 <= available_cpus() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert available_cpus() <= len(os.sched_getaffinity(0))


# -- any gymnasium environment ----------------------------------------------------------------------------
CORRIDOR = textwrap.dedent('''
    import gymnasium as gym
    import numpy as np


    class Corridor(gym.Env):
        """Walk right to the end of a corridor of 6 cells; reward 1 there."""

        def __init__(self, box=False, render_mode=None):
            self.box, self.render_mode = box, render_mode
            self.observation_space = gym.spaces.Box(0.0, 5.0, (1,), np.float32) if box else gym.spaces.Discrete(6)
            self.action_space = gym.spaces.Discrete(2)

        def _obs(self):
            return np.array([self.s], np.float32) if self.box else self.s

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.s = 0
            return self._obs(), {}

        def step(self, a):
            self.s = max(0, min(5, self.s + (1 if a == 1 else -1)))
            done = self.s == 5
            return self._obs(), float(done), done, False, {}


    gym.register(id="Corridor-v0", entry_point=Corridor, max_episode_steps=30)
    gym.register(id="CorridorBox-v0", entry_point=Corridor, kwargs={"box": True}, max_episode_steps=30)
''')


def test_environments_of_your_own_module_train_and_load(tmp_path, monkeypatch):
    (tmp_path / "my_corridor.py").write_text(CORRIDOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    s = qlearning.main(qlearning.Args(env="my_corridor:Corridor-v0", episodes=300, eval_episodes=5, gif=False,
                                      wandb="disabled", run_dir=str(tmp_path / "q")))
    assert s["env"] == "my_corridor:Corridor-v0" and s["eval_return_mean"] == 1.0
    assert float(rlgen.load(tmp_path / "q").evaluate().mean()) == 1.0
    s = dqn.main(dqn.Args(env="my_corridor:CorridorBox-v0", total_steps=600, learning_starts=200, eval_every=600,
                          eval_episodes=1, final_eval_episodes=3, gif=False, wandb="disabled",
                          run_dir=str(tmp_path / "d")))
    assert float(rlgen.load(tmp_path / "d").evaluate().mean()) == s["final_eval_return_mean"]
    # registered by the caller's own code, under a plain id
    s = reinforce.main(reinforce.Args(env="CorridorBox-v0", episodes=4, eval_episodes=1, gif=False, device="cpu",
                                      stop_on_solve=False, wandb="disabled", run_dir=str(tmp_path / "r")))
    assert s["env"] == "CorridorBox-v0"


def test_an_unknown_module_env_is_one_line(tmp_path, bad_input):
    bad_input(dqn.main, dqn.Args, ["--env", "no_such_module_xyz:Thing-v0", "--run-dir", str(tmp_path / "x")],
              "its module 'no_such_module_xyz' cannot be imported")
    assert not (tmp_path / "x").exists()


def test_the_python_api_takes_an_environment_factory(tmp_path, monkeypatch):
    (tmp_path / "corridor_factory.py").write_text(CORRIDOR.split("gym.register(")[0])  # the class, unregistered
    monkeypatch.syspath_prepend(str(tmp_path))
    import corridor_factory

    def corridor(render_mode=None):
        return corridor_factory.Corridor(box=True, render_mode=render_mode)

    s = dqn.main(dqn.Args(env=corridor, total_steps=600, learning_starts=200, eval_every=600, eval_episodes=1,
                          final_eval_episodes=3, max_episode_steps=30, gif=False, wandb="disabled",
                          run_dir=str(tmp_path / "d")))
    assert s["env"] == "rlgen-factory/corridor-v0"
    agent = rlgen.load(tmp_path / "d", env_factory=corridor)
    assert float(agent.evaluate().mean()) == s["final_eval_return_mean"]
    assert checkpoint.load(tmp_path / "d")["flags"]["env"] == "corridor"  # the checkpoint holds plain values
