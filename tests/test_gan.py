"""GANs: the losses by hand, DCGAN's layers and init, short runs, the sampler, exact resume and bad input."""

import json
import math

import pytest
import torch
from torch import nn

from rlgen.gen import gan
from rlgen.gen.common import load_sampler
from rlgen.track import read_metrics

TINY = dict(data="mnist5k", arch="dcgan", image_size=16, width=8, batch_size=16, fid_samples=0, device="cpu",
            log_every=2)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- losses by hand ------------------------------------------------------------------------------------
def test_bce_losses_match_hand_computation():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0])
    real_term = -(math.log(sigmoid(0.0)) + math.log(sigmoid(2.0))) / 2
    fake_term = -(math.log(1 - sigmoid(-1.0)) + math.log(1 - sigmoid(1.0))) / 2
    assert gan.bce_d_loss(real, fake).item() == pytest.approx(real_term + fake_term, rel=1e-6)
    # one-sided smoothing: the real target is 0.9, fakes keep 0
    t = 0.9
    smoothed = -sum(t * math.log(sigmoid(r)) + (1 - t) * math.log(1 - sigmoid(r)) for r in (0.0, 2.0)) / 2
    assert gan.bce_d_loss(real, fake, 0.9).item() == pytest.approx(smoothed + fake_term, rel=1e-6)
    # non-saturating G loss: −log σ(s(G(z)))
    assert gan.bce_g_loss(fake).item() == pytest.approx(-(math.log(sigmoid(-1.0)) + math.log(sigmoid(1.0))) / 2,
                                                        rel=1e-6)
    # a D that cannot tell (σ = ½ everywhere) has loss 2 log 2, the equilibrium the collapse rule scales by
    assert gan.bce_d_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(gan.EQUILIBRIUM_D_LOSS["bce"])


def test_non_saturating_loss_keeps_its_gradient_when_d_rejects_every_sample():
    s = torch.tensor([-10.0], requires_grad=True)  # D is sure the sample is fake
    gan.bce_g_loss(s).backward()
    assert s.grad.item() == pytest.approx(sigmoid(-10.0) - 1.0)  # ≈ −1, where log(1 − σ(s)) gives ≈ −4.5e-5
    saturating = torch.tensor([-10.0], requires_grad=True)
    torch.log(1 - torch.sigmoid(saturating)).sum().backward()
    assert abs(saturating.grad.item()) < 1e-4


def test_lsgan_losses_match_hand_computation():
    real, fake = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    # ½ mean((s_r − 1)²) + ½ mean(s_f²) = ½·(0 + 0.25)/2 + ½·(0 + 1)/2
    assert gan.lsgan_d_loss(real, fake).item() == pytest.approx(0.0625 + 0.25)
    assert gan.lsgan_d_loss(real, fake, 0.9).item() == pytest.approx(0.5 * (0.01 + 0.16) / 2 + 0.25)
    assert gan.lsgan_g_loss(fake).item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)
    assert gan.lsgan_d_loss(torch.full((4,), 0.5), torch.full((4,), 0.5)).item() == pytest.approx(
        gan.EQUILIBRIUM_D_LOSS["lsgan"])


