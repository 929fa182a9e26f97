"""Atari 100k: rlgen's DrQ(ε) preset against the published DrQ(ε), DER and SPR, game by game.

Each (variant, game, seed) is one run of ``python -m rlgen.rl.dqn --env GAME --preset atari100k --seed S`` in
its own process and run folder under ``--out``. A folder that already holds a ``summary.json`` is read, not
rerun, and one that holds only a checkpoint is resumed, so the benchmark can be built up over several
sittings; with ``--results DIR`` each finished run's summary and minutes are also kept there (a few KB), and a
run recorded there counts as finished even when its folder is gone (a checkpoint keeps the 0.7 GB replay).
Per game the table gives rlgen's mean ± std over seeds of the final 100-episode evaluation, the published
means (Agarwal et al. 2021's re-runs, 100 runs per game), random and human, the human-normalised score
((score − random) / (human − random)) and the CPU and wall minutes per run; then the mean, median and
interquartile mean (IQM, Agarwal et al. 2021) of the human-normalised scores.

Variants: ``preset`` (the plain preset); ``frozen`` and ``finetune`` (the preset with ``--encoder``, kept fixed
or trained). Their encoder is ``--encoder-runs GAME=RUN_DIR,...`` where given; otherwise the script pretrains one
per game first (``simclr-GAME`` under ``--out``, reused when finished): SimCLR with temporal pairs (positives are
frames 1–4 steps apart, as in ATC, Stooke et al. 2021) and the ``dqn`` augmentation recipe, on
``--pretrain-frames`` random-agent frames as DQN sees them (``atari-stacks:GAME``), for ``--pretrain-minutes``,
with the agent's own trunk (``nature_cnn_same``). Its minutes are reported apart from the agent's.

``--sb3`` adds one run of Stable-Baselines3's DQN at the same budget with its closest settings on Breakout
(no augmentation, no dueling, no double DQN, which SB3 does not have), evaluated by rlgen's own 100-episode
protocol; ``--variants sb3`` makes that run alone. ``--profile`` times the parts of one
preset step in isolation: acting, the environment, replay sampling, augmentation, the update; with
``--profile-state RUN_DIR`` the network and Adam's state are a finished run's, as late in training, and
``--keep-denormals`` times them as they are without ``rlgen.machine.flush_denormals`` (what the flush buys).

Ctrl-C (or SIGTERM) stops the bench cleanly: each running run saves a checkpoint at its next step and
the same command later continues it; its minutes so far are kept in ``bench.json``.

Runs go one after another by default: on this 2-core machine one run with 2 torch threads beats two runs
with one thread each (a preset update: 13.5 ms with 2 threads against 22 ms with 1, and two processes slow
each other about 1.5×). ``--parallel N`` runs N at once, each with ``--threads`` torch threads.

    python experiments/bench_atari100k.py --games Breakout,Boxing,Pong --seeds 0,1 [--sb3] [--profile] [--json out.json]
    python experiments/bench_atari100k.py --variants preset,frozen,finetune [--pretrain-minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.machine import bf16_cpu, cpu_name
from rlgen.rl.atari import RANDOM_HUMAN, game_name, human_normalized

# Published per-game means (Agarwal et al. 2021's re-runs, 100 runs per game; ../shared/REFERENCE.md).
PUBLISHED: dict[str, dict[str, float]] = {
    "Boxing": {"DER": -0.3, "DrQ(ε)": 9.0, "SPR": 35.7},
    "Breakout": {"DER": 9.2, "DrQ(ε)": 19.8, "SPR": 19.6},
    "Freeway": {"DER": 20.9, "DrQ(ε)": 20.3, "SPR": 19.3},
    "Kangaroo": {"DER": 582.0, "DrQ(ε)": 1088.0, "SPR": 3617.0},
    "Pong": {"DER": -9.7, "DrQ(ε)": -9.1, "SPR": -5.4},
    "Seaquest": {"DER": 305.0, "DrQ(ε)": 352.0, "SPR": 558.0},
}
SB3_GAME = "Breakout"


def machine() -> str:
    cpu = cpu_name()
    units = "yes (the CNN runs under bf16 autocast)" if bf16_cpu() else "no (float32)"
    return f"{cpu}, {os.cpu_count()} cores; bf16 units: {units}"


def iqm(values: list[float]) -> float:
    """Mean of the middle 50% (the 25% trimmed mean over all runs, as rliable computes it)."""
    v = np.sort(np.asarray(values, dtype=float))
    cut = int(np.floor(0.25 * len(v)))
    return float(v[cut: len(v) - cut].mean())


# -- one run ------------------------------------------------------------------------------------------------
def command(variant: str, game: str, seed: int, run_dir: Path, opts: argparse.Namespace) -> list[str]:
    if variant == "simclr":
        if (run_dir / "checkpoint.pt").exists():
            return [sys.executable, "-m", "rlgen.selfsup.simclr", "--resume", str(run_dir)]
        budget = (["--total-steps", str(opts.pretrain_steps)] if opts.pretrain_steps
                  else ["--total-steps", "1000000", "--minutes", str(opts.pretrain_minutes)])  # the clock ends it
        return [sys.executable, "-m", "rlgen.selfsup.simclr", "--data", f"atari-stacks:{game.lower()}",
                "--frames", str(opts.pretrain_frames), "--backbone", "nature_cnn_same", "--pairs", "temporal",
                *budget, "--seed", str(seed), "--threads", str(opts.threads), "--wandb", opts.wandb,
                "--run-dir", str(run_dir)]
    if variant == "sb3":
        return [sys.executable, __file__, "--sb3-child", str(run_dir), "--games", game, "--seeds", str(seed),
                "--threads", str(opts.threads), "--total-steps", str(opts.total_steps),
                "--eval-episodes", str(opts.eval_episodes), "--max-episode-steps", str(opts.max_episode_steps)]
    argv = [sys.executable, "-m", "rlgen.rl.dqn", "--env", game, "--preset", "atari100k", "--seed", str(seed),
            "--threads", str(opts.threads), "--wandb", opts.wandb]
    if variant in ("frozen", "finetune"):
        argv += ["--encoder", opts.encoder_runs[game]] + (["--freeze-encoder"] if variant == "frozen" else [])
    if opts.total_steps:
        argv += ["--total-steps", str(opts.total_steps)]
    if opts.eval_episodes:
        argv += ["--final-eval-episodes", str(opts.eval_episodes)]
    if opts.max_episode_steps:
        argv += ["--max-episode-steps", str(opts.max_episode_steps)]
    if (run_dir / "checkpoint.pt").exists():
        return [sys.executable, "-m", "rlgen.rl.dqn", "--resume", str(run_dir)]
    return argv + ["--run-dir", str(run_dir)]


def launch(argv: list[str], run_dir: Path) -> subprocess.Popen:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = open(run_dir.parent / f"{run_dir.name}.log", "ab")
    # Its own session: the terminal's Ctrl-C reaches only the bench, which passes exactly one on (run_all).
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.started = time.time()  # type: ignore[attr-defined]
    return proc


def reap(proc: subprocess.Popen, run_dir: Path) -> None:
    """Wait for ``proc``; add its wall and CPU seconds (all its threads) to ``bench.json`` in its folder."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    path = run_dir / "bench.json"
    spent = json.loads(path.read_text()) if path.exists() else {"wall_seconds": 0.0, "cpu_seconds": 0.0, "launches": 0}
    spent["wall_seconds"] += time.time() - proc.started  # type: ignore[attr-defined]
    spent["cpu_seconds"] += usage.ru_utime + usage.ru_stime
    spent["launches"] += 1
    spent["machine"] = machine()
    if run_dir.exists():
        path.write_text(json.dumps(spent, indent=1))


