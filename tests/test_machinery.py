"""The shared machinery: CLI from dataclasses, tracker, checkpoints, backbones, moving averages."""

import copy
import dataclasses
import json
import os
from typing import Literal

import numpy as np
import pytest
import torch

from rlgen import checkpoint, cli
from rlgen.errors import UsageError
from rlgen.nets import ConvDecoder, QHead, QNetwork, flatten_parameters, make_backbone, polyak_update, ramped_tau
from rlgen.plots import write_gif
from rlgen.rl.replay import ReplayBuffer
from rlgen.schedules import linear_schedule
from rlgen.track import Tracker, read_metrics, resolve_wandb_mode


@dataclasses.dataclass
class _Args:
    alpha_rate: float = 0.5
    """How fast alpha moves."""
    name: str | None = None
    """A name."""
    flag: bool = True
    """A switch."""
    mode: Literal["a", "b"] = "a"
    """A choice."""


def test_cli_docstrings_become_help_and_flags_parse():
    parser = cli.build_parser(_Args)
    text = parser.format_help()
    assert "--alpha-rate" in text and "How fast alpha moves." in text
    args = cli.parse(_Args, ["--alpha-rate", "0.25", "--no-flag", "--mode", "b", "--name", "x"])
    assert args == _Args(alpha_rate=0.25, name="x", flag=False, mode="b")


def test_cli_usage_error_is_one_line_and_exit_2(capsys):
    def main(args):
        raise UsageError(f"--alpha-rate {args.alpha_rate} must be positive")

    with pytest.raises(SystemExit) as exc:
        cli.run(main, _Args, ["--alpha-rate", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --alpha-rate 3.0 must be positive"


def test_linear_schedule_by_hand():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 1000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0, 0) == 0.1


def test_polyak_update_by_hand():
    torch.manual_seed(0)
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = 0.9 * target.weight.detach().clone() + 0.1 * online.weight.detach()
    polyak_update(target, online, tau=0.1)
    assert torch.allclose(target.weight, expected)
    polyak_update(target, online, tau=1.0)
    assert torch.equal(target.weight, online.weight) and torch.equal(target.bias, online.bias)
    # the ramped decay of weight averages: 1 − min(d, (1 + t) / (10 + t))
    assert ramped_tau(0.999, 0) == pytest.approx(0.9)
    assert ramped_tau(0.999, 90) == pytest.approx(1 - 91 / 100)
    assert ramped_tau(0.999, 10**6) == pytest.approx(0.001)



def test_flat_parameters_give_the_same_forward_gradients_and_adam_step():
    torch.manual_seed(0)
    net = QNetwork(make_backbone("mlp", (4,), hidden=[16, 8]), 3)
    ref = copy.deepcopy(net)
    flat = flatten_parameters(net)
    assert flat.numel() == sum(p.numel() for p in ref.parameters())
    x = torch.randn(5, 4)
    assert torch.equal(net(x), ref(x))
    for _ in range(2):  # the second pass checks that zero_() then backward does not accumulate stale gradients
        flat.grad.zero_()
        net(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    assert torch.equal(flat.grad, torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
    torch.optim.Adam([flat], lr=0.1).step()
    torch.optim.Adam(ref.parameters(), lr=0.1).step()
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
        assert a.data_ptr() >= flat.data_ptr()  # still views into the buffer
    state = {k: v + 1 for k, v in ref.state_dict().items()}
    net.load_state_dict(state)  # in place: the views and the buffer stay one
    assert torch.equal(flat.detach(), torch.cat([v.reshape(-1) for v in state.values()]))

@pytest.mark.parametrize("name,shape,out_dim", [
    ("mlp", (4,), 256), ("nature_cnn", (4, 84, 84), 512), ("convnet", (1, 28, 28), 256),
    ("convnet", (3, 64, 64), 256), ("resnet18", (3, 32, 32), 512),
])
def test_backbone_shapes(name, shape, out_dim):
    net = make_backbone(name, shape)
    assert net.out_dim == out_dim
    assert net(torch.zeros(3, *shape)).shape == (3, out_dim)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 30, 30)])
def test_conv_decoder_mirrors_the_encoder(shape):
    assert ConvDecoder(8, shape)(torch.zeros(2, 8)).shape == (2, *shape)


