import json
import math

import pytest
import torch

from rlgen import checkpoint
from rlgen.errors import UsageError
from rlgen.gen import pixelcnn as pc
from rlgen.gen.common import load_sampler


def tiny(gated, shape=(1, 6, 6), likelihood="bernoulli", n_classes=0, layers=2, channels=8, seed=0, **kw):
    torch.manual_seed(seed)
    if gated:
        return pc.GatedPixelCNN(shape, likelihood, channels=channels, layers=layers, head_channels=16,
                                n_classes=n_classes, **kw)
    return pc.PixelCNN(shape, likelihood, channels=channels, layers=layers, first_kernel=3, head_channels=16,
                       n_classes=n_classes, **kw)


def input_grads(model, x, i, j, channel=0):
    """|d logits(channel, i, j) / d x| for every input pixel and channel, summed over the batch of independent
    images (so a ReLU that happens to be off for one input does not hide a connection), shape (C, H, W)."""
    x = x.clone().requires_grad_(True)
    c, h, w = model.image_shape
    logits = model.logits(x).reshape(len(x), model.levels, c, h, w)
    logits[:, :, channel, i, j].sum().backward()
    return x.grad.abs().sum(0)


@pytest.mark.parametrize("gated", [False, True])
def test_causal_grey(gated):
    model = tiny(gated, layers=3)
    x = torch.rand(4, 1, 6, 6)
    for i in range(6):
        for j in range(6):
            g = input_grads(model, x, i, j).flatten()
            pos = i * 6 + j
            assert torch.all(g[pos:] == 0), (i, j)  # the pixel itself and everything after it


@pytest.mark.parametrize("gated", [False, True])
def test_causal_rgb_channel_order(gated):
    model = tiny(gated, shape=(3, 4, 4), likelihood="categorical", channels=12, layers=2)
    x = torch.rand(8, 3, 4, 4)
    for i in range(4):
        for j in range(4):
            for c in range(3):
                g = input_grads(model, x, i, j, channel=c)
                flat = g.permute(1, 2, 0).reshape(-1)  # raster order, R G B within a pixel
                pos = (i * 4 + j) * 3 + c
                assert torch.all(flat[pos:] == 0), (i, j, c)
                if c > 0:  # G sees R, B sees R and G of the same pixel
                    assert torch.all(g[:c, i, j] > 0), (i, j, c)


def test_rgb_masks():
    a = pc.conv_mask(6, 3, 2, 3, 1, "A", 3)
    b = pc.conv_mask(6, 3, 2, 3, 1, "B", 3)
    go = torch.arange(6) % 3
    for o in range(6):
        for i in range(3):
            assert a[o, i, 1, 1] == float(i < go[o]) and b[o, i, 1, 1] == float(i <= go[o])
    for m in (a, b):
        assert torch.all(m[:, :, 0] == 1) and torch.all(m[:, :, 1, 0] == 1) and torch.all(m[:, :, 1, 2] == 0)
    assert torch.all(pc.conv_mask(4, 4, 2, 3, 1, None, 1) == 1)  # the vertical stack: shifted, not masked


def test_gated_with_a_wider_first_layer_is_causal_without_blind_spot_and_samples_exactly():
    model = tiny(True, shape=(1, 7, 7), layers=5, first_kernel=5, n_classes=3)
    x = torch.rand(8, 1, 7, 7)
    for i in range(7):
        for j in range(7):
            g = input_grads(model, x, i, j).flatten()
            pos = i * 7 + j
            assert torch.all(g[pos:] == 0) and torch.all(g[:pos] > 0), (i, j)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    gen = torch.Generator().manual_seed(1)
    fast = model.sample(2, gen, y=torch.tensor([0, 2]))
    assert torch.equal(fast, model.sample_naive(2, torch.Generator().manual_seed(1), y=torch.tensor([0, 2])))


def test_gated_has_no_blind_spot_and_pixelcnn_has_one():
    x = torch.rand(8, 1, 5, 5)
    gated = tiny(True, shape=(1, 5, 5), layers=6)
    for i in range(5):
        for j in range(5):
            g = input_grads(gated, x, i, j).flatten()
            assert torch.all(g[:i * 5 + j] > 0), (i, j)  # every earlier pixel reaches the output
    plain = tiny(False, shape=(1, 5, 5), layers=6)
    g = input_grads(plain, x, 3, 1)[0]
    assert g[2, 0] > 0 and g[2, 2] > 0 and g[2, 3] == 0  # up-right of the diagonal is never seen


