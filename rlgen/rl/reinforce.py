"""REINFORCE: Monte-Carlo policy gradient (Williams 1992, "Simple statistical gradient-following
algorithms for connectionist reinforcement learning", Machine Learning 8).

For each step of an episode the policy's log-probability of the action taken is pushed up in
proportion to what followed it (Sutton & Barto 2018, sections 13.3–13.4):

    G_t = r_t + γ r_{t+1} + … (reward-to-go: an action cannot affect rewards before it)
    A_t = G_t − V(s_t)        (a learned state-value baseline: same expected gradient, lower variance)
    loss = −mean_t[A_t log π(a_t | s_t)] − β H[π(· | s_t)] + c (G_t − V(s_t))²

with several episodes per update, the weights optionally normalised to zero mean and unit
variance per update, an entropy bonus β, and gradient-norm clipping. An episode cut by the time
limit (not a real end) starts its reward-to-go from V(s_T) instead of 0 (Pardo et al. 2018,
"Time limits in reinforcement learning"), where there is a baseline to do it with.

The policy and value networks put a linear head on a backbone from :mod:`rlgen.nets`, so the
same code learns CartPole from its 4 numbers and Pong from pixels, preprocessed either as in
Karpathy's "Pong from Pixels" (crop, downsample by 2, erase the background, binarise, difference
of consecutive frames → 1×80×80) or with the standard Atari stack that DQN uses
(:func:`rlgen.rl.atari.make_atari_env`: frame skip 4 with a max over the last two frames, no-op
starts, 84×84 grey, 4 frames stacked).

"Solved" follows pytorch/examples' reinforce.py: an exponential moving average of episode return
(α = 0.05, starting at 10) first reaching the environment's reward threshold (475 on CartPole-v1).

    python -m rlgen.rl.reinforce --env CartPole
    python -m rlgen.rl.reinforce --env Pong --preprocess karpathy --device cuda
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlgen import cli, plots
from rlgen.envnames import is_atari, resolve_atari_id, resolve_env_id
from rlgen.errors import UsageError
from rlgen.lifecycle import Run
from rlgen.nets import make_backbone
from rlgen.rl import envs as envlib
from rlgen.rl.atari import make_atari_env
from rlgen.seeding import seed_everything
from rlgen.track import RunArgs

ALGO = "reinforce"
GIF_FRAMES = 250  # the most frames the end-of-run GIF shows


@dataclass
class Args(RunArgs):
    env: str = "CartPole"
    """environment: a short name (CartPole, Acrobot, Pong, ...) or a gymnasium / ALE id"""
    episodes: int | None = None
    """training episodes at most"""
    lr: float | None = None
    """Adam learning rate of the policy"""
    value_lr: float | None = None
    """Adam learning rate of the value baseline"""
    gamma: float | None = None
    """discount factor γ in [0, 1]"""
    batch_episodes: int | None = None
    """episodes per gradient update"""
    baseline: bool = True
    """subtract a learned state value V(s) from the reward-to-go (the advantage form)"""
    normalize: bool = True
    """normalise the policy-gradient weights (advantages, or returns without a baseline) per update"""
    entropy_coef: float | None = None
    """entropy bonus β"""
    max_grad_norm: float | None = None
    """clip each network's gradient norm to this (0: no clipping)"""
    bootstrap_truncated: bool = True
    """start the reward-to-go of a time-limited episode from V(s_T) instead of 0 (needs --baseline)"""
    backbone: str | None = None
    """backbone from rlgen.nets (mlp, nature_cnn, convnet; default mlp for vectors, nature_cnn for pixels)"""
    hidden: str | None = None
    """hidden widths of the mlp backbone, comma-separated"""
    preprocess: Literal["karpathy", "stack"] | None = None
    """Atari frames: karpathy (Pong only: 80×80 difference of binarised frames, Pong's crop and colours) or stack
    (84×84 grey, 4 stacked, any game); default karpathy for Pong, stack for every other game"""
    max_episode_steps: int | None = None
    """cap on agent steps per episode (default: the registry's time limit)"""
    solve_threshold: float | None = None
    """moving-average return that counts as solved (default: the registry's reward threshold)"""
    stop_on_solve: bool = True
    """end training once solved (as pytorch/examples does)"""
    eval_episodes: int | None = None
    """greedy evaluation episodes at the end"""
    checkpoint_every: int = 50
    """save a checkpoint every this many episodes, at update boundaries (0: only at the end)"""
    log_every: int = 1
    """updates between logged rows: each holds the mean return of the episodes since the last row and the
    last update's losses"""
    gif: bool = True
    """record one greedy episode at the end: greedy_episode.gif, or on Atari with the video extra installed
    (pip install 'rlgen[video]') every frame of the game as greedy_episode.mp4"""

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        """``--help``'s defaults for the fields :data:`DEFAULTS` fills in, per environment where they differ."""
        return {**super().help_defaults(),
                **{name: cli.describe_default(DEFAULTS, name, generic="*", none="the environment's own")
                   for name in RESOLVED}}