# -- DCGAN as Radford et al. describe it ------------------------------------------------------------------
@pytest.mark.parametrize("size, channels, width, n_layers", [(32, 1, 16, 4), (64, 3, 8, 5)])
def test_dcgan_shapes_ranges_batchnorm_placement_and_init(size, channels, width, n_layers):
    torch.manual_seed(0)
    G = gan.Generator("dcgan", 100, (channels, size, size), width)
    D = gan.Discriminator("dcgan", (channels, size, size), width)
    z = torch.randn(5, 100)
    x = G(z)
    assert x.shape == (5, channels, size, size) and x.min() >= -1 and x.max() <= 1
    images = G.decode(z)
    assert images.min() >= 0 and images.max() <= 1
    assert D(x).shape == (5,)

    g_layers, d_layers = list(G.net), list(D.net)
    g_convs = [i for i, m in enumerate(g_layers) if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [i for i, m in enumerate(d_layers) if isinstance(m, nn.Conv2d)]
    assert len(g_convs) == len(d_convs) == n_layers
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Upsample)) for m in g_layers + d_layers)
    # G: BatchNorm + ReLU after every layer but the output, which is Tanh
    for i in g_convs[:-1]:
        assert isinstance(g_layers[i + 1], nn.BatchNorm2d) and isinstance(g_layers[i + 2], nn.ReLU)
    assert isinstance(g_layers[g_convs[-1] + 1], nn.Tanh) and len(g_layers) == g_convs[-1] + 2
    assert all(g_layers[i].stride == (2, 2) for i in g_convs[1:])
    # D: no BatchNorm on the input layer, BatchNorm on the others, LeakyReLU(0.2), a single score at the end
    assert isinstance(d_layers[d_convs[0] + 1], nn.LeakyReLU)
    for i in d_convs[1:-1]:
        assert isinstance(d_layers[i + 1], nn.BatchNorm2d) and isinstance(d_layers[i + 2], nn.LeakyReLU)
    assert all(m.negative_slope == 0.2 for m in d_layers if isinstance(m, nn.LeakyReLU))
    assert all(d_layers[i].stride == (2, 2) for i in d_convs[:-1])
    assert d_convs[-1] == len(d_layers) - 1 and d_layers[-1].out_channels == 1
    # N(0, 0.02) weights, BatchNorm scales around 1 with shifts 0
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
                        + [m.weight.flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.mean().item()) < 2e-3 and weights.std().item() == pytest.approx(0.02, rel=0.05)
    bns = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([m.weight.flatten() for m in bns])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01) and scales.std().item() < 0.04
    assert all((m.bias == 0).all() for m in bns)


def test_per_data_defaults_follow_the_papers():
    dc = gan.resolve(gan.Args(data="faces", recipe="dcgan"))
    assert (dc.arch, dc.image_size, dc.lr, dc.beta1, dc.label_smoothing) == ("dcgan", 32, 2e-4, 0.5, 0.9)
    assert gan.resolve(gan.Args(data="faces", recipe="dcgan", label_smoothing=1.0)).label_smoothing == 1.0
    faces = gan.resolve(gan.Args(data="faces"))  # the recipe that measured best there
    assert (faces.recipe, faces.loss, faces.diffaugment, faces.label_smoothing) == ("modern", "hinge", "translation",
                                                                                   1.0)
    assert gan.resolve(gan.Args(data="faces", arch="mlp")).recipe == "dcgan"
    assert gan.resolve(gan.Args(data="fashion-mnist")).recipe == "modern"
    assert gan.resolve(gan.Args(data="mnist5k")).arch == "mlp"
    assert gan.resolve(gan.Args(data="mnist5k", arch="dcgan")).image_size == 32  # 28 px resized to 32
    assert gan.resolve(gan.Args(data="folder:/x", arch="dcgan")).image_size == 64


def test_d_loss_floor_under_label_smoothing():
    assert gan.d_loss_floor("bce", 1.0) == 0.0 and gan.d_loss_floor("lsgan", 0.9) == 0.0
    # the best bce D with target 0.9 outputs σ = 0.9 on real images and 0 on fakes
    best = gan.bce_d_loss(torch.tensor([math.log(9.0)]), torch.tensor([-50.0]), 0.9).item()
    assert gan.d_loss_floor("bce", 0.9) == pytest.approx(best, abs=1e-6)


def test_collapse_monitor_fires_once_after_patience():
    m = gan.CollapseMonitor(threshold=0.1, patience=3, alpha=1.0)
    assert [m.update(v, s) for s, v in enumerate([0.05, 0.05, 0.5, 0.05, 0.05, 0.05, 0.05], 1)] == \
        [False, False, False, False, False, True, False]
    assert m.collapsed_at == 6 and m.collapsed