@pytest.mark.parametrize("gated", [False, True])
def test_row_logits_equal_full_logits(gated):
    model = tiny(gated, shape=(1, 28, 28), layers=3, channels=16, n_classes=10)
    x = (torch.rand(3, 1, 28, 28) > 0.7).float()
    y = torch.tensor([1, 5, 9])
    with model.sampling():
        full = model.logits(x, y)
        p = model.canvas_pad
        canvas = torch.nn.functional.pad(x, (0, 0, p, 0))
        state = model._init_state(canvas, y)
        for i in range(28):
            model._begin_row(state, i)
            assert torch.equal(model._row_logits(state, i)[:, :, 0], full[:, :, i]), i


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("case", ["binary", "rgb", "conditional"])
def test_fast_sampler_equals_naive(gated, case):
    if case == "rgb":
        model, n = tiny(gated, shape=(3, 4, 4), likelihood="categorical", channels=12), 3
    else:
        model, n = tiny(gated, shape=(1, 7, 7), n_classes=3 if case == "conditional" else 0), 1
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # confident probabilities, so a wrong logit would change pixels
    fast = model.sample(n, torch.Generator().manual_seed(3))
    naive = model.sample_naive(n, torch.Generator().manual_seed(3))
    assert torch.equal(fast, naive)
    assert not torch.equal(fast, model.sample(n, torch.Generator().manual_seed(4)))
    known = fast.clone()
    assert torch.equal(model.complete(known, 3, torch.Generator().manual_seed(5))[:, :, :3], known[:, :, :3])
    assert torch.equal(model.complete(known, 3, torch.Generator().manual_seed(5)),
                       model.complete(known, 3, torch.Generator().manual_seed(5), naive=True))