def read_run(run_dir: Path, results: Path | None) -> dict[str, Any] | None:
    """A finished run's ``summary``, ``bench`` (wall and CPU seconds) and ``config``: from its folder, else from
    its record under ``--results``; None while it is unfinished. A folder's run is recorded there as it is read."""
    if (run_dir / "summary.json").exists():
        rec = {name: json.loads((run_dir / f"{name}.json").read_text()) if (run_dir / f"{name}.json").exists()
               else {} for name in ("summary", "bench", "config")}
        if results is not None:
            results.mkdir(parents=True, exist_ok=True)
            tmp = results / f".{run_dir.name}.json.tmp"
            tmp.write_text(json.dumps(rec, indent=1))
            tmp.replace(results / f"{run_dir.name}.json")
        return rec
    record = results / f"{run_dir.name}.json" if results is not None else None
    return json.loads(record.read_text()) if record is not None and record.exists() else None


def run_all(jobs: list[tuple[str, str, int, Path]], opts: argparse.Namespace, weights: bool = False) -> None:
    """Run the unfinished jobs; with ``weights``, a job counts as finished only when its folder is there."""
    todo = [j for j in jobs if not (j[3] / "summary.json").exists()] if weights else \
        [j for j in jobs if read_run(j[3], opts.results) is None]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already finished under {opts.out}; running {len(todo)}",
          flush=True)
    running: list[tuple[subprocess.Popen, tuple]] = []
    try:
        while todo or running:
            while todo and len(running) < opts.parallel:
                job = todo.pop(0)
                argv = command(*job, opts)
                print(f"start {job[0]} {job[1]} seed {job[2]}: {' '.join(argv[1:])}", flush=True)
                running.append((launch(argv, job[3]), job))
            proc, job = running[0]
            reap(proc, job[3])
            running.pop(0)
            read_run(job[3], opts.results)  # recorded as soon as it ends
            print(f"{job[0]} {job[1]} seed {job[2]}: {ended(proc.returncode, job[3])}", flush=True)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping: each running run first saves a checkpoint at its next step", flush=True)
        for proc, _ in running:
            try:
                os.kill(proc.pid, signal.SIGINT)  # not proc.send_signal: its poll() would reap before reap() does
            except ProcessLookupError:
                pass
        for proc, job in running:
            reap(proc, job[3])
            print(f"{job[0]} {job[1]} seed {job[2]}: {ended(proc.returncode, job[3])}", flush=True)
        raise SystemExit(130) from None


