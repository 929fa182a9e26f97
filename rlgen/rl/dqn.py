"""Deep Q-Networks for environments with discrete actions.

DQN (Mnih et al. 2015, "Human-level control through deep reinforcement learning"): a network
Q(s, ·) learns from uniformly replayed transitions towards the one-step target
r + γ · max_a' Q_target(s', a'), where Q_target is a slowly refreshed copy of the network and
actions are chosen ε-greedily with ε decaying linearly. Double DQN (van Hasselt et al. 2016)
picks a' with the online network and evaluates it with the target network, which removes most
of the max-operator's overestimation; it is on by default. The gradient norm is clipped (not in
the Atari 100k preset, as Dopamine does not). Atari uses the Huber loss of the Nature paper's error
clipping; classic control uses the squared TD error, a LayerNorm after each hidden layer (Ba et al.
2016; as a stabiliser of TD learning: Gallici et al. 2024, "Simplifying Deep Temporal Difference
Learning") and a learning rate decaying linearly to zero, so that the policy a run ends with is a
solved one (see ``ENV_DEFAULTS``).

A run keeps the weights of its last step (``checkpoint.pt``, resumable) and of its best
evaluation (``best.pt``, as Stable-Baselines3's ``EvalCallback`` keeps them); the final
evaluation (``--final-eval-episodes``, 100 on classic control) and the GIF use the last weights.

Atari games (``--env Breakout``, ``Pong``, any ALE game or ``ALE/Breakout-v5``) use the standard
preprocessing of Mnih et al. 2015 and Machado et al. 2018 (:mod:`rlgen.rl.atari`: ale-py's C++ vector
env for collection, 84×84 grey frames stacked by 4, rewards clipped to their sign for learning while
raw game scores are reported, a lost life ending a training episode), the Nature CNN from
:mod:`rlgen.nets`, and a replay that stores each frame once (:mod:`rlgen.rl.atari_replay`). Optional:
dueling head (Wang et al. 2016), n-step returns (Sutton 1988; Hessel et al. 2018).

``--preset atari100k`` is DrQ(ε) for the Atari 100k benchmark (Kaiser et al. 2019; Agarwal et al. 2021): 100k
agent steps, an update every step, 10-step targets from the online network itself, and DrQ's augmentation of
replayed observations (Kostrikov et al. 2021; ``ENV_DEFAULTS["atari100k"]``). ``--encoder RUN_DIR`` starts the
Q-network's trunk from any rlgen encoder whose input fits (``--freeze-encoder`` keeps it fixed).

    python -m rlgen.rl.dqn --env CartPole          # classic control, defaults from ENV_DEFAULTS
    python -m rlgen.rl.dqn --env Breakout          # Atari, RL-Zoo settings
    python -m rlgen.rl.dqn --env Breakout --preset atari100k   # learns in ~30 minutes on 2 cores with bf16 units
                                                              # (1.5-2.5 hours in float32 on AVX2)
    python -m rlgen.rl.dqn --resume runs/dqn-...   # continue a stopped run

The story below reads top to bottom: arguments, the per-environment defaults, the update, the
two kinds of task (vector observations, Atari frames), and the training loop in :func:`main`.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlgen import cli, plots
from rlgen.encoders import check_fitting_encoder
from rlgen.envnames import is_atari, resolve_atari_id, resolve_env_id
from rlgen.errors import UsageError
from rlgen.lifecycle import Run
from rlgen.machine import use_amp
from rlgen.nets import flatten_parameters, make_backbone, polyak_update, ramped_tau
from rlgen.rl import envs as envlib
from rlgen.rl.atari import atari_task, human_normalized
from rlgen.rl.atari_replay import check_replay_args
from rlgen.rl.tasks import GreedyPolicy, hidden_widths, vector_task
from rlgen.schedules import linear_schedule
from rlgen.seeding import seed_everything
from rlgen.track import RunArgs

ALGO = "dqn"
BEST_FILENAME = "best.pt"
# What the progress estimate adds when an Atari run with the RL-Zoo budget will take hours (README, Atari 100k).
LONG_RUN_HINT = ("--preset atari100k learns in about 30 minutes on a 2-core CPU with bf16 units "
                 "(1.5-2.5 hours in float32)")
# What a resumed run may change: its budget, evaluation, logging and checkpoint cadence, what it writes at the end.
RESUME_CHANGEABLE = frozenset({"total_steps", "eval_every", "eval_episodes", "final_eval_episodes", "log_every",
                               "checkpoint_every", "stop_on_solve", "gif", "flat_params", "fused_clip"})


@dataclass
class Args(RunArgs):
    env: str = "CartPole"
    """Environment: a short name (CartPole, Acrobot, MountainCar, Breakout, Pong, ...), a registered gymnasium id,
    gymnasium's module:Env-v0 form, or (from Python) a callable that returns a gym.Env."""
    total_steps: int | None = None
    """Environment steps to train for (all environments together)."""
    lr: float | None = None
    """Adam learning rate."""
    lr_end: float | None = None
    """Learning rate at the end of training, reached along a linear decay from --lr."""
    adam_eps: float | None = None
    """Adam's ε."""
    batch_size: int | None = None
    """Transitions per gradient step."""
    buffer_size: int | None = None
    """Replay capacity in transitions."""
    learning_starts: int | None = None
    """Environment steps of random play before learning starts."""
    num_envs: int | None = None
    """Environments stepped together."""
    gamma: float | None = None
    """Discount factor."""
    train_freq: int | None = None
    """Environment steps between rounds of gradient steps."""
    gradient_steps: int | None = None
    """Gradient steps per round."""
    target_update: int | None = None
    """Gradient steps between target-network updates."""
    tau: float | None = None
    """Target update weight of the online network: 1 is a hard copy, < 1 Polyak averaging."""
    exploration_fraction: float | None = None
    """Fraction of total_steps over which ε falls from eps_start to eps_end."""
    eps_warmup: bool | None = None
    """ε holds at eps_start until --learning-starts and only then starts to fall (Dopamine's
    linearly_decaying_epsilon); off: it falls from step 0 (Stable-Baselines3)."""
    eps_start: float = 1.0
    """Initial exploration rate."""
    eps_end: float | None = None
    """Final exploration rate."""
    backbone: str | None = None
    """The Q-network's trunk by name from rlgen.nets: mlp for vector observations; nature_cnn (Mnih et al. 2015),
    nature_cnn_same (its SAME-padded form, Dopamine's Atari 100k network) or atari_cnn for Atari."""
    init: Literal["torch", "xavier"] | None = None
    """Q-network initialisation: torch's defaults, or Glorot-uniform weights and zero biases (Dopamine's)."""
    hidden: str | None = None
    """Hidden widths of the MLP backbone, comma-separated (e.g. 128,128)."""
    layer_norm: bool | None = None
    """LayerNorm after each hidden layer of the MLP (classic control)."""
    ema: float | None = None
    """Evaluate and keep an exponential moving average of the Q-network's weights with this decay per update
    (Polyak & Juditsky 1992; Nikishin et al. 2018), ramped as the GAN's --ema is: the decay is
    min(ema, (1 + updates) / (10 + updates)), an equal average of the run's weights at first; 0: the online
    network itself."""
    double: bool = True
    """Double DQN target (van Hasselt et al. 2016)."""
    dueling: bool | None = None
    """Dueling head (Wang et al. 2016)."""
    augment: bool | None = None
    """Atari: augment replayed observations as DrQ(ε) does (Kostrikov et al. 2021): a random shift of up to
    4 pixels with edge padding, then intensity noise of scale 0.05, drawn independently for each state and
    successor."""
    preset: Literal["none", "atari100k"] = "none"
    """A named configuration whose values fill every flag you leave unset. atari100k: DrQ(ε) as Dopamine runs
    it on the Atari 100k benchmark (100,000 agent steps; see ENV_DEFAULTS["atari100k"])."""
    encoder: str | None = None
    """Start the Q-network's trunk from the encoder of this rlgen run folder or checkpoint (ST-DIM, SimCLR,
    MoCo, supervised, VAE, GAN or another DQN) whose input fits the observations."""
    freeze_encoder: bool = False
    """With --encoder: keep the encoder's weights fixed and train only the Q head."""
    loss: Literal["huber", "mse"] | None = None
    """TD loss: huber (Mnih et al. 2015's error clipping) or mse."""
    max_grad_norm: float | None = None
    """Clip the gradient's global norm to this (0: no clipping; 10, as SB3, except --preset atari100k: 0)."""
    eval_every: int | None = None
    """Environment steps between greedy evaluations."""
    eval_episodes: int | None = None
    """Episodes per evaluation during training."""
    final_eval_episodes: int | None = None
    """Episodes of the final evaluation of the last weights (the number summary.json reports)."""
    eval_epsilon: float | None = None
    """ε during evaluation (0 for classic control, 0.05 for Atari as in Mnih et al. 2015)."""
    checkpoint_every: int | None = None
    """Environment steps between checkpoints, as --total-steps counts them (0: only at the end)."""
    log_every: int = 100
    """Updates between logged training metrics (the TD loss)."""
    save_replay: bool | None = None
    """Keep the replay in the checkpoint so --resume continues exactly (default: on for classic
    control, off for Atari, where it is gigabytes)."""
    n_step: int | None = None
    """n-step returns: each target sums up to n rewards before bootstrapping with γ^n."""
    sticky_actions: bool = False
    """Atari: repeat the previous action with probability 0.25 (Machado et al. 2018)."""
    max_episode_steps: int | None = None
    """Cap on agent steps per episode, in training and evaluation (default: the registry's time limit; Atari:
    27,000 steps, i.e. 108,000 frames, the cap of Machado et al. 2018 that the Atari 100k benchmark uses)."""
    compile: bool = False
    """torch.compile the Q-network (worth it for long Atari runs)."""
    flat_params: bool = True
    """Classic control: keep the MLP's weights in one flat buffer, so zeroing, clipping and Adam are one call each
    (a speed path with the same numbers; experiments/bench_dqn_cartpole.py --ablate measures it)."""
    fused_clip: bool = True
    """Clip the gradient norm in a few tensor calls rather than with torch.nn.utils.clip_grad_norm_ (the same
    numbers, faster for a small MLP; measured by experiments/bench_dqn_cartpole.py --ablate)."""
    amp: Literal["auto", "on", "off"] = "auto"
    """bfloat16 autocast for the network passes (auto: on for Atari where the CPU has bf16 units (AMX/AVX-512
    BF16) or on CUDA; off for classic control, whose small MLPs gain nothing)."""
    gif: bool = True
    """Record one evaluation episode at the end: eval_episode.gif, or on Atari with the video extra installed
    (pip install 'rlgen[video]') every frame of the game as eval_episode.mp4."""
    stop_on_solve: bool = False
    """End training at the first evaluation that reaches the environment's reward threshold."""

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        """``--help``'s defaults for the fields :data:`ENV_DEFAULTS` fills in, per environment where they differ."""
        return {name: describe_default(name) for name in ENV_DEFAULTS["default"] if name in cls.__dataclass_fields__}


