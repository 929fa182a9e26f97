"""AtariARI state probes and ST-DIM: splits, filters, metrics and losses against hand computations,
and tiny end-to-end runs on a few hundred real Atari frames."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlgen import checkpoint
from rlgen.encoders import load_encoder
from rlgen.errors import UsageError
from rlgen.nets import make_backbone
from rlgen.selfsup import atari_probe as ap
from rlgen.selfsup import stdim

FRAMES = 1400  # seven Breakout games: 4/1/2 episodes in the 70/10/20 split


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True)
def _shared_data(data_root, monkeypatch):
    """One data root for the module, so the small frame collections are made once."""
    monkeypatch.setenv("RLGEN_DATA", str(data_root))


# -- the metric and the categories, by hand ----------------------------------------------------------------
def test_weighted_f1_matches_hand_computation():
    y_true = torch.tensor([0, 0, 1, 1, 2])
    y_pred = torch.tensor([0, 1, 1, 1, 0])
    # class 0: TP 1, support 2, predicted 2 → F1 2/4; class 1: TP 2, support 2, predicted 3 → 4/5;
    # class 2: TP 0, support 1 → 0. Weighted by support: (2·0.5 + 2·0.8 + 1·0) / 5.
    assert ap.weighted_f1(y_true, y_pred) == pytest.approx(0.52)
    assert ap.weighted_f1(y_true, y_true) == 1.0
    # A class only predicted (7) weighs nothing itself but costs class 0 its precision.
    assert ap.weighted_f1(torch.tensor([0, 0]), torch.tensor([0, 7])) == pytest.approx(2 / 3)


def test_weighted_f1_agrees_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 12, 300), rng.integers(0, 15, 300)
    ours = ap.weighted_f1(torch.from_numpy(y_true), torch.from_numpy(y_pred))
    assert ours == pytest.approx(metrics.f1_score(y_true, y_pred, average="weighted"), abs=1e-12)


def test_categories_follow_atariari_rules():
    assert ap.CATEGORY_MAP["Breakout"]["player_x"] == ("agent_localization",)
    assert ap.CATEGORY_MAP["Breakout"]["ball_y"] == ("small_object_localization",)
    assert ap.CATEGORY_MAP["Breakout"]["score"] == ("score_clock_lives_display",)
    assert ap.CATEGORY_MAP["Breakout"]["blocks_hit_count"] == ("misc",)
    assert ap.CATEGORY_MAP["Breakout"]["block_bit_map_29"] == ("misc",)
    assert ap.CATEGORY_MAP["Pong"] == {
        "player_y": ("agent_localization",), "player_x": ("agent_localization",),
        "enemy_y": ("other_localization",), "enemy_x": ("other_localization",),
        "ball_x": ("small_object_localization",), "ball_y": ("small_object_localization",),
        "enemy_score": ("score_clock_lives_display",), "player_score": ("score_clock_lives_display",)}
    assert ap.CATEGORY_MAP["SpaceInvaders"]["missiles_y"] == ("small_object_localization",)
    assert ap.CATEGORY_MAP["MsPacman"]["num_lives"] == ("score_clock_lives_display",)
    assert ap.CATEGORY_MAP["MsPacman"]["player_direction"] == ("misc",)
    assert ap.CATEGORY_MAP["Boxing"]["clock"] == ("score_clock_lives_display",)
    assert len(ap.variables_of("Breakout")) == 5 + 30  # block_bit_map split into one variable per byte
    assert all(ap.CATEGORY_MAP[g][v] for g in ap.CATEGORY_MAP for v in ap.CATEGORY_MAP[g])


def test_category_means_average_within_then_across():
    f1 = {"player_y": 0.2, "ball_x": 0.4, "ball_y": 0.8, "enemy_score": 1.0}
    cats = ap.category_means(f1, "Pong")
    assert cats == pytest.approx({"agent_localization": 0.2, "small_object_localization": 0.6,
                                  "score_clock_lives_display": 1.0})
    assert np.mean(list(cats.values())) == pytest.approx((0.2 + 0.6 + 1.0) / 3)  # not the mean over variables


def test_label_entropy_in_nats():
    labels = torch.tensor([[0, 5, 1], [0, 5, 2], [0, 6, 3], [0, 6, 4]])
    torch.testing.assert_close(ap.label_entropy(labels), torch.tensor([0.0, math.log(2), math.log(4)],
                                                                       dtype=torch.float64))


def test_resolve_game_accepts_ids_and_refuses_unknown_games():
    assert ap.resolve_game("breakout") == ap.resolve_game("ALE/Breakout-v5") == "Breakout"
    assert ap.resolve_game("PongNoFrameskip-v4") == "Pong"
    with pytest.raises(UsageError, match="Breakout, Pong"):
        ap.resolve_game("Zork")


# -- the split, the entropy filter and de-duplication -----------------------------------------------------
def test_split_by_episode_is_disjoint_seeded_and_drops_short_episodes():
    lengths = [100, 70, 30, 200, 90, 65, 120, 80, 150, 66, 10]
    episode = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    tr, va, te = ap.split_episodes(episode, seed=3)
    eps = [set(episode[s].tolist()) for s in (tr, va, te)]
    assert not (eps[0] & eps[1]) and not (eps[0] & eps[2]) and not (eps[1] & eps[2])
    kept = {i for i, n in enumerate(lengths) if n > 64}
    assert eps[0] | eps[1] | eps[2] == kept  # the 30- and 10-frame episodes are gone
    assert [len(e) for e in eps] == [int(0.7 * 9), int(0.8 * 9) - int(0.7 * 9), 9 - int(0.8 * 9)]
    for s in (tr, va, te):  # whole episodes
        assert sum(lengths[e] for e in set(episode[s].tolist())) == len(s)
    again = ap.split_episodes(episode, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(again, (tr, va, te)))
    with pytest.raises(UsageError, match="too few to split"):
        ap.split_episodes(torch.repeat_interleave(torch.arange(3), 100))


def _fake_frames(monkeypatch, frames, ram, episode):
    def load(game, split, n, seed, root=None, cache=True):
        return dataclasses.make_dataclass("F", ["frames", "ram", "episode"])(frames, ram, episode)

    monkeypatch.setattr(ap, "load_atari_frames", load)


def test_prepare_drops_low_entropy_variables_and_duplicate_test_frames(monkeypatch):
    n_ep, length = 10, 70
    n = n_ep * length
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (n, 1, 3, 4), generator=gen, dtype=torch.uint8)
    episode = torch.arange(n_ep).repeat_interleave(length)
    ram = torch.zeros(n, 128, dtype=torch.long)
    pong = ap.variables_of("Pong")
    ram[:, pong["ball_x"]] = torch.randint(0, 256, (n,), generator=gen)  # high entropy: kept
    ram[:, pong["player_score"]] = (torch.arange(n) % 50 == 0).long()  # ≈ 0.1 nats: dropped
    tr, va, te = ap.split_episodes(episode, seed=0)
    # Plant duplicates: three test frames copy a train frame, one copies a validation frame.
    planted = te[:4]
    frames[planted[:3]] = frames[tr[5]].clone()
    frames[planted[3]] = frames[va[0]].clone()
    _fake_frames(monkeypatch, frames, ram, episode)
    data = ap.prepare_probe_data("Pong", frames=n, seed=0)
    assert "ball_x" in data.variables and "player_score" in data.dropped and "player_x" in data.dropped
    assert all(data.entropy[v] >= ap.ENTROPY_THRESHOLD for v in data.variables)
    assert data.test_duplicates == 4
    assert set(data.index["test"].tolist()) == set(te.tolist()) - set(planted.tolist())
    torch.testing.assert_close(data.labels["test"][:, data.variables.index("ball_x")],
                               ram[data.index["test"], pong["ball_x"]])


def test_prepare_on_real_breakout_frames():
    data = ap.prepare_probe_data("Breakout", frames=FRAMES, seed=0)
    assert {"ball_x", "ball_y", "player_x"} <= set(data.variables)
    assert all(v.startswith("block_bit_map") or v in ("blocks_hit_count", "score") for v in data.dropped)
    episode = ap.load_atari_frames("breakout", n=FRAMES).episode
    tr, va, te = (set(episode[data.index[k]].tolist()) for k in ("train", "val", "test"))
    assert tr and va and te and not (tr & va) and not (tr & te) and not (va & te)
    seen = set(ap.frame_digests(data.frames, torch.cat([data.index["train"], data.index["val"]])))
    assert not seen & set(ap.frame_digests(data.frames, data.index["test"]))


# -- the batched probes -------------------------------------------------------------------------------------
def test_batched_probes_equal_independent_linear_layers_under_adam():
    n, d, v, k, seed = 40, 8, 3, 5, 7
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, k, (n, v), generator=gen)
    fit = ap.train_probes(x, y, x[:10], y[:10], lr=1e-2, batch_size=16, epochs=1, num_classes=k, seed=seed,
                          lr_plateau=False)
    # The same draws as train_probes: initial weights, biases, then the batch order.
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(d)
    w0 = (torch.rand(d, v, k, generator=g) * 2 - 1) * bound
    b0 = (torch.rand(v, k, generator=g) * 2 - 1) * bound
    order = torch.randperm(n, generator=g).split(16)
    for j in range(v):
        lin = nn.Linear(d, k)
        with torch.no_grad():
            lin.weight.copy_(w0[:, j].T)
            lin.bias.copy_(b0[j])
        opt = torch.optim.Adam(lin.parameters(), lr=1e-2, eps=1e-5)
        for idx in order:
            opt.zero_grad()
            F.cross_entropy(lin(x[idx]), y[idx, j]).backward()
            opt.step()
        torch.testing.assert_close(fit.weight[:, j].T, lin.weight.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fit.bias[j], lin.bias.detach(), rtol=1e-5, atol=1e-6)


def test_probes_stop_on_their_own_and_keep_their_best_weights():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 16, generator=gen)
    easy = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # linearly decodable
    noise = torch.randint(0, 4, (600,), generator=gen)  # nothing to learn
    y = torch.stack([easy, noise], 1)
    fit = ap.train_probes(x[:400], y[:400], x[400:], y[400:], lr=5e-2, epochs=60, patience=5, num_classes=4)
    assert fit.best_val_acc[0] > 0.85
    assert fit.stopped_epoch[1] < 60 and fit.stopped_epoch[1] == fit.best_epoch[1] + 5
    acc = (fit.predict(x[400:]) == y[400:]).float().mean(0)
    assert acc[0].item() == pytest.approx(fit.best_val_acc[0], abs=1e-6)  # the best epoch's weights


def test_probe_encoder_end_to_end_and_table():
    torch.manual_seed(0)
    net = make_backbone("atari_cnn", (1, 210, 160))
    res = ap.probe_encoder(net, "breakout", frames=FRAMES, seed=0, epochs=3)
    assert set(res["f1"]) == set(res["variables"]) and all(0 <= f <= 1 for f in res["f1"].values())
    assert res["mean_f1"] == pytest.approx(np.mean(list(res["category_f1"].values())))
    assert res["counts"]["test_frames"] > 0 and res["seconds"]["features"] > 0
    table = ap.format_table("Breakout", {"random-init": res})
    assert "ours: random-init" in table and "paper: CPC" in table and "0.74" in table


def test_probe_refuses_an_encoder_for_other_frames():
    class Small(nn.Module):
        input_shape = (4, 84, 84)

        def forward(self, x):
            return x.flatten(1)

    with pytest.raises(UsageError, match=r"\(4, 84, 84\)"):
        ap.probe_encoder(Small(), "Breakout", frames=FRAMES)


def test_probe_cli_usage_errors(bad_input, tmp_path):
    never = ["--run-dir", str(tmp_path / "never")]
    bad_input(ap.main, ap.Args, ["--game", "Zork", "--random-init", "atari_cnn", *never],
              "no AtariARI RAM annotations for game 'Zork'")
    bad_input(ap.main, ap.Args, ["--game", "Breakout", *never], "--checkpoint RUN_DIR or --random-init")
    bad_input(ap.main, ap.Args, ["--random-init", "atari_cnn", "--checkpoint", "x", *never], "not both")
    bad_input(ap.main, ap.Args, ["--random-init", "no_such_net", *never], "unknown backbone 'no_such_net'")
    bad_input(ap.main, ap.Args, ["--random-init", "atari_cnn", "--epochs", "0", *never], "--epochs")
    bad_input(ap.main, ap.Args, ["--random-init", "atari_cnn", "--resume", str(tmp_path), *never],
              "--resume is not supported by atari_probe")
    bad_input(ap.main, ap.Args, ["--random-init", "atari_cnn", "--frames", "150", *never], "too few to split")
    assert not (tmp_path / "never").exists()


def test_probe_cli_random_init_backbone(run_dir, capsys):
    s = ap.main(ap.Args(game="breakout", random_init="atari_cnn", frames=FRAMES, epochs=2, run_dir=str(run_dir)))
    assert s["encoder"] == "random-init" and s["algo"] == "atari_probe" and s["resumes"] == 0
    assert s["eval_seconds"] > 0 and 0 <= s["mean_f1"] <= 1
    assert json.loads((run_dir / "summary.json").read_text())["encoder_algo"] == "random-init"
    assert "random-init on Breakout: mean weighted F1" in capsys.readouterr().out


# -- ST-DIM ---------------------------------------------------------------------------------------------------
def _ce(scores, i):
    """-log softmax(scores)[i], written out."""
    return -(scores[i] - math.log(sum(math.exp(s) for s in scores)))


def test_global_local_loss_matches_loops():
    torch.manual_seed(0)
    b, g, c, h, w = 3, 5, 4, 2, 3
    loss_fn = stdim.GlobalLocalInfoNCE(g, c)
    glob, local = torch.randn(b, g), torch.randn(b, c, h, w)
    wt, bias = loss_fn.proj.weight.detach(), loss_fn.proj.bias.detach()
    total = 0.0
    for m in range(h):
        for n in range(w):
            for i in range(b):
                pred = [sum(float(wt[o, q] * glob[i, q]) for q in range(g)) + float(bias[o]) for o in range(c)]
                scores = [sum(pred[o] * float(local[j, o, m, n]) for o in range(c)) for j in range(b)]
                total += _ce(scores, i)
    assert loss_fn(glob, local).item() == pytest.approx(total / (h * w * b), rel=1e-5)


def test_local_local_loss_matches_loops():
    torch.manual_seed(1)
    b, c, h, w = 4, 3, 2, 2
    loss_fn = stdim.LocalLocalInfoNCE(c)
    now, nxt = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    wt, bias = loss_fn.proj.weight.detach(), loss_fn.proj.bias.detach()
    total = 0.0
    for m in range(h):
        for n in range(w):
            for i in range(b):
                pred = [sum(float(wt[o, q] * now[i, q, m, n]) for q in range(c)) + float(bias[o]) for o in range(c)]
                scores = [sum(pred[o] * float(nxt[j, o, m, n]) for o in range(c)) for j in range(b)]
                total += _ce(scores, i)
    assert loss_fn(now, nxt).item() == pytest.approx(total / (h * w * b), rel=1e-5)


def test_pairs_stay_in_one_train_episode():
    episode = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    allowed = torch.tensor([0, 1, 2, 5, 6, 7, 8])  # episode 1 is not a train episode
    assert stdim.pair_anchors(episode, allowed, 1).tolist() == [0, 1, 5, 6, 7]
    assert stdim.pair_anchors(episode, allowed, 2).tolist() == [0, 5, 6]


TINY = dict(data="atari-frames:breakout", frames=FRAMES, batch_size=16, lr=1e-3, minutes=None, log_every=5,
            wandb="disabled", amp="off")


def test_tiny_stdim_run_learns_and_its_encoder_can_be_probed(run_dir, capsys):
    out = stdim.main(stdim.Args(run_dir=str(run_dir), total_steps=40, checkpoint_every=0, **TINY))
    curve = [row["train/loss"] for row in map(json.loads, open(run_dir / "metrics.jsonl"))]
    assert out["updates"] == 40 and len(curve) == 8
    assert curve[-1] < curve[0] - 0.15 and curve[-1] == min(curve), curve  # down from about 2 ln 16 = 5.5
    assert curve[0] == pytest.approx(2 * math.log(16), abs=0.5)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algo"] == "stdim" and summary["updates"] == 40 and (run_dir / "loss_curve.png").exists()
    # Pretraining saw only the probe's train episodes.
    assert summary["train_episodes"] < len(torch.unique(ap.load_atari_frames("breakout", n=FRAMES).episode))
    frozen = load_encoder(run_dir)
    assert frozen.out_dim == 256 and tuple(frozen.input_shape) == (1, 210, 160) and frozen.algo == "stdim"
    assert not any(p.requires_grad for p in frozen.net.parameters())
    res = ap.main(ap.Args(game="breakout", checkpoint=str(run_dir), frames=FRAMES, epochs=2,
                          run_dir=str(run_dir / "probe")))
    assert res["encoder"] == "stdim" and 0 <= res["mean_f1"] <= 1
    assert res["pretraining_saw_only_probe_train_episodes"] is True
    assert json.loads((run_dir / "probe" / "summary.json").read_text())["published"]["cpc"] == 0.74
    printed = capsys.readouterr().out
    assert "paper: ST-DIM" in printed
    # Both runs end with their results in words (issue 16, bug 13).
    chance = 2 * math.log(16)
    assert f"final InfoNCE loss {summary['final_loss']:.3f} nats (chance {chance:.3f}) after 40 updates" in printed
    assert f": mean weighted F1 {res['mean_f1']:.3f} (the mean over " in printed


def test_stdim_resume_after_kill_gives_the_same_encoder(tmp_path, kill_after_saves):
    arm, disarm = kill_after_saves
    ref = stdim.main(stdim.Args(run_dir=str(tmp_path / "a"), total_steps=6, checkpoint_every=3, **TINY))
    arm(1)
    with pytest.raises(KeyboardInterrupt):
        stdim.main(stdim.Args(run_dir=str(tmp_path / "b"), total_steps=6, checkpoint_every=3, **TINY))
    disarm()
    resumed = stdim.main(stdim.Args(resume=str(tmp_path / "b")))
    assert resumed["updates"] == ref["updates"] == 6
    a, b = (checkpoint.load(tmp_path / r, algo="stdim")["encoder"] for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stdim_cli_usage_errors(bad_input):
    bad_input(stdim.main, stdim.Args, ["--data", "mnist5k"], "ST-DIM trains on Atari frames")
    bad_input(stdim.main, stdim.Args, ["--data", "atari-frames:zork"], "no AtariARI RAM annotations")
    bad_input(stdim.main, stdim.Args, ["--batch-size", "1"], "at least 2 pairs")
    bad_input(stdim.main, stdim.Args, ["--minutes", "none"], "--minutes or --total-steps")
    bad_input(stdim.main, stdim.Args, ["--amp", "maybe"], "--amp")
    bad_input(stdim.main, stdim.Args, ["--gap", "0"], "--gap")