def ended(returncode: int, run_dir: Path) -> str:
    """How a run's process ended, in words."""
    if returncode == 0:
        return "done"
    if returncode in (130, 143) and (run_dir / "checkpoint.pt").exists():
        return f"stopped, checkpoint kept: the same bench command continues it (log {run_dir}.log)"
    return f"FAILED (exit {returncode}; log {run_dir}.log)"


# -- the tables ---------------------------------------------------------------------------------------------
def collect(jobs: list[tuple[str, str, int, Path]], results: Path | None) -> list[dict[str, Any]]:
    rows = []
    for variant, game, seed, run_dir in jobs:
        rec = read_run(run_dir, results)
        if rec is None:
            continue
        s, spent = rec["summary"], rec["bench"]
        rows.append({"variant": variant, "game": game, "seed": seed, "score": s["final_eval_return_mean"],
                     "episodes": s["eval_episodes"], "hns": human_normalized(game, s["final_eval_return_mean"]),
                     "train_minutes": s["train_seconds"] / 60, "eval_minutes": s["eval_seconds"] / 60,
                     "wall_minutes": spent.get("wall_seconds", s["wall_seconds"]) / 60,
                     "cpu_minutes": spent["cpu_seconds"] / 60 if "cpu_seconds" in spent else None,
                     "steps": s["env_steps"], "amp": s.get("amp"), "machine": spent.get("machine"),
                     "run_dir": str(run_dir)})
    return rows


def report_pretraining(jobs: list[tuple[str, str, int, Path]], results: Path | None) -> dict[str, Any]:
    """The encoders' pretraining, apart from the agents' runs."""
    recs = {game: read_run(d, results) for v, game, _, d in jobs if v == "simclr"}
    done = {game: {**rec["config"], **rec["summary"]} for game, rec in recs.items() if rec is not None}
    if not done:
        return {}
    print("\nencoders: SimCLR (temporal pairs, dqn recipe) on random-agent frames as DQN sees them")
    print(f"{'game':<10} {'frames':>8} {'updates':>7} {'minutes':>8} {'NT-Xent':>8} {'chance':>7}")
    out = {}
    for game, s in done.items():
        # records written before summaries said updates and train_seconds say steps and train_minutes
        updates = s["updates"] if "updates" in s else s["steps"]
        minutes = s["train_seconds"] / 60 if "train_seconds" in s else s["train_minutes"]
        out[game] = {"frames": s["frames"], "updates": updates, "train_minutes": round(minutes, 3),
                     "final_loss": s["final_loss"], "loss_chance": s["loss_chance"]}
        print(f"{game:<10} {s['frames']:>8} {updates:>7} {minutes:>8.1f} "
              f"{s['final_loss']:>8.3f} {s['loss_chance']:>7.3f}")
    return out