# One table of per-environment defaults; anything not listed falls back to "default". One reason per value here;
# the measurements behind them are in docs/dqn_defaults.md.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    # Classic control: the squared TD error (the Huber loss let CartPole's Q-values diverge), LayerNorm in the
    # MLP (a stable TD fixed point) and a learning rate decaying to zero (the policy settles).
    "default": dict(total_steps=100_000, lr=1e-3, lr_end=0.0, adam_eps=1e-8, loss="mse", layer_norm=True,
                    batch_size=64, buffer_size=50_000, learning_starts=1_000, num_envs=1, gamma=0.99, train_freq=4,
                    gradient_steps=1, target_update=100, tau=1.0, exploration_fraction=0.2, eps_end=0.01,
                    hidden="128,128", eval_every=5_000, eval_episodes=20, final_eval_episodes=100, eval_epsilon=0.0,
                    ema=0.0, checkpoint_every=5_000, save_replay=True, threads=1, n_step=1,
                    max_grad_norm=10.0, dueling=False, augment=False, eps_warmup=False, backbone="mlp", init="torch"),
    # RL-Zoo's Atari settings (hyperparams/dqn.yml); target_update counts gradient steps (250 = the zoo's 1,000
    # environment steps at train_freq 4); rewards are clipped, so the Huber loss of Mnih et al.
    "atari": dict(total_steps=10_000_000, lr=1e-4, lr_end=None, loss="huber", layer_norm=False, batch_size=32,
                  buffer_size=100_000, learning_starts=100_000, num_envs=4, gamma=0.99, train_freq=4, gradient_steps=1,
                  target_update=250, tau=1.0, exploration_fraction=0.1, eps_end=0.01, hidden="", eval_every=250_000,
                  eval_episodes=10, final_eval_episodes=10, eval_epsilon=0.05, checkpoint_every=250_000,
                  save_replay=False, threads=0, backbone="nature_cnn"),
    # DrQ(ε) on Atari 100k as Dopamine configures it (labs/atari_100k/configs/DrQ_eps.gin; Agarwal et al. 2021;
    # Kostrikov et al. 2021); no gradient clip, as Dopamine; the differences kept are listed in the docs page.
    "atari100k": dict(total_steps=100_000, num_envs=1, train_freq=1, gradient_steps=1, learning_starts=1_600,
                      batch_size=32, buffer_size=100_000, n_step=10, target_update=1, tau=1.0, dueling=True,
                      lr=1e-4, lr_end=None, adam_eps=1.5e-4, gamma=0.99, eps_end=0.01, exploration_fraction=0.05,
                      eps_warmup=True, eval_epsilon=0.001, eval_every=25_000, eval_episodes=10,
                      final_eval_episodes=100, checkpoint_every=25_000, augment=True, loss="huber", max_grad_norm=0.0,
                      backbone="nature_cnn_same", init="xavier", save_replay=True),
    # Eight environments halve the acting passes; a target copy every 25 updates spreads the failure signal
    # sooner; the weight average keeps the policy solved after its first solve; 75,000 steps let every seed of
    # 35 solve (docs/dqn_stability.md).
    "CartPole-v1": dict(total_steps=75_000, lr=1e-3, batch_size=512, buffer_size=50_000, learning_starts=1_000,
                        num_envs=8, gamma=0.99, train_freq=8, gradient_steps=2, target_update=25, tau=1.0,
                        exploration_fraction=0.1, eps_end=0.02, hidden="64,64", eval_every=2_500,
                        ema=0.999),
    # The generic settings: ε ends at 0.01 and the target is copied every 100 updates, so the greedy policy does
    # not get stuck holding one torque from the resting start.
    "Acrobot-v1": dict(total_steps=100_000, eval_every=5_000),
    # RL-Zoo's tuned MountainCar settings (hyperparams/dqn.yml).
    "MountainCar-v0": dict(total_steps=150_000, lr=4e-3, gamma=0.98, buffer_size=10_000, batch_size=128,
                           train_freq=16, gradient_steps=8, target_update=600, exploration_fraction=0.2,
                           eps_end=0.07, hidden="256,256", eval_every=10_000),
}