# Flags a continued run may change: the budget, the checkpoint cadence, the solved rule's stopping and what is
# written only at the end (no schedule depends on --episodes).
RESUME_CHANGEABLE = frozenset({"episodes", "checkpoint_every", "log_every", "stop_on_solve", "eval_episodes", "gif"})


EMA_ALPHA, EMA_START = 0.05, 10.0  # pytorch/examples reinforce.py's running reward

# Per-environment defaults in one place; measured with experiments/bench_reinforce.py.
DEFAULTS: dict[str, dict[str, Any]] = {
    "*": dict(episodes=2000, lr=1e-2, value_lr=1e-2, gamma=0.99, batch_episodes=1, entropy_coef=0.0,
              max_grad_norm=1.0, hidden="128", eval_episodes=20),
    "CartPole-v1": dict(episodes=2000, lr=1e-2, value_lr=1e-2, gamma=0.99, batch_episodes=1, entropy_coef=0.0,
                        max_grad_norm=1.0, hidden="128", eval_episodes=20),
    "atari": dict(episodes=10_000, lr=5e-4, value_lr=5e-4, gamma=0.99, batch_episodes=10, entropy_coef=0.01,
                  max_grad_norm=1.0, hidden="200", eval_episodes=5),
}
RESOLVED = ("episodes", "lr", "value_lr", "gamma", "batch_episodes", "entropy_coef", "max_grad_norm", "hidden",
            "eval_episodes")