# -- short runs -------------------------------------------------------------------------------------------
def test_short_run_writes_summary_grids_gif_curves_and_a_sampler(run_dir):
    s = gan.main(gan.Args(run_dir=str(run_dir), total_steps=6, sample_every=3, **TINY))
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved == s
    for key in ("algo", "data", "loss", "arch", "image_size", "seed", "updates", "epochs", "wall_seconds",
                "train_seconds", "d_loss", "g_loss", "fid", "fid_floor", "class_entropy"):
        assert key in s, key
    assert "steps" not in s and "train_minutes" not in s  # one name per quantity: updates, train_seconds
    assert (s["algo"], s["arch"], s["image_size"], s["updates"]) == ("gan", "dcgan", 16, 6)
    assert s["epochs"] == pytest.approx(6 * 16 / 4000)
    for name in ("samples.png", "training.gif", "losses.png", "checkpoint.pt", "samples/step_000000.png",
                 "samples/step_000003.png", "samples/step_000006.png"):
        assert (run_dir / name).exists(), name
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(0 <= r["train/d_real"] <= 1 and 0 <= r["train/d_fake"] <= 1 and r["train/d_collapsed"] == 0
               for r in rows)

    # the checkpoint's generator: same seed, same images; eval mode; in [0, 1]
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    a = gan.sampler_from_checkpoint(ckpt, torch.device("cpu"))
    b, _ = load_sampler(run_dir)
    assert not a.training and a.latent_dim == 100
    x1 = a.sample(9, generator=torch.Generator().manual_seed(5))
    x2 = b.sample(9, generator=torch.Generator().manual_seed(5))
    assert x1.shape == (9, 1, 16, 16) and torch.equal(x1, x2) and 0 <= x1.min() and x1.max() <= 1
    assert not torch.equal(x1, a.sample(9, generator=torch.Generator().manual_seed(6)))
    assert a.decode(torch.zeros(2, 100)).shape == (2, 1, 16, 16)


def test_mlp_lsgan_with_k_steps_smoothing_and_epochs(run_dir):
    s = gan.main(gan.Args(run_dir=str(run_dir), data="mnist5k", arch="mlp", loss="lsgan", width=16, batch_size=20,
                          d_steps=2, label_smoothing=0.9, epochs=0.03, fid_samples=0, device="cpu", log_every=1))
    assert (s["updates"], s["image_size"], s["loss"]) == (3, 28, "lsgan")  # ceil(0.03 · 4000 / (20 · 2)) = 3
    assert s["epochs"] == pytest.approx(3 * 2 * 20 / 4000)
    model, _ = load_sampler(run_dir)
    assert model.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)


def test_minutes_budget_stops_at_a_step_boundary_and_logs_the_last_steps(run_dir):
    s = gan.main(gan.Args(run_dir=str(run_dir), total_steps=1000, minutes=1e-4, **{**TINY, "log_every": 500}))
    assert s["stopped_by_minutes"] and 1 <= s["updates"] < 1000
    assert read_metrics(run_dir)[-1]["step"] == s["updates"]
    assert (run_dir / f"samples/step_{s['updates']:06d}.png").exists()


def test_collapse_warning_is_raised_and_logged(run_dir):
    with pytest.warns(RuntimeWarning, match="collapsed"):
        s = gan.main(gan.Args(run_dir=str(run_dir), total_steps=4, collapse_threshold=100.0, collapse_patience=3,
                              **TINY))
    assert s["d_collapsed_at"] == 3
    assert [r["train/d_collapsed"] for r in read_metrics(run_dir)] == [0, 1]


