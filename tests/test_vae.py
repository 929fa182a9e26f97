import dataclasses
import json
import math
import os

import pytest
import torch

from rlgen import checkpoint, cli
from rlgen.gen import generate, metrics, vae
from rlgen.gen.common import binarize, slerp

TINY = dict(data="mnist5k", arch="mlp", hidden="64", latent_dim=4, batch_size=200, iwae_k=0, eval_every=1,
            kl_warmup=0, lr=3e-3, wandb="disabled")


def tiny_args(run_dir, **kw):
    return vae.Args(run_dir=str(run_dir), **{**TINY, **kw})


# -- the math, against hand computations --------------------------------------------------------
def test_gaussian_kl_matches_hand_computation():
    mu = torch.tensor([[0.5, -1.0]])
    logvar = torch.tensor([[math.log(4.0), 0.0]])
    # ½(μ² + σ² − 1 − log σ²) per dimension: ½(0.25 + 4 − 1 − log 4) + ½(1 + 1 − 1 − 0)
    expected = 0.5 * (0.25 + 4 - 1 - math.log(4)) + 0.5 * 1.0
    assert vae.gaussian_kl(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    assert vae.gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0.0


def test_bernoulli_log_prob_matches_hand_computation():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = torch.sigmoid(logits)[0, 0]
    expected = math.log(p[0, 0]) + math.log(1 - p[0, 1]) + math.log(1 - p[1, 0]) + math.log(p[1, 1])
    assert vae.bernoulli_log_prob(logits, x).item() == pytest.approx(expected, rel=1e-6)


def test_discretized_logistic_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1)
    params = torch.tensor([0.1, math.log(0.05)]).view(1, 2, 1, 1).expand(256, 2, 1, 1)
    probs = vae.logistic_log_prob(params, levels).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-4)
    # One interior level by hand: σ((y + 1/255 − μ)/s) − σ((y − 1/255 − μ)/s) with y = 140/127.5 − 1.
    y, s = 140 / 127.5 - 1, 0.05
    hand = torch.sigmoid(torch.tensor((y + 1 / 255 - 0.1) / s)) - torch.sigmoid(torch.tensor((y - 1 / 255 - 0.1) / s))
    assert probs[140].item() == pytest.approx(hand.item(), rel=1e-4)


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return vae.VAE((1, 4, 4), "mlp", 2, "bernoulli", (8,), (8,)).eval()


def test_elbo_is_reconstruction_minus_kl_with_the_same_noise():
    model = _tiny_model()
    x = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    elbo, rec, kl = model.elbo(x, generator=torch.Generator().manual_seed(7))
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
    z = mu + eps * (0.5 * logvar).exp()
    p = torch.sigmoid(model.decoder_params(z))
    hand_rec = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    hand_kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    torch.testing.assert_close(rec, hand_rec, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kl, hand_kl)
    torch.testing.assert_close(elbo, hand_rec - hand_kl, rtol=1e-5, atol=1e-5)


def test_iwae_equals_elbo_at_k1_in_expectation_and_tightens_with_k():
    model = _tiny_model()
    x = (torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, generator=gen)[0] for _ in range(4000)]).mean(0)
        iwae1 = torch.stack([model.iwae(x, 1, gen) for _ in range(4000)]).mean(0)
        bounds = {k: torch.stack([model.iwae(x, k, gen) for _ in range(200)]).mean(0) for k in (1, 10, 100)}
    torch.testing.assert_close(iwae1, elbo, atol=0.05, rtol=0)
    assert (bounds[10] > bounds[1]).all() and (bounds[100] > bounds[10]).all()


def test_binarize_threshold_and_stochastic():
    x = torch.tensor([0, 127, 128, 255], dtype=torch.uint8)
    assert binarize(x).tolist() == [0, 0, 1, 1]
    draws = torch.stack([binarize(x, "stochastic", torch.Generator().manual_seed(s)) for s in range(400)])
    assert draws[:, 0].sum() == 0 and draws[:, 3].sum() == 400
    assert 0.4 < draws[:, 1].mean().item() < 0.6


def test_slerp_ends_at_its_endpoints():
    a, b = torch.randn(5), torch.randn(5)
    path = slerp(a, b, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[1], b)


