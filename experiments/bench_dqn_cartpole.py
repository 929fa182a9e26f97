"""rlgen DQN against Stable-Baselines3 DQN on CartPole-v1, same seeds, same evaluation, one process.

SB3 runs with the RL-Zoo hyperparameters (``hyperparams/dqn.yml``, see ../shared/REFERENCE.md);
rlgen with its defaults. Both are evaluated greedily every ``--eval-every`` environment steps on
the same 20 episode seeds, and a run counts as solved at the first evaluation whose mean reaches
475 within 50,000 environment steps. "Seconds to solve" is training time up to that evaluation,
evaluation time excluded for both, as wall seconds and as CPU seconds of the process (both run
with one torch thread, so on an idle machine the two agree; on a shared, loaded one CPU seconds
are the figure that other processes cannot inflate, and the ratio is taken on them).

    python experiments/bench_dqn_cartpole.py [--seeds 0,1,2,3,4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from rlgen.rl import dqn
from rlgen.rl.envs import evaluate, make_env

ENV = "CartPole-v1"
THRESHOLD = 475.0
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
           target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
           exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))


def run_rlgen(seed: int, budget: int, eval_every: int, episodes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        s = dqn.main(dqn.Args(env=ENV, seed=seed, total_steps=budget, eval_every=eval_every,
                              eval_episodes=episodes, run_dir=f"{tmp}/run", wandb="disabled", gif=False,
                              checkpoint_every=0, stop_on_solve=True))
    return {"solved": s["solved_at_env_step"] is not None, "steps": s["solved_at_env_step"],
            "seconds": s["solved_at_train_seconds"], "cpu": s["solved_at_train_cpu_seconds"],
            "best": s["best_eval_return"]}


def run_sb3(seed: int, budget: int, eval_every: int, episodes: int) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Judge(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.train_seconds, self.tick = 0.0, time.perf_counter()
            self.train_cpu, self.tick_cpu = 0.0, time.process_time()
            self.solved_at: int | None = None
            self.solved_seconds: float | None = None
            self.solved_cpu: float | None = None
            self.best = -np.inf

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every:
                return True
            self.train_seconds += time.perf_counter() - self.tick
            self.train_cpu += time.process_time() - self.tick_cpu
            returns = evaluate(lambda o: self.model.predict(o, deterministic=True)[0], lambda: make_env(ENV),
                               episodes, seed=10_000 * (seed + 1))
            self.best = max(self.best, float(returns.mean()))
            self.tick, self.tick_cpu = time.perf_counter(), time.process_time()
            if returns.mean() >= THRESHOLD:
                self.solved_at, self.solved_seconds = self.num_timesteps, self.train_seconds
                self.solved_cpu = self.train_cpu
                return False
            return True

    judge = Judge()
    model = DQN("MlpPolicy", ENV, seed=seed, verbose=0, device="cpu", **ZOO)
    judge.tick, judge.tick_cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=budget, callback=judge)
    return {"solved": judge.solved_at is not None, "steps": judge.solved_at, "seconds": judge.solved_seconds,
            "cpu": judge.solved_cpu, "best": judge.best}


def median_of(rows: list[dict], key: str) -> float:
    """Median over seeds; a seed that never solved counts as infinitely slow."""
    return statistics.median([r[key] if r["solved"] else float("inf") for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--budget", type=int, default=50_000, help="environment steps allowed to solve")
    parser.add_argument("--eval-every", type=int, default=2_500, help="environment steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--skip-sb3", action="store_true", help="run rlgen only")
    parser.add_argument("--json", help="write the results here")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in opts.seeds.split(",")]
    rows = []
    for seed in seeds:
        ours = run_rlgen(seed, opts.budget, opts.eval_every, opts.eval_episodes)
        theirs = None if opts.skip_sb3 else run_sb3(seed, opts.budget, opts.eval_every, opts.eval_episodes)
        rows.append({"seed": seed, "rlgen": ours, "sb3": theirs})
        print(f"seed {seed}: rlgen {ours}  sb3 {theirs}", file=sys.stderr, flush=True)

    def cell(r: dict | None) -> str:
        if r is None:
            return f"{'-':>8} {'-':>7} {'-':>7} {'-':>7}"
        return (f"{'yes':>8} {r['steps']:>7} {r['seconds']:>7.1f} {r['cpu']:>7.1f}" if r["solved"]
                else f"{'no':>8} {'-':>7} {'-':>7} {'-':>7}")

    print(f"\nDQN on {ENV}: solved = greedy mean over {opts.eval_episodes} episodes ≥ {THRESHOLD:g} "
          f"within {opts.budget} env steps (evaluated every {opts.eval_every})")
    print(f"{'seed':>4} | {'rlgen':>8} {'steps':>7} {'wall s':>7} {'cpu s':>7} | {'SB3 zoo':>8} {'steps':>7} "
          f"{'wall s':>7} {'cpu s':>7} | {'wall ratio':>10} {'cpu ratio':>9}")
    for row in rows:
        o, t = row["rlgen"], row["sb3"]
        both = t is not None and o["solved"] and t["solved"]
        ratios = (f"{o['seconds'] / t['seconds']:10.3f} {o['cpu'] / t['cpu']:9.3f}" if both
                  else f"{'-':>10} {'-':>9}")
        print(f"{row['seed']:>4} | {cell(o)} | {cell(t)} | {ratios}")
    ours = [r["rlgen"] for r in rows]
    med = {k: median_of(ours, k) for k in ("seconds", "cpu")}
    print(f"rlgen: solved {sum(r['solved'] for r in ours)}/{len(ours)}, median to solve "
          f"{med['seconds']:.2f} wall s, {med['cpu']:.2f} cpu s")
    result = {"env": ENV, "budget": opts.budget, "rows": rows, "rlgen_median_seconds": med["seconds"],
              "rlgen_median_cpu_seconds": med["cpu"]}
    if not opts.skip_sb3:
        theirs = [r["sb3"] for r in rows]
        med_t = {k: median_of(theirs, k) for k in ("seconds", "cpu")}
        print(f"SB3:   solved {sum(r['solved'] for r in theirs)}/{len(theirs)}, median to solve "
              f"{med_t['seconds']:.2f} wall s, {med_t['cpu']:.2f} cpu s  (unsolved seeds count as infinite)")
        ratio = {k: (med[k] / med_t[k] if np.isfinite(med_t[k]) else 0.0) for k in med}
        print(f"median time-to-solve ratio rlgen/SB3: {ratio['seconds']:.3f} wall, {ratio['cpu']:.3f} cpu "
              f"(goal ≤ 0.2)")
        result.update(sb3_median_seconds=med_t["seconds"], sb3_median_cpu_seconds=med_t["cpu"],
                      median_ratio_wall=ratio["seconds"], median_ratio_cpu=ratio["cpu"])
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(result, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