def describe_default(name: str) -> str:
    """One field's defaults in words, e.g. "75,000 for CartPole-v1; 10,000,000 for Atari; 100,000 otherwise"."""
    return cli.describe_default(ENV_DEFAULTS, name, none="--lr (constant)" if name == "lr_end" else "none")


def resolve_args(args: Args) -> Args:
    """Fill unset fields from :data:`ENV_DEFAULTS` and check every value; raises UsageError."""
    atari = is_atari(args.env)
    env_id = resolve_atari_id(args.env) if atari else resolve_env_id(args.env)
    if args.preset != "none" and not atari:
        raise UsageError(f"--preset {args.preset} is for Atari games; {env_id} is not one (accepted: --preset none)")
    table = {**ENV_DEFAULTS["default"], **ENV_DEFAULTS.get("atari" if atari else env_id, {}),
             **ENV_DEFAULTS.get(args.preset, {})}
    filled = {k: (table[k] if v is None and k in table else v) for k, v in dataclasses.asdict(args).items()}
    a = Args(**{**filled, "env": env_id})
    if a.lr_end is None:
        a.lr_end = a.lr
    cli.check_numbers(a)  # the values filled in from the table too
    if a.learning_starts >= a.total_steps:
        warnings.warn(f"--learning-starts {a.learning_starts} is at or after the last step (--total-steps "
                      f"{a.total_steps}): this run makes no update", stacklevel=2)
    if a.batch_size > a.buffer_size:
        raise UsageError(f"--batch-size {a.batch_size} is larger than --buffer-size {a.buffer_size}; "
                         "a batch must fit in the replay")
    if a.augment and not atari:
        raise UsageError(f"--augment shifts image observations; {env_id} has vector observations")
    if a.freeze_encoder and not a.encoder:
        raise UsageError("--freeze-encoder needs --encoder RUN_DIR (the encoder to keep fixed)")
    if atari and a.stop_on_solve:
        raise UsageError(f"--stop-on-solve ends training at the environment's reward threshold; {env_id} has none "
                         "(accepted on environments with a threshold, such as CartPole)")
    if not atari and a.sticky_actions:
        raise UsageError(f"--sticky-actions repeats actions in Atari games; {env_id} is not one "
                         "(accepted: an ALE game such as Breakout)")
    if atari:
        check_replay_args(a.buffer_size, a.num_envs, a.batch_size, n_step=a.n_step, gamma=a.gamma)
        if a.backbone == "mlp":
            raise UsageError(f"--backbone mlp takes vector observations; {env_id} gives 4×84×84 frames "
                             "(accepted: nature_cnn, nature_cnn_same, atari_cnn, convnet, resnet18)")
        make_backbone(a.backbone, (4, 84, 84))  # an unknown name fails here
        if a.encoder:  # fails here when it does not fit; the task loads its weights
            check_fitting_encoder(a.encoder, (4, 84, 84), "--encoder", "this environment's observations")
        return a
    hidden_widths(a.hidden)
    if a.backbone != "mlp":
        raise UsageError(f"--backbone {a.backbone} is for Atari frames; {env_id} has vector observations "
                         "(accepted: mlp)")
    obs_space, act_space, _ = envlib.spaces_of(env_id)
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UsageError(f"DQN needs a discrete action space; {env_id} has {act_space} "
                         "(continuous actions need an actor-critic method)")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(f"this DQN takes vector observations or Atari games; {env_id} has {obs_space}")
    if a.encoder:
        check_fitting_encoder(a.encoder, tuple(obs_space.shape), "--encoder", "this environment's observations")
    return a


