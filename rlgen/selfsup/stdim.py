"""ST-DIM, Spatiotemporal Deep InfoMax (Anand et al. 2019, "Unsupervised State Representation
Learning in Atari", section 4), pretraining the AtariARI encoder on consecutive Atari frames.

For a pair of frames (x_t, x_t+1) of one episode, the encoder gives a global feature φ(x) (256-d)
and a map of local features φ_mn(x) (128-d at each of the 11×8 positions after the third conv).
Two InfoNCE objectives, the negatives being the other pairs of the batch:

    global-local:  g_mn(x_t, x_t+1) = φ(x_t)ᵀ W_g φ_mn(x_t+1)
    local-local:   f_mn(x_t, x_t+1) = φ_mn(x_t)ᵀ W_l φ_mn(x_t+1)
    L = mean over m, n of [ CE of g_mn over the batch + CE of f_mn over the batch ]

where, at each position, anchor i's positive is its own next frame and the other B − 1 next
frames of the batch are its negatives. At chance each term is ln B, so the loss starts near 2 ln B.

Pairs never cross an episode boundary, and pretraining sees only the train episodes of the
AtariARI probe split (:func:`rlgen.selfsup.atari_probe.split_episodes` with ``--split-seed``, the
probe's ``--seed``), so the probe's validation and test episodes stay unseen. On CPUs with
bfloat16 matrix units the encoder runs in bf16 autocast with channels-last tensors (about 3× faster
here); the InfoNCE scores are computed in float32.

    python -m rlgen.selfsup.stdim --data atari-frames:breakout --minutes 30
    python -m rlgen.selfsup.atari_probe --game Breakout --checkpoint RUN_DIR
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen import cli
from rlgen.data.atari_frames import load_atari_frames
from rlgen.encoders import encoder_record, load_encoder
from rlgen.errors import UsageError
from rlgen.lifecycle import Run
from rlgen.machine import use_amp
from rlgen.nets import AtariCNN
from rlgen.plots import save_curves
from rlgen.seeding import seed_everything
from rlgen.selfsup.atari_probe import format_table, probe_encoder, resolve_game, split_episodes
from rlgen.track import RunArgs

ALGO = "stdim"
FRAME_SHAPE = (1, 210, 160)


@dataclass
class Args(RunArgs):
    data: str = "atari-frames:breakout"
    """frame data: atari-frames:GAME (a game with AtariARI RAM annotations)"""
    frames: int = 50_000
    """frames of the atari-frames train collection to load (the probe's default, so the cache is shared)"""
    data_seed: int = 0
    """seed of the frame collection (the probe's --data-seed)"""
    split_seed: int = 0
    """seed of the AtariARI episode split; pretraining uses its train episodes only (the probe's --seed)"""
    gap: int = 1
    """frames between the two frames of a pair (1: consecutive, as in the paper)"""
    minutes: float | None = 30.0
    """stop after this much training wall time (none: only --total-steps)"""
    total_steps: int | None = None
    """stop after this many updates (default: none, only --minutes)"""
    batch_size: int = 64
    """pairs per update (each anchor's negatives are the other pairs)"""
    lr: float = 3e-4
    """Adam learning rate (the paper's)"""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast for the encoder (auto: on where the CPU has bf16 units, or on CUDA)"""
    log_every: int = 50
    """updates between logged loss averages"""
    checkpoint_every: int = 1000
    """updates between checkpoints (0: only at the end)"""
    probe: bool = False
    """at the end, run the AtariARI probe on the same frames and split (a few minutes) and record its F1"""


# Flags a continued run may change: the budgets (a larger one trains on from the checkpoint; no schedule depends
# on it), the cadences, and the probe that runs only at the end.
RESUME_CHANGEABLE = frozenset({"minutes", "total_steps", "checkpoint_every", "log_every", "probe"})


# ---------------------------------------------------------------------------------------------
# The two objectives
# ---------------------------------------------------------------------------------------------
def infonce_diagonal(scores: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (..., B, B) score matrices whose positives lie on the diagonal."""
    b = scores.shape[-1]
    target = torch.arange(b, device=scores.device).repeat(scores[..., 0, 0].numel())
    return F.cross_entropy(scores.reshape(-1, b), target)


class GlobalLocalInfoNCE(nn.Module):
    """ST-DIM's global-local objective (Anand et al. 2019, sec. 4): the global feature of x_t,
    through a linear map W_g, scored against the local feature of x_t+1 at each position (m, n).

    ``forward(global_t (B, G), local_next (B, C, H, W))``: score[m, n, i, j] = (W_g φ(x_t^i))ᵀ
    φ_mn(x_t+1^j); cross-entropy with positive j = i at each position, averaged over positions
    and anchors.
    """

    def __init__(self, global_dim: int = 256, local_dim: int = 128) -> None:
        super().__init__()
        self.proj = nn.Linear(global_dim, local_dim)

    def forward(self, global_t: torch.Tensor, local_next: torch.Tensor) -> torch.Tensor:
        pred = self.proj(global_t)
        return infonce_diagonal(torch.einsum("ic,jcmn->mnij", pred, local_next))


class LocalLocalInfoNCE(nn.Module):
    """ST-DIM's local-local objective (Anand et al. 2019, sec. 4): the local feature of x_t at
    (m, n), through a linear map W_l, scored against the local feature of x_t+1 at the same (m, n).

    ``forward(local_t (B, C, H, W), local_next (B, C, H, W))``: score[m, n, i, j] =
    (W_l φ_mn(x_t^i))ᵀ φ_mn(x_t+1^j); cross-entropy with positive j = i, averaged as above.
    """

    def __init__(self, local_dim: int = 128) -> None:
        super().__init__()
        self.proj = nn.Linear(local_dim, local_dim)

    def forward(self, local_t: torch.Tensor, local_next: torch.Tensor) -> torch.Tensor:
        pred = self.proj(local_t.permute(0, 2, 3, 1))  # (B, H, W, C)
        return infonce_diagonal(torch.einsum("imnc,jcmn->mnij", pred, local_next))


class STDIM(nn.Module):
    """The encoder and both objectives' linear maps; ``forward`` returns (global-local, local-local) losses."""

    def __init__(self, input_shape: tuple[int, ...] = FRAME_SHAPE) -> None:
        super().__init__()
        self.encoder = AtariCNN(input_shape)
        local_dim = self.encoder.local_shape[0]
        self.global_local = GlobalLocalInfoNCE(self.encoder.out_dim, local_dim)
        self.local_local = LocalLocalInfoNCE(local_dim)

    def forward(self, x_t: torch.Tensor, x_next: torch.Tensor, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=amp):
            # One pass over both frames; split (not slicing) so the backward is a single concatenation.
            local_t, local_next = self.encoder.local_features(torch.cat([x_t, x_next])).split(len(x_t))
            global_t = self.encoder.fc(self.encoder.late(local_t))
        # The scores in float32: bf16 keeps ~3 significant digits, too few for a softmax over the batch.
        local_t, local_next = local_t.float(), local_next.float()
        return self.global_local(global_t.float(), local_next), self.local_local(local_t, local_next)


# ---------------------------------------------------------------------------------------------
# Data: consecutive frames of the probe's train episodes
# ---------------------------------------------------------------------------------------------
def game_of(data: str) -> str:
    """``atari-frames:breakout`` → ``Breakout`` (a game with AtariARI annotations)."""

    prefix, _, arg = data.partition(":")
    if prefix != "atari-frames" or not arg:
        raise UsageError(f"--data {data!r}: ST-DIM trains on Atari frames, e.g. atari-frames:breakout")
    return resolve_game(arg)


def pair_anchors(episode: torch.Tensor, allowed: torch.Tensor, gap: int) -> torch.Tensor:
    """Indices t in ``allowed`` whose frame t + gap exists in the same episode."""
    n = len(episode)
    t = allowed[allowed + gap < n]
    return t[episode[t + gap] == episode[t]]


def load_pairs(args: Args) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """All frames, the pair anchors in the probe's train episodes, and counts."""

    game = game_of(args.data)
    data = load_atari_frames(game, "train", n=args.frames, seed=args.data_seed)
    train, _, _ = split_episodes(data.episode, args.split_seed)
    anchors = pair_anchors(data.episode, train, args.gap)
    if len(anchors) < args.batch_size:
        raise UsageError(f"{args.data}: {len(anchors)} frame pairs {args.gap} apart in the train episodes of "
                         f"{args.frames} frames, fewer than --batch-size {args.batch_size}; use more --frames")
    counts = {"train_frames": len(train), "train_episodes": int(torch.unique(data.episode[train]).numel()),
              "pairs": len(anchors)}
    return data.frames, anchors, counts


def resolve(args: Args) -> Args:
    """The checks the numeric ranges (:func:`rlgen.cli.check_numbers`) do not cover; UsageError on bad input."""
    game_of(args.data)
    if args.batch_size < 2:
        raise UsageError(f"--batch-size {args.batch_size}: InfoNCE needs at least 2 pairs (the others are negatives)")
    if args.minutes is None and args.total_steps is None:
        raise UsageError("give --minutes or --total-steps (or both): nothing else ends the run")
    return args


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict[str, Any]:
    """Pretrain; returns the summary that is also written to ``summary.json``."""
    run = Run(args, ALGO, what=args.data, changeable=RESUME_CHANGEABLE, check=resolve)
    args, device, run_dir = run.args, run.device, run.run_dir
    frames, anchors, counts = load_pairs(args)  # a missing or too small collection fails here, nothing written
    amp = use_amp(args.amp, device)
    seed_everything(args.seed)
    pair_gen = torch.Generator().manual_seed(args.seed)

    model = STDIM(tuple(frames.shape[1:])).to(device)
    # oneDNN's preferred layout: with bf16 it roughly halves the conv time on a CPU.
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    run.record(encoder_record=encoder_record("atari_cnn", frames.shape[1:], "unit", "encoder",
                                             description=f"ST-DIM AtariCNN pretrained on {args.data}"))
    step, history = run.restore(encoder=model.encoder, global_local=model.global_local,
                                local_local=model.local_local, optimizer=opt, pair_rng=pair_gen,
                                counters=dict(step=0, history={"step": [], "loss": [], "global_local": [],
                                                               "local_local": []}))
    image_shape = list(frames.shape[1:])

    with run.start(bar_keys=("train/loss", "train/global_local", "train/local_local")) as tracker:
        run_dir = run.run_dir  # the folder claimed as the run started
        chance = 2 * math.log(args.batch_size)
        print(f"ST-DIM on {args.data}: {counts['pairs']} pairs from {counts['train_episodes']} train episodes "
              f"({counts['train_frames']} frames), batch {args.batch_size}, bf16 autocast {'on' if amp else 'off'}; "
              f"loss at chance {chance:.3f}", flush=True)

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            t = anchors[torch.randint(len(anchors), (args.batch_size,), generator=pair_gen)]
            x = frames[torch.cat([t, t + args.gap])].to(device)
            x = x.contiguous(memory_format=torch.channels_last).float().div_(255.0)
            return x[: args.batch_size], x[args.batch_size:]

        budget = args.minutes * 60 if args.minutes is not None else math.inf
        max_steps = args.total_steps if args.total_steps is not None else math.inf
        bar = tracker.progress(args.total_steps, initial=step)  # type: ignore[arg-type]  # None: no known total
        window = np.zeros(3)
        in_window = 0
        model.train()
        start_seconds, start_step = run.train_clock.seconds, step
        try:
            while step < max_steps and run.train_clock.seconds < budget:
                with run.train_clock:
                    x_t, x_next = batch()
                    loss_gl, loss_ll = model(x_t, x_next, amp)
                    loss = loss_gl + loss_ll
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                step += 1
                window += [float(loss.detach()), float(loss_gl.detach()), float(loss_ll.detach())]
                in_window += 1
                bar.update(1)
                if step % args.log_every == 0:
                    mean = window / in_window
                    history["step"].append(step)
                    for key, value in zip(("loss", "global_local", "local_local"), mean):
                        history[key].append(float(value))
                    seconds = run.train_clock.seconds
                    tracker.log({"train/loss": mean[0], "train/global_local": mean[1], "train/local_local": mean[2],
                                 "time/train_seconds": seconds,
                                 "time/steps_per_second": (step - start_step) / max(seconds - start_seconds, 1e-9)},
                                step)
                    window[:], in_window = 0.0, 0
                if run.checkpoint_due(step - 1, step, args.checkpoint_every):
                    run.save(step, image_shape=image_shape, history=history)
        finally:
            bar.close()
        if in_window:  # the last, partial window
            mean = window / in_window
            history["step"].append(step)
            for key, value in zip(("loss", "global_local", "local_local"), mean):
                history[key].append(float(value))
        run.save(step, image_shape=image_shape, history=history)

        train_seconds = run.train_clock.seconds
        summary: dict[str, Any] = {
            "data": args.data, "split_seed": args.split_seed,
            "data_seed": args.data_seed, "frames": args.frames, "gap": args.gap, "batch_size": args.batch_size,
            "lr": args.lr, "amp": amp, "updates": step, "pairs_seen": step * args.batch_size,
            "train_seconds": train_seconds,
            "steps_per_second": round(step / max(train_seconds, 1e-9), 3),
            "final_loss": history["loss"][-1] if history["loss"] else None,
            "final_global_local": history["global_local"][-1] if history["loss"] else None,
            "final_local_local": history["local_local"][-1] if history["loss"] else None,
            "loss_chance": round(chance, 4), **counts,
        }
        if history["step"]:

            path = save_curves(run_dir / "loss_curve.png",
                               {"total": (history["step"], history["loss"]),
                                "global-local": (history["step"], history["global_local"]),
                                "local-local": (history["step"], history["local_local"]),
                                f"chance (2 ln {args.batch_size})": ([0, step], [chance, chance])},
                               xlabel="update", ylabel="InfoNCE loss (nats)", title=f"ST-DIM on {args.data}")
            tracker.log_image("loss_curve", path)
        results = [f"final InfoNCE loss {summary['final_loss']:.3f} nats (chance {chance:.3f}) after {step:,} updates, "
                   f"{summary['train_seconds'] / 60:.1f} min of training"] if summary["final_loss"] is not None else []
        if args.probe:

            with run.after_clock:
                frozen = load_encoder(run_dir, device)
                probe_bar = tracker.progress(100, unit="epoch", desc="final evaluation (AtariARI probe)")
                res = probe_encoder(frozen, game_of(args.data), frames=args.frames, seed=args.split_seed,
                                    data_seed=args.data_seed, log=lambda m: print(m, flush=True), bar=probe_bar)
                probe_bar.close()
            print(format_table(res["game"], {f"ST-DIM {summary['train_seconds'] / 60:.1f} min": res}))
            summary.update(probe_mean_f1=res["mean_f1"], probe_category_f1=res["category_f1"], probe_f1=res["f1"],
                           probe_seconds=res["seconds"]["total"])
            results.append(f"AtariARI probe: mean weighted F1 {summary['probe_mean_f1']:.3f} on {game_of(args.data)}")
        return run.finish(summary, results=results)


if __name__ == "__main__":
    cli.run(main, Args, description="ST-DIM pretraining of the AtariARI encoder on Atari frames (Anand et al. 2019).")