def test_backbone_errors():
    with pytest.raises(UsageError, match="unknown backbone 'vgg'"):
        make_backbone("vgg", (3, 32, 32))
    with pytest.raises(UsageError, match="takes images"):
        make_backbone("nature_cnn", (4,))
    with pytest.raises(UsageError):
        make_backbone("nature_cnn", (4, 20, 20))


def test_dueling_head_by_hand():
    head = QHead(2, 3, dueling=True)
    x = torch.tensor([[1.0, -2.0]])
    a = head.adv(x)
    assert torch.allclose(head(x), head.value(x) + a - a.mean())


def test_replay_ring_and_sample():
    buf = ReplayBuffer(5, (2,), gamma=0.9)
    shift = np.array([[0], [0.5]], np.float32)
    buf.start(np.zeros((2, 2), np.float32) + shift)
    for t in range(4):  # two envs per step: 8 transitions into a ring of 5
        obs = np.full((2, 2), t, np.float32) + shift
        buf.add(np.array([t, t]), np.array([1.0, 2.0]), np.array([0, 1]), np.array([0, 0]), obs + 1, obs + 1)
    assert len(buf) == 5 and buf.pos == 3
    # The three newest writes went to slots 0..2 (wrapped), the older two remain in 3..4.
    assert buf.obs[:3, 0].tolist() == [2.5, 3.0, 3.5] and buf.obs[3:, 0].tolist() == [1.5, 2.0]
    batch = buf.sample(64, np.random.default_rng(0))
    assert batch.obs.shape == (64, 2) and batch.actions.dtype == torch.int64
    assert torch.equal(batch.next_obs, batch.obs + 1)
    assert torch.allclose(batch.discounts, torch.where(batch.obs[:, 0] % 1 == 0.5, 0.0, 0.9))
    assert set(batch.obs[:, 0].tolist()) <= {2.5, 3.0, 3.5, 1.5, 2.0}
    fresh = ReplayBuffer(5, (2,))
    fresh.load_state_dict(buf.state_dict())
    assert np.array_equal(fresh.obs, buf.obs) and fresh.pos == buf.pos


def test_checkpoint_atomic_and_safe(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, algo="dqn", args={"lr": 1.0}, step=7, weights=torch.ones(3))
    good = path.read_bytes()

    def broken_save(obj, fh, *a, **k):
        fh.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as if killed while writing

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, algo="dqn", args={}, step=8)
    monkeypatch.undo()
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["checkpoint.pt"]
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode  # as open() would make it, not 0600
    (tmp_path / "plain").unlink()
    ckpt = checkpoint.load(tmp_path, algo="dqn")
    assert ckpt["step"] == 7 and ckpt["args"] == {"lr": 1.0} and torch.equal(ckpt["weights"], torch.ones(3))