def report(rows: list[dict[str, Any]], games: list[str], seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "variants": {}}
    machines = sorted({r["machine"] or "unknown" for r in rows})
    if len(machines) > 1:  # minutes from different CPUs are not comparable
        print("\nthe runs below come from more than one machine: " + "; ".join(machines))
    out["run_machines"] = machines
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        episodes = sorted({r["episodes"] for r in mine})
        print(f"\n{variant}: final evaluation, {'/'.join(map(str, episodes))} episodes each, ε = 0.001 "
              "(mean ± std over seeds)")
        who = "SB3" if variant == "sb3" else "rlgen"  # whose agent the row scores
        print(f"{'game':<10} {who:>15} {'seeds':>16} {'DrQ(ε)':>7} {'DER':>6} {'SPR':>6} {'random':>7} "
              f"{'human':>7} {'HNS':>6} {'≥DrQ(ε)':>8} {'CPU min':>8} {'wall min':>9} {'train min':>10}")
        per_game = {}
        for game in games:
            g = [r for r in mine if r["game"] == game]
            if not g:
                continue
            scores = [r["score"] for r in g]
            mean = statistics.mean(scores)
            std = statistics.pstdev(scores) if len(scores) > 1 else 0.0
            pub = PUBLISHED.get(game, {})
            random, human = RANDOM_HUMAN[game]
            cpu = [r["cpu_minutes"] for r in g if r["cpu_minutes"] is not None]
            per_game[game] = {"mean": mean, "std": std, "runs": {r["seed"]: r["score"] for r in g},
                              "hns": human_normalized(game, mean), "published": pub, "random": random, "human": human,
                              "cpu_minutes": statistics.mean(cpu) if cpu else None,
                              "wall_minutes": statistics.mean(r["wall_minutes"] for r in g),
                              "train_minutes": statistics.mean(r["train_minutes"] for r in g),
                              "eval_minutes": statistics.mean(r["eval_minutes"] for r in g),
                              "complete": len(g) == len(seeds)}
            beat = ("yes" if mean >= pub["DrQ(ε)"] else "no") if "DrQ(ε)" in pub else "–"
            seeds_text = ", ".join(f"{r['score']:.1f}" for r in sorted(g, key=lambda r: r["seed"]))
            if len(g) < len(seeds):
                seeds_text += f" ({len(g)}/{len(seeds)})"
            print(f"{game:<10} {mean:>8.1f} ± {std:<4.1f} {seeds_text:>16} {pub.get('DrQ(ε)', float('nan')):>7.1f} "
                  f"{pub.get('DER', float('nan')):>6.1f} {pub.get('SPR', float('nan')):>6.1f} {random:>7.1f} "
                  f"{human:>7.1f} {human_normalized(game, mean):>6.3f} {beat:>8} "
                  f"{per_game[game]['cpu_minutes'] or float('nan'):>8.1f} {per_game[game]['wall_minutes']:>9.1f} "
                  f"{per_game[game]['train_minutes']:>10.1f}")
        if per_game:
            values = [v["hns"] for v in per_game.values()]
            runs = [r["hns"] for r in mine]
            agg = {"games": len(values), "mean": statistics.mean(values), "median": statistics.median(values),
                   "iqm_runs": iqm(runs), "runs": len(runs)}
            print(f"human-normalised over {agg['games']} games: mean {agg['mean']:.3f}, median {agg['median']:.3f}; "
                  f"IQM over {agg['runs']} runs {agg['iqm_runs']:.3f} (published DrQ(ε) over 26 games: mean 0.465, "
                  f"median 0.313, IQM 0.280)")
            out["variants"][variant] = {"games": per_game, "aggregate": agg}
    return out


