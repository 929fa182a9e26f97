"""The ``rlgen`` command: every training command under one name, and the verbs that use a finished run.

    rlgen                                   # lists every command, one line each
    rlgen dqn --env Breakout                # any command, with its own flags (rlgen dqn --help)
    rlgen play RUN [--best] [--episodes N] [--gif PATH | --video PATH.mp4]
    rlgen eval RUN [--best] [--episodes N] [--seed S]
    rlgen sample RUN --n 64 --out x.png     # alias: rlgen generate --checkpoint RUN ...
    rlgen export RUN OUT_DIR [--push-to-hub REPO_ID]
    rlgen --version

``python -m rlgen`` is the same command.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rlgen import cli, plots
from rlgen.envnames import is_atari
from rlgen.errors import UsageError
from rlgen.export import ExportArgs, export
from rlgen.files import write_json
from rlgen.loading import default_kind, load, run_algo
from rlgen.registry import ALIASES, COMMANDS
from rlgen.rl import envs as envlib
from rlgen.rl.agents import AGENT_ALGOS, Agent
from rlgen.version import __version__

VERBS = {
    "play": "watch or record a trained agent (dqn, reinforce, qlearning): GIF, MP4 or a window",
    "eval": "evaluate a trained agent over N episodes: mean ± std, human-normalised on Atari, to a JSON",
    "export": "a shareable folder in a Hugging Face model repository's layout, with a model card",
}


def listing() -> str:
    width = max(map(len, [*COMMANDS, *VERBS]))
    lines = [f"rlgen {__version__}: reinforcement, generative and self-supervised learning on shared encoders",
             "", "usage: rlgen COMMAND [FLAGS]   (rlgen COMMAND --help for its flags)", "", "training and tools:"]
    lines += [f"  {name:{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "using a finished run:"] + [f"  {name:{width}}  {what}" for name, what in VERBS.items()]
    return "\n".join(lines)


# -- play -------------------------------------------------------------------------------------------------
@dataclass
class PlayArgs:
    run: str = ""
    """run folder (or checkpoint file) of a dqn, reinforce or qlearning run"""
    best: bool = False
    """the weights of the run's best evaluation (best.pt, dqn) rather than its last"""
    episodes: int = 1
    """episodes to play, one after another"""
    seed: int | None = None
    """reset seed of the first episode (default: the run's first evaluation seed, so episode 1 is the one its
    final evaluation played first)"""
    gif: str | None = None
    """write the episodes as a GIF here (default without a display: RUN/play.gif)"""
    video: str | None = None
    """write every frame as an MP4 here (needs pip install 'rlgen[video]')"""
    device: str = "cpu"
    """cpu, cuda or auto"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("run",)


def _display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _agent(run: str, best: bool, device: str, verb: str) -> Agent:
    if not run:
        raise UsageError(f"rlgen {verb} RUN: give the run folder of a dqn, reinforce or qlearning run")
    algo = run_algo(run)
    if default_kind(algo) != "agent":
        raise UsageError(f"{run} is a {algo} run, which has no agent to {verb} (accepted: runs of "
                         f"{', '.join(AGENT_ALGOS)}; a generator's images: rlgen sample)")
    return load(run, "best" if best else "last", kind="agent", device=device)  # type: ignore[return-value]


def play(args: PlayArgs) -> dict[str, Any]:
    """Play ``--episodes`` episodes of the agent: to a window, a GIF or an MP4; returns their returns."""
    if args.episodes < 1:
        raise UsageError(f"--episodes {args.episodes} must be at least 1")
    if args.gif and args.video:
        raise UsageError("give --gif PATH or --video PATH.mp4, not both")
    if args.video and Path(args.video).suffix.lower() != ".mp4":
        raise UsageError(f"--video {args.video!r} must name a .mp4 file")
    if args.gif and Path(args.gif).suffix.lower() != ".gif":
        raise UsageError(f"--gif {args.gif!r} must name a .gif file")
    if args.video and not plots.video_available():
        raise UsageError("--video needs imageio and imageio-ffmpeg (pip install 'rlgen[video]'); --gif needs nothing")
    agent = _agent(args.run, args.best, args.device, "play")
    seed = agent.eval_seed if args.seed is None else args.seed
    epsilon = agent.eval_epsilon
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    act = lambda obs: agent.act(obs, deterministic=True)  # noqa: E731
    returns: list[float] = []
    window = not args.gif and not args.video and _display() and not is_atari(agent.env_id)
    if window:  # the environment's own window
        for i in range(args.episodes):
            _, ret = envlib.record_episode(act, lambda: agent.make_env("human"), seed + i, epsilon,
                                           on_frame=lambda frame: None)
            returns.append(ret)
        out = None
    elif args.video:
        with plots.VideoWriter(args.video, fps=15 if is_atari(agent.env_id) else 30) as video:
            for i in range(args.episodes):
                _, ret = envlib.record_episode(act, lambda: agent.make_env("rgb_array"), seed + i, epsilon,
                                               on_frame=video.add)
                returns.append(ret)
        out = video.path
    else:
        frames: list[np.ndarray] = []
        for i in range(args.episodes):
            shown, ret = envlib.record_episode(act, lambda: agent.make_env("rgb_array"), seed + i, epsilon,
                                               max_frames=max(20, 250 // args.episodes))
            frames += shown
            returns.append(ret)
        out = plots.save_episode_gif(args.gif or folder / "play.gif", frames, fps=10 if agent.algo == "qlearning"
                                     else 30)
    mean = float(np.mean(returns))
    where = f"; {out}" if out is not None else " (in a window)"
    print(f"{agent.algo} on {agent.env_id}: return {mean:g} over {len(returns)} episode"
          f"{'s' if len(returns) != 1 else ''} (seeds {seed}..{seed + len(returns) - 1}){where}")
    return {"algo": agent.algo, "env": agent.env_id, "returns": returns, "out": str(out) if out else None}


# -- eval -------------------------------------------------------------------------------------------------
@dataclass
class EvalArgs:
    run: str = ""
    """run folder (or checkpoint file) of a dqn, reinforce or qlearning run"""
    best: bool = False
    """the weights of the run's best evaluation (best.pt, dqn) rather than its last"""
    episodes: int | None = None
    """episodes (default: as many as the run's final evaluation)"""
    seed: int | None = None
    """reset seed of the first episode (default: the run's own evaluation seeds, which give its summary's number)"""
    device: str = "cpu"
    """cpu, cuda or auto"""
    out: str | None = None
    """JSON to write (default: RUN/eval-<last|best>-seed<S>-<N>ep.json)"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("run",)


def evaluate(args: EvalArgs) -> dict[str, Any]:
    """Mean and standard deviation of the agent's return over ``--episodes`` episodes, written to a JSON."""
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes {args.episodes} must be at least 1")
    agent = _agent(args.run, args.best, args.device, "evaluate")
    seed = agent.eval_seed if args.seed is None else args.seed
    returns = agent.evaluate(args.episodes, seed)
    which = "best" if args.best else "last"
    mean, std = float(returns.mean()), float(returns.std())
    result = {"algo": agent.algo, "env": agent.env_id, "weights": which, "episodes": len(returns), "seed": seed,
              "return_mean": mean, "return_std": std, "returns": returns.tolist(),
              "human_normalized_score": agent.human_normalized(mean)}
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.out) if args.out else folder / f"eval-{which}-seed{seed}-{len(returns)}ep.json"
    write_json(out, result)
    hns = (f"; human-normalised {result['human_normalized_score']:.3f}"
           if result["human_normalized_score"] is not None else "")
    print(f"{agent.algo} on {agent.env_id} ({which} weights): return {mean:.2f} ± {std:.2f} over {len(returns)} "
          f"episodes from seed {seed}{hns}")
    print(f"written: {out}")
    return result