def test_checkpoint_load_errors(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        checkpoint.load(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(UsageError, match="truncated or corrupt"):
        checkpoint.load(tmp_path)
    torch.save({"state": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="not an rlgen checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    checkpoint.save(tmp_path / "checkpoint.pt", algo="vae", args={}, step=0)
    with pytest.raises(UsageError, match="expected dqn"):
        checkpoint.load(tmp_path, algo="dqn")
    full = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(full[: len(full) // 2])
    with pytest.raises(UsageError, match="truncated or corrupt"):
        checkpoint.load(tmp_path)


def _gif_frames(path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def test_gif_of_few_colours_is_lossless_and_of_many_keeps_its_frames(tmp_path):
    gen = np.random.default_rng(0)
    palette = gen.integers(0, 256, size=(200, 3), dtype=np.uint8)
    few = [palette[gen.integers(0, 200, size=(12, 10))] for _ in range(4)]
    grey = gen.integers(0, 40, size=(12, 10), dtype=np.uint8)  # 40 more colours, all grey
    write_gif(tmp_path / "few.gif", [*few, grey], fps=10)
    back = _gif_frames(tmp_path / "few.gif")
    assert len(back) == 5 and all(np.array_equal(b, f) for b, f in zip(back, few))
    assert np.array_equal(back[4], np.dstack([grey] * 3))

    # at most 256 colours in each frame, more than 256 in all: each frame gets an exact palette of its own
    many = [gen.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(3)]
    write_gif(tmp_path / "many.gif", many, fps=10)
    back = _gif_frames(tmp_path / "many.gif")
    assert len(back) == 3 and all(np.array_equal(b, f) for b, f in zip(back, many))
    assert sorted(os.listdir(tmp_path)) == ["few.gif", "many.gif"]


def test_tracker_local_files_and_resume_trim(tmp_path):
    tr = Tracker(tmp_path, {"lr": 0.1}, algo="test", wandb_mode="disabled")
    for step in (10, 20, 30):
        tr.log({"train/loss": step / 10}, step)
    tr.finish({"algo": "test", "final": 1.5})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config.pop("machine")["python"] and config == {"algo": "test", "lr": 0.1}
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30]
    assert json.loads((tmp_path / "summary.json").read_text())["final"] == 1.5
    tr = Tracker(tmp_path, {"lr": 0.1}, algo="test", wandb_mode="disabled", resume_step=20)
    tr.log({"train/loss": 9.0}, 25)
    tr.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 25]


def test_wandb_mode_resolution(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode(None) == "disabled"
    assert resolve_wandb_mode("online") == "online"
    with pytest.raises(UsageError, match="--wandb 'cloud'"):
        resolve_wandb_mode("cloud")


def test_wandb_offline_run_leaves_files(tmp_path):
    tr = Tracker(tmp_path, {"lr": 0.1}, algo="test", wandb_mode="offline")
    tr.log({"train/loss": 1.0}, 1)
    tr.finish({"done": True})
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert read_metrics(tmp_path)[0]["train/loss"] == 1.0


def test_wandb_online_without_a_server_falls_back_and_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("RLGEN_WANDB_INIT_TIMEOUT", "3")
    with pytest.warns(UserWarning, match="logging offline instead"):
        tr = Tracker(tmp_path, {"lr": 0.1}, algo="test", wandb_mode="online")
    tr.log({"train/loss": 1.0}, 1)
    tr.finish({"done": True})
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert json.loads((tmp_path / "summary.json").read_text()) == {"done": True}


# -- the tracker's W&B life cycle ---------------------------------------------------------------------------
class _FakeRun:
    """Stands in for a wandb run: records what is logged, at which step, and how the run was finished."""

    def __init__(self):
        self.logged, self.exit_codes, self.summary, self.step = [], [], {}, 0

    def log(self, data, step=None):
        # every row names the run's step itself (W&B's step metric); W&B's own step is only a row counter
        assert step is None and "step" in data, data
        self.logged.append((data["step"], sorted(k for k in data if k != "step")))

    def finish(self, exit_code=None):
        self.exit_codes.append(exit_code)


@pytest.fixture
def fake_wandb(monkeypatch):
    """Every tracker made with W&B on gets a fresh :class:`_FakeRun`; ``runs`` lists them."""
    from rlgen import track

    runs = []

    def init(*a, **kw):
        runs.append(_FakeRun())
        return runs[-1]

    monkeypatch.setattr(track, "_init_wandb", init)
    return runs


def test_a_misspelt_wandb_mode_writes_nothing(tmp_path, monkeypatch, bad_input):
    with pytest.raises(UsageError, match="--wandb 'offlne'"):
        Tracker(tmp_path / "run", {"lr": 0.1}, algo="test", wandb_mode="offlne")
    assert not (tmp_path / "run").exists()
    # Through a command: refused before any data is loaded or folder made, flag or environment alike.
    from rlgen.gen import vae

    bad_input(vae.main, vae.Args, ["--wandb", "offlne", "--run-dir", str(tmp_path / "v")], "--wandb 'offlne'")
    monkeypatch.setenv("WANDB_MODE", "offlne")
    bad_input(vae.main, vae.Args, ["--run-dir", str(tmp_path / "v")], "$WANDB_MODE 'offlne'")
    assert not (tmp_path / "v").exists()


def test_pictures_without_a_step_go_to_the_last_logged_step(tmp_path, fake_wandb):
    from PIL import Image

    png = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(png)
    tr = Tracker(tmp_path / "run", {}, algo="test", wandb_mode="offline")
    tr.log({"train/loss": 1.0}, 10)
    tr.log_image("curve", png)
    tr.log({"eval/fid": 3.0}, 10)  # a final metric at the last training step is still a row of its own
    tr.finish({})
    assert fake_wandb[0].logged == [(10, ["train/loss"]), (10, ["curve"]), (10, ["eval/fid"])]
    assert fake_wandb[0].exit_codes == [None]


@pytest.mark.parametrize("error, code", [(RuntimeError("boom"), 1), (UsageError("bad"), 2), (KeyboardInterrupt(), 130)])
def test_an_escaping_exception_fails_the_wandb_run_with_its_exit_code(tmp_path, fake_wandb, error, code):
    tr = Tracker(tmp_path / "run", {}, algo="test", wandb_mode="offline")
    with pytest.raises(type(error)), tr:
        tr.log({"train/loss": 1.0}, 1)
        raise error
    assert fake_wandb[0].exit_codes == [code]
    assert read_metrics(tmp_path / "run")[0]["train/loss"] == 1.0 and not (tmp_path / "run" / "summary.json").exists()
    with tr:  # finished already: nothing more reaches W&B
        pass
    tr.fail(1)
    assert fake_wandb[0].exit_codes == [code]
    ok = Tracker(tmp_path / "ok", {}, algo="test", wandb_mode="offline")
    with ok:
        ok.finish({"done": 1})
    assert fake_wandb[1].exit_codes == [None]  # a run that finished is not failed on the way out


def test_cli_run_fails_trackers_a_main_left_open(tmp_path, fake_wandb, capsys):
    @dataclasses.dataclass
    class Args:
        fail_with: str = "usage"
        """What to raise."""

    def main(args):
        tracker = Tracker(tmp_path / args.fail_with, {}, algo="test", wandb_mode="offline")  # never finished
        tracker.log({"train/loss": 1.0}, 1)
        raise UsageError("a bad value found late") if args.fail_with == "usage" else ValueError("a bug")

    with pytest.raises(SystemExit) as exc:
        cli.run(main, Args, ["--fail-with", "usage"])
    assert exc.value.code == 2 and fake_wandb[0].exit_codes == [2]
    assert capsys.readouterr().err.strip() == "error: a bad value found late"
    with pytest.raises(ValueError, match="a bug"):
        cli.run(main, Args, ["--fail-with", "bug"])
    assert fake_wandb[1].exit_codes == [1]


def test_an_old_wandb_that_fails_init_says_which_version_is_needed(tmp_path, monkeypatch):
    import warnings

    import wandb

    from rlgen import track

    def old_init(**kw):
        raise TypeError("init() got an unexpected keyword argument 'reinit'")

    monkeypatch.setattr(wandb, "__version__", "0.18.7")
    monkeypatch.setattr(wandb, "init", old_init)
    for mode in ("offline", "online"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tr = Tracker(tmp_path / mode, {}, algo="test", wandb_mode=mode)
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1, messages  # one warning, no offline retry that fails the same way
        assert "wandb 0.18.7" in messages[0] and "wandb>=0.19.10" in messages[0]
        assert tr._wandb is None
        tr.finish({})
    assert track._version_tuple("0.19.10rc1") == (0, 19, 10) >= track.WANDB_MIN_VERSION > (0, 19, 9)


def test_dependency_floors():
    import pathlib
    import re

    from rlgen import track

    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    floors = dict(re.findall(r'^\s*"([A-Za-z0-9_-]+)>=([0-9.]+)"', text, flags=re.M))
    assert floors["torch"] == "2.4"  # fused Adam on the CPU
    assert floors["wandb"] == ".".join(map(str, track.WANDB_MIN_VERSION)) == "0.19.10"  # reinit="create_new"


_DENORMALS = """
import sys, numpy as np, torch
from rlgen.machine import flush_denormals
x = torch.from_numpy(np.full(1 << 22, 0x000AE398, dtype=np.uint32).view(np.float32))  # about 1e-39, by its bits
first = float(x[0] * 1.0)  # one number, in this thread
if sys.argv[1] == "late":
    torch.set_num_threads(2)
    x * 1.0  # OpenMP starts its threads here
flushed = flush_denormals()
torch.set_num_threads(2)
y = x * 1.0  # split across both threads
print(first, flushed, int((y.view(torch.int32) != 0).sum()), float(torch.tensor(1e-30) * 1e-10))
"""


@pytest.mark.parametrize("when", ["early", "late"])
def test_flush_denormals_reaches_the_threads_started_after_it(when):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _DENORMALS, when], capture_output=True, text=True,
                         check=True).stdout.split()
    first, flushed, kept, product = float(out[0]), out[1] == "True", int(out[2]), float(out[3])
    assert first > 0  # denormals are kept by default
    if not flushed:
        pytest.skip("this CPU cannot flush denormals")
    assert product == 0.0  # a result below 1.2e-38 becomes zero (FTZ)
    if when == "early":
        assert kept == 0  # denormal inputs are zeros (DAZ) in every thread
    else:  # a thread started before the call keeps its own flags: its share of the numbers stays denormal
        assert 0 < kept < 1 << 22
