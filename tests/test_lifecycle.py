"""Every training command shares one run lifecycle (rlgen.lifecycle.Run): these tests hold each to it.

Ctrl-C during training saves a checkpoint at the next step and stops the run; resumed with a larger budget it
ends exactly at the new budget, with its clocks and resume count carried over. A resume that changes a flag a
continued run may not change is one line, exit 2, and leaves the checkpoint byte-identical.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from rlgen import checkpoint, cli
from rlgen.errors import Stopped
from rlgen.lifecycle import SHARED_SUMMARY, Clock, Run

# command: (tiny args, budget flag, first budget, larger budget, summary key of the final count, a flag that may not
# change on resume with a value different from the run's)
TINY: dict[str, tuple[dict[str, Any], str, Any, Any, str, tuple[str, str]]] = {
    "rlgen.rl.dqn": (dict(env="CartPole", learning_starts=100, eval_every=200, eval_episodes=1, final_eval_episodes=1,
                          checkpoint_every=200, batch_size=32, gif=False),
                     "total_steps", 400, 600, "env_steps", ("--batch-size", "16")),
    "rlgen.rl.qlearning": (dict(env="FrozenLake", slippery=False, checkpoint_every=200, eval_episodes=20, gif=False),
                           "episodes", 600, 900, "episodes", ("--lr", "0.37")),
    "rlgen.rl.reinforce": (dict(env="CartPole", batch_episodes=2, checkpoint_every=4, eval_episodes=2, gif=False,
                                device="cpu"),
                           "episodes", 10, 14, "episodes", ("--lr", "0.0123")),
    "rlgen.selfsup.stdim": (dict(data="atari-frames:breakout", frames=1400, batch_size=16, lr=1e-3, minutes=None,
                                 checkpoint_every=3, log_every=5, amp="off"),
                            "total_steps", 6, 9, "updates", ("--batch-size", "8")),
    "rlgen.selfsup.simclr": (dict(data="mnist5k", batch_size=64, log_every=5, knn_every=10, checkpoint_every=10,
                                  threads=1),
                             "total_steps", 30, 35, "updates", ("--batch-size", "32")),
    "rlgen.selfsup.moco": (dict(data="mnist5k", batch_size=64, log_every=5, knn_every=10, checkpoint_every=10,
                                threads=1, queue_size=512),
                           "total_steps", 30, 35, "updates", ("--batch-size", "32")),
    "rlgen.gen.vae": (dict(data="mnist5k", arch="mlp", hidden="64", latent_dim=4, batch_size=200, iwae_k=0,
                           eval_every=1, kl_warmup=0, checkpoint_every=1),
                      "epochs", 2, 3, "epochs", ("--batch-size", "100")),
    "rlgen.gen.gan": (dict(data="mnist5k", arch="dcgan", image_size=16, width=8, batch_size=16, fid_samples=0,
                           device="cpu", log_every=2, checkpoint_every=2),
                      "total_steps", 6, 9, "updates", ("--batch-size", "8")),
    "rlgen.gen.pixelcnn": (dict(width=8, layers=1, head_channels=8, batch_size=16, train_limit=64,
                                checkpoint_every=3, samples=2, completions=1),
                           "epochs", 2, 3, "epochs", ("--batch-size", "8")),
    "rlgen.selfsup.supervised": (dict(data="mnist5k", batch_size=64, log_every=5, checkpoint_every=10, threads=1),
                                 "total_steps", 30, 35, "updates", ("--batch-size", "32")),
}


class Stop(Exception):
    """Raised in-process right after the first checkpoint.pt is written: a kill after a good checkpoint."""


@pytest.fixture
def stop_after_first_checkpoint(monkeypatch):
    real = checkpoint.save

    def save(path, *a, **kw):
        out = real(path, *a, **kw)
        if str(path).endswith(checkpoint.FILENAME):
            monkeypatch.setattr(checkpoint, "save", real)
            raise Stop
        return out

    monkeypatch.setattr(checkpoint, "save", save)


@pytest.fixture
def ctrl_c_at_first_step(monkeypatch):
    """Ctrl-C (a real SIGINT to this process) as the loop first asks whether a checkpoint is due."""
    real = Run.checkpoint_due

    def checkpoint_due(self, *a):
        monkeypatch.setattr(Run, "checkpoint_due", real)
        os.kill(os.getpid(), signal.SIGINT)
        return real(self, *a)

    monkeypatch.setattr(Run, "checkpoint_due", checkpoint_due)


@pytest.mark.parametrize("command", sorted(TINY))
def test_ctrl_c_saves_at_the_next_step_and_resume_ends_at_a_larger_budget(command, tmp_path, ctrl_c_at_first_step,
                                                                          capsys):
    mod = importlib.import_module(command)
    tiny, budget, first, larger, count_key, _ = TINY[command]
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite was started as a background job (`&`)
    # KeyboardInterrupt, not Stopped: had the command let Ctrl-C through unsaved, pytest must not end the session
    with pytest.raises(KeyboardInterrupt) as exc:
        mod.main(mod.Args(run_dir=str(run), wandb="disabled", **{budget: first}, **tiny))
    assert isinstance(exc.value, Stopped) and exc.value.exit_code == 130
    saved = checkpoint.load(run)
    assert str(exc.value) == (f"stopped by Ctrl-C at step {saved['step']:,}, checkpoint saved: continue with "
                              f"--resume {run}")
    assert not (run / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the command's handler is gone
    assert 0 < saved["step"], saved["step"]
    summary = mod.main(mod.Args(resume=str(run), **{budget: larger}))
    assert summary[count_key] == larger
    if budget == "total_steps":  # the checkpoint's step counts what the budget counts
        assert checkpoint.load(run)["step"] == larger
    assert checkpoint.load(run)["args"][budget] == larger
    on_disk = json.loads((run / "summary.json").read_text())
    assert set(SHARED_SUMMARY) <= set(on_disk)
    assert on_disk["resumes"] == 1
    # (stopped after one step, a run may have saved 0.000 s: a FrozenLake episode takes well under a millisecond)
    assert on_disk["train_seconds"] >= saved["clocks"]["train_seconds"] and on_disk["train_seconds"] > 0
    assert on_disk["wall_seconds"] >= saved["clocks"]["wall_seconds"]
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run folder: {run}"


@pytest.mark.parametrize("command", sorted(TINY))
def test_a_disallowed_change_on_resume_is_one_line_and_leaves_the_checkpoint(command, tmp_path, capsys,
                                                                             stop_after_first_checkpoint):
    mod = importlib.import_module(command)
    tiny, budget, first, _, _, (flag, value) = TINY[command]
    run = tmp_path / "run"
    with pytest.raises(Stop):
        mod.main(mod.Args(run_dir=str(run), wandb="disabled", **{budget: first}, **tiny))
    before = (run / checkpoint.FILENAME).read_bytes()
    files = sorted(p.name for p in run.rglob("*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.run(mod.main, mod.Args, ["--resume", str(run), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and err[0].startswith(f"error: {flag} {value}") and "differs" in err[0], err
    assert (run / checkpoint.FILENAME).read_bytes() == before
    assert sorted(p.name for p in run.rglob("*")) == files


def test_clock_counts_only_its_spans_and_starts_from_the_saved_seconds():
    clock = Clock(seconds=5.0, cpu_seconds=2.0)
    assert clock.seconds == 5.0 and clock.cpu_seconds == 2.0
    with clock:
        sum(range(200_000))
        running = clock.seconds
    assert 5.0 < running <= clock.seconds
    stopped = clock.seconds
    sum(range(200_000))
    assert clock.seconds == stopped and clock.cpu_seconds > 2.0


def test_a_second_ctrl_c_or_one_after_training_stops_at_once(tmp_path):
    from rlgen.rl import qlearning as ql

    run = Run(ql.Args(env="FrozenLake", run_dir=str(tmp_path / "run")), "qlearning", what="FrozenLake")
    run._on_signal(signal.SIGINT, None)
    assert run.stop_signal == signal.SIGINT and run.checkpoint_due(0, 1, 1000)
    with pytest.raises(Stopped, match="^stopped by Ctrl-C before the first checkpoint: there is nothing to resume$"):
        run._on_signal(signal.SIGINT, None)

    run = Run(ql.Args(env="FrozenLake", run_dir=str(tmp_path / "run2")), "qlearning", what="FrozenLake")
    run.save(7)
    with run.after_clock, pytest.raises(Stopped) as exc:
        run._on_signal(signal.SIGTERM, None)  # the final evaluation: its checkpoint is already written
    assert exc.value.exit_code == 143
    assert str(exc.value) == ("stopped by SIGTERM; the checkpoint at step 7 is kept: continue with "
                              f"--resume {run.run_dir}")


def test_sigterm_on_the_command_line_saves_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.rl.qlearning", "--env", "FrozenLake", "--episodes",
                             "10000000", "--no-gif", "--wandb", "disabled", "--run-dir", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)  # inside the training loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    saved = checkpoint.load(run)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (f"stopped by SIGTERM at step {saved['step']:,}, checkpoint saved: "
                                            f"continue with --resume {run}")
    assert 0 < saved["episode"] < 10_000_000 and not (run / "summary.json").exists()
