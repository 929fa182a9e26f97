"""Batched augmentations (:mod:`rlgen.augment`) and their benchmark's smoke run."""

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlgen import augment as aug
from rlgen.augment import RECIPES, Recipe, augment, default_recipe, recipe_by_name
from rlgen.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
IDENTITY_CROP = Recipe(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rgb(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random colour images in [0, 1] (so blur and jitter have something to act on)."""
    g = gen(seed)
    small = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def digits(n: int = 8) -> torch.Tensor:
    return (torch.rand(n, 1, 28, 28, generator=gen(1)) * 255).to(torch.uint8)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shapes_dtype_range(name):
    recipe = RECIPES[name]
    top = 1 + 2 * recipe.intensity  # intensity noise is not clamped (DrQ(ε) does not clamp it either)
    for images in (digits(), (rgb() * 255).to(torch.uint8), rgb()):
        out = augment(images, recipe, gen())
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= top + 1e-6
    if recipe.shift:  # a shift keeps the size: asking for another is refused
        with pytest.raises(UsageError, match="keeps the image size"):
            augment(rgb(size=32), recipe, gen(), out_size=(20, 24))
        return
    out = augment(rgb(size=32), recipe, gen(), out_size=(20, 24))
    assert out.shape == (8, 3, 20, 24) and 0 <= out.min() and out.max() <= 1


def test_empty_and_channels_last_batches():
    for name in RECIPES:
        assert augment(torch.zeros(0, 3, 16, 16, dtype=torch.uint8), RECIPES[name], gen()).shape == (0, 3, 16, 16)
    x = rgb()
    flat = augment(x, RECIPES["color"], gen(2))
    assert torch.allclose(augment(x.contiguous(memory_format=torch.channels_last), RECIPES["color"], gen(2)), flat,
                          atol=1e-6)


def test_input_is_not_modified():
    x = rgb()
    before = x.clone()
    augment(x, RECIPES["color"], gen())
    aug.color_jitter(x, (0.5, 0.5, 0.5, 0.2), 1.0, gen())
    aug.random_grayscale(x, 1.0, gen())
    aug.gaussian_blur(x, (1.0, 2.0), 1.0, gen())
    assert torch.equal(x, before)


def test_same_seed_same_views_other_seed_differs():
    x = (rgb(16, 32) * 255).to(torch.uint8)
    a = augment(x, RECIPES["color"], gen(3))
    b = augment(x, RECIPES["color"], gen(3))
    c = augment(x, RECIPES["color"], gen(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Two calls on one generator give two different views (the SimCLR pair).
    g = gen(3)
    assert not torch.allclose(augment(x, RECIPES["color"], g), augment(x, RECIPES["color"], g))


def test_reproducible_across_batch_history():
    """A view depends on the seed and the images only, not on the reusable scratch buffers' past."""
    x = digits(16)
    first = augment(x, RECIPES["digits"], gen(7))
    augment(rgb(64, 32), RECIPES["color"], gen(1))  # different shapes through the same buffers
    augment(digits(40), RECIPES["digits"], gen(2))
    assert torch.equal(augment(x, RECIPES["digits"], gen(7)), first)


def test_full_crop_is_identity():
    x = rgb(4, 16)
    out = augment(x, IDENTITY_CROP, gen())
    assert torch.allclose(out, x, atol=1e-6)
    x8 = digits(4)
    assert torch.allclose(augment(x8, IDENTITY_CROP, gen()), x8.float() / 255, atol=1e-6)


def test_crop_stays_inside_the_image():
    """A constant image stays constant under any unrotated crop (no dark fringe at the edges)."""
    crop_only = dataclasses.replace(RECIPES["cifar"], jitter_p=0.0, gray_p=0.0)
    out = augment(torch.full((256, 3, 16, 16), 0.7), crop_only, gen())
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-5)


def test_flip_p1_equals_torch_flip():
    x = rgb(4, 16)
    out = augment(x, dataclasses.replace(IDENTITY_CROP, flip=1.0), gen())
    assert torch.allclose(out, torch.flip(x, dims=[3]), atol=1e-6)


def test_digits_recipe_never_flips():
    assert RECIPES["digits"].flip == 0
    # An asymmetric image (bright left half) keeps its bright side over many views.
    x = torch.zeros(64, 1, 28, 28)
    x[..., :10] = 1.0
    out = augment(x, dataclasses.replace(RECIPES["digits"], jitter_p=0.0, blur_p=0.0), gen())
    assert (out[..., :14].mean(dim=(1, 2, 3)) > out[..., 14:].mean(dim=(1, 2, 3))).all()


def test_rotation_preserves_a_centred_disc():
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    r = ((yy - 13.5) ** 2 + (xx - 13.5) ** 2).sqrt()
    disc = (r < 8).float().expand(16, 1, 28, 28)
    out = augment(disc, dataclasses.replace(IDENTITY_CROP, rotate=45.0), gen())
    inside, outside = r < 6.5, r > 9.5
    assert (out[..., inside] > 0.99).all() and (out[..., outside] < 0.01).all()


def test_grayscale_has_equal_channels():
    out = aug.random_grayscale(rgb(), 1.0, gen())
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    x = rgb()
    expected = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(out[:, 0], expected, atol=1e-6)
    grey = digits().float() / 255  # one channel: nothing to do
    assert torch.equal(aug.random_grayscale(grey, 1.0, gen()), grey)


def test_grayscale_probability():
    out = aug.random_grayscale(rgb(400, 8), 0.25, gen())
    gray = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 0.15 < gray.float().mean() < 0.35


def test_augment_grayscale_in_the_colour_matrix():
    """In augment, grayscale rides on jitter's colour matrix: still 3 equal channels, with p gray_p."""
    recipe = dataclasses.replace(IDENTITY_CROP, jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.25)
    out = augment(rgb(400, 8), recipe, gen())
    spread = (out.amax(1) - out.amin(1)).flatten(1).amax(1)  # per image: largest channel difference
    assert 0.15 < (spread < 1e-6).float().mean() < 0.35
    # Without jitter (no colour matrix) grayscale runs on its own and matches random_grayscale.
    plain = dataclasses.replace(IDENTITY_CROP, gray_p=0.25)
    x = rgb(64, 8)
    g1, g2 = gen(3), gen(3)
    aug.crop_flip_rotate(x, plain, g2)
    assert torch.allclose(augment(x, plain, g1), aug.random_grayscale(x, 0.25, g2), atol=1e-6)


def test_blur_keeps_mean_and_lowers_variance():
    x = torch.rand(16, 3, 32, 32, generator=gen(5))
    out = aug.gaussian_blur(x, (1.0, 2.0), 1.0, gen())
    assert torch.allclose(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)
    assert (out.var(dim=(2, 3)) < 0.6 * x.var(dim=(2, 3))).all()


def test_blur_matches_a_reflect_padded_convolution():
    x = torch.rand(6, 2, 40, 30, generator=gen(6))  # kernel 3, non-square, two channels
    sigma = 1.3
    out = aug.gaussian_blur(x, (sigma, sigma), 1.0, gen())
    k = aug.blur_kernel_size(40, 30)
    taps = torch.exp(-((torch.arange(k) - k // 2).double() ** 2) / (2 * sigma**2))
    taps = (taps / taps.sum()).float()
    padded = F.pad(x.reshape(-1, 1, 40, 30), (k // 2,) * 4, mode="reflect")
    ref = F.conv2d(padded, (taps.view(k, 1) * taps.view(1, k)).view(1, 1, k, k)).view_as(x)
    assert torch.allclose(out, ref, atol=1e-5)
    x = torch.rand(2, 1, 64, 80, generator=gen(6))  # kernel 7: three pairs of taps
    assert aug.blur_kernel_size(64, 80) == 7
    out = aug.gaussian_blur(x, (sigma, sigma), 1.0, gen())
    k = 7
    taps = torch.exp(-((torch.arange(k) - k // 2).double() ** 2) / (2 * sigma**2))
    taps = (taps / taps.sum()).float()
    padded = F.pad(x, (k // 2,) * 4, mode="reflect")
    assert torch.allclose(out, F.conv2d(padded, (taps.view(k, 1) * taps.view(1, k)).view(1, 1, k, k)), atol=1e-5)


def test_zero_jitter_is_identity():
    x = rgb()
    assert torch.allclose(aug.color_jitter(x, (0.0, 0.0, 0.0, 0.0), 1.0, gen()), x)
    assert torch.allclose(aug.color_jitter(x, (0.5, 0.5, 0.5, 0.2), 0.0, gen()), x, atol=1e-6)


def fixed_draws(monkeypatch, row):
    """Make every operation's (n, k) draw the given row of uniforms (apply coin first)."""
    real = aug._draws

    def draws(g, n, k):
        real(g, n, k)
        padded = (list(row) + [0.5] * k)[:k]
        return torch.tensor(padded, dtype=torch.float64).expand(n, k).numpy().copy()

    monkeypatch.setattr(aug, "_draws", draws)


@pytest.mark.parametrize("u_hue", [0.5, 1.0, 0.0])  # hue strength 1 turn: 0, +1 and −1 turns
def test_hue_rotation_by_zero_or_a_full_turn_is_identity(monkeypatch, u_hue):
    fixed_draws(monkeypatch, [0.0, 0.5, 0.5, 0.5, u_hue])
    x = rgb()
    assert torch.allclose(aug.color_jitter(x, (0.0, 0.0, 0.0, 1.0), 1.0, gen()), x, atol=1e-5)


def test_hue_rotation_keeps_luma_and_moves_colour():
    x = rgb()
    out = aug.color_jitter(x, (0.0, 0.0, 0.0, 0.25), 1.0, gen())
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    inside = (out > 0.001) & (out < 0.999)  # where nothing was clamped
    keep = inside.all(1)
    assert torch.allclose((out * luma).sum(1)[keep], (x * luma).sum(1)[keep], atol=1e-5)
    assert (out - x).abs().mean() > 0.01


def test_brightness_factor_range():
    x = torch.full((500, 1, 4, 4), 0.25)
    out = aug.color_jitter(x, (0.4, 0.0, 0.0, 0.0), 1.0, gen())
    factor = out[:, 0, 0, 0] / 0.25
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert factor.min() < 0.65 and factor.max() > 1.35
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))  # one factor per image


def test_brightness_clamps_before_contrast(monkeypatch):
    """Each of brightness and contrast clips to [0, 1], as PIL's uint8 images do."""
    fixed_draws(monkeypatch, [0.0, 1.0, 0.0, 0.5, 0.5])  # applied; brightness 1 + 0.5, contrast 1 − 0.5
    x = rgb()
    bright = (x * 1.5).clamp(0, 1)
    mean = (bright * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).mean(dim=(1, 2)).view(-1, 1, 1, 1)
    expected = ((bright - mean) * 0.5 + mean).clamp(0, 1)
    assert torch.allclose(aug.color_jitter(x, (0.5, 0.5, 0.0, 0.0), 1.0, gen()), expected, atol=1e-5)
    x8 = (x * 255).round().to(torch.uint8)  # uint8 input: the 1/255 folded into the same multiply
    expected8 = (x8 / 255 * 1.5).clamp(0, 1)
    out = augment(x8, dataclasses.replace(IDENTITY_CROP, jitter=(0.5, 0.0, 0.0, 0.0), jitter_p=1.0), gen())
    assert torch.allclose(out, expected8, atol=1e-5)


def test_cpu_result_is_reproducible_bitwise():
    x = (rgb(32, 32) * 255).to(torch.uint8)
    runs = [augment(x, RECIPES["color"], gen(11)) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_default_recipe_mapping():
    assert default_recipe("mnist5k") == ("digits", RECIPES["digits"])
    assert default_recipe("mnist")[0] == "digits" and default_recipe("digits")[0] == "digits"
    assert default_recipe("fashion-mnist")[0] == "fashion"
    assert default_recipe("cifar10")[0] == "cifar"
    assert default_recipe("atari-frames:breakout")[0] == "frames"
    assert default_recipe("faces")[0] == "color" and default_recipe("folder:/x")[0] == "color"
    assert RECIPES["cifar"].blur_p == 0 and RECIPES["color"].blur_p > 0


def test_recipe_by_name():
    assert recipe_by_name("color") is RECIPES["color"]
    with pytest.raises(UsageError, match="unknown augmentation recipe 'nope'.*digits"):
        recipe_by_name("nope")


def test_simclr_recipe_values():
    r = aug.simclr_recipe(1.0)
    assert r.jitter == (0.8, 0.8, 0.8, 0.2) and r.jitter_p == 0.8 and r.gray_p == 0.2 and r.flip == 0.5
    assert r.crop_scale == (0.08, 1.0) and math.isclose(r.crop_ratio[0], 0.75)
    assert "blur" in r.describe() and "blur" not in aug.simclr_recipe(0.5, blur=False).describe()


def test_benchmark_quick_json(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_augment", ROOT / "experiments" / "bench_augment.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_augment", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    from rlgen import cli

    path = tmp_path / "bench.json"
    cli.run(bench.main, bench.Args, ["--quick", "--json", str(path)])
    result = json.loads(path.read_text())
    rows = result["rows"]
    assert len(rows) == 2 and "digits" in rows[0]["row"] and "RGB" in rows[1]["row"]
    for row in rows:
        assert row["rlgen_img_s"] > 0 and row["pil_img_s"] > 0 and row["ratio"] > 0
        assert row["encoder_fwd_bwd_img_s"] and all(v > 0 for v in row["encoder_fwd_bwd_img_s"].values())
    assert set(rows[1]["encoder_fwd_bwd_img_s"]) == {"convnet", "resnet18"}
    assert result["conditions"]["threads"] == 1
    out = capsys.readouterr().out
    assert "ratio" in out and "forward+backward" in out


# -- DrQ's shift and intensity noise ------------------------------------------------------------------
def _shift_by_hand(img: torch.Tensor, dy: int, dx: int, pad: int, edge: bool) -> torch.Tensor:
    """One image moved by (dy − pad, dx − pad): each output pixel read from the clamped (edge) or zero-filled
    source, one pixel at a time."""
    c, h, w = img.shape
    out = torch.zeros_like(img)
    for i in range(h):
        for j in range(w):
            si, sj = i + dy - pad, j + dx - pad
            if edge:
                out[:, i, j] = img[:, min(max(si, 0), h - 1), min(max(sj, 0), w - 1)]
            elif 0 <= si < h and 0 <= sj < w:
                out[:, i, j] = img[:, si, sj]
    return out


@pytest.mark.parametrize("fill", ["zeros", "edge"])
def test_random_shift_matches_a_pixel_by_pixel_reference(fill):
    from rlgen.augment import random_shift

    x = torch.rand(6, 4, 9, 11, generator=torch.Generator().manual_seed(0))
    out = random_shift(x, 3, torch.Generator().manual_seed(5), fill=fill)
    dy, dx = torch.randint(0, 7, (2, 6, 1), generator=torch.Generator().manual_seed(5))
    for k in range(6):
        assert torch.equal(out[k], _shift_by_hand(x[k], int(dy[k]), int(dx[k]), 3, fill == "edge"))
    assert out.shape == x.shape and len({(int(a), int(b)) for a, b in zip(dy, dx)}) > 1


def test_random_shift_keeps_uint8_frames_and_all_channels_move_together():
    from rlgen.augment import random_shift

    frame = torch.randint(0, 256, (1, 1, 12, 12), dtype=torch.uint8).expand(5, 4, 12, 12).contiguous()
    out = random_shift(frame, 4, torch.Generator().manual_seed(1), fill="edge")
    assert out.dtype == torch.uint8
    assert all(torch.equal(out[k, 0], out[k, c]) for k in range(5) for c in range(4))


def test_intensity_noise_and_drq_augment_by_hand_and_reproducible():
    from rlgen.augment import drq_augment, intensity_noise, random_shift

    x = torch.rand(8, 4, 10, 10, generator=torch.Generator().manual_seed(2))
    out = intensity_noise(x, 0.05, torch.Generator().manual_seed(3))
    r = torch.randn(8, generator=torch.Generator().manual_seed(3)).clamp(-2, 2)
    assert torch.allclose(out, x * (1 + 0.05 * r)[:, None, None, None])
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    a = drq_augment(x, g1)
    assert torch.equal(a, intensity_noise(random_shift(x, 4, g2, fill="edge"), 0.05, g2))
    assert torch.equal(a, drq_augment(x, torch.Generator().manual_seed(4)))
    ratio = a.sum(dim=(1, 2, 3)) / random_shift(x, 4, torch.Generator().manual_seed(4), fill="edge").sum(dim=(1, 2, 3))
    assert ((ratio - 1).abs() <= 0.1 + 1e-6).all()  # |0.05 · clip(r, −2, 2)| ≤ 0.1
    # stored uint8 frames with the scaling as ``prepare``: the shift moves bytes, and the result is the same
    frames = torch.randint(0, 256, (8, 4, 10, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    via_bytes = drq_augment(frames, torch.Generator().manual_seed(6), prepare=lambda f: f.float() / 255)
    assert via_bytes.dtype == torch.float32
    assert torch.equal(via_bytes, drq_augment(frames.float() / 255, torch.Generator().manual_seed(6)))
    with pytest.raises(UsageError):
        random_shift(x, 2, g1, fill="wrap")