def test_sample_quality_lands_in_the_summary(run_dir, monkeypatch):
    seen = {}

    def fake_quality(data, samples, image_size, n=None):
        seen.update(data=data, shape=tuple(samples.shape), lo=samples.min().item(), hi=samples.max().item())
        return {"fid": 12.5, "fid_floor": 5.0, "class_entropy": 2.2, "classifier_accuracy": 0.97}

    monkeypatch.setattr(gan, "sample_quality", fake_quality)
    s = gan.main(gan.Args(run_dir=str(run_dir), total_steps=2, **{**TINY, "fid_samples": 12}))
    assert seen["data"] == "mnist5k" and seen["shape"] == (12, 1, 16, 16) and 0 <= seen["lo"] <= seen["hi"] <= 1
    assert (s["fid"], s["fid_floor"], s["class_entropy"], s["classifier_accuracy"]) == (12.5, 5.0, 2.2, 0.97)


def test_batchnorm_recalibration_is_the_exact_mean_over_its_noise_batches():
    torch.manual_seed(0)
    G = gan.Generator("dcgan", 8, (1, 16, 16), 4)
    gan.recalibrate_batchnorm(G, batches=3, batch_size=5, seed=7)
    bn = G.net[1]
    assert not G.training and bn.momentum == 0.1  # momentum restored
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        pre = [G.net[0](torch.randn(5, 8, generator=gen).reshape(5, 8, 1, 1)) for _ in range(3)]
    means = torch.stack([x.mean((0, 2, 3)) for x in pre]).mean(0)
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in pre]).mean(0)
    assert torch.allclose(bn.running_mean, means, atol=1e-6)
    assert torch.allclose(bn.running_var, variances, atol=1e-6)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    gan.recalibrate_batchnorm(G, batches=3, batch_size=5, seed=7)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # deterministic


def test_weight_average_is_what_the_checkpoint_samples(run_dir):
    s = gan.main(gan.Args(run_dir=str(run_dir), total_steps=5, ema=0.9, **TINY))
    assert s["ema"] == 0.9
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    raw, avg = ckpt["generator"], ckpt["ema_generator"]
    assert not torch.equal(raw["net.0.weight"], avg["net.0.weight"])
    model = gan.sampler_from_checkpoint(ckpt, torch.device("cpu"))
    assert torch.equal(model.state_dict()["net.0.weight"], avg["net.0.weight"])
    # Its BatchNorm statistics are its own, not the raw G's
    assert not torch.equal(raw["net.1.running_mean"], avg["net.1.running_mean"])