# ---------------------------------------------------------------------------------------------
# The math
# ---------------------------------------------------------------------------------------------
def rewards_to_go(rewards: Sequence[float], gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """G_t = r_t + γ G_{t+1}, with G_T = ``bootstrap`` (0 at a true end, V(s_T) at a time limit)."""
    out = np.empty(len(rewards), dtype=np.float64)
    g = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def advantages(returns: np.ndarray, values: np.ndarray | None, normalize: bool) -> np.ndarray:
    """A_t = G_t − V(s_t) (just G_t without a baseline), optionally scaled to zero mean and unit std."""
    adv = np.asarray(returns, dtype=np.float64) - (0.0 if values is None else np.asarray(values, dtype=np.float64))
    if normalize and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv


def update_ema(ema: float, episode_return: float, alpha: float = EMA_ALPHA) -> float:
    """pytorch/examples' running reward: ema ← α · return + (1 − α) · ema."""
    return alpha * episode_return + (1.0 - alpha) * ema


def karpathy_preprocess(frame: np.ndarray) -> np.ndarray:
    """A 210×160×3 Pong frame → 80×80 float32 of 0/1: crop the playfield, keep every 2nd pixel of
    the red channel, erase the two background colours, mark everything else (paddles, ball) as 1."""
    img = frame[35:195:2, ::2, 0].copy()
    img[img == 144] = 0
    img[img == 109] = 0
    return (img != 0).astype(np.float32)


class KarpathyPong(gym.ObservationWrapper):
    """Observation = preprocessed frame minus the previous preprocessed frame (zeros at the start),
    shaped 1×80×80, so one still frame carries the ball's motion."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1, 80, 80), np.float32)
        self._prev: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        self._prev = None
        return super().reset(**kwargs)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        cur = karpathy_preprocess(observation)
        diff = cur - self._prev if self._prev is not None else np.zeros_like(cur)
        self._prev = cur
        return diff[None]


# ---------------------------------------------------------------------------------------------
# Environments and networks
# ---------------------------------------------------------------------------------------------
def make_env(args: Args, render: bool = False) -> gym.Env:
    """The training environment: registry env, or an Atari game with the chosen preprocessing."""
    mode = "rgb_array" if render else None
    if is_atari(args.env):
        import ale_py

        gym.register_envs(ale_py)
        game = resolve_atari_id(args.env)
        if args.preprocess == "karpathy":
            env: gym.Env = KarpathyPong(envlib.make_env(game, render_mode=mode))
        else:

            env = make_atari_env(game, render=render)
        if args.max_episode_steps:  # outermost, so it counts agent steps, not emulator frames
            env = gym.wrappers.TimeLimit(env, args.max_episode_steps)
        return env
    env_id = resolve_env_id(args.env)
    kwargs = {"max_episode_steps": args.max_episode_steps} if args.max_episode_steps else {}
    return envlib.make_env(env_id, render_mode=mode, **kwargs)


class Net(nn.Module):
    """A backbone from :mod:`rlgen.nets` and a linear head; uint8 pixels are scaled to [0, 1] here."""

    def __init__(self, backbone: str, obs_shape: Sequence[int], out: int, hidden: Sequence[int], scale: bool) -> None:
        super().__init__()
        kw = {"hidden": tuple(hidden)} if backbone == "mlp" else {}
        self.body = make_backbone(backbone, obs_shape, **kw)
        self.head = nn.Linear(self.body.out_dim, out)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale:
            x = x / 255.0
        return self.head(self.body(x))


def numpy_actor(net: Net) -> Callable[[np.ndarray], list[float]] | None:
    """The action probabilities of an MLP policy computed in NumPy from a copy of its weights.

    Acting is one observation at a time, where torch's per-call overhead is most of the cost on a
    CPU; the same affine maps and ReLUs in NumPy take a fraction of it. None for anything other
    than a ReLU MLP (then torch acts). The copy is taken after each update.
    """
    if net.scale or not hasattr(net.body, "net"):
        return None
    layers = [m for m in net.body.net if not isinstance(m, nn.Flatten)] + [net.head]
    if not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in layers):
        return None
    affine = [(m.weight.detach().cpu().numpy().T.astype(np.float64), m.bias.detach().cpu().numpy().astype(np.float64))
              for m in layers if isinstance(m, nn.Linear)]

    def probs(obs: np.ndarray) -> list[float]:
        x = np.asarray(obs, dtype=np.float64).reshape(-1)
        for i, (w, b) in enumerate(affine):
            x = x @ w + b
            if i < len(affine) - 1:
                x = np.maximum(x, 0.0)
        e = np.exp(x - x.max())
        return (e / e.sum()).tolist()

    return probs


def sample_action(probs: Sequence[float], u: float) -> int:
    """Inverse-CDF draw from ``probs`` with the uniform ``u`` (the run's seeded generator supplies it)."""
    x, c = u * sum(probs), 0.0
    for i, p in enumerate(probs):
        c += p
        if x < c:
            return i
    return len(probs) - 1


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------
def resolve(args: Args) -> tuple[Args, dict[str, Any]]:
    """Fill per-environment defaults and check every value before anything is written."""
    atari = is_atari(args.env)
    env_id = resolve_atari_id(args.env) if atari else resolve_env_id(args.env)
    table = {**DEFAULTS["*"], **DEFAULTS.get("atari" if atari else env_id, {})}
    filled = {k: (getattr(args, k) if getattr(args, k) is not None else table[k]) for k in RESOLVED}
    args = dataclasses.replace(args, env=env_id, **filled)
    if atari:
        pong = env_id == resolve_atari_id("Pong")
        if args.preprocess == "karpathy" and not pong:
            raise UsageError(f"--preprocess karpathy crops and colours Pong's screen; {env_id} is another game "
                             "(accepted there: --preprocess stack)")
        args = dataclasses.replace(args, preprocess=args.preprocess or ("karpathy" if pong else "stack"))
    cli.check_numbers(args)  # the per-environment values filled in just now, and every flag given
    hidden = cli.int_list(args.hidden, "hidden")
    env = make_env(args)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        spec_threshold = env.spec.reward_threshold if env.spec is not None else None
    finally:
        env.close()
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UsageError(f"{env_id} has a continuous action space ({act_space}); this REINFORCE samples from a "
                         "categorical policy and needs discrete actions")
    if not isinstance(obs_space, gym.spaces.Box):
        raise UsageError(f"{env_id} has observation space {obs_space}; REINFORCE here takes Box observations")
    image = len(obs_space.shape) == 3
    backbone = (args.backbone or ("nature_cnn" if image else "mlp")).lower().replace("-", "_")
    args = dataclasses.replace(args, backbone=backbone)
    make_backbone(backbone, obs_space.shape, **({"hidden": hidden} if backbone == "mlp" else {}))  # checks the shape
    threshold = args.solve_threshold if args.solve_threshold is not None else spec_threshold
    info = {"obs_shape": tuple(obs_space.shape), "n_actions": int(act_space.n), "hidden": hidden,
            "scale": obs_space.dtype == np.uint8, "threshold": threshold,
            "obs_dtype": np.uint8 if obs_space.dtype == np.uint8 else np.float32}
    return args, info


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict[str, Any]:
    """Train; returns the summary that is also written to ``summary.json``."""
    infos: list[dict[str, Any]] = []

    def check(a: Args) -> Args:
        a, info = resolve(a)
        infos.append(info)
        return a

    run = Run(args, ALGO, what=lambda a: a.env, changeable=RESUME_CHANGEABLE, check=check)
    args, info, device, run_dir = run.args, infos[-1], run.device, run.run_dir

    rng = seed_everything(args.seed)
    n_actions, threshold = info["n_actions"], info["threshold"]
    policy = Net(args.backbone, info["obs_shape"], n_actions, info["hidden"], info["scale"]).to(device)
    value = Net(args.backbone, info["obs_shape"], 1, info["hidden"], info["scale"]).to(device) \
        if args.baseline else None
    pi_opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    v_opt = torch.optim.Adam(value.parameters(), lr=args.value_lr) if value is not None else None
    stateful = dict(policy=policy, policy_optimizer=pi_opt)
    if value is not None:
        stateful.update(value=value, value_optimizer=v_opt)
    env_steps, episode, updates, ema, solved_at, history = run.restore(
        rng=rng, **stateful, counters=dict(step=0, episode=0, updates=0, ema=EMA_START, solved_at=None,
                                           history={"return": [], "length": [], "ema": []}))

    def counters() -> dict[str, Any]:
        return dict(episode=episode, updates=updates, ema=ema, solved_at=solved_at, history=history)

    def torch_probs(obs: np.ndarray) -> list[float]:
        with torch.no_grad():
            return torch.softmax(policy(torch.as_tensor(obs[None], device=device)), dim=-1)[0].tolist()

    with run.start(bar_keys=("rollout/episode_return", "rollout/return_ema")) as tracker:
        run_dir = run.run_dir  # the folder claimed as the run started
        env = make_env(args)
        bar = tracker.progress(args.episodes, initial=episode, unit="ep")
        unlogged: list[float] = []  # returns of the episodes since the last logged row
        try:
            while episode < args.episodes and not (args.stop_on_solve and solved_at is not None):
                with run.train_clock:
                    act_probs = (numpy_actor(policy) if device.type == "cpu" else None) or torch_probs
                    # -- collect a batch of episodes with the current policy --------------------------
                    obs_batch, act_batch, ret_batch, batch_returns = [], [], [], []
                    last_obs, last_idx = [], []  # truncated episodes: bootstrap from V(s_T)
                    for _ in range(min(args.batch_episodes, args.episodes - episode)):
                        obs, _ = env.reset(seed=int(rng.integers(2**31)))
                        rewards: list[float] = []
                        terminated = truncated = False
                        while not (terminated or truncated):
                            a = sample_action(act_probs(np.asarray(obs)), rng.random())
                            obs_batch.append(np.asarray(obs, dtype=info["obs_dtype"]))
                            act_batch.append(a)
                            obs, r, terminated, truncated, _ = env.step(a)
                            rewards.append(float(r))
                        ret_batch.append(rewards)
                        if truncated and not terminated and args.baseline and args.bootstrap_truncated:
                            last_obs.append(np.asarray(obs, dtype=info["obs_dtype"]))
                            last_idx.append(len(ret_batch) - 1)
                        total = float(sum(rewards))
                        episode += 1
                        env_steps += len(rewards)
                        ema = update_ema(ema, total)
                        history["return"].append(total)
                        history["length"].append(len(rewards))
                        history["ema"].append(ema)
                        batch_returns.append(total)
                        if solved_at is None and threshold is not None and ema >= threshold:
                            solved_at = episode
                        if args.stop_on_solve and solved_at is not None:
                            break

                    # -- one update of policy and value from the batch ------------------------------
                    stats = update(policy, value, pi_opt, v_opt, obs_batch, act_batch, ret_batch, last_obs,
                                   last_idx, args, device)
                    updates += 1
                unlogged += batch_returns
                if updates % args.log_every == 0:
                    tracker.log({"rollout/episode_return": float(np.mean(unlogged)), "rollout/return_ema": ema,
                                 "rollout/episodes": episode, **{f"train/{k}": v for k, v in stats.items()}},
                                env_steps)
                    unlogged = []
                bar.update(episode - bar.n)
                if run.checkpoint_due(episode - len(batch_returns), episode, args.checkpoint_every):
                    run.save(env_steps, **counters())
        finally:
            bar.close()
            env.close()
        run.save(env_steps, **counters())

        # -- greedy evaluation, pictures, summary ---------------------------------------------------
        with run.after_clock:
            eval_bar = tracker.progress(args.eval_episodes, unit="ep", desc="final evaluation")
            seed = 10_000 * (args.seed + 1)
            if args.gif and is_atari(args.env) and plots.video_available():  # a whole game: every frame, streamed
                with plots.VideoWriter(run_dir / "greedy_episode.mp4", fps=15) as video:
                    returns, frames = evaluate(policy, args, device, args.eval_episodes, seed, record=True,
                                               bar=eval_bar, on_frame=video.add)
                tracker.log_video("greedy_episode", video.path)
            else:
                returns, frames = evaluate(policy, args, device, args.eval_episodes, seed, record=args.gif,
                                           bar=eval_bar)
            eval_bar.close()

        episodes_axis = np.arange(1, len(history["return"]) + 1)
        curve = plots.save_learning_curve(run_dir / "learning_curve.png", episodes_axis, history["return"],
                                          threshold=threshold, xlabel="episode",
                                          title=f"REINFORCE on {args.env} (seed {args.seed})",
                                          extra={f"moving average (α = {EMA_ALPHA})": (episodes_axis, history["ema"])})
        tracker.log_image("learning_curve", curve)
        if frames.count:
            # 30 frames a second of play, whatever share of the frames the GIF shows
            fps = max(1, 30 // -(-frames.count // GIF_FRAMES))
            gif = plots.save_episode_gif(run_dir / "greedy_episode.gif", frames.frames(), fps=fps)
            if gif is not None:
                tracker.log_video("greedy_episode", gif)
        summary = {
            "env": args.env, "env_steps": env_steps, "episodes": episode, "updates": updates,
            "eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std()),
            "eval_episodes": args.eval_episodes, "reward_threshold": threshold, "solved_at_episode": solved_at,
            "final_ema_return": ema, "baseline": args.baseline,
        }
        solved = (f"solved at episode {solved_at:,} (moving average of returns ≥ {threshold:g})"
                  if solved_at is not None else
                  f"not solved in {episode:,} episodes (moving average {ema:.1f}"
                  + (f", threshold {threshold:g})" if threshold is not None else ")"))
        return run.finish(summary, results=[
            f"{solved}; greedy evaluation {summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f} "
            f"over {args.eval_episodes} episode{'s' if args.eval_episodes != 1 else ''}"])


def update(policy: Net, value: Net | None, pi_opt: torch.optim.Optimizer, v_opt: torch.optim.Optimizer | None,
           obs_batch: list[np.ndarray], act_batch: list[int], ret_batch: list[list[float]],
           last_obs: list[np.ndarray], last_idx: list[int], args: Args, device: torch.device,
           chunk: int = 1024) -> dict[str, float]:
    """One gradient step on each network from a batch of whole episodes.

    Values are computed first (no gradient) to form the advantages; then the losses are
    backpropagated in chunks of ``chunk`` states, so a long Pong batch fits in memory.
    """
    obs = torch.as_tensor(np.stack(obs_batch), device=device)
    acts = torch.as_tensor(act_batch, device=device)
    bootstrap = dict.fromkeys(range(len(ret_batch)), 0.0)
    if value is not None and last_obs:
        with torch.no_grad():
            v_last = value(torch.as_tensor(np.stack(last_obs), device=device)).squeeze(-1).double().cpu().numpy()
        bootstrap.update(zip(last_idx, v_last.tolist()))
    returns = np.concatenate([rewards_to_go(r, args.gamma, bootstrap[i]) for i, r in enumerate(ret_batch)])
    baseline = None
    if value is not None:
        with torch.no_grad():
            baseline = torch.cat([value(obs[i:i + chunk]).squeeze(-1) for i in range(0, len(obs), chunk)])
        baseline = baseline.double().cpu().numpy()
    weights = torch.as_tensor(advantages(returns, baseline, args.normalize), dtype=torch.float32, device=device)
    targets = torch.as_tensor(returns, dtype=torch.float32, device=device)

    n = len(obs)
    pi_opt.zero_grad(set_to_none=True)
    pi_loss_total, entropy_total = 0.0, 0.0
    for i in range(0, n, chunk):
        logits = policy(obs[i:i + chunk])
        logp = torch.log_softmax(logits, dim=-1)
        logp_a = logp.gather(1, acts[i:i + chunk, None]).squeeze(1)
        entropy = -(logp.exp() * logp).sum(-1)
        loss = (-(weights[i:i + chunk] * logp_a).sum() - args.entropy_coef * entropy.sum()) / n
        loss.backward()
        pi_loss_total += loss.item()
        entropy_total += entropy.sum().item()
    if args.max_grad_norm:
        nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
    pi_opt.step()
    stats = {"policy_loss": pi_loss_total, "entropy": entropy_total / n}
    if value is not None:
        v_opt.zero_grad(set_to_none=True)
        v_loss_total = 0.0
        for i in range(0, n, chunk):
            v_loss = ((value(obs[i:i + chunk]).squeeze(-1) - targets[i:i + chunk]) ** 2).sum() / n
            v_loss.backward()
            v_loss_total += v_loss.item()
        if args.max_grad_norm:
            nn.utils.clip_grad_norm_(value.parameters(), args.max_grad_norm)
        v_opt.step()
        stats["value_loss"] = v_loss_total
    return stats


def evaluate(policy: Net, args: Args, device: torch.device, episodes: int, seed: int,
             record: bool = False, bar: Any = None,
             on_frame: Callable[[np.ndarray], None] | None = None) -> tuple[np.ndarray, envlib.EpisodeFrames]:
    """Greedy (arg-max) returns of ``episodes`` episodes, episode i reset with ``seed + i``; with
    ``record``, the rgb frames of the first one (each passed to ``on_frame`` where given, a video writer, else
    thinned for a GIF); ``bar`` (a progress bar) advances once per episode."""
    env = make_env(args, render=record)
    frames = envlib.EpisodeFrames(GIF_FRAMES)
    keep = (lambda last=False: on_frame(env.render())) if on_frame is not None else (  # noqa: E731
        lambda last=False: frames.add(env.render, last=last))
    act: Callable[[np.ndarray], int] = lambda o: int(  # noqa: E731
        policy(torch.as_tensor(np.asarray(o)[None], device=device)).argmax(-1).item())
    returns = np.zeros(episodes)
    try:
        with torch.inference_mode():
            for i in range(episodes):
                obs, _ = env.reset(seed=seed + i)
                if record and i == 0:
                    keep()
                done = False
                while not done:
                    obs, r, terminated, truncated, _ = env.step(act(obs))
                    returns[i] += float(r)
                    done = terminated or truncated
                    if record and i == 0:
                        keep(last=done)
                if bar is not None:
                    bar.update(1)
    finally:
        env.close()
    return returns, frames


if __name__ == "__main__":
    cli.run(main, Args)
