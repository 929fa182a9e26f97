"""REINFORCE on CartPole-v1, 10 seeds with and without the value baseline, in one process.

"Solved" is pytorch/examples' rule: the exponential moving average (α = 0.05, starting at 10) of
episode return first reaching 475. Each run stops when solved, or after the default budget.

    python experiments/bench_reinforce.py [--json bench_reinforce.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlgen.rl import reinforce as rf  # noqa: E402

REFERENCE = "pytorch/examples reinforce.py (no baseline), measured here: 10 of 10 solved, median ≈ 476, range 304–1380"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write every row to this JSON file")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--variants", default="baseline,no-baseline")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    opts = parser.parse_args()
    seeds = [int(s) for s in opts.seeds.split(",") if s]
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="bench_reinforce-"))
    rows, started = [], time.time()
    for variant in opts.variants.split(","):
        baseline = variant == "baseline"
        print(f"\nREINFORCE on CartPole-v1, {'with' if baseline else 'without'} the value baseline "
              f"(defaults otherwise)")
        print(f"{'seed':>5}{'solved at episode':>19}{'env steps':>11}{'train s':>9}{'wall s':>8}{'greedy eval':>13}")
        for seed in seeds:
            with contextlib.redirect_stdout(io.StringIO()):
                s = rf.main(rf.Args(env="CartPole", seed=seed, baseline=baseline, device="cpu", gif=False,
                                    run_dir=str(out / f"{variant}-{seed}")))
            row = {"variant": variant, "seed": seed, "solved_at_episode": s["solved_at_episode"],
                   "episodes": s["episodes"], "env_steps": s["env_steps"], "train_seconds": s["train_seconds"],
                   "wall_seconds": s["wall_seconds"], "eval_return_mean": s["eval_return_mean"]}
            rows.append(row)
            solved = s["solved_at_episode"] if s["solved_at_episode"] is not None else f"not in {s['episodes']}"
            print(f"{seed:>5}{solved!s:>19}{s['env_steps']:>11}{s['train_seconds']:>9.1f}{s['wall_seconds']:>8.1f}"
                  f"{s['eval_return_mean']:>13.1f}", flush=True)
        mine = [r for r in rows if r["variant"] == variant]
        done = [r["solved_at_episode"] for r in mine if r["solved_at_episode"] is not None]
        if done:
            print(f"  {len(done)} of {len(mine)} seeds solved; episodes to solve: median "
                  f"{statistics.median(done):g}, range {min(done)}–{max(done)}; wall s per seed: median "
                  f"{statistics.median(r['wall_seconds'] for r in mine):.1f}")
        else:
            print(f"  0 of {len(mine)} seeds solved")
        print(f"  reference: {REFERENCE}")
    print(f"\ntotal wall time {time.time() - started:.0f} s; run folders in {out}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