def test_resume_after_a_kill_matches_the_uninterrupted_run(tmp_path, run_dir, kill_after_saves):
    common = dict(total_steps=12, checkpoint_every=4, sample_every=4, ema=0.9, **TINY)
    full = gan.main(gan.Args(run_dir=str(tmp_path / "full"), **common))
    arm, disarm = kill_after_saves
    arm(2)  # killed right after the checkpoint at step 8
    with pytest.raises(KeyboardInterrupt):
        gan.main(gan.Args(run_dir=str(run_dir), **common))
    disarm()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 8
    resumed = gan.main(gan.Args(resume=str(run_dir)))
    for key in ("updates", "epochs", "d_loss", "g_loss", "d_real", "d_fake"):
        assert resumed[key] == full[key], key
    a = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["history"], b["history"])
    for net in ("generator", "discriminator", "ema_generator"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    assert [r["step"] for r in read_metrics(run_dir)] == [r["step"] for r in read_metrics(tmp_path / "full")]


def test_resume_with_a_larger_budget_ends_exactly_there(tmp_path, kill_after_saves, bad_input):
    run_dir = tmp_path / "run"
    arm, disarm = kill_after_saves
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        gan.main(gan.Args(run_dir=str(run_dir), total_steps=6, checkpoint_every=3, **TINY))
    disarm()
    before = (run_dir / "checkpoint.pt").read_bytes()
    for argv in (["--batch-size", "32"], ["--data", "faces"], ["--loss", "lsgan"]):
        bad_input(gan.main, gan.Args, ["--resume", str(run_dir), *argv], argv[0])
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    s = gan.main(gan.Args(resume=str(run_dir), total_steps=10))
    assert (s["updates"], s["resumes"]) == (10, 1)
    assert json.loads((run_dir / "summary.json").read_text())["updates"] == 10
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 10 and saved["args"]["total_steps"] == 10 and len(saved["history"]) == 10
    assert [r["step"] for r in read_metrics(run_dir)] == [2, 4, 6, 8, 10]
    # --epochs is a budget too: a resume that raises it sets the steps from it
    s = gan.main(gan.Args(resume=str(run_dir), epochs=0.0558))  # ceil(0.0558 · 4000 / 16) = 14
    assert s["updates"] == 14 and s["resumes"] == 2


# -- the modern recipe's parts: hinge, R1, spectral norm, DiffAugment ------------------------------------------
def test_hinge_losses_match_hand_computation():
    real, fake = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([-2.0, 0.0, 0.3])
    # E[max(0, 1 − s(x))] + E[max(0, 1 + s(G(z)))]
    want = (0.5 + 0.0 + 2.0) / 3 + (0.0 + 1.0 + 1.3) / 3
    assert gan.hinge_d_loss(real, fake).item() == pytest.approx(want, rel=1e-6)
    assert gan.hinge_g_loss(fake).item() == pytest.approx(-(-2.0 + 0.0 + 0.3) / 3, rel=1e-6)
    assert gan.hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == gan.EQUILIBRIUM_D_LOSS["hinge"]
    assert gan.d_loss_floor("hinge", 1.0) == 0.0


def test_r1_penalty_matches_hand_computation():
    # a linear D(x) = w·x + b has ∇ₓD = w for every image: the penalty is ½‖w‖², and its gradient in w is w
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    x = torch.randn(5, 3, 2, 2)
    pen = gan.r1_penalty(lin, x)
    w = lin[1].weight
    assert pen.item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-6)
    pen.backward()
    assert torch.allclose(w.grad, w.detach(), atol=1e-6) and lin[1].bias.grad is None  # b does not enter ∇ₓD
    # D(x) = Σ x²: ∇ = 2x, so the penalty is ½·mean over images of ‖2x‖²
    square = gan.r1_penalty(lambda t: t.pow(2).flatten(1).sum(1), x)
    assert square.item() == pytest.approx((0.5 * (2 * x).pow(2).flatten(1).sum(1)).mean().item(), rel=1e-5)


def test_spectral_norm_brings_every_layers_largest_singular_value_to_one():
    torch.manual_seed(0)
    D = gan.Discriminator("dcgan", (3, 32, 32), 16, spectral_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())  # Miyato et al.'s D has none
    for _ in range(30):  # each training forward refines the estimate by one power iteration
        D(torch.randn(4, 3, 32, 32))
    D.eval()
    layers = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(layers) == 4
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05), sigma
        raw = torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), ord=2).item()
        assert raw != pytest.approx(1.0, abs=0.05)  # the stored weight itself is not normalised


def test_diffaugment_is_differentiable_and_seeded():
    from rlgen.augment import diff_augment

    G = nn.Linear(8, 3 * 16 * 16)
    x = torch.tanh(G(torch.randn(6, 8))).reshape(6, 3, 16, 16)
    out = diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(3))
    out.pow(2).sum().backward()
    assert G.weight.grad is not None and G.weight.grad.abs().sum() > 0  # gradients reach G through every op
    again = diff_augment(x.detach(), "color,translation,cutout", torch.Generator().manual_seed(3))
    assert torch.equal(out.detach(), again)
    assert not torch.equal(again, diff_augment(x.detach(), "color,translation,cutout",
                                               torch.Generator().manual_seed(4)))


