"""Bytes per transition: rlgen's FrameReplay against Stable-Baselines3's ReplayBuffer on Breakout.

Each memory is filled in its own subprocess (clean resident-memory numbers) with the same transitions:
random play in ale-py's vector env from the same seed and the same action draws; a CRC of every stored
successor frame shows that the runs saw identical data. SB3 stores ``obs`` and ``next_obs`` stacks
(``optimize_memory_usage=False``) or ``obs`` only (``True``, which cannot be combined with SB3's
timeout handling, SB3 issue 934); rlgen stores each 84×84 frame once.

    python experiments/bench_replay_memory.py [--transitions 100000] [--json out.json] [--rss-million]

``--rss-million`` also fills a 1,000,000-transition FrameReplay with random play and reports its peak
resident memory (VmHWM; goal: under 10 GB). That takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

KINDS = ("rlgen", "sb3", "sb3-optimized")


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def make_memory(kind: str, capacity: int, venv: Any) -> tuple[Any, Any]:
    """The memory and a function ``add(obs, actions, rewards, term, trunc, next_obs, new_obs)``."""
    if kind == "rlgen":
        from rlgen.rl.atari_replay import FrameReplay

        replay = FrameReplay(capacity, venv.num_envs, clip_rewards=True)

        def add(obs, actions, rewards, term, trunc, next_obs, new_obs):
            replay.add(actions, rewards, term, trunc, next_obs, new_obs)

        return replay, add
    from stable_baselines3.common.buffers import ReplayBuffer

    optimized = kind == "sb3-optimized"
    buffer = ReplayBuffer(capacity, venv.single_observation_space, venv.single_action_space, device="cpu",
                          n_envs=venv.num_envs, optimize_memory_usage=optimized,
                          handle_timeout_termination=not optimized)

    def add(obs, actions, rewards, term, trunc, next_obs, new_obs):
        infos = [{"TimeLimit.truncated": bool(t)} for t in trunc]
        buffer.add(obs, next_obs, actions, np.sign(rewards), term | trunc, infos)

    return buffer, add


def memory_nbytes(kind: str, memory: Any) -> int:
    """Bytes of the arrays the memory allocated (not an estimate from its shape)."""
    if kind == "rlgen":
        return int(memory.nbytes)
    arrays = ["observations", "actions", "rewards", "dones", "timeouts"]
    if getattr(memory, "next_observations", None) is not None:
        arrays.append("next_observations")
    return int(sum(getattr(memory, name).nbytes for name in arrays))


def worker(kind: str, transitions: int, num_envs: int, seed: int) -> dict[str, Any]:
    """Fill one memory with ``transitions`` random-play Breakout transitions; report its size."""
    from rlgen.rl.atari import make_atari_vector_env

    torch.set_num_threads(1)
    venv = make_atari_vector_env("Breakout", num_envs, seed)
    obs, _ = venv.reset()
    rss_before = proc_status_kb("VmRSS")
    memory, add = make_memory(kind, transitions, venv)
    if kind == "rlgen":
        memory.start(obs)
    rng = np.random.default_rng(seed)
    crc = 0
    add_seconds = 0.0
    start = time.perf_counter()
    for _ in range(transitions // num_envs):
        actions = rng.integers(0, venv.n_actions, size=num_envs)
        new_obs, rewards, term, trunc, info = venv.step(actions)
        crc = zlib.crc32(np.ascontiguousarray(info["next_obs"][:, -1]).tobytes(), crc)
        t0 = time.perf_counter()
        add(obs, actions, rewards, term, trunc, info["next_obs"], new_obs)
        add_seconds += time.perf_counter() - t0
        obs = new_obs
    fill_seconds = time.perf_counter() - start
    held = len(memory) if kind == "rlgen" else memory.size() * num_envs
    sample_ms = None
    if kind == "rlgen":
        gen = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(20):
            memory.sample(32, gen)
        sample_ms = (time.perf_counter() - t0) / 20 * 1e3
    nbytes = memory_nbytes(kind, memory)
    result = {
        "kind": kind, "transitions_added": (transitions // num_envs) * num_envs, "transitions_held": int(held),
        "nbytes": nbytes, "bytes_per_transition": nbytes / transitions,
        "bytes_per_held_transition": nbytes / max(held, 1),
        "rss_growth_bytes": (proc_status_kb("VmRSS") - rss_before) * 1024,
        "peak_rss_bytes": proc_status_kb("VmHWM") * 1024,
        "fill_seconds": fill_seconds, "add_us_per_vector_step": add_seconds / (transitions // num_envs) * 1e6,
        "sample32_ms": sample_ms, "successor_frames_crc32": crc, "games_finished": len(venv.pop_finished()),
        "emulator_frames": venv.frames, "num_envs": num_envs,
    }
    venv.close()
    return result


def run_worker(kind: str, transitions: int, num_envs: int, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--transitions", str(transitions),
           "--num-envs", str(num_envs), "--seed", str(seed)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--rss-million", action="store_true",
                        help="also fill a 1,000,000-transition FrameReplay and report its peak RSS")
    parser.add_argument("--million", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--skip-sb3", action="store_true", help="only measure rlgen")
    parser.add_argument("--worker", choices=KINDS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.transitions < args.num_envs or args.num_envs < 1:
        parser.error(f"--transitions {args.transitions} / --num-envs {args.num_envs}: need 1 <= num-envs <= "
                     f"transitions")
    if args.worker:
        print(json.dumps(worker(args.worker, args.transitions, args.num_envs, args.seed)))
        return 0

    kinds = ("rlgen",) if args.skip_sb3 else KINDS
    results = {kind: run_worker(kind, args.transitions, args.num_envs, args.seed) for kind in kinds}
    crcs = {r["successor_frames_crc32"] for r in results.values()}
    ours = results["rlgen"]["bytes_per_transition"]
    print(f"Breakout random play, {args.transitions:,} transitions, {args.num_envs} envs, seed {args.seed}; "
          f"same transitions in every memory: {len(crcs) == 1}")
    print(f"{'memory':<34}{'allocated':>12}{'B/transition':>14}{'KB/transition':>15}{'x rlgen':>9}"
          f"{'peak RSS':>11}{'add µs/step':>13}")
    labels = {"rlgen": "rlgen FrameReplay",
              "sb3": "SB3 ReplayBuffer",
              "sb3-optimized": "SB3 ReplayBuffer optimize_memory"}
    for kind, r in results.items():
        print(f"{labels[kind]:<34}{r['nbytes'] / 1e9:>10.3f}GB{r['bytes_per_transition']:>14,.0f}"
              f"{r['bytes_per_transition'] / 1e3:>15.2f}{r['bytes_per_transition'] / ours:>9.2f}"
              f"{r['peak_rss_bytes'] / 1e9:>9.2f}GB{r['add_us_per_vector_step']:>13.0f}")
    r = results["rlgen"]
    print(f"rlgen holds {r['transitions_held']:,} of them ({r['bytes_per_held_transition']:,.0f} B per held "
          f"transition; a game over costs one extra frame slot); sample(32) {r['sample32_ms']:.2f} ms; "
          f"goal <= 7,200 B: {'met' if r['bytes_per_transition'] <= 7_200 else 'NOT met'}")
    report: dict[str, Any] = {"transitions": args.transitions, "num_envs": args.num_envs, "seed": args.seed,
                              "same_transitions": len(crcs) == 1, "results": results}
    if args.rss_million:
        million = run_worker("rlgen", args.million, args.num_envs, args.seed)
        report["million"] = million
        print(f"FrameReplay with {args.million:,} transitions of random play: allocated "
              f"{million['nbytes'] / 1e9:.2f} GB, peak RSS {million['peak_rss_bytes'] / 1e9:.2f} GB "
              f"(goal < 10 GB: {'met' if million['peak_rss_bytes'] < 10e9 else 'NOT met'}), "
              f"filled in {million['fill_seconds']:.0f} s")
    if args.json:
        from rlgen.files import write_json

        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
