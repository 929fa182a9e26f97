"""rlgen DQN against Stable-Baselines3 DQN on classic control: same seeds, same evaluations, one process.

What a user keeps is the agent at the end, so every run trains for its whole budget (no stopping at
the first solve) and the table reports, per seed, for rlgen with its defaults and for SB3 with the
RL-Zoo hyperparameters (``hyperparams/dqn.yml``, see ../shared/REFERENCE.md):

* the first solve: the first greedy evaluation (``--eval-episodes`` episodes, ε = 0, every
  ``--eval-every`` environment steps, the same episode seeds for both) whose mean reaches the
  environment's reward threshold, with the training seconds up to it (evaluation time excluded);
* the post-solve fraction: the share of the evaluations after the first solve at or above the threshold;
* the best evaluation, and the final evaluation of the last weights over ``--final-episodes`` episodes.

Both run with one torch thread. Training seconds are wall seconds; CPU seconds are given beside them,
since on a shared machine they are what other processes cannot inflate. ``--env Acrobot`` or
``--env MountainCar`` runs the same table for those (rlgen only), beside CleanRL's
published DQN results. ``--ablate`` instead times rlgen's special paths for speed, each turned off
in turn, in the same process.

    python experiments/bench_dqn_cartpole.py [--seeds 0,...,9] [--json out.json]
    python experiments/bench_dqn_cartpole.py --env Acrobot --seeds 0,1,2,3,4
    python experiments/bench_dqn_cartpole.py --ablate --seeds 0,1,2,3,4
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

from rlgen.envnames import resolve_env_id
from rlgen.machine import bf16_cpu, cpu_name
from rlgen.rl import dqn
from rlgen.rl.envs import evaluate, make_env

# RL-Zoo's DQN settings (hyperparams/dqn.yml) as ../shared/REFERENCE.md records them; SB3 runs on CartPole only.
ZOO = {
    "CartPole-v1": dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                        target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                        exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256])),
}
# CleanRL's dqn.py after 500k steps (its documentation's benchmark table; episodic returns while training).
CLEANRL = {"CartPole-v1": "488.7 ± 16.1", "Acrobot-v1": "−91.5 ± 7.2", "MountainCar-v0": "−195.0 ± 8.5"}


def run_rlgen(env: str, seed: int, opts: argparse.Namespace, **speed: bool) -> dict:
    """rlgen's DQN with its defaults for ``env`` (evaluation schedule from the bench); ``speed`` sets its speed
    paths (``flat_params``, ``fused_clip``)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        s = dqn.main(dqn.Args(env=env, seed=seed, eval_every=opts.eval_every, eval_episodes=opts.eval_episodes,
                              final_eval_episodes=opts.final_episodes, run_dir=f"{tmp}/run", wandb="disabled",
                              gif=False, checkpoint_every=0, **speed))
    return {"steps": s["solved_at_env_step"], "seconds": s["solved_at_train_seconds"],
            "cpu": s["solved_at_train_cpu_seconds"], "train_seconds": s["train_seconds"],
            "final": s["final_eval_return_mean"], "final_std": s["final_eval_return_std"],
            "best": s["best_eval_return"], "best_step": s["best_eval_step"], "post": s["post_solve_fraction"],
            "budget": s["env_steps"]}