def test_diffaugment_translation_and_cutout_by_hand():
    from rlgen.augment import diff_augment, random_shift

    x = torch.rand(5, 3, 16, 16) * 2 - 1
    # translation: up to ⅛ of 16 = 2 px, zeros where the image moved away (the draws are random_shift's own)
    t = diff_augment(x, "translation", torch.Generator().manual_seed(1))
    assert torch.equal(t, random_shift(x, 2, torch.Generator().manual_seed(1), fill="zeros"))
    # cutout: a zeroed 8×8 square (clipped at the border) centred at a random pixel, the rest untouched
    c = diff_augment(x, "cutout", torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    cy, cx = torch.randint(0, 16, (5,), generator=g), torch.randint(0, 16, (5,), generator=g)
    for k in range(5):
        mask = torch.ones(16, 16)
        top, left = int(cy[k]) - 4, int(cx[k]) - 4
        mask[max(top, 0): top + 8, max(left, 0): left + 8] = 0
        assert torch.equal(c[k], x[k] * mask)


def test_recipes_resolve_and_flags_given_beat_them():
    modern = gan.resolve(gan.Args(data="faces", recipe="modern"))
    got = (modern.loss, modern.spectral_norm, modern.diffaugment, modern.label_smoothing)
    assert got == ("hinge", False, "translation", 1.0) and (modern.ema, modern.r1) == (0.999, 0.1)
    picked = gan.resolve(gan.Args(data="faces", recipe="modern", diffaugment="cutout,color"))
    assert picked.diffaugment == "color,cutout"  # DiffAugment's own order
    ttur = gan.resolve(gan.Args(data="faces", recipe="modern", lr_d=4e-4))
    assert (ttur.lr_g, ttur.lr_d) == (2e-4, 4e-4)
    exact = gan.resolve(gan.Args(data="faces", recipe="dcgan"))
    assert (exact.loss, exact.spectral_norm, exact.diffaugment, exact.r1, exact.beta1) == ("bce", False, "none", 0.0,
                                                                                           0.5)
    # a data default made for bce (faces: label smoothing 0.9) does not carry over to the hinge loss
    assert gan.resolve(gan.Args(data="faces", loss="hinge")).label_smoothing == 1.0


def test_tiny_run_of_the_modern_recipe_with_hinge_sn_r1_and_two_time_scales(run_dir):
    s = gan.main(gan.Args(run_dir=str(run_dir), recipe="modern", loss="hinge", spectral_norm=True, r1=1.0,
                          r1_every=2, lr_d=4e-4, total_steps=4, **TINY))
    assert s["updates"] == 4 and s["loss"] == "hinge" and s["spectral_norm"] and s["r1"] == 1.0
    assert s["diffaugment"] == "translation" and s["recipe"] == "modern"
    assert (s["lr_g"], s["lr_d"]) == (2e-4, 4e-4) and math.isfinite(s["d_loss"])
    sampler, _ = load_sampler(run_dir)
    assert sampler.sample(3).shape == (3, 1, 16, 16)
    from rlgen.encoders import load_encoder

    assert load_encoder(run_dir).out_dim > 0  # the spectrally normalised D still gives its features


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--arch", "dcgan", "--image-size", "48"], "16, 32, 64, 128"),
    (["--arch", "dcgan", "--image-size", "28"], "16, 32, 64, 128"),
    (["--label-smoothing", "0"], "--label-smoothing"),
    (["--d-steps", "0"], "--d-steps"),
    (["--lr", "0"], "--lr"),
    (["--ema", "1"], "--ema"),
    (["--data", "nosuchdata"], "unknown dataset"),
    (["--recipe", "fancy"], "--recipe 'fancy' is not one of dcgan, modern"),
    (["--r1", "-1"], "--r1 -1"),
    (["--diffaugment", "color,blur"], "DiffAugment op 'blur' is not one of color, translation, cutout"),
    (["--loss", "hinge", "--label-smoothing", "0.9"], "hinge loss has no target"),
])
def test_bad_input_is_one_line(argv, message, bad_input, run_dir):
    bad_input(gan.main, gan.Args, [*argv, "--run-dir", str(run_dir)], message)
    assert not run_dir.exists()