def test_nll_by_hand():
    model = tiny(False, shape=(1, 2, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head2.bias.fill_(0.5)  # every pixel independently on with probability σ(0.5)
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    p = 1 / (1 + math.exp(-0.5))
    expected = -(3 * math.log(p) + math.log(1 - p))
    assert model.nll(x).item() == pytest.approx(expected, rel=1e-6)
    cat = tiny(True, shape=(3, 2, 2), likelihood="categorical", channels=6)
    with torch.no_grad():
        for p in cat.parameters():
            p.zero_()
    x = torch.randint(0, 256, (1, 3, 2, 2)).float() / 255
    assert cat.nll(x).item() == pytest.approx(12 * math.log(256), rel=1e-6)  # uniform: 8 bits per dimension
    with pytest.raises(UsageError, match="binary"):
        model.nll(torch.full((1, 1, 2, 2), 0.5))


def test_train_resume_checkpoint_roundtrip(run_dir, kill_after_saves, capsys):
    arm, disarm = kill_after_saves
    base = dict(width=8, layers=2, head_channels=16, epochs=3, batch_size=16, lr=0.02, train_limit=128, val_size=64,
                checkpoint_every=1, samples=4, completions=2, conditional=True, run_dir=str(run_dir))
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        pc.main(pc.Args(**base))
    disarm()
    ckpt = checkpoint.load(run_dir)
    assert (ckpt["step"], ckpt["epoch"]) == (8, 1)  # --checkpoint-every counts epochs, as --epochs does
    summary = pc.main(pc.Args(resume=str(run_dir)))
    assert summary["updates"] == 24 and summary["epochs"] == 3  # 8 steps per epoch, continued from step 8
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [10, 20]
    vals = [r["eval/val_nll"] for r in rows if "eval/val_nll" in r]
    assert len(vals) == 3 and vals[-1] < vals[0]
    assert summary["test_nll_nats"] < 0.8 * 784 * math.log(2)  # far better than a coin per pixel
    # The run ends with its result in words and units, then the run folder.
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == (f"test NLL {summary['test_nll_nats']:.2f} nats per image "
                       f"({summary['test_bits_per_dim']:.3f} bits/dim), exact, on 1,000 test images; 24 updates in "
                       f"{summary['train_seconds'] / 60:.1f} min")
    assert "steps" not in summary and "train_minutes" not in summary
    assert all("train_minutes" not in r for r in rows)
    assert all("time/train_seconds" in r for r in rows if "train/loss" in r)
    assert out[-1] == f"run folder: {run_dir}"
    for name in ("samples.png", "samples_by_class.png", "completions.png", "summary.json"):
        assert (run_dir / name).exists()
    # The checkpoint rebuilds the model: same test NLL, same samples for the same seed.
    ckpt = checkpoint.load(run_dir)
    model = pc.sampler_from_checkpoint(ckpt, torch.device("cpu"))
    args, info = pc.resolve(pc.Args(**{**base, "conditional": True}))
    test_x = pc.to_model_input(info["test"], args)
    assert pc.evaluate_nll(model, test_x, info["test_labels"], torch.device("cpu")) == pytest.approx(
        summary["test_nll_nats"], rel=1e-6)
    loaded, _ = load_sampler(run_dir)
    a = loaded.sample(3, torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, model.sample(3, torch.Generator().manual_seed(0)))
    assert torch.equal(a, model.sample_naive(3, torch.Generator().manual_seed(0)))


def test_resume_with_more_epochs_ends_at_the_new_budget(run_dir, kill_after_saves, bad_input):
    arm, disarm = kill_after_saves
    base = dict(width=8, layers=1, head_channels=8, epochs=2, batch_size=16, train_limit=64, checkpoint_every=1,
                samples=2, completions=1, run_dir=str(run_dir))
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        pc.main(pc.Args(**base))
    disarm()
    ckpt = checkpoint.load(run_dir)
    assert ckpt["step"] == 4 and "optimizer" in ckpt and "opt" not in ckpt
    before = (run_dir / "checkpoint.pt").read_bytes()
    for argv in (["--gated"], ["--batch-size", "8"], ["--data", "digits"]):
        bad_input(pc.main, pc.Args, ["--resume", str(run_dir), *argv], argv[0])
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    summary = pc.main(pc.Args(resume=str(run_dir), epochs=3))  # 4 steps per epoch
    assert (summary["updates"], summary["epochs"], summary["resumes"]) == (12, 3, 1)
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 3
    # The finished run's checkpoint keeps its training state, so it can go on again.
    summary = pc.main(pc.Args(resume=str(run_dir), epochs=4))
    assert (summary["updates"], summary["epochs"], summary["resumes"]) == (16, 4, 2)
    assert summary["eval_seconds"] > 0


def test_bad_input(bad_input):
    bad_input(pc.main, pc.Args, ["--binarize", "none", "--likelihood", "bernoulli"], "binary")
    bad_input(pc.main, pc.Args, ["--kernel", "4"], "odd")
    bad_input(pc.main, pc.Args, ["--gated", "--first-kernel", "6"], "odd")
    bad_input(pc.main, pc.Args, ["--conditional", "--sample-class", "12"], "out of range")
    model = tiny(True, n_classes=10)
    with pytest.raises(UsageError, match="out of range"):
        model.sample(2, y=12)


def test_width_flag_log_every_and_a_model_saved_under_the_old_flag_name(run_dir, capsys, bad_input):
    """PixelCNN's width is --width, as the GAN's (the VAE's --channels is a list of widths); --log-every counts
    optimizer steps (the loss is logged within an epoch); --checkpoint-every counts epochs, as the budget does."""
    from rlgen import cli

    with pytest.raises(SystemExit):
        cli.run(pc.main, pc.Args, ["--channels", "8"])
    assert "--channels" in capsys.readouterr().err
    bad_input(pc.main, pc.Args, ["--data", "faces", "--likelihood", "categorical", "--width", "8",
                                 "--run-dir", str(run_dir)], "--width and --head-channels divisible by 3")
    summary = pc.main(pc.Args(width=8, layers=1, head_channels=8, epochs=1, batch_size=16, train_limit=64,
                              log_every=3, samples=0, completions=0, run_dir=str(run_dir)))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert summary["updates"] == 4 and [r["step"] for r in rows if "train/loss" in r] == [3]
    ckpt = checkpoint.load(run_dir)
    assert ckpt["args"]["width"] == 8 and "channels" not in ckpt["args"]
    ckpt["args"]["channels"] = ckpt["args"].pop("width")
    model = pc.sampler_from_checkpoint(ckpt, torch.device("cpu"))
    assert model.stem.weight.shape[0] == 16  # 2h channels of the residual stream, h = 8