def test_frechet_distance_matches_diagonal_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
    v1, v2 = torch.tensor([1.0, 4.0]), torch.tensor([4.0, 9.0])
    # For diagonal covariances: ‖μ1 − μ2‖² + Σ (v1 + v2 − 2√(v1 v2)).
    hand = 1.0 + (1 + 4 - 2 * 2) + (4 + 9 - 2 * 6)
    assert metrics.frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(hand, abs=1e-9)
    assert metrics.class_entropy(torch.tensor([0, 1, 2, 3]), 4) == pytest.approx(math.log(4))
    assert metrics.class_entropy(torch.tensor([2, 2]), 4) == 0.0


# -- the command --------------------------------------------------------------------------------
def test_tiny_vae_learns_and_writes_its_pictures(run_dir, capsys):
    args = tiny_args(run_dir, epochs=3, iwae_k=20)
    summary = vae.main(args)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test_neg_elbos = [r["eval/neg_elbo"] for r in rows]
    # −ELBO everywhere (positive, lower is better). An untrained decoder pays about 784 · log 2 ≈ 543 nats;
    # three epochs must do far better.
    assert all(v > 0 for v in test_neg_elbos) and all(r["train/neg_elbo"] > 0 for r in rows)
    assert test_neg_elbos[-1] < test_neg_elbos[0] and 0 < summary["test_neg_elbo_nats"] < 250
    assert summary["test_neg_iwae_nats"] <= summary["test_neg_elbo_nats"] + 1e-6
    assert summary["iwae_images"] == summary["test_images"] == 1000  # no --minutes: the whole test split
    # The run ends with its numbers in words, signs and units spelled out, then the run folder.
    out = capsys.readouterr().out.strip().splitlines()
    neg = summary["test_neg_elbo_nats"]
    assert out[-3] == f"test ELBO −{neg:.1f} nats per image, so NLL ≤ {neg:.1f} nats (1,000 test images)"
    assert out[-2].startswith(f"k = 20 importance-weighted bound: NLL ≤ {summary['test_neg_iwae_nats']:.1f} nats "
                              "per image (1,000 test images")
    assert out[-1] == f"run folder: {run_dir}"
    for name in ("reconstructions.png", "samples.png", "interpolation.gif", "latent_walk.gif", "learning_curve.png",
                 "summary.json", "checkpoint.pt"):
        assert (run_dir / name).stat().st_size > 0, name
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["test_neg_elbo_nats"] == summary["test_neg_elbo_nats"] and saved["updates"] == 3 * 20


def test_two_dimensional_latent_writes_the_manifold(run_dir):
    vae.main(tiny_args(run_dir, epochs=1, latent_dim=2))
    assert (run_dir / "manifold.png").stat().st_size > 0


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, kill_after_saves):
    arm, disarm = kill_after_saves
    full = vae.main(tiny_args(tmp_path / "full", epochs=3, checkpoint_every=1))
    arm(2)
    with pytest.raises(KeyboardInterrupt):
        vae.main(tiny_args(tmp_path / "cut", epochs=3, checkpoint_every=1))
    disarm()
    assert checkpoint.load(tmp_path / "cut")["epoch"] == 2
    resumed = vae.main(vae.Args(resume=str(tmp_path / "cut"), wandb="disabled"))
    assert resumed["updates"] == full["updates"] == 60
    assert resumed["test_neg_elbo_nats"] == pytest.approx(full["test_neg_elbo_nats"], abs=1e-9)


def test_resume_with_more_epochs_stretches_the_schedule_and_ends_at_the_new_budget(tmp_path, kill_after_saves,
                                                                                   bad_input):
    arm, disarm = kill_after_saves
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        vae.main(tiny_args(tmp_path / "cut", epochs=2, checkpoint_every=1))
    disarm()
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    before = ckpt.read_bytes()
    # A change the run cannot honour is one line, exit 2, the checkpoint untouched.
    bad_input(vae.main, vae.Args, ["--resume", str(tmp_path / "cut"), "--batch-size", "100"], "--batch-size 100")
    assert ckpt.read_bytes() == before
    resumed = vae.main(vae.Args(resume=str(tmp_path / "cut"), epochs=4, wandb="disabled"))
    assert (resumed["epochs"], resumed["updates"], resumed["resumes"]) == (4, 4 * 20, 1)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["epochs"] == 4
    assert checkpoint.load(tmp_path / "cut")["args"]["epochs"] == 4
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/epoch"] for r in rows] == [1, 2, 3, 4]
    # The one-cycle schedule, rebuilt for 80 steps at step 20: past its peak, then down to its floor at the end.
    lrs = [r["train/lr"] for r in rows]
    assert lrs[1] > lrs[0] * 0.5 and lrs[1] > lrs[2] > lrs[3] and lrs[3] < 1e-5


