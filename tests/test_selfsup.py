"""SimCLR, MoCo, their losses, data parallelism, and the probes of any rlgen encoder."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from rlgen import checkpoint
from rlgen.encoders import load_encoder
from rlgen.errors import UsageError
from rlgen.selfsup import moco, probe, simclr
from rlgen.selfsup.common import temporal_partners
from rlgen.selfsup.knn import knn_predict
from rlgen.selfsup.losses import InfoNCEQueueLoss, KeyQueue, NTXentLoss


# ---------------------------------------------------------------------------------------------
# Losses against hand-written references
# ---------------------------------------------------------------------------------------------
def ntxent_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Chen et al. 2020, eq. 1, one anchor at a time with explicit sums."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    return total / (2 * n)


def test_ntxent_matches_the_reference_and_chance():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    for tau in (0.1, 0.5, 1.0):
        assert NTXentLoss(tau)(z1, z2).item() == pytest.approx(ntxent_reference(z1, z2, tau), rel=1e-5)
    same = torch.ones(8, 4)  # every embedding alike: nothing tells the partner apart
    assert NTXentLoss(0.5)(same, same).item() == pytest.approx(NTXentLoss.chance(8), rel=1e-6)
    assert NTXentLoss.chance(8) == pytest.approx(math.log(15))


def test_ntxent_refuses_a_batch_of_one():
    with pytest.raises(UsageError, match="at least 2 pairs"):
        NTXentLoss()(torch.randn(1, 4), torch.randn(1, 4))


def test_infonce_queue_matches_the_reference():
    gen = torch.Generator().manual_seed(1)
    q, k, queue = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen), torch.randn(10, 3, generator=gen)
    queue = F.normalize(queue, dim=1)
    tau = 0.2
    expected = 0.0
    for i in range(4):
        qi, ki = F.normalize(q[i], dim=0), F.normalize(k[i], dim=0)
        pos = math.exp(float(qi @ ki) / tau)
        neg = sum(math.exp(float(qi @ kk) / tau) for kk in queue)
        expected += -math.log(pos / (pos + neg))
    assert InfoNCEQueueLoss(tau)(q, k, queue).item() == pytest.approx(expected / 4, rel=1e-5)


def test_key_queue_is_fifo_and_checks_its_size():
    queue = KeyQueue(size=6, dim=2, batch=3)
    assert queue.fill_fraction() == 0 and len(queue.active()) == 0
    a, b, c = torch.tensor([[1.0, 0]] * 3), torch.tensor([[0, 1.0]] * 3), torch.tensor([[-1.0, 0]] * 3)
    queue.enqueue(a)
    assert queue.fill_fraction() == 0.5 and torch.equal(queue.active(), a)
    queue.enqueue(b)
    queue.enqueue(c)  # overwrites the oldest batch
    assert queue.fill_fraction() == 1.0
    assert torch.equal(queue.keys, torch.cat([c, b]))
    with pytest.raises(UsageError, match="multiple of the global batch 4"):
        KeyQueue(size=10, dim=2, batch=4)


def test_knn_predict_matches_a_hand_vote():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[0.8, 0.3]])
    sims = F.normalize(query, dim=1) @ F.normalize(bank, dim=1).T
    top, idx = sims.topk(3)
    votes = torch.zeros(3)
    for s, i in zip(top[0], idx[0]):
        votes[labels[i]] += math.exp(float(s) / 0.1)
    assert knn_predict(bank, labels, query, k=3, tau=0.1).item() == int(votes.argmax())


def test_temporal_partners_stay_in_the_episode():
    episode = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(10).repeat(20)
    partner = temporal_partners(episode, idx, max_gap=2, gen=gen)
    assert torch.equal(episode[partner], episode[idx])
    assert (partner - idx).abs().max() <= 2
    assert torch.equal(partner[idx == 6], idx[idx == 6])  # a one-frame episode pairs with itself
    assert (partner != idx).float().mean() > 0.8


# ---------------------------------------------------------------------------------------------
# Pretraining
# ---------------------------------------------------------------------------------------------
def tiny(mod, run_dir, **kw):
    base = dict(data="mnist5k", total_steps=40, batch_size=64, log_every=10, knn_every=40, checkpoint_every=0,
                run_dir=str(run_dir), wandb="disabled", threads=1)
    if mod is moco:
        base.update(queue_size=512)
    base.update(kw)
    return mod.main(mod.Args(**base))


def test_simclr_learns_features_a_knn_can_use(tmp_path):
    summary = tiny(simclr, tmp_path / "run", total_steps=80, batch_size=128)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train/loss"] for m in metrics]
    assert losses[-1] < losses[0] < metrics[0]["train/loss_chance"]
    assert summary["final_loss"] < 0.8 * summary["loss_chance"]
    assert summary["lr"] == 2e-3 and summary["collapsed"] is False
    untrained = probe.main(probe.Args(random_init="convnet", data="mnist5k", run_dir=str(tmp_path / "p0"),
                                      wandb="disabled", knn_k=200, threads=1))
    assert summary["knn_top1"] > untrained["knn_top1"] + 0.03
    for name in ("loss_curve.png", "views.png", "summary.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).exists(), name


@pytest.mark.parametrize("mod", [simclr, moco])
def test_learning_rate_follows_the_backbone(mod):
    assert mod.resolve(mod.Args()).lr == 2e-3
    assert mod.resolve(mod.Args(backbone="nature_cnn_same")).lr == 2e-4
    assert mod.resolve(mod.Args(backbone="nature_cnn_same", lr=1e-3)).lr == 1e-3  # a given --lr wins


def test_a_run_whose_loss_stays_at_chance_says_it_collapsed(tmp_path, capsys):
    summary = tiny(simclr, tmp_path / "run", total_steps=20, batch_size=64, lr=50.0)
    assert summary["collapsed"] is True
    assert summary["final_loss"] >= 0.99 * summary["loss_chance"]
    assert "the encoder has learned nothing (collapsed)" in capsys.readouterr().out


def test_moco_learns_and_logs_its_queue(tmp_path):
    summary = tiny(moco, tmp_path / "run", total_steps=60)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["train/queue_fill"] for m in metrics][:2] == [min(1.0, 10 * 64 / 512), 1.0]
    assert metrics[-1]["train/loss"] < metrics[1]["train/loss"]  # the first window starts with an empty queue
    assert summary["loss_chance"] == pytest.approx(math.log(513))
    assert summary["knn_top1"] > 0.8


@pytest.mark.parametrize("mod", [simclr, moco])
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, kill_after_saves, mod):
    arm, disarm = kill_after_saves
    full = tiny(mod, tmp_path / "full", total_steps=30, checkpoint_every=15, log_every=5)
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        tiny(mod, tmp_path / "cut", total_steps=30, checkpoint_every=15, log_every=5)
    disarm()
    assert checkpoint.load(tmp_path / "cut")["step"] == 15
    resumed = mod.main(mod.Args(resume=str(tmp_path / "cut"), wandb="disabled"))
    assert resumed["updates"] == 30 and resumed["resumes"] == 1
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], abs=1e-6)
    a, b = checkpoint.load(tmp_path / "full")["encoder"], checkpoint.load(tmp_path / "cut")["encoder"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


@pytest.mark.parametrize("mod", [simclr, moco])
def test_resume_with_a_larger_budget_ends_at_it(tmp_path, kill_after_saves, bad_input, mod):
    arm, disarm = kill_after_saves
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        tiny(mod, tmp_path / "run", total_steps=20, checkpoint_every=10, log_every=5, knn_every=10)
    disarm()
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    bad_input(mod.main, mod.Args, ["--resume", str(tmp_path / "run"), "--batch-size", "32"],
              "--batch-size 32 differs from the run being resumed (64)")
    bad_input(mod.main, mod.Args, ["--resume", str(tmp_path / "run"), "--data", "digits"],
              "--data digits differs from the run being resumed")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved
    summary = mod.main(mod.Args(resume=str(tmp_path / "run"), total_steps=35, wandb="disabled"))
    assert summary["updates"] == 35 and checkpoint.load(tmp_path / "run")["step"] == 35
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["updates"] == 35
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [5, 10, 15, 20, 25, 30, 35]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_simclr_loss_equals_the_single_process_loss(tmp_path):
    """torchrun with 2 CPU processes (gloo): negatives gathered, BatchNorm synchronised, so every
    step's loss equals one process's loss on the same global batch."""
    flags = ["--total-steps", "3", "--batch-size", "32", "--log-every", "1", "--knn-every", "100",
             "--wandb", "disabled", "--threads", "1", "--checkpoint-every", "0", "--amp", "off"]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    f"--master_port={_free_port()}", "-m", "rlgen.selfsup.simclr", *flags,
                    "--run-dir", str(tmp_path / "ddp")], check=True, capture_output=True, timeout=240)
    single = simclr.main(simclr.Args(total_steps=3, batch_size=32, log_every=1, knn_every=100, checkpoint_every=0,
                                     wandb="disabled", threads=1, amp="off", run_dir=str(tmp_path / "one")))
    read = lambda d: [json.loads(x)["train/loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    ddp, one = read("ddp"), read("one")
    assert len(ddp) == len(one) == 3
    assert ddp == pytest.approx(one, rel=1e-5)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["processes"] == 2
    assert single["processes"] == 1


# ---------------------------------------------------------------------------------------------
# Probes of any encoder, and bad input
# ---------------------------------------------------------------------------------------------
def test_linear_probe_separates_separable_features():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    x = torch.randn(300, 8, generator=gen) * 0.1 + F.one_hot(y, 8).float() * 3
    res = probe.linear_probe(x[:200], y[:200], x[200:], y[200:])
    assert res["top1"] == 1.0 and res["l2"] in probe.L2_GRID


def test_probe_reads_simclr_vae_and_gan_encoders(tmp_path):
    from rlgen.gen import gan, vae

    tiny(simclr, tmp_path / "simclr", total_steps=5)
    vae.main(vae.Args(data="mnist5k", epochs=1, iwae_k=0, run_dir=str(tmp_path / "vae"), wandb="disabled"))
    gan.main(gan.Args(data="mnist5k", arch="dcgan", image_size=32, total_steps=3, fid_samples=0,
                      run_dir=str(tmp_path / "gan"),
                      wandb="disabled"))
    dims = {}
    for name, extra in (("simclr", {}), ("vae", {}), ("gan", {"image_size": 32})):
        s = probe.main(probe.Args(checkpoint=str(tmp_path / name), data="mnist5k", run_dir=str(tmp_path / f"p{name}"),
                                  wandb="disabled", threads=1, **extra))
        assert 0.1 < s["linear_top1"] <= 1 and 0.1 < s["knn_top1"] <= 1, s
        assert json.loads((tmp_path / f"p{name}" / "summary.json").read_text())["linear_top1"] == s["linear_top1"]
        dims[name] = s["feature_dim"]
    assert dims["simclr"] == 256 and dims["vae"] == 128 * 3 * 3
    assert load_encoder(tmp_path / "gan").input_shape == (1, 32, 32)


def test_probe_bad_input_is_one_line(tmp_path, bad_input):
    from rlgen.gen import gan
    from rlgen.rl import dqn

    gan.main(gan.Args(data="mnist5k", arch="dcgan", image_size=32, total_steps=2, fid_samples=0,
                      run_dir=str(tmp_path / "gan"),
                      wandb="disabled"))
    bad_input(probe.main, probe.Args, ["--checkpoint", str(tmp_path / "gan"), "--run-dir", str(tmp_path / "p")],
              "pass --image-size 32")
    dqn.main(dqn.Args(env="CartPole", total_steps=200, learning_starts=100, eval_episodes=1, eval_every=200, gif=False,
                      run_dir=str(tmp_path / "dqn"), wandb="disabled"))
    assert load_encoder(tmp_path / "dqn").input_shape == (4,)
    bad_input(probe.main, probe.Args, ["--checkpoint", str(tmp_path / "dqn"), "--run-dir", str(tmp_path / "p")],
              "takes images of shape (4,)")
    checkpoint.save(tmp_path / "pix" / "checkpoint.pt", algo="pixelcnn", args={}, step=0)
    bad_input(probe.main, probe.Args, ["--checkpoint", str(tmp_path / "pix"), "--run-dir", str(tmp_path / "p")],
              "holds no encoder")
    bad_input(probe.main, probe.Args, ["--run-dir", str(tmp_path / "p")], "exactly one of")
    assert not (tmp_path / "p").exists()  # nothing written on bad input


def test_pretraining_bad_input_is_one_line(tmp_path, bad_input):
    run = ["--run-dir", str(tmp_path / "r"), "--wandb", "disabled"]
    bad_input(simclr.main, simclr.Args, ["--batch-size", "1", *run], "--batch-size 1")
    bad_input(moco.main, moco.Args, ["--queue-size", "1000", "--batch-size", "256", *run],
              "--queue-size 1000 must be a positive multiple of --batch-size 256")
    bad_input(simclr.main, simclr.Args, ["--recipe", "sepia", *run], "unknown augmentation recipe 'sepia'")
    bad_input(simclr.main, simclr.Args, ["--pairs", "temporal", "--total-steps", "1", *run],
              "--pairs temporal needs frame data")
    bad_input(simclr.main, simclr.Args, ["--backbone", "vgg", *run], "unknown backbone 'vgg'")


def test_linear_probe_benchmark_quick_writes_its_table(tmp_path):
    sys.path.insert(0, "experiments")
    try:
        import linear_probe_benchmark as bench
    finally:
        sys.path.pop(0)
    out = bench.main(["--quick", "--only", "raw,simclr,supervised", "--seeds", "0", "--json",
                      str(tmp_path / "b.json")])
    rows = {r["row"]: r for r in json.loads((tmp_path / "b.json").read_text())["mnist5k"]}
    assert set(rows) == {"raw", "simclr", "supervised"}
    assert rows["raw"]["linear_top1"] > 0.85  # raw-pixel logistic regression on mnist5k is about 0.89
    assert set(out["mnist5k_goals"]["simclr"]) >= {"linear_mean", "knn_mean", "gap_to_supervised_points", "met"}


@pytest.mark.parametrize("mod", [simclr, moco])
def test_knn_monitor_keeps_its_own_cadence(tmp_path, mod, capsys):
    """Bug 12 of issue 16: the monitor ran only on steps that were also log steps."""
    summary = tiny(mod, tmp_path / "run", total_steps=4, log_every=3, knn_every=2)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], "eval/knn_top1" in r, "train/loss" in r) for r in rows] == [(2, True, False), (3, False, True),
                                                                          (4, True, True)]
    history = checkpoint.load(tmp_path / "run")["history"]
    assert history["knn_step"] == [2, 4] and history["step"] == [3, 4]
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-3].startswith(f"kNN monitor top-1 {100 * summary['knn_top1']:.1f}% on the held-out split")
    loss = "NT-Xent" if mod is simclr else "InfoNCE"
    assert out[-2].startswith(f"final {loss} loss {summary['final_loss']:.3f} nats")
    assert out[-1] == f"run folder: {tmp_path / 'run'}"


def test_probe_refuses_resume_and_writes_nothing(tmp_path, bad_input):
    """Bug 2 of issue 16: --resume was accepted and ignored (a fresh run in a new folder). A probe is an
    evaluation with nothing to continue, so --resume is a one-line error."""
    run = ["--resume", str(tmp_path / "old"), "--run-dir", str(tmp_path / "new")]
    bad_input(probe.main, probe.Args, [*run, "--raw"], "--resume is not supported by probe")
    assert not (tmp_path / "new").exists() and not (tmp_path / "old").exists()


def test_supervised_resumes_and_ends_at_a_larger_budget(tmp_path, kill_after_saves, bad_input):
    """Bug 2 of issue 16: supervised accepted --resume and ignored it; now it continues the run."""
    from rlgen.selfsup import supervised

    def train(name, **kw):
        base = dict(data="mnist5k", total_steps=30, batch_size=64, log_every=5, checkpoint_every=15,
                    run_dir=str(tmp_path / name), wandb="disabled", threads=1)
        return supervised.main(supervised.Args(**{**base, **kw}))

    bad_input(supervised.main, supervised.Args, ["--resume", str(tmp_path / "none"), "--run-dir", str(tmp_path / "n")],
              "no checkpoint at")
    assert not (tmp_path / "n").exists()
    full = train("full")
    arm, disarm = kill_after_saves
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        train("cut")
    disarm()
    assert checkpoint.load(tmp_path / "cut")["step"] == 15
    saved = (tmp_path / "cut" / "checkpoint.pt").read_bytes()
    bad_input(supervised.main, supervised.Args, ["--resume", str(tmp_path / "cut"), "--lr", "0.1"],
              "--lr 0.1 differs from the run being resumed")
    assert (tmp_path / "cut" / "checkpoint.pt").read_bytes() == saved
    resumed = supervised.main(supervised.Args(resume=str(tmp_path / "cut"), wandb="disabled"))
    assert resumed["updates"] == 30 and resumed["end_to_end_top1"] == full["end_to_end_top1"]
    a, b = checkpoint.load(tmp_path / "full")["encoder"], checkpoint.load(tmp_path / "cut")["encoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    longer = supervised.main(supervised.Args(resume=str(tmp_path / "cut"), total_steps=40, wandb="disabled"))
    assert longer["updates"] == 40 and longer["resumes"] == 2
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["updates"] == 40
    assert load_encoder(tmp_path / "cut").input_shape == (1, 28, 28)
