"""What DQN's training log costs: time per environment step with the log at its default cadence, without it,
and with a row after every update, on CartPole and on the Atari 100k preset, in one process run.

A training row (``--log-every`` updates apart) holds the TD loss, the update count, ε, the learning rate, the
rate in steps per second, the batch's mean Q(s, a) (from the update's own forward pass) and the gradient norm
before clipping (from the clip where the update clips, else one pass over the gradients). "Without" sets
``--log-every`` past the run's last update, so no row is written (episodes are still logged as they end: that
log is not the subject here). Every run writes its rows as users' runs do, to ``metrics.jsonl`` and to W&B;
each task runs once with W&B offline (the default of every command) and once with W&B disabled, which tells
rlgen's own part of a row (the diagnostics and the JSON line) from W&B's (its client encoding the row and
handing it to W&B's service process).

The cost at the default cadence is a percent of a step or less, below what two runs of the same command tell
apart (timings on a shared CPU drift by more than that), so the script reports it two ways: the direct
difference between default and without (noisy, for the record), and the cost of one row measured with a row
after every update (``--log-every 1``: the difference is a hundred times larger than at the default cadence,
well above the noise), spread over the default cadence. Runs of the three cadences alternate, so a drift of
the machine's speed reaches all of them alike; each figure is the median over ``--repeats``.

    python experiments/bench_logging.py [--repeats 3] [--wandb offline,disabled] \
        [--json experiments/results/logging.json]
    python experiments/bench_logging.py --docs docs/metrics.md     # the docs' table, from the record
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import warnings
from pathlib import Path

import torch

from rlgen.machine import describe
from rlgen.rl import dqn
from rlgen.track import read_metrics

RESULTS = Path(__file__).parent / "results"
MARKERS = ("<!-- logging-table -->", "<!-- /logging-table -->")
NEVER = 10**9  # past the last update of any run below: no training row

# CartPole: its defaults, cut to 20,000 steps (18,000 learning); Atari 100k: the preset, cut to 1,600 steps of
# random play (the preset's learning_starts) and 1,400 steps with an update each.
TASKS = {
    "CartPole": dict(env="CartPole", total_steps=20_000),
    "Breakout-atari100k": dict(env="Breakout", preset="atari100k", total_steps=3_000),
}


def one_run(task: dict, log_every: int, seed: int, wandb: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = dqn.main(dqn.Args(**task, seed=seed, log_every=log_every, eval_every=NEVER, eval_episodes=1,
                                    final_eval_episodes=1, stop_on_solve=False, checkpoint_every=0, gif=False,
                                    wandb=wandb, run_dir=f"{tmp}/run"))
        rows = sum("train/loss" in r for r in read_metrics(f"{tmp}/run"))
    # train_seconds is the training clock: acting, learning and logging, without evaluation or start-up.
    return {"ms_per_step": 1e3 * summary["train_seconds"] / summary["env_steps"], "rows": rows,
            "updates": summary["updates"], "steps": summary["env_steps"]}


def measure(task: dict, repeats: int, seed: int, wandb: str) -> dict:
    default = dqn.Args.log_every
    cadences = {"default": default, "never": NEVER, "every": 1}
    runs: dict[str, list[dict]] = {name: [] for name in cadences}
    for _ in range(repeats):
        for name, every in cadences.items():
            runs[name].append(one_run(task, every, seed, wandb))
    ms = {name: statistics.median(r["ms_per_step"] for r in rs) for name, rs in runs.items()}
    rows = {name: rs[0]["rows"] for name, rs in runs.items()}
    steps = runs["never"][0]["steps"]
    # one row's cost, from the run that writes one after every update
    per_row_ms = (ms["every"] - ms["never"]) * steps / max(1, rows["every"] - rows["never"])
    derived = per_row_ms * rows["default"] / steps
    return {"ms_per_step": ms, "rows": rows, "steps": steps,
            "updates": runs["never"][0]["updates"], "per_row_ms": per_row_ms,
            "share_direct": ms["default"] / ms["never"] - 1, "share_derived": derived / ms["never"],
            "all_ms_per_step": {name: [r["ms_per_step"] for r in rs] for name, rs in runs.items()}}


def markdown(record: dict) -> str:
    """The docs' table of a record written by ``--json``."""
    m = record["machine"]
    lines = [f"Measured on {m['cpu']} ({m['cores']} cores, bf16 units: {m['bf16_units']}), torch "
             f"{m['versions']['torch']}, {record['torch_threads']} threads, W&B {m['versions'].get('wandb')}; median "
             f"of {record['repeats']} runs each; a row every {record['log_every']} updates by default.", "",
             "| task | W&B | ms per step without rows | with the default rows | with a row per update | ms per row "
             "| cost at the default cadence |", "|---|---|---|---|---|---|---|"]
    for r in record["runs"]:
        ms = r["ms_per_step"]
        lines.append(f"| {r['task']} | {r['wandb']} | {ms['never']:.3f} | {ms['default']:.3f} | {ms['every']:.3f} | "
                     f"{r['per_row_ms']:.2f} | {100 * r['share_derived']:.2f}% |")
    return "\n".join(lines)


