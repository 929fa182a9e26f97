"""Tabular Q-learning (Watkins & Dayan 1992, "Q-learning", Machine Learning 8) and value iteration.

After each step the agent moves its estimate of the action value toward a one-step target,
the temporal-difference rule (Sutton & Barto 2018, section 6.5):

    Q(s, a) ← Q(s, a) + α [r + γ max_a' Q(s', a') − Q(s, a)]      (no bootstrap when s' is terminal)

Behaviour is ε-greedy with ε decaying linearly; α is constant, decays linearly, or decays with
the visit count n(s, a) as α₀ / n^ω (a Robbins-Monro schedule, which is what makes the table
converge on the slippery lakes). Any gymnasium environment with discrete observations and actions
works; an environment with a box of observations (CartPole) works through :class:`Discretiser`.

Speed: training steps environments as tables (:mod:`rlgen.rl.tables`): the toy-text environments
(FrozenLake, Taxi, CliffWalking) from their published transition table with the run's seeded generator,
the same Markov chain as ``env.step`` without the wrappers' per-step cost; CartPole through a copy of
gymnasium's Euler equations in plain floats; any other environment through gymnasium itself. Evaluation
always runs the real ``gym.make`` environment.

Value iteration (``--value-iteration``) solves the Bellman optimality equation on the same
transition table: it is the reference each learned table is held against, and every Q-learning
run on a table environment reports the optimal policy's score on the same evaluation seeds.

    python -m rlgen.rl.qlearning --env FrozenLake
    python -m rlgen.rl.qlearning --env FrozenLake --value-iteration
    python -m rlgen.rl.qlearning --env CartPole --bins 1,1,6,12 --bounds=-2.4:2.4,-3:3,-0.21:0.21,-3.5:3.5
    rlgen play runs/qlearning-FrozenLake-v1-s0-...             # the greedy policy as a GIF
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from rlgen import cli, plots
from rlgen.cli import Range
from rlgen.envnames import is_atari, resolve_env_id
from rlgen.errors import UsageError
from rlgen.files import atomic_open, atomic_write_bytes, write_json
from rlgen.lifecycle import Run
from rlgen.rl import envs as envlib
from rlgen.rl.tables import CartPoleTable, Discretiser, GymTable, TableEnv, parse_bins
from rlgen.seeding import seed_everything
from rlgen.track import RunArgs

ALGO = "qlearning"


@dataclass
class Args(RunArgs):
    env: str = "FrozenLake"
    """environment: a short name (FrozenLake, FrozenLake8x8, Taxi, CliffWalking, CartPole) or a gymnasium id"""
    episodes: int | None = None
    """training episodes"""
    lr: float | None = None
    """learning rate α (the initial α for the decaying schedules)"""
    lr_schedule: Literal["constant", "linear", "visits"] | None = None
    """α schedule: constant; linear from --lr to --lr-end over the run; visits: --lr / n(s,a)^--lr-power"""
    lr_end: float | None = None
    """the floor (visits) or final value (linear) of α"""
    lr_power: float | None = None
    """exponent ω of the visit-count schedule α = lr / n^ω (0.5 < ω ≤ 1 converges)"""
    gamma: float | None = None
    """discount factor γ in [0, 1]"""
    eps_start: float | None = None
    """initial exploration rate ε"""
    eps_end: float | None = None
    """final exploration rate ε"""
    eps_decay: float | None = None
    """fraction of the episodes over which ε falls linearly from --eps-start to --eps-end"""
    slippery: bool | None = None
    """FrozenLake / CliffWalking: slippery ice (default: the registry's setting)"""
    bins: str | None = None
    """discretisation for box observations: bins per dimension, e.g. 1,1,6,12 for CartPole"""
    bounds: str | None = None
    """bounds per dimension as lo:hi pairs, written with '=' as the value starts with '-':
    --bounds=-2.4:2.4,-3:3,-0.21:0.21,-3.5:3.5 (default: the space's own bounds)"""
    max_episode_steps: int | None = None
    """cap on episode length (the registry's time limit where the table has none)"""
    eval_episodes: int | None = None
    """greedy evaluation episodes at the end (default 1000; 100 for CartPole)"""
    value_iteration: bool = False
    """solve the environment's transition table by value iteration instead of learning"""
    vi_tol: float = 1e-10
    """value iteration stops when no state value moves by more than this"""
    checkpoint_every: int = 0
    """save a checkpoint every this many episodes (0: only at the end)"""
    log_every: int | None = None
    """log averaged metrics every this many episodes (default: 200 points over the run)"""
    gif: bool = True
    """write a GIF of one greedy episode"""

    # α is a step size toward the TD target: above 1 it overshoots; ω = 0 would not decay at all.
    LIMITS: ClassVar[dict[str, Range]] = {"lr": Range(0, 1, open_lo=True), "lr_end": Range(0, 1, open_lo=True),
                                          "lr_power": Range(0, cli.BIG, open_lo=True)}

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        """``--help``'s defaults for the fields :data:`DEFAULTS` fills in, per environment where they differ."""
        return {**super().help_defaults(),
                **{name: cli.describe_default(DEFAULTS, name, generic="*", none="the environment's own")
                   for name in RESOLVED}}


# Flags a continued run may change: the budget, the cadences and what is written only at the end. The ε and
# linear α schedules are computed from --episodes each episode, so a larger budget stretches them from the
# resume point on.
RESUME_CHANGEABLE = frozenset({"episodes", "checkpoint_every", "log_every", "eval_episodes", "gif"})

# Per-environment defaults: the one place where the settings that meet the goals live.
# Measured with experiments/bench_tabular.py; γ is the one value iteration uses as well, chosen
# so that the optimal stationary policy does best under each environment's time limit.
DEFAULTS: dict[str, dict[str, Any]] = {
    "*": dict(episodes=20_000, lr=0.1, lr_schedule="constant", lr_end=0.01, lr_power=0.8, gamma=0.99,
              eps_start=1.0, eps_end=0.05, eps_decay=0.5, eval_episodes=1000, max_episode_steps=None),
    "FrozenLake-v1": dict(episodes=40_000, lr=1.0, lr_schedule="visits", lr_end=0.001, lr_power=0.6, gamma=0.99,
                          eps_start=1.0, eps_end=0.1, eps_decay=0.5),
    "FrozenLake-v1/deterministic": dict(episodes=1_000, lr=0.5, lr_schedule="constant", gamma=0.95,
                                        eps_end=0.05, eps_decay=0.5),
    "FrozenLake8x8-v1": dict(episodes=40_000, lr=1.0, lr_schedule="visits", lr_end=0.001, lr_power=0.5,
                             gamma=0.995, eps_start=1.0, eps_end=0.1, eps_decay=0.5),
    "FrozenLake8x8-v1/deterministic": dict(episodes=3_000, lr=0.5, lr_schedule="constant", gamma=0.95,
                                           eps_end=0.05, eps_decay=0.5),
    "Taxi-v4": dict(episodes=5_000, lr=0.5, lr_schedule="constant", gamma=0.99, eps_end=0.05, eps_decay=0.5),
    "CliffWalking-v1": dict(episodes=1_000, lr=0.5, lr_schedule="constant", gamma=0.99, eps_end=0.05,
                            eps_decay=0.5, max_episode_steps=200),
    "CartPole-v1": dict(episodes=20_000, lr=0.1, lr_schedule="linear", lr_end=0.01, gamma=0.99, eps_end=0.01,
                        eps_decay=0.5, bins="1,1,6,12", bounds="-2.4:2.4,-3:3,-0.21:0.21,-3.5:3.5",
                        eval_episodes=100),
}
RESOLVED = ("episodes", "lr", "lr_schedule", "lr_end", "lr_power", "gamma", "eps_start", "eps_end", "eps_decay",
            "bins", "bounds", "max_episode_steps", "eval_episodes")


# ---------------------------------------------------------------------------------------------
# The math
# ---------------------------------------------------------------------------------------------
def td_update(q: Any, s: int, a: int, r: float, s_next: int, terminated: bool, alpha: float, gamma: float) -> float:
    """One Q-learning step on table ``q`` (list of rows or array) in place; returns the TD error.

    δ = r + γ max_a' Q(s', a') − Q(s, a) (without the bootstrap term when s' is terminal),
    Q(s, a) ← Q(s, a) + α δ. A time-limit truncation is not terminal: it still bootstraps.
    """
    target = r if terminated else r + gamma * max(q[s_next])
    delta = target - q[s][a]
    q[s][a] += alpha * delta
    return delta


def epsilon_at(episode: int, episodes: int, start: float, end: float, decay: float) -> float:
    """ε for ``episode``: linear from ``start`` to ``end`` over the first ``decay`` fraction of the run."""
    span = decay * episodes
    if span <= 0:
        return end
    return end + (start - end) * max(0.0, 1.0 - episode / span)


def value_iteration(P: dict, n_states: int, n_actions: int, gamma: float, tol: float = 1e-10,
                    max_iters: int = 100_000) -> tuple[np.ndarray, int]:
    """Optimal action values from a gymnasium transition table ``P[s][a] = [(p, s', r, terminated), ...]``.

    Repeats Q(s, a) = Σ p [r + γ (1 − terminated) max_a' Q(s', a')] until no state value moves by
    more than ``tol``; returns ``(Q, iterations)``.
    """
    reward = np.zeros((n_states, n_actions))
    cont = np.zeros((n_states, n_actions, n_states))  # probability of going on to s' (not terminated)
    for s in range(n_states):
        for a in range(n_actions):
            for p, s2, r, done in P[s][a]:
                reward[s, a] += p * r
                if not done:
                    cont[s, a, s2] += p
    cont = cont.reshape(n_states * n_actions, n_states)
    v = np.zeros(n_states)
    for it in range(1, max_iters + 1):
        q = reward + gamma * (cont @ v).reshape(n_states, n_actions)
        v_new = q.max(axis=1)
        if np.max(np.abs(v_new - v)) <= tol:
            return q, it
        v = v_new
    return q, max_iters


def suboptimal_states(policy: np.ndarray, optimal_q: np.ndarray, tol: float = 1e-9) -> int:
    """States whose chosen action is worse than the best by more than ``tol`` under Q* (ties are not errors)."""
    best = optimal_q.max(axis=1)
    chosen = optimal_q[np.arange(len(policy)), policy]
    return int((chosen < best - tol * np.maximum(1.0, np.abs(best))).sum())


# ---------------------------------------------------------------------------------------------
# One episode of learning
# ---------------------------------------------------------------------------------------------
def run_episode(q: list[list[float]], visits: list[list[int]], env: Any, rng: np.random.Generator, eps: float,
                alpha: float, gamma: float, max_steps: int, schedule: str, lr_end: float,
                lr_power: float) -> tuple[float, int, bool, float]:
    """One ε-greedy episode with a TD update per step; returns (return, length, terminated, last reward).

    Two uniforms per step are drawn up front: one decides explore-or-exploit and, when exploring,
    which action (u/ε is again uniform), the other picks the transition's outcome.
    """
    n_actions = env.n_actions
    draws = rng.random(2 * max_steps).tolist()
    s = env.reset(rng)
    total, r, done, t = 0.0, 0.0, False, 0
    visit_decay = schedule == "visits"
    while t < max_steps and not done:
        u = draws[2 * t]
        if u < eps:
            a = int(u / eps * n_actions)
        else:
            row = q[s]
            a = row.index(max(row))  # ties go to the lowest action
        s2, r, done = env.step(a, draws[2 * t + 1])
        if visit_decay:
            n = visits[s][a] = visits[s][a] + 1
            step_size = max(lr_end, alpha * n ** -lr_power)
        else:
            visits[s][a] += 1
            step_size = alpha
        td_update(q, s, a, r, s2, done, step_size, gamma)
        total += r
        s = s2
        t += 1
    return total, t, done, r


# ---------------------------------------------------------------------------------------------
# Setup: environment ids, defaults, validation
# ---------------------------------------------------------------------------------------------
def env_kwargs(env_id: str, slippery: bool | None) -> dict[str, Any]:
    if slippery is None:
        return {}
    entry = str(gym.registry[env_id].entry_point) if env_id in gym.registry else ""
    if "frozen_lake" not in entry and "cliffwalking" not in entry:
        raise UsageError(f"--slippery/--no-slippery applies to FrozenLake and CliffWalking, not {env_id}")
    return {"is_slippery": slippery}


def defaults_for(env_id: str, slippery: bool | None) -> dict[str, Any]:
    """The merged default table for this environment (``/deterministic`` rows for non-slippery ice)."""
    row = dict(DEFAULTS["*"])
    row.update(DEFAULTS.get(env_id, {}))
    if slippery is False and f"{env_id}/deterministic" in DEFAULTS:
        row.update(DEFAULTS[f"{env_id}/deterministic"])
    return row


@dataclass
class Problem:
    """What a run needs to know about its environment, checked before anything is written."""

    env_id: str
    kwargs: dict[str, Any]
    n_states: int
    n_actions: int
    discretiser: Discretiser | None
    table: dict | None  # the transition table P where the environment has one
    goal: str | None  # how success is read: "positive" (FrozenLake), "terminal" (Taxi, CliffWalking)
    grid: list[str] | None
    arrows: str | None
    threshold: float | None


def resolve(args: Args) -> tuple[Args, Problem]:
    """Fill the per-environment defaults into ``args`` and check everything; UsageError on bad input."""
    env_id = resolve_env_id(args.env)
    if is_atari(args.env):
        raise UsageError(f"{args.env} is an Atari game; tabular Q-learning needs small discrete or binned spaces")
    kwargs = env_kwargs(env_id, args.slippery)
    filled = {k: (getattr(args, k) if getattr(args, k) is not None else defaults_for(env_id, args.slippery).get(k))
              for k in RESOLVED}
    spec = gym.registry.get(env_id)
    if filled["max_episode_steps"] is None:  # the registry's time limit, else a cap so greedy loops end
        filled["max_episode_steps"] = spec.max_episode_steps if spec and spec.max_episode_steps else 500
    args = dataclasses.replace(args, env=env_id, **filled)
    cli.check_numbers(args)  # the per-environment values filled in just now, and every flag given

    env = envlib.make_env(env_id, **kwargs)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(act_space, gym.spaces.Discrete):
            raise UsageError(f"{env_id} has a continuous action space ({act_space}); tabular Q-learning needs "
                             "discrete actions")
        discretiser = None
        if isinstance(obs_space, gym.spaces.Discrete):
            n_states = int(obs_space.n)
        elif isinstance(obs_space, gym.spaces.Box):
            if not args.bins:
                raise UsageError(f"{env_id} has a continuous observation space {obs_space.shape}; give --bins "
                                 "(and --bounds) to discretise it")
            discretiser = parse_bins(args.bins, args.bounds, obs_space)
            n_states = discretiser.n_states
        else:
            raise UsageError(f"{env_id} has observation space {obs_space}; tabular Q-learning needs a Discrete "
                             "space or a Box with --bins")
        inner = env.unwrapped
        table = getattr(inner, "P", None) if discretiser is None and hasattr(inner, "initial_state_distrib") \
            else None
        if table is not None and getattr(inner, "fickle_passenger", False):
            table = None  # Taxi's fickle passenger changes destinations outside P
        entry = str(spec.entry_point) if spec is not None else ""
        goal = "positive" if "frozen_lake" in entry else "terminal" if ("taxi" in entry or "cliff" in entry) else None
        grid, arrows = None, None
        if "frozen_lake" in entry:
            grid, arrows = [row.tobytes().decode() for row in inner.desc], "←↓→↑"
        elif "cliffwalking" in entry:
            rows, cols = inner.shape
            grid = ["".join("C" if inner._cliff[r, c] else "F" for c in range(cols)) for r in range(rows)]
            grid[rows - 1] = "S" + grid[rows - 1][1:-1] + "G"
            arrows = "↑→↓←"
        threshold = spec.reward_threshold if spec is not None else None
        problem = Problem(env_id, kwargs, n_states, int(act_space.n), discretiser, table, goal, grid, arrows,
                          threshold)
    finally:
        env.close()
    if args.value_iteration and problem.table is None:
        raise UsageError(f"--value-iteration needs the environment's transition table (env.unwrapped.P); "
                         f"{env_id} has none")
    return args, problem


def make_table_env(problem: Problem) -> Any:
    env = envlib.make_env(problem.env_id, **problem.kwargs)
    if problem.table is not None:
        inner = env.unwrapped
        return TableEnv(inner.P, inner.initial_state_distrib, problem.n_states, problem.n_actions)
    if problem.env_id in ("CartPole-v1", "CartPole-v0") and problem.discretiser is not None:
        return CartPoleTable(problem.discretiser)
    return GymTable(env.unwrapped, problem.discretiser)


# ---------------------------------------------------------------------------------------------
# Evaluation and pictures
# ---------------------------------------------------------------------------------------------
def evaluate(policy: np.ndarray, problem: Problem, episodes: int, seed: int, max_steps: int,
             render: bool = False) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Greedy ``policy`` on the real environment, episode i reset with ``seed + i``.

    Returns the returns, the success flags (all False where the environment has no goal) and,
    with ``render``, the frames of the first episode. Where the environment has a transition
    table, episodes after the reset are stepped by :class:`TableEnv` drawing from the
    environment's own generator: the same draws, hence the same trajectories, as ``env.step``
    (``tests/test_qlearning.py`` checks both ways agree), at a fraction of the wrappers' cost.
    """
    env = envlib.make_env(problem.env_id, max_episode_steps=max_steps,
                          render_mode="rgb_array" if render else None, **problem.kwargs)
    inner = env.unwrapped
    table = TableEnv(inner.P, inner.initial_state_distrib, problem.n_states, problem.n_actions) \
        if problem.table is not None else None
    to_index = problem.discretiser or int
    act = policy.tolist()
    returns, success, frames = np.zeros(episodes), np.zeros(episodes, dtype=bool), []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        recording = render and i == 0
        total, terminated, r = 0.0, False, 0.0
        if table is not None and not recording:
            table.s, draw = int(obs), inner.np_random.random
            for _ in range(max_steps):
                _, r, terminated = table.step(act[table.s], draw())
                total += r
                if terminated:
                    break
        else:
            if recording:
                frames.append(env.render())
            done = False
            while not done:
                obs, r, terminated, truncated, _ = env.step(act[to_index(obs)])
                total += float(r)
                done = terminated or truncated
                if recording:
                    frames.append(env.render())
        returns[i] = total
        success[i] = terminated and (problem.goal == "terminal" or (problem.goal == "positive" and r > 0))
    env.close()
    return returns, success, frames


def policy_text(policy: np.ndarray, problem: Problem) -> str | None:
    """The greedy policy as arrows on the map (holes H, cliff C, goal G), or None off grid worlds."""
    if problem.grid is None or problem.arrows is None:
        return None
    cols = len(problem.grid[0])
    lines = []
    for r, row in enumerate(problem.grid):
        lines.append(" ".join(ch if ch in "HCG" else problem.arrows[int(policy[r * cols + c])]
                              for c, ch in enumerate(row)))
    return "\n".join(lines) + "\n"


def save_policy_png(path: Path, policy: np.ndarray, values: np.ndarray, problem: Problem, title: str) -> Path | None:
    """Arrows on the map, cells shaded by the greedy value max_a Q(s, a)."""
    if problem.grid is None or problem.arrows is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(problem.grid), len(problem.grid[0])
    fig, ax = plt.subplots(figsize=(max(3.0, 0.6 * cols), max(3.0, 0.6 * rows) + 0.4), dpi=100)
    shade = values.astype(np.float64).reshape(rows, cols).copy()
    shade[np.array([[ch in "HCG" for ch in row] for row in problem.grid])] = np.nan  # not states to act in
    ax.imshow(shade, cmap="Blues")
    for r, row in enumerate(problem.grid):
        for c, ch in enumerate(row):
            label = ch if ch in "HCG" else problem.arrows[int(policy[r * cols + c])]
            ax.text(c, r, label, ha="center", va="center", fontsize=14,
                    color="tab:red" if ch in "HC" else "tab:green" if ch == "G" else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    return path


def eval_seed(seed: int) -> int:
    """First reset seed of the greedy evaluation (the learned and optimal policies share them)."""
    return 1_000_000 * (seed + 1)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict[str, Any]:
    """Train (or solve) and return the summary that is also written to ``summary.json``."""
    problems: list[Problem] = []

    def check(a: Args) -> Args:
        a, problem = resolve(a)
        problems.append(problem)
        return a

    algo = "value_iteration" if args.value_iteration and not args.resume else ALGO
    run = Run(args, algo, what=lambda a: a.env, changeable=RESUME_CHANGEABLE, check=check)
    args, problem, run_dir = run.args, problems[-1], run.run_dir

    rng = seed_everything(args.seed)
    q = [[0.0] * problem.n_actions for _ in range(problem.n_states)]
    visits = [[0] * problem.n_actions for _ in range(problem.n_states)]
    env_steps, episode, q, visits, history = run.restore(
        rng=rng, counters=dict(step=0, episode=0, q=q, visits=visits,
                               history={"return": [], "length": [], "success": []}))
    optimal_q = None
    with run.start(bar_keys=("rollout/episode_return", "rollout/success", "rollout/epsilon")) as tracker:
        run_dir = run.run_dir  # the folder claimed as the run started
        if problem.table is not None:
            with run.train_clock:
                optimal_q, vi_iters = value_iteration(problem.table, problem.n_states, problem.n_actions,
                                                      args.gamma, args.vi_tol)
        if args.value_iteration:
            q = optimal_q.tolist()
            tracker.log({"train/iterations": vi_iters}, 0)
        else:
            env = make_table_env(problem)
            log_every = args.log_every or max(1, args.episodes // 200)
            bar = tracker.progress(args.episodes, initial=episode, unit="ep")
            while episode < args.episodes:
                # ε and a linear α follow --episodes: a resume with a larger budget stretches them from here on.
                eps = epsilon_at(episode, args.episodes, args.eps_start, args.eps_end, args.eps_decay)
                alpha = args.lr if args.lr_schedule != "linear" else \
                    args.lr + (args.lr_end - args.lr) * episode / max(1, args.episodes - 1)
                with run.train_clock:
                    ret, length, terminated, last_r = run_episode(q, visits, env, rng, eps, alpha, args.gamma,
                                                                  args.max_episode_steps, args.lr_schedule,
                                                                  args.lr_end, args.lr_power)
                episode += 1
                env_steps += length
                history["return"].append(ret)
                history["length"].append(length)
                history["success"].append(float(terminated and (problem.goal == "terminal" or
                                                                (problem.goal == "positive" and last_r > 0))))
                if episode % log_every == 0 or episode == args.episodes:
                    metrics = {"rollout/episode_return": float(np.mean(history["return"][-log_every:])),
                               "rollout/episode_length": float(np.mean(history["length"][-log_every:])),
                               "rollout/epsilon": eps, "train/lr": alpha, "rollout/episodes": episode}
                    if problem.goal:
                        metrics["rollout/success"] = float(np.mean(history["success"][-log_every:]))
                    tracker.log(metrics, env_steps)
                    bar.update(episode - bar.n)
                if run.checkpoint_due(episode - 1, episode, args.checkpoint_every) and episode < args.episodes:
                    run.save(env_steps, episode=episode, q=q, visits=visits, history=history)
            bar.close()
        run.save(env_steps, episode=episode, q=q, visits=visits, history=history)

        # -- greedy evaluation, against the optimal policy on the same seeds ----------------------
        with run.after_clock:
            q_arr = np.asarray(q, dtype=np.float64)
            policy = q_arr.argmax(axis=1)
            returns, success, frames = evaluate(policy, problem, args.eval_episodes, eval_seed(args.seed),
                                                args.max_episode_steps, render=args.gif)
            summary: dict[str, Any] = {
                "env": problem.env_id, "env_steps": env_steps, "episodes": episode,
                "eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std()),
                "eval_episodes": args.eval_episodes, "reward_threshold": problem.threshold, "gamma": args.gamma,
            }
            if problem.goal:
                summary["eval_success_rate"] = float(success.mean())
            if optimal_q is not None:
                optimal_policy = optimal_q.argmax(axis=1)
                opt_returns, opt_success, _ = evaluate(optimal_policy, problem, args.eval_episodes,
                                                       eval_seed(args.seed), args.max_episode_steps)
                summary.update({"optimal_eval_return_mean": float(opt_returns.mean()),
                                "optimal_eval_return_std": float(opt_returns.std()),
                                "value_iteration_sweeps": vi_iters,
                                "states_where_policy_differs": int((policy != optimal_policy).sum()),
                                "states_where_policy_suboptimal": suboptimal_states(policy, optimal_q)})
                if problem.goal:
                    summary["optimal_eval_success_rate"] = float(opt_success.mean())

        # -- artefacts -----------------------------------------------------------------------------
        extra = {"optimal_q": optimal_q} if optimal_q is not None else {}
        with atomic_open(run_dir / "q_table.npz") as fh:
            np.savez(fh, q=q_arr, policy=policy, visits=np.asarray(visits), **extra)
        write_json(run_dir / "policy.json", {"env": problem.env_id, "policy": policy.tolist()})
        text = policy_text(policy, problem)
        if text is not None:
            atomic_write_bytes(run_dir / "policy.txt", text.encode("utf-8"))
            png = save_policy_png(run_dir / "policy.png", policy, q_arr.max(axis=1), problem,
                                  f"greedy policy, {problem.env_id}")
            tracker.log_image("policy", png)
            print(text, end="")
        if history["return"]:

            curve = plots.save_learning_curve(run_dir / "learning_curve.png", np.arange(1, len(history["return"]) + 1),
                                              history["return"], threshold=problem.threshold, xlabel="episode",
                                              title=f"Q-learning on {problem.env_id} (seed {args.seed})")
            tracker.log_image("learning_curve", curve)
        if frames:

            gif = plots.save_episode_gif(run_dir / "greedy_episode.gif", frames, fps=4 if problem.table else 30,
                                         max_frames=100 if problem.table else 250)
            if gif is not None:
                tracker.log_video("greedy_episode", gif)
        return run.finish(summary, results=qlearning_results(summary))


def qlearning_results(summary: dict[str, Any]) -> list[str]:
    """The closing lines: the greedy policy's evaluation, beside the optimal policy's on the same seeds."""
    n = summary["eval_episodes"]
    line = (f"greedy policy: return {summary['eval_return_mean']:.3f} ± {summary['eval_return_std']:.3f} over "
            f"{n} evaluation episode{'s' if n != 1 else ''}")
    if summary.get("eval_success_rate") is not None:
        line += f", reaching the goal in {100 * summary['eval_success_rate']:.0f}%"
    lines = [line]
    if summary.get("optimal_eval_return_mean") is not None:
        lines.append(f"optimal policy (value iteration) on the same seeds: return "
                     f"{summary['optimal_eval_return_mean']:.3f} ± {summary['optimal_eval_return_std']:.3f}; "
                     f"the learned policy is suboptimal in {summary['states_where_policy_suboptimal']} state(s)")
    return lines


if __name__ == "__main__":
    cli.run(main, Args)