def run_sb3(env: str, seed: int, budget: int, threshold: float, opts: argparse.Namespace) -> dict:
    """SB3's DQN with RL-Zoo's settings, evaluated on rlgen's schedule by a callback."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    class Judge(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.train_seconds, self.train_cpu = 0.0, 0.0
            self.tick, self.tick_cpu = time.perf_counter(), time.process_time()
            self.steps: list[int] = []
            self.returns: list[float] = []
            self.seconds: list[float] = []
            self.cpus: list[float] = []

        def _on_step(self) -> bool:
            if self.num_timesteps % opts.eval_every and self.num_timesteps != budget:
                return True
            self.train_seconds += time.perf_counter() - self.tick
            self.train_cpu += time.process_time() - self.tick_cpu
            returns = evaluate(act, lambda: make_env(env), opts.eval_episodes, seed=10_000 * (seed + 1))
            self.steps.append(self.num_timesteps)
            self.returns.append(float(returns.mean()))
            self.seconds.append(self.train_seconds)
            self.cpus.append(self.train_cpu)
            self.tick, self.tick_cpu = time.perf_counter(), time.process_time()
            return True

    judge = Judge()
    model = DQN("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **ZOO[env])
    judge.tick, judge.tick_cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=budget, callback=judge)
    final = evaluate(act, lambda: make_env(env), opts.final_episodes, seed=10_000 * (seed + 1))
    first = next((i for i, r in enumerate(judge.returns) if r >= threshold), None)
    best = int(np.argmax(judge.returns))
    return {"steps": judge.steps[first] if first is not None else None,
            "seconds": judge.seconds[first] if first is not None else None,
            "cpu": judge.cpus[first] if first is not None else None, "train_seconds": judge.train_seconds,
            "final": float(final.mean()), "final_std": float(final.std()), "best": judge.returns[best],
            "best_step": judge.steps[best],
            "post": dqn.post_solve_fraction(judge.steps, judge.returns, judge.steps[first] if first is not None
                                            else None, threshold),
            "budget": budget}


def median_solve(rows: list[dict], key: str) -> float:
    """Median over seeds; a seed that never solved counts as infinitely slow."""
    return statistics.median([r[key] if r["steps"] is not None else float("inf") for r in rows])


def machine() -> str:
    cpu = cpu_name()
    return f"{cpu}; bf16 units: {'yes' if bf16_cpu() else 'no'} (classic-control DQN runs in float32 either way)"


def ablate(env: str, seeds: list[int], opts: argparse.Namespace) -> dict:
    """Time to first solve with each special path for speed turned off in turn (same process, same seeds)."""
    paths = ("flat_params", "fused_clip")
    variants = {"all on": {}, **{f"{name} off": {name: False} for name in paths},
                "all off": dict.fromkeys(paths, False)}
    table: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in seeds:  # seeds outermost, variants interleaved, so drift in machine speed hits all alike
        for v, change in variants.items():
            table[v].append(run_rlgen(env, seed, opts, **change))
    base = median_solve(table["all on"], "seconds")
    print(f"\nSpecial paths of rlgen's DQN on {env} (seeds {seeds}; {machine()})")
    print(f"{'variant':>16} | {'median s to solve':>17} | {'vs all on':>9} | {'median train s':>14} | solve steps")
    result = {}
    for v, rows in table.items():
        med = median_solve(rows, "seconds")
        train = statistics.median(r["train_seconds"] for r in rows)
        print(f"{v:>16} | {med:17.2f} | {med / base:9.3f} | {train:14.2f} | {[r['steps'] for r in rows]}")
        result[v] = {"median_seconds_to_solve": med, "median_train_seconds": train, "rows": rows}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="comma-separated seeds")
    parser.add_argument("--eval-every", type=int, default=None, help="environment steps between evaluations "
                        "(default: rlgen's for the environment)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--final-episodes", type=int, default=100)
    parser.add_argument("--no-sb3", action="store_true", help="run rlgen only")
    parser.add_argument("--ablate", action="store_true", help="time the special paths for speed instead")
    parser.add_argument("--json", help="write the results here")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    env = resolve_env_id(opts.env)
    defaults = dqn.resolve_args(dqn.Args(env=env))
    opts.eval_every = opts.eval_every or defaults.eval_every
    threshold = make_env(env).spec.reward_threshold
    seeds = [int(s) for s in opts.seeds.split(",")]
    if opts.ablate:
        result = {"env": env, "machine": machine(), "ablation": ablate(env, seeds, opts)}
        if opts.json:
            with open(opts.json, "w") as fh:
                json.dump(result, fh, indent=2, default=float)
        return
    with_sb3 = env in ZOO and not opts.no_sb3
    rows = []
    for seed in seeds:
        ours = run_rlgen(env, seed, opts)
        theirs = run_sb3(env, seed, defaults.total_steps, threshold, opts) if with_sb3 else None
        rows.append({"seed": seed, "rlgen": ours, "sb3": theirs})
        print(f"seed {seed}: rlgen {ours}  sb3 {theirs}", file=sys.stderr, flush=True)

    def cell(r: dict | None) -> str:
        if r is None:
            return ""
        solve = (f"{r['steps']:>7} {r['seconds']:>6.1f} {r['cpu']:>6.1f}" if r["steps"] is not None
                 else f"{'-':>7} {'-':>6} {'-':>6}")
        post = f"{r['post']:.2f}" if r["post"] is not None else "-"
        return f"{solve} {r['final']:>7.1f} {r['best']:>7.1f} {post:>5}"

    head = f"{'solved':>7} {'s':>6} {'cpu s':>6} {'final':>7} {'best':>7} {'post':>5}"
    print(f"\nDQN on {env}, {defaults.total_steps:,} environment steps, whole budget; {machine()}")
    print(f"evaluation: greedy, {opts.eval_episodes} episodes every {opts.eval_every:,} steps; final: last weights, "
          f"{opts.final_episodes} episodes; solved = evaluation ≥ {threshold:g}; post = share of later evaluations "
          f"≥ {threshold:g}")
    print(f"{'seed':>4} | rlgen {head} |" + (f" SB3 zoo {head} | {'ratio':>5}" if with_sb3 else ""))
    for row in rows:
        o, t = row["rlgen"], row["sb3"]
        ratio = (f"{o['seconds'] / t['seconds']:5.3f}" if t is not None and o["steps"] and t["steps"] else "    -")
        print(f"{row['seed']:>4} |       {cell(o)} |" + (f"         {cell(t)} | {ratio}" if with_sb3 else ""))

    def verdict(name: str, rs: list[dict]) -> dict:
        finals = sum(r["final"] >= threshold for r in rs)
        solved = [r for r in rs if r["steps"] is not None]
        stable = sum(r["post"] is None or r["post"] >= 0.9 for r in solved)
        med = median_solve(rs, "seconds")
        print(f"{name}: final ≥ {threshold:g} on {finals}/{len(rs)}; solved {len(solved)}/{len(rs)}, post-solve "
              f"fraction ≥ 0.9 on {stable}/{len(solved)}; median first solve {med:.2f} s "
              f"({median_solve(rs, 'cpu'):.2f} cpu s); final mean {np.mean([r['final'] for r in rs]):.1f}")
        return {"final_at_threshold": finals, "solved": len(solved), "post_solve_stable": stable,
                "median_solve_seconds": med, "median_solve_cpu_seconds": median_solve(rs, "cpu")}

    result = {"env": env, "machine": machine(), "threshold": threshold, "rows": rows,
              "rlgen": verdict("rlgen", [r["rlgen"] for r in rows])}
    if with_sb3:
        result["sb3"] = verdict("SB3  ", [r["sb3"] for r in rows])
        ratio = result["rlgen"]["median_solve_seconds"] / result["sb3"]["median_solve_seconds"]
        ratio_cpu = result["rlgen"]["median_solve_cpu_seconds"] / result["sb3"]["median_solve_cpu_seconds"]
        print(f"median time-to-first-solve ratio rlgen/SB3: {ratio:.3f} wall, {ratio_cpu:.3f} cpu (goal ≤ 0.2; "
              "unsolved seeds count as infinite)")
        result.update(median_ratio_wall=ratio, median_ratio_cpu=ratio_cpu)
    print(f"CleanRL dqn.py, published (500k steps): {CLEANRL.get(env, 'n/a')}")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(result, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