# -- the final evaluation: Python games one by one against the threaded vector env --------------------------
def eval_speed(run_dir: Path, games: int, threads: int) -> dict[str, Any]:
    """Time both ways of evaluating a finished run's agent on ``games`` whole games, in this process."""
    import torch

    from rlgen import checkpoint
    from rlgen.nets import QNetwork, make_backbone
    from rlgen.rl import envs as envlib
    from rlgen.rl.atari import evaluate_games, make_atari_env

    torch.set_num_threads(threads or os.cpu_count() or 1)
    ckpt = checkpoint.load(run_dir, algo="dqn")
    a = ckpt["args"]
    weights = ckpt.get("ema_net", ckpt["q_net"])
    net = QNetwork(make_backbone(a["backbone"], (4, 84, 84)), weights["head.adv.weight"].shape[0],
                   dueling=a["dueling"])
    net.load_state_dict(weights)
    net = net.eval().to(memory_format=torch.channels_last)

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_cpu()):
            x = torch.as_tensor(obs).contiguous(memory_format=torch.channels_last).float().div_(255.0)
            return net(x).argmax(dim=1).numpy()

    seed, eps, game = 10_000, a["eval_epsilon"], a["env"]
    out: dict[str, Any] = {"run": str(run_dir), "game": game, "games": games}
    for name, fn in (("python envs, one by one", lambda: envlib.evaluate(
                         act, lambda: make_atari_env(game, fresh_stack_on_life_loss=True), games, seed, eps)),
                     ("vector env (C++ threads)", lambda: evaluate_games(act, game, games, seed, eps))):
        t0 = time.perf_counter()
        scores = fn()
        out[name] = {"seconds": time.perf_counter() - t0, "mean": float(np.mean(scores))}
    slow, fast = out["python envs, one by one"]["seconds"], out["vector env (C++ threads)"]["seconds"]
    print(f"\nfinal evaluation of {run_dir.name} ({game}), {games} whole games, ε = {eps:g}, {machine()}:")
    for name in ("python envs, one by one", "vector env (C++ threads)"):
        r = out[name]
        print(f"  {name:<26} {r['seconds']:7.1f} s   mean score {r['mean']:.1f}")
    print(f"  speed-up {slow / fast:.2f}×")
    return out