def test_folder_without_images_is_one_line(tmp_path, bad_input):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    bad_input(gan.main, gan.Args, ["--data", f"folder:{empty}", "--run-dir", str(tmp_path / "run")],
              "no PNG or JPEG images")


@pytest.mark.parametrize("argv", [["--loss", "wgan"], ["--arch", "resnet"], ["--amp", "maybe"]])
def test_unknown_loss_or_arch_is_refused_by_argparse(argv, capsys):
    from rlgen import cli

    with pytest.raises(SystemExit) as exc:
        cli.run(gan.main, gan.Args, argv)
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_pictures_and_final_scores_reach_wandb_in_step_order(run_dir, monkeypatch, capsys):
    """The GIF, the loss plot and the final scores reach W&B at the last training step, after the losses logged
    there: a row that names a step below one already logged fails the test."""
    from rlgen import track

    logged = []

    class Run:
        step, summary = 0, {}

        def log(self, data, step=None):
            # the run's own step is in every row: W&B's row counter never decides where a row goes
            assert step is None and data["step"] >= self.step, f"{sorted(data)} before step {self.step}"
            self.step = data["step"]
            logged.append((self.step, sorted(k for k in data if k != "step")))

        def finish(self, exit_code=None):
            logged.append(("finish", exit_code))

    monkeypatch.setattr(track, "_init_wandb", lambda *a, **kw: Run())
    monkeypatch.setattr(gan, "sample_quality", lambda data, samples, image_size, n=None: {
        "fid": 12.5, "fid_floor": 5.0, "class_entropy": 2.2, "class_entropy_max": 2.3, "fid_samples": 12})
    s = gan.main(gan.Args(run_dir=str(run_dir), total_steps=4, wandb="offline", **{**TINY, "fid_samples": 12}))
    quality = ["eval/class_entropy", "eval/class_entropy_max", "eval/fid", "eval/fid_floor", "eval/fid_samples"]
    assert (4, quality) in logged
    assert {k for step, keys in logged[:-1] if step == 4 for k in keys} >= {"training", "losses", "samples_final"}
    assert logged[-1] == ("finish", None)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-4:] == [
        "Fréchet distance 12.5 (real-data floor 5.0; classifier features, 12 samples; lower is better)",
        "predicted-class entropy 2.20 nats of 2.30 for full coverage",
        f"last steps: D loss {s['d_loss']:.3f}, G loss {s['g_loss']:.3f}, D(x) {s['d_real']:.2f}, D(G(z)) "
        f"{s['d_fake']:.2f}; 4 generator updates in {s['train_seconds'] / 60:.1f} min",
        f"run folder: {run_dir}"]


def test_generative_bench_runs_the_recipe_and_ablation_rows(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_generative.py"
    spec = importlib.util.spec_from_file_location("bench_generative", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--only", "ablation:modern-r1+sn,modern-faces", "--quick", "--run-root", str(tmp_path),
                      "--json", str(tmp_path / "b.json")])
    no_r1 = out["ablation:modern-r1+sn"]
    assert no_r1["loss"] == "hinge" and no_r1["spectral_norm"] and no_r1["r1"] == 0.0
    assert out["modern-faces"]["recipe"] == "modern" and out["modern-faces"]["updates"] == 3
    assert out["modern-faces"]["r1"] == 0.1
    assert "GAN recipes" in capsys.readouterr().out and json.loads((tmp_path / "b.json").read_text())


