"""Stability of one DQN configuration on classic control over many seeds: how the defaults were chosen.

Each ``--set NAME=VALUE`` overrides one field of ``rlgen.rl.dqn.Args`` (values are read as JSON where
they parse, else as text); everything else keeps the environment's defaults. Every seed trains for the
whole budget and the script prints, per seed, the first solve, the post-solve fraction (share of later
evaluations at or above the threshold), the final evaluation of the last weights and every evaluation,
then the counts across seeds. docs/dqn_stability.md lists the configurations tried and what they gave.

    python experiments/sweep_dqn_cartpole.py --set loss=huber --set layer_norm=false --set lr_end=0.003
    python experiments/sweep_dqn_cartpole.py --seeds 0,1,2,3,4,5,6,7,8,9 --json sweep.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile

import torch

from rlgen.rl import dqn
from rlgen.track import read_metrics


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, _, text = item.partition("=")
        try:
            out[name.replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            out[name.replace("-", "_")] = text
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    override = parse_set(opts.set)
    rows = []
    for seed in (int(s) for s in opts.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            s = dqn.main(dqn.Args(**{"env": opts.env, "seed": seed, "run_dir": f"{tmp}/run", "wandb": "disabled",
                                     "gif": False, "checkpoint_every": 0, **override}))
            evals = [round(r["eval/return_mean"], 1) for r in read_metrics(f"{tmp}/run") if "eval/return_mean" in r]
        rows.append({"seed": seed, "solved": s["solved_at_env_step"], "post": s["post_solve_fraction"],
                     "final": s["final_eval_return_mean"], "solve_seconds": s["solved_at_train_seconds"],
                     "evals": evals})
        post = f"{s['post_solve_fraction']:.2f}" if s["post_solve_fraction"] is not None else "-"
        print(f"seed {seed}: solved at {s['solved_at_env_step']}, post {post}, "
              f"final {s['final_eval_return_mean']:.1f}; evaluations {evals}", flush=True)
    threshold = s["reward_threshold"]
    posts = [r["post"] for r in rows if r["post"] is not None]
    mean_post = statistics.fmean(posts) if posts else float("nan")
    print(f"{override or 'defaults'} on {opts.env}: final ≥ {threshold:g} on "
          f"{sum(r['final'] >= threshold for r in rows)}/{len(rows)}; solved {len(posts)}/{len(rows)}; post-solve "
          f"fraction min {min(posts, default=float('nan')):.2f}, mean {mean_post:.2f}, "
          f"≥ 0.9 on {sum(p >= 0.9 for p in posts)}; median first solve at "
          f"{statistics.median([r['solved'] or float('inf') for r in rows]):,.0f} steps")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"env": opts.env, "override": override, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