def uses_amp(args: Args, device: torch.device) -> bool:
    """Whether the network passes run under bfloat16 autocast (``--amp auto``: Atari's CNN where it pays)."""
    return use_amp(args.amp, device) and (args.amp == "on" or is_atari(args.env))


def replay_ready(size: int, args: Args) -> bool:
    """Whether the replay holds enough to learn from: more than ``learning_starts`` transitions (or a full
    buffer) and at least one batch. After a resume without the replay this waits for it to refill."""
    return size > min(args.learning_starts, args.buffer_size - 1) and size >= args.batch_size


def post_solve_fraction(steps: list[int], returns: list[float], solved_at: int | None,
                        threshold: float | None) -> float | None:
    """Share of the evaluations after the first solve that are at or above the threshold (None if never solved
    or no evaluation came after it)."""
    if solved_at is None or threshold is None:
        return None
    after = [r for s, r in zip(steps, returns) if s > solved_at]
    return sum(r >= threshold for r in after) / len(after) if after else None


def td_target(rewards: torch.Tensor, discounts: torch.Tensor, q_next_target: torch.Tensor,
              q_next_online: torch.Tensor | None) -> torch.Tensor:
    """y = r + discount · Q_target(s', a*).

    Double DQN (``q_next_online`` given): a* = argmax_a Q_online(s', a), valued by the target network.
    Plain DQN: a* = argmax_a Q_target(s', a). ``discounts`` is γ^n, or 0 after a termination.
    """
    chooser = q_next_online if q_next_online is not None else q_next_target
    best = chooser.argmax(dim=1, keepdim=True)
    return rewards + discounts * q_next_target.gather(1, best).squeeze(1)