# -- the scores' reference and the reasons given ------------------------------------------------------------
class PooledFeatures(nn.Module):
    """A stand-in for the trained feature classifier: 4×4 means of a 28 px image, so no training is needed."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 10)

    def features(self, x):
        return torch.nn.functional.avg_pool2d(x, 7).flatten(1)


def test_the_classifier_distance_is_measured_against_every_class(monkeypatch):
    """--fid-samples 500 on mnist5k: the reference was the first 500 images of the class-sorted test split, digits
    0–4 only, so samples of digits 0–4 alone scored a perfect 0."""
    from rlgen.gen import metrics
    from rlgen.gen.common import class_balanced_subset, load_images, to_unit

    test_x, test_y, _ = load_images("mnist5k", "test")
    pick = class_balanced_subset(test_y, len(test_y), 500, seed=0)
    assert torch.bincount(test_y[pick], minlength=10).tolist() == [50] * 10
    assert torch.equal(pick, pick.sort().values) and len(pick.unique()) == 500
    assert torch.equal(class_balanced_subset(test_y, 1000, 1000, 0), torch.arange(1000))  # all: as before
    uneven = torch.tensor([0] * 10 + [1] * 2 + [2] * 10)
    assert sorted(torch.bincount(uneven[class_balanced_subset(uneven, 22, 9, 0)]).tolist()) == [2, 3, 4]

    monkeypatch.setattr(metrics, "classifier_for", lambda data, size: (PooledFeatures(), {"n_classes": 10,
                                                                                         "test_accuracy": 1.0}))
    half = metrics.sample_quality("mnist5k", to_unit(test_x[:500]), n=500)  # digits 0–4
    assert half["fid_samples"] == 500 and half["fid"] > 3 * half["fid_floor_max"]
    train_x, _, _ = load_images("mnist5k", "train")
    every = to_unit(train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(9))[:500]])
    balanced = metrics.sample_quality("mnist5k", every, n=500)
    assert balanced["fid_floor"] == half["fid_floor"] and balanced["fid"] < 2 * balanced["fid_floor"]


def test_sample_quality_is_none_only_without_labels_or_samples_and_errors_surface(tmp_path, monkeypatch):
    """It returned None on any usage error, and the GAN then said the data had no labels."""
    from PIL import Image

    from rlgen.errors import UsageError
    from rlgen.gen import metrics

    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    flat = tmp_path / "flat"  # images with no class folders: no labels
    flat.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(30):
        Image.fromarray((torch.rand(8, 8, generator=gen) * 255).to(torch.uint8).numpy()).save(flat / f"{i:02d}.png")
    samples = torch.rand(6, 1, 8, 8)
    assert metrics.sample_quality(f"folder:{flat}", samples) is None
    assert metrics.sample_quality("mnist5k", torch.rand(6, 1, 28, 28), n=0) is None
    with pytest.raises(UsageError, match="unknown dataset"):
        metrics.sample_quality("nosuchdata", samples)
    monkeypatch.setattr(metrics, "classifier_for", lambda data, size: (PooledFeatures(), {"n_classes": 10,
                                                                                         "test_accuracy": 1.0}))
    with pytest.raises(UsageError, match="do not match"):
        metrics.sample_quality("mnist5k", torch.rand(6, 1, 16, 16))

    base = {"data": f"folder:{flat}", "fid": None, "d_loss": None}
    assert gan.gan_results(base, fid_samples=0) == ["no Fréchet distance (--fid-samples 0)"]
    assert gan.gan_results(base, fid_samples=500) == [
        f"no Fréchet distance: folder:{flat} has no class labels to train its feature classifier on"]


def test_every_picture_is_written_atomically(run_dir, monkeypatch):
    """samples.png and losses.png were written in place: a reader (or a kill) could see half a file."""
    import os

    replaced = []
    real = os.replace

    def recording(src, dst, *a, **kw):
        replaced.append(os.path.abspath(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", recording)
    gan.main(gan.Args(run_dir=str(run_dir), total_steps=4, sample_every=2, **TINY))
    # W&B keeps its own copies of logged media under wandb/; those are its files, not the run's.
    pictures = [p for p in run_dir.rglob("*")
                if p.suffix in (".png", ".gif") and "wandb" not in p.relative_to(run_dir).parts]
    assert {p.name for p in pictures} >= {"samples.png", "losses.png", "training.gif", "step_000002.png"}
    for p in pictures:
        assert os.path.abspath(p) in replaced, p.name
    assert not [p for p in run_dir.rglob("*.tmp")]