@pytest.mark.parametrize("binarize", ["threshold", "stochastic"])
def test_an_epoch_cut_by_minutes_is_not_counted_and_a_resume_finishes_it(tmp_path, binarize):
    """A --minutes budget that ends a run inside its first epoch: the summary counts no epoch (it counted the
    cut one as whole), and a resume trains the rest of that epoch and the next, exactly as an uninterrupted
    run does (it skipped the rest)."""
    full = vae.main(tiny_args(tmp_path / "full", epochs=2, binarize=binarize))
    cut = vae.main(tiny_args(tmp_path / "cut", epochs=2, binarize=binarize, minutes=1e-6))  # one minibatch
    assert (cut["epochs"], cut["updates"]) == (0, 1)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/epoch"] for r in rows] == [pytest.approx(1 / 20)]
    resumed = vae.main(vae.Args(resume=str(tmp_path / "cut"), minutes=60.0, wandb="disabled"))
    assert (resumed["epochs"], resumed["updates"]) == (full["epochs"], full["updates"]) == (2, 40)
    assert resumed["test_neg_elbo_nats"] == full["test_neg_elbo_nats"]
    a, b = checkpoint.load(tmp_path / "cut"), checkpoint.load(tmp_path / "full")
    assert a["history"] == b["history"] and a["epoch_in_progress"] is None
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_log_every_counts_epochs(run_dir):
    vae.main(tiny_args(run_dir, epochs=5, log_every=2, eval_every=5))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["train/epoch"], "train/neg_elbo" in r, "eval/neg_elbo" in r) for r in rows] == [
        (2, True, False), (4, True, False), (5, True, True)]


def test_the_k_sample_bound_after_a_minutes_budget_is_sized_to_it(run_dir):
    """Bug 7 of issue 16: a 1-minute run spent 5 more minutes on the k = 1000 bound over 1,000 images."""
    assert vae.iwae_image_count(tiny_args(run_dir), 1000) == 1000  # no budget: the whole split
    assert vae.iwae_image_count(tiny_args(run_dir, minutes=1.0), 1000) == 125
    assert vae.iwae_image_count(tiny_args(run_dir, minutes=8.0), 1000) == 1000  # the README's measured run
    assert vae.iwae_image_count(tiny_args(run_dir, minutes=0.1), 1000) == 100
    assert vae.iwae_image_count(tiny_args(run_dir, minutes=0.1, iwae_images=7), 1000) == 7
    labels = torch.arange(1000) // 100  # a class-sorted split
    picked = vae.iwae_subset(labels, 100, seed=0)
    assert len(picked) == 100 and len(picked.unique()) == 10 and torch.equal(picked, picked.sort().values)
    assert vae.iwae_subset(labels, 1000, seed=0) is labels  # all of it: unchanged, so the numbers are too
    summary = vae.main(tiny_args(run_dir, epochs=2, minutes=0.005, iwae_k=5))
    assert summary["iwae_images"] == 100 and summary["test_images"] == 1000
    assert summary["eval_seconds"] > 0 and summary["train_seconds"] < 5


def test_an_exception_fails_the_wandb_run(tmp_path, monkeypatch, kill_after_saves):
    """Bug 6 of issue 16: the tracker is finished with the exit code when main does not end normally."""
    from rlgen import track

    finished = []

    class Run:
        def log(self, data, step=None):
            pass

        def finish(self, exit_code=None):
            finished.append(exit_code)

    monkeypatch.setattr(track, "_init_wandb", lambda *a, **kw: Run())
    arm, _ = kill_after_saves
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        vae.main(tiny_args(tmp_path / "cut", epochs=2, checkpoint_every=1, wandb="offline"))
    assert finished == [130]