# -- dispatch ---------------------------------------------------------------------------------------------
def _run_module(name: str, argv: Sequence[str]) -> None:
    module_name, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    doc = (module.__doc__ or "").split("\n\n")[0]
    argv = list(argv)
    if name == "sample" and argv and not argv[0].startswith("-"):
        argv = ["--checkpoint", *argv]  # rlgen sample RUN ...
    cli.run(module.main, module.Args, argv, description=doc, prog=f"rlgen {name}")


def main(argv: Sequence[str] | None = None) -> None:
    """``rlgen [COMMAND] [FLAGS]``; exit 2 with one line for an unknown command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(listing())
        return
    if argv[0] == "--version":
        print(f"rlgen {__version__}")
        return
    name, rest = ALIASES.get(argv[0], argv[0]), argv[1:]
    if name in COMMANDS:
        _run_module(name, rest)
    elif name == "play":
        cli.run(play, PlayArgs, rest, description=VERBS["play"], prog="rlgen play")
    elif name == "eval":
        cli.run(evaluate, EvalArgs, rest, description=VERBS["eval"], prog="rlgen eval")
    elif name == "export":
        cli.run(export, ExportArgs, rest, description=VERBS["export"], prog="rlgen export")
    else:
        known = ", ".join([*COMMANDS, *VERBS])
        print(f"error: unknown command {argv[0]!r}; commands: {known} (rlgen alone lists them)", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