def write_docs(page: Path, records: list[dict]) -> None:
    text = page.read_text()
    start, end = (text.index(marker) for marker in MARKERS)
    tables = "\n\n".join(markdown(record) for record in records)
    page.write_text(text[:start + len(MARKERS[0])] + "\n" + tables + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each cadence, alternating")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from: " + ", ".join(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wandb", default="offline,disabled",
                        help="comma-separated W&B modes to run each task with, from: offline, disabled")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--docs", type=Path, help="measure nothing: write the table of --record into this page")
    parser.add_argument("--record", type=Path, action="append",
                        help="a record --docs reads (repeatable; default: every logging*.json in the results)")
    opts = parser.parse_args()
    if opts.docs:
        paths = opts.record or sorted(RESULTS.glob("logging*.json"))
        write_docs(opts.docs, [json.loads(path.read_text()) for path in paths])
        return
    names = [t.strip() for t in opts.tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    sinks = [w.strip() for w in opts.wandb.split(",") if w.strip()]
    bad_sinks = [w for w in sinks if w not in ("offline", "disabled")]
    if unknown:
        parser.error(f"--tasks {','.join(unknown)} unknown (accepted: {', '.join(TASKS)})")
    if bad_sinks or not sinks:
        parser.error(f"--wandb {opts.wandb!r}: accepted modes are offline, disabled")
    if opts.repeats < 1:
        parser.error(f"--repeats {opts.repeats}: at least 1")
    results = [{"task": name, "wandb": sink, **measure(TASKS[name], opts.repeats, opts.seed, sink)}
               for name in names for sink in sinks]
    info = describe("cpu")
    print(f"\nDQN's training log: ms per environment step (training clock, median of {opts.repeats}); "
          f"CPU {info['cpu']}, {info['cores']} cores, bf16 units: {info['bf16_units']}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'task':<22} {'W&B':<9} {'without':>8} {'default':>8} {'every':>8} {'rows':>6} {'ms/row':>7} "
          f"{'direct':>8} {'derived':>8}")
    for r in results:
        ms = r["ms_per_step"]
        print(f"{r['task']:<22} {r['wandb']:<9} {ms['never']:>8.3f} {ms['default']:>8.3f} {ms['every']:>8.3f} "
              f"{r['rows']['default']:>6} "
              f"{r['per_row_ms']:>7.2f} {100 * r['share_direct']:>7.2f}% {100 * r['share_derived']:>7.3f}%")
    print(f"default: a row every {dqn.Args.log_every} updates; every: a row after each update; direct: default / "
          "without − 1; derived: the cost of one row (from every − without) times the default's rows, over "
          "without's time. Goal: below 1% of a step.")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"machine": info, "torch_threads": torch.get_num_threads(), "repeats": opts.repeats,
                       "log_every": dqn.Args.log_every, "runs": results}, fh, indent=2)


if __name__ == "__main__":
    main()