# -- Stable-Baselines3's DQN at the same budget --------------------------------------------------------------
def sb3_child(run_dir: Path, game: str, seed: int, threads: int, total_steps: int, episodes: int,
              max_episode_steps: int) -> None:
    """SB3's DQN with the preset's settings where SB3 has them; evaluated as rlgen evaluates (own process)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3 import __version__ as sb3_version
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import configure

    from rlgen.rl.atari import episode_frames, make_atari_env
    from rlgen.rl.envs import evaluate

    torch.set_num_threads(threads)
    start, cpu0 = time.time(), time.process_time()
    frames = episode_frames(max_episode_steps or None)  # the preset's cap unless a test sets one

    def train_env() -> gym.Env:
        env = make_atari_env(game, seed=seed, episodic_life=True, max_episode_frames=frames)
        return gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))  # clipped for learning, as rlgen

    # ε: SB3 falls from step 0, so 1 → 0.01 over 6,600 steps ends where Dopamine's (warm-up 1,600 + 5,000) does.
    # The clip at 10 is SB3's default, kept as its users run it (the preset does not clip, as Dopamine; at 10 the
    # clip acts on a few early updates only).
    model = DQN("CnnPolicy", train_env(), seed=seed, device="cpu", learning_rate=1e-4, buffer_size=100_000,
                learning_starts=1_600, batch_size=32, tau=1.0, gamma=0.99, train_freq=1, gradient_steps=1,
                target_update_interval=1, n_steps=10, exploration_fraction=min(1.0, 6_600 / total_steps),
                exploration_initial_eps=1.0, exploration_final_eps=0.01, max_grad_norm=10,
                policy_kwargs=dict(optimizer_kwargs=dict(eps=1.5e-4)), verbose=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.set_logger(configure(str(run_dir / "sb3_log"), ["csv"]))  # SB3's own log in the run folder, not /tmp
    config = {"algo": "sb3-dqn", "sb3_version": sb3_version, "env": game, "seed": seed, "total_steps": total_steps,
              "max_episode_frames": frames, "threads": threads,
              **{k: getattr(model, k) for k in ("learning_rate", "buffer_size", "learning_starts", "batch_size",
                                                 "tau", "gamma", "gradient_steps", "target_update_interval",
                                                 "n_steps", "exploration_fraction", "exploration_initial_eps",
                                                 "exploration_final_eps", "max_grad_norm")},
              "train_freq": model.train_freq.frequency, "adam_eps": 1.5e-4}
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))

    class Progress(BaseCallback):
        """A line in the run's log every ``every`` steps: a run of one to two hours is not silent."""

        def __init__(self, every: int = 10_000) -> None:
            super().__init__()
            self.every = every

        def _on_step(self) -> bool:
            if self.num_timesteps % self.every == 0:
                lives = [e["r"] for e in self.model.ep_info_buffer or []]
                mean = f"{np.mean(lives):.2f}" if lives else "–"
                print(f"SB3 DQN on {game}: {self.num_timesteps:,} of {total_steps:,} steps, "
                      f"{(time.time() - start) / 60:.1f} min, clipped return per life (last {len(lives)}): {mean}",
                      flush=True)
            return True

    model.learn(total_steps, callback=Progress(max(1, min(10_000, total_steps // 10))), progress_bar=False)
    train_seconds = time.time() - start

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    t0 = time.time()
    returns = evaluate(act, lambda: make_atari_env(game, fresh_stack_on_life_loss=True, max_episode_frames=frames),
                       episodes, seed=10_000 * (seed + 1), epsilon=0.001)
    summary = {"algo": "sb3-dqn", "env": game, "seed": seed, "env_steps": total_steps,
               "final_eval_return_mean": float(returns.mean()), "final_eval_return_std": float(returns.std()),
               "eval_episodes": episodes, "train_seconds": train_seconds, "eval_seconds": time.time() - t0,
               "wall_seconds": time.time() - start, "train_cpu_seconds": time.process_time() - cpu0}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"SB3 DQN on {game}: {summary['final_eval_return_mean']:.1f} over {episodes} episodes")


# -- where a step's time goes ---------------------------------------------------------------------------------
def profile(game: str, threads: int, repeats: int, malloc_default: bool, state: str | None = None,
            keep_denormals: bool = False) -> dict[str, float]:
    """Milliseconds per agent step of each part of the preset's loop, timed alone in this process; with
    ``state``, the network and Adam's state are those of that finished run (its game), as late in training."""
    import torch

    from rlgen.machine import flush_denormals, keep_freed_memory

    if not keep_denormals:
        flush_denormals()  # as dqn.main does, before the first parallel op
    if not malloc_default:
        keep_freed_memory()  # as dqn.main does

    from rlgen.rl import dqn
    from rlgen.rl.atari import atari_task
    from rlgen.rl.tasks import GreedyPolicy

    torch.set_num_threads(threads or os.cpu_count() or 1)
    ckpt = torch.load(Path(state) / "checkpoint.pt", weights_only=True, mmap=True) if state else None
    if ckpt is not None:
        game = ckpt["args"]["env"]
    args = dqn.resolve_args(dqn.Args(env=game, preset="atari100k"))
    device = torch.device("cpu")
    amp = dqn.uses_amp(args, device)
    task = atari_task(args, device, 0)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    task.replay.start(task.pool.obs)
    for _ in range(3_000):  # a replay with something in it
        nxt, r, term, trunc, _ = task.pool.step(rng.integers(0, task.pool.venv.n_actions, 1))
        task.replay.add(rng.integers(0, 4, 1), r, term, trunc, nxt, task.pool.obs)
    net = task.q_net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1.5e-4, fused=True)
    if ckpt is not None:
        net.load_state_dict(ckpt["q_net"])
        opt.load_state_dict(ckpt["optimizer"])  # with the flags on, its denormals are read as zeros
        # counted on the bits: with denormals-are-zero on, a float comparison would see zeros
        bits = [v.numpy().view(np.uint32) for s in opt.state.values() for v in s.values() if v.numel() > 1]
        denormal = sum(int((((b & 0x7F800000) == 0) & ((b & 0x007FFFFF) != 0)).sum()) for b in bits)
        print(f"\nnetwork and Adam state of {state} (step {ckpt['step']:,}): {denormal:,} of "
              f"{sum(b.size for b in bits):,} numbers in Adam's state are denormal")
    batch = task.replay.sample(32, rng)

    greedy = GreedyPolicy(net, task.prepare, device, amp)

    def act() -> None:  # one observation, as training acts (float32 below the policy's AMP_MIN_BATCH)
        greedy(task.pool.obs)

    # the update takes views augmented beforehand, so the augmentation is timed once, on its own line
    views = {id(batch.obs): task.augment(batch.obs, gen), id(batch.next_obs): task.augment(batch.next_obs, gen)}

    def update() -> None:
        loss = dqn.dqn_loss(net, net, batch, True, lambda frames: views[id(frames)], amp, "huber")
        opt.zero_grad()
        loss.backward()
        if args.max_grad_norm:  # the preset does not clip
            dqn.clip_grad_norm(list(net.parameters()), args.max_grad_norm)
        opt.step()

    parts = {
        "act (one forward pass)": act,
        "environment step": lambda: task.pool.step(np.zeros(1, dtype=np.int64)),
        "replay sample (32, 10-step)": lambda: task.replay.sample(32, rng),
        "augmentation (states and successors)": lambda: (task.augment(batch.obs, gen),
                                                         task.augment(batch.next_obs, gen)),
        "update (forward, backward, Adam)": update,
    }
    times = {}
    for name, fn in parts.items():
        for _ in range(10):
            fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        times[name] = 1000 * (time.perf_counter() - t0) / repeats
    task.pool.close()
    total = sum(times.values())
    print(f"\nwhere a step's time goes on {game} ({threads or os.cpu_count()} threads, bf16 autocast: {amp}, "
          f"glibc malloc {'defaults' if malloc_default else 'keeping freed memory'}, denormals "
          f"{'kept' if keep_denormals else 'flushed to zero'}; each part timed alone, {repeats} repeats):")
    for name, ms in times.items():
        print(f"  {name:<40} {ms:6.2f} ms  {ms / total:5.1%}")
    print(f"  {'sum':<40} {total:6.2f} ms  → {total * 98_400 / 60_000:.1f} min for 98,400 learning steps")
    return times


def main() -> None:
    # SIGTERM stops the runs as Ctrl-C does; SIGINT is set too because a shell starts a background job (`&`)
    # with SIGINT ignored, and then `kill -INT` would not reach the runs
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", default="Breakout,Boxing,Pong")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default="preset",
                        help="comma-separated: preset, frozen, finetune, sb3 (SB3's DQN alone: --sb3 without "
                             "rerunning the preset)")
    parser.add_argument("--encoder-runs", default="",
                        help="GAME=RUN_DIR,... the encoders of frozen/finetune (default: pretrain them here)")
    parser.add_argument("--pretrain-minutes", type=float, default=10.0, help="SimCLR minutes per game's encoder")
    parser.add_argument("--pretrain-frames", type=int, default=50_000, help="random-agent frames to pretrain on")
    parser.add_argument("--pretrain-steps", type=int, default=0, help="SimCLR steps instead of minutes (tests only)")
    parser.add_argument("--sb3", action="store_true", help="add SB3's DQN on --sb3-game (first seed): variant sb3")
    parser.add_argument("--sb3-game", default=SB3_GAME)
    parser.add_argument("--out", default="runs/bench_atari100k", help="run folders (reused when finished)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also keep each finished run's summary and minutes here (a few KB each); a run recorded "
                             "there counts as finished even when its folder is gone")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: all cores)")
    parser.add_argument("--total-steps", type=int, default=0, help="override the preset's 100,000 (tests only)")
    parser.add_argument("--eval-episodes", type=int, default=0, help="override the preset's 100 (tests only)")
    parser.add_argument("--max-episode-steps", type=int, default=0,
                        help="override the preset's 27,000-step episode cap (tests only)")
    parser.add_argument("--wandb", default="offline")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="time each part of a step N times on the first game, alone, before any run")
    parser.add_argument("--malloc-default", action="store_true",
                        help="profile with glibc's default malloc thresholds (what keep_freed_memory buys)")
    parser.add_argument("--profile-state", metavar="RUN_DIR",
                        help="profile with the network and Adam state of this finished run (and its game)")
    parser.add_argument("--keep-denormals", action="store_true",
                        help="profile without flushing denormals to zero (what flush_denormals buys)")
    parser.add_argument("--report-only", action="store_true", help="print the tables of finished runs, run nothing")
    parser.add_argument("--eval-speed", metavar="RUN_DIR",
                        help="time the two evaluators on a finished run's agent (--eval-games games), run nothing else")
    parser.add_argument("--eval-games", type=int, default=20)
    parser.add_argument("--json", help="write the tables here")
    parser.add_argument("--sb3-child", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    games = [game_name(g) for g in opts.games.split(",")]
    seeds = [int(s) for s in opts.seeds.split(",")]
    if opts.sb3_child:
        sb3_child(Path(opts.sb3_child), games[0], seeds[0], opts.threads or os.cpu_count() or 1,
                  opts.total_steps or 100_000, opts.eval_episodes or 100, opts.max_episode_steps)
        return
    if opts.eval_speed:
        result = eval_speed(Path(opts.eval_speed), opts.eval_games, opts.threads)
        if opts.json:
            Path(opts.json).write_text(json.dumps(result, indent=1))
        return
    if opts.profile_state and not (Path(opts.profile_state) / "checkpoint.pt").exists():
        print(f"error: --profile-state {opts.profile_state}: no checkpoint.pt there; give the folder of a finished "
              "or stopped rlgen.rl.dqn Atari run", file=sys.stderr)
        raise SystemExit(2)
    unknown = [g for g in games if g not in RANDOM_HUMAN]
    if unknown:
        print(f"error: --games {unknown[0]} is not an Atari 100k game; accepted: {', '.join(RANDOM_HUMAN)}",
              file=sys.stderr)
        raise SystemExit(2)
    variants = opts.variants.split(",")
    bad = [v for v in variants if v not in ("preset", "frozen", "finetune", "sb3")]
    if bad:
        print(f"error: --variants {bad[0]!r} is not one of preset, frozen, finetune, sb3", file=sys.stderr)
        raise SystemExit(2)
    opts.sb3 = opts.sb3 or "sb3" in variants
    variants = [v for v in variants if v != "sb3"]
    opts.encoder_runs = dict(pair.split("=", 1) for pair in opts.encoder_runs.split(",") if pair)
    opts.encoder_runs = {game_name(k): v for k, v in opts.encoder_runs.items()}
    out = Path(opts.out)
    needs_encoder = any(v != "preset" for v in variants)
    pretrain_jobs = [("simclr", g, 0, out / f"simclr-{g}") for g in games
                     if needs_encoder and g not in opts.encoder_runs]
    opts.encoder_runs.update({g: str(d) for _, g, _, d in pretrain_jobs})
    print(f"machine: {machine()}", flush=True)
    timings = profile(games[0], opts.threads, opts.profile, opts.malloc_default, opts.profile_state,
                      opts.keep_denormals) if opts.profile else None
    # seed by seed, so that every game has a first run before any has a second
    jobs = [(v, g, s, out / f"{v}-{g}-s{s}") for v in variants for s in seeds for g in games]
    if opts.sb3:
        sb3_game = game_name(opts.sb3_game)
        jobs.append(("sb3", sb3_game, seeds[0], out / f"sb3-{sb3_game}-s{seeds[0]}"))
    if not opts.report_only:
        # every encoder an unfinished agent starts from, before any agent: as a folder (a record is not weights)
        waiting = {g for v, g, _, d in jobs if v in ("frozen", "finetune") and read_run(d, opts.results) is None}
        needed = [j for j in pretrain_jobs if j[1] in waiting]
        if needed:
            run_all(needed, opts, weights=True)
        run_all(jobs, opts)
    pretraining = report_pretraining(pretrain_jobs, opts.results)
    result = report(collect(jobs, opts.results), games, seeds)
    result["pretraining"] = pretraining
    result["profile_ms"] = timings
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=1))
        print(f"\nwrote {opts.json}")


if __name__ == "__main__":
    main()
