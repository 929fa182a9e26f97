"""DQN on Atari: a CI-sized Breakout run that checkpoints, is killed, resumes and writes a video."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlgen import checkpoint, plots
from rlgen.rl import dqn
from rlgen.track import read_metrics

SMALL = ["--env", "Breakout", "--total-steps", "1600", "--learning-starts", "400", "--buffer-size", "2000",
         "--batch-size", "16", "--eval-every", "100000", "--eval-episodes", "1", "--checkpoint-every", "800",
         "--final-eval-episodes", "2", "--save-replay", "--max-episode-steps", "400", "--wandb", "disabled",
         "--seed", "1"]


def _step_of(path):
    try:
        return torch.load(path, weights_only=True)["step"]
    except Exception:
        return -1


def test_breakout_smoke_checkpoint_kill_resume_video(tmp_path):
    run = tmp_path / "breakout"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.rl.dqn", *SMALL, "--run-dir", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _step_of(run / "checkpoint.pt") < 800:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = checkpoint.load(run, algo="dqn")
    assert saved["step"] == 800 and "replay" in saved and saved["args"]["env"] == "ALE/Breakout-v5"

    with pytest.warns(UserWarning, match="starts new episodes"):  # ALE's vector env cannot save emulators
        summary = dqn.main(dqn.Args(resume=str(run)))
    assert summary["env_steps"] == 1600 and summary["updates"] == (1600 - 400) // 4
    assert summary["frames"] >= 4 * 1600  # frame skip 4, plus no-op and FIRE frames at resets
    assert 0 < summary["replay_bytes"] < 2000 * 7300
    recording = "eval_episode.mp4" if plots.video_available() else "eval_episode.gif"  # MP4 with the video extra
    assert (run / recording).stat().st_size > 1000 and (run / "learning_curve.png").exists()
    assert json.loads((run / "summary.json").read_text())["env"] == "ALE/Breakout-v5"
    steps = [r["step"] for r in read_metrics(run)]
    assert steps == sorted(steps) and steps[-1] == 1600


@pytest.mark.parametrize("argv,message", [
    (["--env", "Breakot"], "unknown environment 'Breakot'"),
    (["--env", "ALE/Breakot-v5"], "unknown Atari game 'ALE/Breakot-v5'"),
    (["--env", "Breakout", "--num-envs", "0"], "--num-envs 0 must be a positive integer"),
    (["--env", "Breakout", "--buffer-size", "16", "--batch-size", "32"],
     "--batch-size 32 is larger than --buffer-size 16"),
])
def test_atari_bad_input(tmp_path, bad_input, argv, message):
    run = tmp_path / "run"
    err = bad_input(dqn.main, dqn.Args, argv + ["--run-dir", str(run), "--wandb", "disabled"], message)
    assert "Breakot" not in message or "Did you mean Breakout" in err
    assert not run.exists()


@pytest.mark.parametrize("content,message", [
    ("truncate", "truncated or corrupt"),
    ("foreign", "not an rlgen checkpoint"),
])
def test_resume_from_a_bad_checkpoint(tmp_path, bad_input, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content == "truncate":
        checkpoint.save(run / "checkpoint.pt", algo="dqn", args={}, step=1, weights=torch.zeros(10_000))
        data = (run / "checkpoint.pt").read_bytes()
        (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    else:
        torch.save({"model": torch.zeros(3)}, run / "checkpoint.pt")
    before = sorted(os.listdir(run)), (run / "checkpoint.pt").read_bytes()
    bad_input(dqn.main, dqn.Args, ["--resume", str(run)], message)
    assert (sorted(os.listdir(run)), (run / "checkpoint.pt").read_bytes()) == before