TD_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "huber": F.smooth_l1_loss, "mse": F.mse_loss}


def dqn_loss(q_net: torch.nn.Module, target_net: torch.nn.Module, batch: Any, double: bool,
             prepare: Callable[[torch.Tensor], torch.Tensor] | None = None, amp: bool = False,
             loss: str = "huber") -> torch.Tensor:
    """The TD loss of :func:`dqn_loss_and_q`."""
    return dqn_loss_and_q(q_net, target_net, batch, double, prepare, amp, loss)[0]


def dqn_loss_and_q(q_net: torch.nn.Module, target_net: torch.nn.Module, batch: Any, double: bool,
                   prepare: Callable[[torch.Tensor], torch.Tensor] | None = None, amp: bool = False,
                   loss: str = "huber") -> tuple[torch.Tensor, torch.Tensor]:
    """The TD loss (``huber`` or ``mse``: :data:`TD_LOSSES`) between Q(s, a) and the TD target for a
    :class:`~rlgen.rl.replay.Batch`-like batch.

    ``prepare`` turns stored observations into network input (e.g. uint8 frames → floats, augmented or not);
    ``amp`` runs the forward passes in bfloat16 autocast (the loss itself stays in float32). ``target_net``
    may be ``q_net`` itself (a target period of 1, as DrQ(ε) has): the successors then take one pass, which
    both picks and values the next action. Also returns the batch's Q(s, a) without gradient, which the
    training log reads at no extra cost.
    """
    prepare = prepare or (lambda x: x)
    device_type = batch.obs.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        obs, next_obs = prepare(batch.obs), prepare(batch.next_obs)
        q = q_net(obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        with torch.no_grad():  # the successors need no gradient: the target is a constant
            shared = target_net is q_net
            q_next_online = q_net(next_obs).float() if double or shared else None
            q_next_target = q_next_online if shared else target_net(next_obs).float()
            y = td_target(batch.rewards, batch.discounts, q_next_target, q_next_online if double else None)
    return TD_LOSSES[loss](q.float(), y), q.detach()


def batch_diagnostics(q: torch.Tensor, params: list[torch.Tensor], norm: torch.Tensor | None) -> dict[str, float]:
    """What a user looks at first when a run goes wrong, read at the logging cadence only: the mean Q(s, a) of the
    last batch, as the update's own forward pass gave it (augmented where training augments), and the global
    gradient norm before clipping (``norm`` where the update clipped, else read from the gradients it left)."""
    if norm is None:
        grads = [p.grad.detach().float().square().sum() for p in params if p.grad is not None]
        norm = torch.stack(grads).sum().sqrt() if grads else torch.tensor(0.0)
    return {"train/q_mean": float(q.float().mean()), "train/grad_norm": float(norm)}


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients so their global L2 norm is at most ``max_norm``; returns the norm before.

    The same arithmetic as ``torch.nn.utils.clip_grad_norm_`` in a few tensor calls: for a small MLP,
    per-call overhead is most of the cost of an update. On a CPU the gradients are only rescaled when the
    norm is over ``max_norm`` (the scale is exactly 1 otherwise, so the result is the same): with the 4M-weight
    dense layer of the Atari 100k network, skipping that pass over memory saves about 1.3 ms of a 18 ms update.
    Elsewhere the multiply always runs, as reading the norm back would wait for the device.
    """
    grads = [p.grad for p in params if p.grad is not None]
    flat = len(grads) == 1  # flat parameters (rlgen.nets.flatten_parameters): two calls
    if flat:
        norm = torch.linalg.vector_norm(grads[0])
    elif grads[0].device.type == "cpu":
        # The same norm from BLAS dot products: 2.5× faster than vector_norm over the Atari network's 4M-weight
        # dense layer, whose gradient has just left the cache (0.42 against 1.04 ms, measured on an AMX CPU).
        squares = [torch.dot(g.view(-1), g.view(-1)) if g.is_contiguous() else g.square().sum() for g in grads]
        norm = torch.stack(squares).sum().sqrt()
    else:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    if grads[0].device.type != "cpu" or scale < 1.0:
        if flat:
            grads[0].mul_(scale)
        else:
            torch._foreach_mul_(grads, scale)
    return norm


def main(args: Args, on_update: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train, evaluate and save; returns the summary written to ``summary.json``. ``on_update(updates, norm)``,
    where given, hears the gradient's global norm before clipping after every update (with --max-grad-norm > 0)."""
    # Atari: Adam's decaying averages of idle weights reach the denormal range, which tripled Boxing's late updates
    # and a fifth of a CNN update went to page faults without keeping freed memory (bench_atari100k.py --profile)
    run = Run(args, ALGO, what=lambda a: a.env.split("-v")[0], changeable=RESUME_CHANGEABLE, check=resolve_args,
              denormals_as_zero=lambda a: is_atari(a.env), keep_freed_memory=lambda a: is_atari(a.env))
    args, device = run.args, run.device
    atari = is_atari(args.env)
    amp = uses_amp(args, device)
    rng = seed_everything(args.seed)
    # The environments, replay and Q-network (rlgen.rl.tasks, rlgen.rl.atari); leaving the block closes the
    # environments, whatever happens. A resumed run whose environments cannot be restored plays new seeds.
    with (atari_task if atari else vector_task)(args, device, args.seed + run.step) as task:
        pool, replay, q_net, prepare = task.pool, task.replay, task.q_net, task.prepare
        n_actions = int(q_net.head.adv.out_features)
        # A target copied after every update is the online network itself at the next one: no copy is kept.
        shared_target = args.target_update == 1 and args.tau >= 1.0
        target_net = q_net if shared_target else copy.deepcopy(q_net).requires_grad_(False)
        # The agent that is evaluated and kept: the online network, or a moving average of its weights.
        ema_net = copy.deepcopy(q_net).requires_grad_(False) if args.ema else None
        policy_net = ema_net if ema_net is not None else q_net
        # checkpoints say what the kept agent's trunk is; best.pt holds that agent's weights as q_net
        run.record(encoder_record={**task.encoder_record, "weights": "q_net" if ema_net is None else "ema_net"})
        # An MLP's update is bound by per-call overhead, so its weights live in one flat buffer: zeroing,
        # clipping and Adam are then one call each (a CNN keeps its channels-last weights).
        flat = not atari and args.flat_params
        params = [flatten_parameters(q_net)] if flat else [p for p in q_net.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=args.lr, eps=args.adam_eps, fused=device.type in ("cpu", "cuda"))
        learner = torch.compile(q_net) if args.compile else q_net
        learner_target = learner if shared_target else target_net
        # DrQ(ε)'s augmentation of replayed states and successors, each drawn on its own (seeded, resumable)
        aug_gen = torch.Generator().manual_seed(args.seed)
        prepare_train = (lambda frames: task.augment(frames, aug_gen)) if args.augment else prepare  # type: ignore[misc]
        clip = clip_grad_norm if args.fused_clip else torch.nn.utils.clip_grad_norm_
        act_online = GreedyPolicy(q_net, prepare, device, amp)
        act = GreedyPolicy(policy_net, prepare, device, amp)
        eval_seed = 10_000 * (args.seed + 1)

        # Everything a checkpoint keeps; on --resume it comes back here.
        kept: dict[str, Any] = dict(q_net=q_net, target_net=target_net, optimizer=optimizer, rng=rng)
        if args.augment:
            kept["aug_rng"] = aug_gen
        if ema_net is not None:
            kept["ema_net"] = ema_net
        if args.save_replay:
            kept["replay"] = replay
        step, updates, solved_at, history = run.restore(**kept, counters=dict(
            step=0, updates=0, solved_at=None,
            history={"step": [], "eval_return": [], "train_seconds": [], "train_cpu_seconds": [],
                     "episode_step": [], "episode_return": []}))
        if run.resumed and not pool.load_state_dict(run.ckpt["envs"]):  # type: ignore[index]
            warnings.warn("environment state could not be restored: the resumed run starts new episodes",
                          stacklevel=2)
        replay.start(pool.obs)

        rate_from = (step, run.train_clock.seconds)  # where the logged steps-per-second rate counts from
        explore_steps = args.exploration_fraction * args.total_steps
        eps_delay = args.learning_starts if args.eps_warmup else 0
        n = args.num_envs
        shown = ("eval/return_mean", "rollout/episode_return", "train/loss", "rollout/epsilon")
        with run.start(bar_keys=shown) as tracker:
            bar = tracker.progress(args.total_steps, initial=step, hint=LONG_RUN_HINT if atari and args.preset == "none"
                                   else None)
            run.train_clock.start()  # training time excludes evaluation
            try:
                while step < args.total_steps:
                    # -- act ε-greedily in every environment --------------------------------------
                    eps = linear_schedule(args.eps_start, args.eps_end, explore_steps, step - eps_delay)
                    actions = rng.integers(0, n_actions, size=n)
                    greedy = rng.random(n) >= eps
                    if step >= args.learning_starts and greedy.any():
                        actions[greedy] = act_online(pool.obs[greedy])
                    next_obs, rewards, terminated, truncated, finished = pool.step(actions)
                    replay.add(actions, rewards, terminated, truncated, next_obs, pool.obs)
                    prev, step = step, step + n
                    bar.update(n)
                    for ret, length in finished:
                        history["episode_step"].append(step)
                        history["episode_return"].append(ret)
                        tracker.log({"rollout/episode_return": ret, "rollout/episode_length": length,
                                     "rollout/epsilon": eps}, step)

                    # -- learn: gradient_steps updates every train_freq environment steps ----------
                    if step > args.learning_starts and replay_ready(len(replay), args):
                        for group in optimizer.param_groups:
                            group["lr"] = linear_schedule(args.lr, args.lr_end, args.total_steps, step)
                        rounds = step // args.train_freq - prev // args.train_freq
                        logged = updates // args.log_every
                        for _ in range(rounds * args.gradient_steps):
                            # The Atari replay pins its batches for an asynchronous copy when the device is a GPU.
                            batch = replay.sample(args.batch_size, rng, device)
                            loss, q_taken = dqn_loss_and_q(learner, learner_target, batch, args.double,
                                                           prepare_train, amp, args.loss)
                            optimizer.zero_grad(set_to_none=not flat)
                            loss.backward()
                            if args.max_grad_norm:
                                norm = clip(params, args.max_grad_norm)
                                if on_update is not None:
                                    on_update(updates + 1, float(norm))
                            optimizer.step()
                            updates += 1
                            if not shared_target and updates % args.target_update == 0:
                                polyak_update(target_net, q_net, args.tau)
                            if ema_net is not None:
                                # ramped as the GAN's weight average is, so the average starts from its own steps
                                polyak_update(ema_net, q_net, ramped_tau(args.ema, updates))
                        if updates // args.log_every > logged:
                            clock = run.train_clock.seconds
                            rate = (step - rate_from[0]) / max(1e-9, clock - rate_from[1])
                            rate_from = (step, clock)
                            tracker.log({"train/loss": loss.item(), "train/updates": updates, "rollout/epsilon": eps,
                                         "train/lr": optimizer.param_groups[0]["lr"], "time/steps_per_second": rate,
                                         **batch_diagnostics(q_taken, params,
                                                             norm if args.max_grad_norm else None)}, step)

                    # -- evaluate and checkpoint ---------------------------------------------------
                    if run.due(prev, step, args.eval_every) or step >= args.total_steps:
                        run.train_clock.stop()
                        returns = task.evaluate(act, args.eval_episodes, eval_seed, args.eval_epsilon)
                        mean = float(returns.mean())
                        if not history["eval_return"] or mean > max(history["eval_return"]):
                            # the weights of the best evaluation so far, beside the last ones (as SB3's EvalCallback)
                            run.save(step, BEST_FILENAME, objects=False, q_net=policy_net.state_dict(),
                                     eval_return=mean, encoder_record=task.encoder_record)
                        history["step"].append(step)
                        history["eval_return"].append(mean)
                        history["train_seconds"].append(run.train_clock.seconds)
                        history["train_cpu_seconds"].append(run.train_clock.cpu_seconds)
                        if solved_at is None and task.threshold is not None and mean >= task.threshold:
                            solved_at = step
                        tracker.log({"eval/return_mean": mean, "eval/return_std": float(returns.std()),
                                     "time/train_seconds": run.train_clock.seconds}, step)
                        run.train_clock.start()
                        if solved_at is not None and args.stop_on_solve:
                            break
                    # the last step's checkpoint is the one written after the loop (0.7 GB for Atari 100k: once)
                    if run.checkpoint_due(prev, step, args.checkpoint_every) and step < args.total_steps:
                        run.save(step, updates=updates, solved_at=solved_at, history=history,
                                 envs=pool.state_dict())
            finally:
                run.train_clock.stop()
                bar.close()
            run.save(step, updates=updates, solved_at=solved_at, history=history, envs=pool.state_dict())

            # -- final evaluation of the last weights, pictures and summary --------------------------
            with run.after_clock:
                returns = task.evaluate(act, args.final_eval_episodes, eval_seed, args.eval_epsilon)
                evaluation = f"evaluation (ε = {args.eval_epsilon:g}, {args.eval_episodes} episodes)"
                curve = plots.save_learning_curve(run.run_dir / "learning_curve.png", history["episode_step"],
                                                  history["episode_return"], threshold=task.threshold,
                                                  xlabel="environment steps", ylabel="return",
                                                  title=f"DQN on {args.env} (seed {args.seed})",
                                                  extra={evaluation: (history["step"], history["eval_return"])})
                tracker.log_image("learning_curve", curve, step)
                if args.gif and atari and plots.video_available():  # a whole game: every frame, streamed
                    with plots.VideoWriter(run.run_dir / "eval_episode.mp4", fps=15) as video:
                        envlib.record_episode(act, lambda: task.make_eval_env(True), seed=eval_seed,
                                              epsilon=args.eval_epsilon, on_frame=video.add)
                    tracker.log_video("eval_episode", video.path, step)
                elif args.gif:
                    frames, _ = envlib.record_episode(act, lambda: task.make_eval_env(True), seed=eval_seed,
                                                      epsilon=args.eval_epsilon)
                    gif = plots.save_episode_gif(run.run_dir / "eval_episode.gif", frames)
                    tracker.log_video("eval_episode", gif, step)
            evals = history["eval_return"]
            best_i = int(np.argmax(evals)) if evals else None
            at = history["step"].index(solved_at) if solved_at is not None else None
            final_mean, final_std = float(returns.mean()), float(returns.std())
            summary = {
                "env": args.env, "env_steps": step, "updates": updates, "amp": amp,
                "eval_return_mean": final_mean, "eval_return_std": final_std,
                "final_eval_return_mean": final_mean, "final_eval_return_std": final_std,
                "eval_episodes": args.final_eval_episodes, "eval_epsilon": args.eval_epsilon,
                "reward_threshold": task.threshold, "solved_at_env_step": solved_at,
                "solved_at_train_seconds": history["train_seconds"][at] if at is not None else None,
                "solved_at_train_cpu_seconds": history["train_cpu_seconds"][at] if at is not None else None,
                "post_solve_fraction": post_solve_fraction(history["step"], evals, solved_at, task.threshold),
                "best_eval_return": evals[best_i] if best_i is not None else None,
                "best_eval_step": history["step"][best_i] if best_i is not None else None,
                "replay_bytes": int(replay.nbytes),
            }
            if atari:
                summary["frames"] = pool.frames
                summary["human_normalized_score"] = human_normalized(args.env, final_mean)
            shared = run.summary(**summary)
            return run.finish(summary, results=result_lines(shared, args, task.threshold, len(evals)))


def result_lines(s: dict[str, Any], args: Args, threshold: float | None, n_evals: int) -> list[str]:
    """The run's outcome in words: solve, stability after it, best and final evaluation, time."""
    lines = []
    if threshold is not None:
        if s["solved_at_env_step"] is None:
            lines.append(f"not solved: no evaluation reached the reward threshold {threshold:g}")
        else:
            post = s["post_solve_fraction"]
            after = (f"; {post:.0%} of the evaluations after it stayed ≥ {threshold:g}" if post is not None
                     else "; no evaluation came after it")
            lines.append(f"solved at step {s['solved_at_env_step']:,} (first evaluation ≥ {threshold:g}, "
                         f"{s['solved_at_train_seconds']:.1f} s of training){after}")
    if s["best_eval_return"] is not None:
        lines.append(f"best evaluation {s['best_eval_return']:.1f} at step {s['best_eval_step']:,} (of {n_evals} "
                     f"evaluations; its weights are in {BEST_FILENAME})")
    weights = "the weight average at the end" if args.ema else "the last weights"
    lines.append(f"final evaluation {s['final_eval_return_mean']:.1f} ± {s['final_eval_return_std']:.1f} over "
                 f"{s['eval_episodes']} episodes (ε = {args.eval_epsilon:g}, {weights})")
    if s.get("human_normalized_score") is not None:
        lines.append(f"human-normalised score {s['human_normalized_score']:.3f} ((score − random) / (human − random))")
    lines.append(f"training {s['train_seconds']:.1f} s ({s['env_steps']:,} environment steps, {s['updates']:,} "
                 f"updates); wall {s['wall_seconds']:.1f} s")
    return lines


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n\n")[0], prog="python -m rlgen.rl.dqn")
