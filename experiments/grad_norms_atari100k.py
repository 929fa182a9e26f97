"""Gradient norms of the Atari 100k preset's updates, unclipped: would a gradient-norm clip act?

Dopamine's DrQ(ε) does not clip the gradient, and neither does ``--preset atari100k``; DQN's default elsewhere
clips at 10 (as SB3). This runs the preset's first ``--steps`` agent steps on each game with the clip out of
reach and prints, per game, how many updates had a norm above ``--clip`` and the largest, and the largest norm
per 100 updates. Same seed, same CPU: the same numbers.

    python experiments/grad_norms_atari100k.py --games Boxing --steps 3600
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rlgen.machine import bf16_cpu, cpu_name
from rlgen.rl import dqn


def machine() -> str:
    units = "yes (the CNN runs under bf16 autocast)" if bf16_cpu() else "no (float32)"
    return f"{cpu_name()}; bf16 units: {units}"


def norms_of_run(game: str, steps: int, seed: int) -> np.ndarray:
    """The global gradient norm of every update of the preset's first ``steps`` steps on ``game``, unclipped."""
    seen: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        # a clip at 1e9 never acts, but makes each update measure its norm, which on_update hears
        dqn.main(dqn.Args(env=game, preset="atari100k", seed=seed, threads=0, wandb="disabled",
                          total_steps=steps, max_grad_norm=1e9, eval_every=10**9, eval_episodes=1,
                          final_eval_episodes=1, gif=False, checkpoint_every=10**9, save_replay=False,
                          run_dir=str(Path(tmp) / "run")), on_update=lambda _, norm: seen.append(norm))
    return np.array(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", default="Breakout,Boxing,Pong")
    parser.add_argument("--steps", type=int, default=3_600, help="agent steps (updates start after 1,600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip", type=float, default=10.0, help="the clip to test against")
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args()
    if opts.steps <= 1_600:
        print(f"error: --steps {opts.steps} makes no update; the preset learns after step 1,600 (accepted: > 1600)",
              file=sys.stderr)
        raise SystemExit(2)
    print(f"machine: {machine()}")
    results = {}
    for game in [g.strip() for g in opts.games.split(",") if g.strip()]:
        n = norms_of_run(game, opts.steps, opts.seed)
        over = np.nonzero(n > opts.clip)[0] + 1
        per_100 = [round(float(n[k:k + 100].max()), 2) for k in range(0, len(n), 100)]
        results[game] = {"updates": len(n), "over_clip": len(over), "first_over": over[:10].tolist(),
                         "max": float(n.max()), "median": float(np.median(n)), "max_per_100_updates": per_100}
        print(f"\n{game}: {len(n):,} updates, {len(over)} with a gradient norm above {opts.clip:g} (first at updates "
              f"{', '.join(map(str, over[:10])) or 'none'}); largest {n.max():.2f}, median {np.median(n):.2f}")
        print("  largest per 100 updates: " + ", ".join(f"{x:g}" for x in per_100))
    if opts.json:
        Path(opts.json).write_text(json.dumps({"machine": machine(), "seed": opts.seed, "steps": opts.steps,
                                               "clip": opts.clip, "games": results}, indent=1))


if __name__ == "__main__":
    main()
