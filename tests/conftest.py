import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


@pytest.fixture
def bad_input(capsys):
    """``check(main, Args, argv, message)``: the command exits 2 with one ``error:`` line holding ``message``."""
    from rlgen import cli

    def check(main, args_cls, argv, message):
        capsys.readouterr()  # what the test printed before is not this command's output
        with pytest.raises(SystemExit) as exc:
            cli.run(main, args_cls, argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, exc.value.code
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
        return lines[0]

    return check


@pytest.fixture
def kill_after_saves(monkeypatch):
    """``arm(n)`` makes the n-th checkpoint save raise KeyboardInterrupt once written (a kill right
    after a good checkpoint); ``disarm()`` restores the real save."""
    from rlgen import checkpoint

    real = checkpoint.save

    def arm(n):
        saved = []

        def save_then_die(*a, **kw):
            out = real(*a, **kw)
            saved.append(1)
            if len(saved) == n:
                raise KeyboardInterrupt
            return out

        monkeypatch.setattr(checkpoint, "save", save_then_die)

    def disarm():
        monkeypatch.setattr(checkpoint, "save", real)

    return arm, disarm


@pytest.fixture(autouse=True)
def _denormals_kept():
    """An Atari DQN run flushes denormals for its process (rlgen.machine.flush_denormals); tests stay independent."""
    yield
    torch.set_flush_denormal(False)