def test_generate_round_trip_gives_identical_images(tmp_path):
    run = tmp_path / "run"
    vae.main(tiny_args(run, epochs=1))
    outs = []
    for name in ("a.png", "b.png"):
        generate.main(generate.Args(checkpoint=str(run), n=16, out=str(tmp_path / name), seed=3, interpolate=2,
                                    frames=3, gif=str(tmp_path / "walk.gif")))
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    generate.main(generate.Args(checkpoint=str(run), n=16, out=str(tmp_path / "c.png"), seed=4))
    assert (tmp_path / "c.png").read_bytes() != outs[0]
    # the shared --device and --threads flags, read as the training commands read them
    generate.main(cli.parse(generate.Args, ["--checkpoint", str(run), "--n", "16", "--out", str(tmp_path / "d.png"),
                                            "--seed", "3", "--device", "cpu", "--threads", "0"]))
    assert (tmp_path / "d.png").read_bytes() == outs[0] and torch.get_num_threads() == (os.cpu_count() or 1)
    torch.set_num_threads(1)
    model, _ = vae.sampler_from_checkpoint(checkpoint.load(run), torch.device("cpu")), None
    a = model.sample(4, torch.Generator().manual_seed(1))
    b = model.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and a.shape == (4, 1, 28, 28)


# -- bad input ----------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_errors(tmp_path, bad_input):
    bad_input(vae.main, vae.Args, ["--image-size", "4", "--run-dir", str(tmp_path / "r")], "too small")
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_input(vae.main, vae.Args, ["--data", f"folder:{empty}", "--run-dir", str(tmp_path / "r2")], "no")
    bad_input(vae.main, vae.Args, ["--latent-dim", "0"], "--latent-dim 0")
    # A checkpoint of a model that cannot sample (here: a DQN's) is refused by generate.
    fake = tmp_path / "dqn"
    checkpoint.save(checkpoint.checkpoint_path(fake.with_suffix(".pt")), algo="dqn", args={}, step=0)
    bad_input(generate.main, generate.Args, ["--checkpoint", str(fake.with_suffix(".pt"))], "cannot sample")
    bad_input(generate.main, generate.Args, ["--checkpoint", str(tmp_path / "none")], "no checkpoint")


def test_args_round_trip_through_the_checkpoint(run_dir):
    vae.main(tiny_args(run_dir, epochs=1))
    saved = checkpoint.load(run_dir)["args"]
    # Saved resolved: the likelihood the data implies and the command's default threads.
    assert dataclasses.asdict(tiny_args(run_dir, epochs=1)) == {**saved, "likelihood": "auto", "threads": None}
    assert (saved["likelihood"], saved["threads"]) == ("bernoulli", vae.Args.THREADS)


# -- the scoring classifier (issue 16, bug 11) ----------------------------------------------------------
def test_training_the_scoring_classifier_leaves_the_global_rng_alone():
    images = (torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labels = torch.arange(32) % 2
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = metrics._train_classifier(images, labels, 2, epochs=1)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream goes on as if nothing had happened
    b = metrics._train_classifier(images, labels, 2, epochs=1)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())  # still deterministic


def test_a_changed_folder_gets_a_new_scoring_classifier(tmp_path, monkeypatch):
    import os

    from PIL import Image

    from rlgen.data.folder import split_of

    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    folder = tmp_path / "shapes"
    gen = torch.Generator().manual_seed(0)
    names = [f"{c}/img{i:03d}.png" for c in ("dark", "light") for i in range(40)]
    assert {split_of(n) for n in names} == {"train", "test"}
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        base = 40 if n.startswith("dark") else 200
        pixels = (torch.rand(16, 16, generator=gen) * 40 + base).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / n)
    trained = []
    real = metrics._train_classifier

    def counting(*a, **kw):
        trained.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(metrics, "_train_classifier", counting)
    data = f"folder:{folder}"
    _, first = metrics.classifier_for(data, None, epochs=1)
    metrics.classifier_for(data, None, epochs=1)
    assert len(trained) == 1 and first["fingerprint"]  # cached while the folder stays the same
    later = os.stat(folder / names[0]).st_mtime_ns + 10**9
    os.utime(folder / names[0], ns=(later, later))  # the same file, rewritten
    _, second = metrics.classifier_for(data, None, epochs=1)
    assert len(trained) == 2 and second["fingerprint"] != first["fingerprint"]
    metrics.classifier_for(data, None, epochs=1)
    assert len(trained) == 2
