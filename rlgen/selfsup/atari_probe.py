"""AtariARI state probes (Anand et al. 2019, "Unsupervised State Representation Learning in Atari").

How good is a frozen encoder's 256-d feature at telling where things are in an Atari frame? For
every labelled state variable (a RAM byte: the ball's x, the paddle's y, the score, ...) a linear
classifier over the 256 byte values is trained on the frozen features, and scored by its weighted
F1 on held-out episodes.

The protocol, as in the AtariARI benchmark code (``atariari/benchmark``):

* Frames: ``atari-frames:GAME`` (random agent, full 210×160 greyscale, max-and-skip 4, no-op
  starts); 50,000 by default, the paper's size.
* Labels: the raw RAM bytes of :data:`rlgen.data.RAM_ANNOTATIONS`. A list-valued variable is split
  into one variable per byte, ``block_bit_map`` → ``block_bit_map_0`` … ``block_bit_map_29``, as
  AtariARI's ``ram_annotations.py`` does; each part is probed and filtered on its own.
* Split: episodes longer than 64 frames (AtariARI's ``min_episode_length``) are shuffled with the
  seed and cut 70/10/20 by episode count into train, validation and test; no episode is in two
  splits.
* Variables whose label entropy on the train split is below 0.6 nats are dropped (AtariARI
  measures it over all episodes before splitting; the train split alone keeps the test split
  out of every choice). Test frames byte-identical to any train or validation frame are removed.
* Features are computed once with the frozen encoder. One linear layer (256-d → 256 classes) per
  variable, Adam (lr 3e-4, eps 1e-5 as in AtariARI), batch 64, up to 100 epochs; per variable,
  early stopping with patience 15 on validation accuracy and AtariARI's ReduceLROnPlateau
  (factor 0.2, patience 5, min lr 1e-5). All variables train together as one batched matrix
  product, each with its own stopping, learning rate and best-validation weights.
* Metric: weighted F1 per variable on the whole test split (AtariARI scores a resample of it),
  averaged within the five categories below, then across the categories present: the number the
  paper reports per game. ``overall_f1`` is the plain mean over variables.

Categories follow AtariARI's ``categorization.py`` naming rules (:func:`categories_of`).

    python -m rlgen.selfsup.atari_probe --game Breakout --random-init atari_cnn
    python -m rlgen.selfsup.atari_probe --game Pong --checkpoint runs/stdim-atari-frames_pong-...
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rlgen import checkpoint, cli
from rlgen.data.atari_frames import RAM_ANNOTATIONS, load_atari_frames
from rlgen.encoders import freeze, load_encoder
from rlgen.errors import UsageError
from rlgen.files import write_json
from rlgen.lifecycle import Run
from rlgen.nets import make_backbone
from rlgen.track import RunArgs

ALGO = "atari_probe"
NUM_CLASSES = 256
FRAME_SHAPE = (1, 210, 160)
ENTROPY_THRESHOLD = 0.6
MIN_EPISODE_LENGTH = 64
SPLIT = (0.7, 0.1, 0.2)

CATEGORIES = ("agent_localization", "small_object_localization", "other_localization",
              "score_clock_lives_display", "misc")
CATEGORY_SHORT = {"agent_localization": "agent", "small_object_localization": "small",
                  "other_localization": "other", "score_clock_lives_display": "score", "misc": "misc"}

# Published probe F1 (mean over categories), random-agent frames: Anand et al. 2019, table 2.
PUBLISHED_METHODS = ("majority", "random_cnn", "vae", "pixel_prediction", "cpc", "st_dim", "supervised")
PUBLISHED: dict[str, dict[str, float]] = {
    game: dict(zip(PUBLISHED_METHODS, row)) for game, row in {
        "Breakout": (0.17, 0.51, 0.57, 0.70, 0.74, 0.88, 0.94),
        "Pong": (0.10, 0.17, 0.09, 0.70, 0.71, 0.81, 0.87),
        "SpaceInvaders": (0.14, 0.41, 0.52, 0.57, 0.54, 0.57, 0.75),
        "Boxing": (0.01, 0.19, 0.20, 0.44, 0.29, 0.58, 0.83),
        "MsPacman": (0.10, 0.49, 0.56, 0.74, 0.65, 0.72, 0.87),
    }.items()
}
PUBLISHED_NAMES = {"majority": "majority", "random_cnn": "random CNN", "vae": "VAE",
                   "pixel_prediction": "pixel prediction", "cpc": "CPC", "st_dim": "ST-DIM",
                   "supervised": "supervised"}


# ---------------------------------------------------------------------------------------------
# Games, variables and categories
# ---------------------------------------------------------------------------------------------
def resolve_game(game: str) -> str:
    """The :data:`RAM_ANNOTATIONS` key of ``breakout``, ``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``, ..."""
    base = game.strip().removeprefix("ALE/").split("-")[0]
    base = base.replace("NoFrameskip", "").replace("Deterministic", "").lower()
    for name in RAM_ANNOTATIONS:
        if name.lower() == base:
            return name
    raise UsageError(f"no AtariARI RAM annotations for game {game!r}; known: {', '.join(RAM_ANNOTATIONS)}")


def variables_of(game: str) -> dict[str, int]:
    """Variable name → RAM index, with list-valued variables split into ``name_0``, ``name_1``, ..."""
    out: dict[str, int] = {}
    for name, index in RAM_ANNOTATIONS[resolve_game(game)].items():
        if isinstance(index, list):
            out.update({f"{name}_{i}": j for i, j in enumerate(index)})
        else:
            out[name] = index
    return out


def categories_of(name: str) -> tuple[str, ...]:
    """AtariARI's categories of a variable, from its name (``categorization.py``'s rules).

    Localization is any ``_x``/``_y``/``_z``/``_column`` variable: small-object if it names a ball
    or missile, agent if it names the player/agent, other otherwise. Score, clock, lives, meter and
    display variables form one category; counts, bit maps, existence flags, levels, rooms and
    directions are misc. A name matching no rule belongs to no category (it still counts in
    ``overall_f1``); one matching several counts in each, as in AtariARI.
    """
    cats = []
    if any(c in name for c in ("_x", "_y", "_z", "_column")):
        if any(s in name for s in ("ball", "missile")):
            cats.append("small_object_localization")
        elif any(a in name for a in ("agent", "player")):
            cats.append("agent_localization")
        else:
            cats.append("other_localization")
    if any(s in name for s in ("score", "clock", "lives", "lifes", "meter", "display")):
        cats.append("score_clock_lives_display")
    if any(s in name for s in ("count", "bit_map", "existence", "level", "room", "game_state", "direction")):
        cats.append("misc")
    return tuple(cats)


CATEGORY_MAP: dict[str, dict[str, tuple[str, ...]]] = {
    game: {name: categories_of(name) for name in variables_of(game)} for game in RAM_ANNOTATIONS
}
"""Game → variable → categories, for every game in :data:`RAM_ANNOTATIONS`."""


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def weighted_f1(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int = NUM_CLASSES) -> float:
    """Weighted F1 (scikit-learn's ``average="weighted"``): per-class F1 weighted by true support.

    Per class c, F1 = 2·TP / (2·TP + FP + FN) = 2·TP / (support + predicted), 0 where both are 0;
    classes that are only predicted weigh 0 but their false positives lower the others' precision.
    """
    y_true, y_pred = y_true.long().flatten(), y_pred.long().flatten()
    if len(y_true) == 0:
        raise ValueError("weighted F1 of an empty set")
    tp = torch.bincount(y_true[y_true == y_pred], minlength=num_classes).double()
    support = torch.bincount(y_true, minlength=num_classes).double()
    predicted = torch.bincount(y_pred, minlength=num_classes).double()
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(denom))
    return float((f1 * support).sum() / support.sum())


def category_means(scores: dict[str, float], game: str | None = None) -> dict[str, float]:
    """Mean score per category over the variables present (categories with none are left out)."""
    groups: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    for name, value in scores.items():
        cats = CATEGORY_MAP[resolve_game(game)].get(name) if game else None
        for c in cats if cats is not None else categories_of(name):
            groups[c].append(value)
    return {c: float(np.mean(v)) for c, v in groups.items() if v}


def label_entropy(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Entropy in nats of each column's empirical label distribution: (N, V) → (V,)."""
    counts = torch.stack([torch.bincount(col, minlength=num_classes) for col in labels.long().T]).double()
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(1)


# ---------------------------------------------------------------------------------------------
# Probe data: split by episode, labels, entropy filter, de-duplication
# ---------------------------------------------------------------------------------------------
def split_episodes(episode: torch.Tensor, seed: int = 0, min_length: int = MIN_EPISODE_LENGTH,
                   fractions: tuple[float, float, float] = SPLIT) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame indices of the train, validation and test episodes (episodes of ≤ ``min_length`` frames dropped).

    Episodes are shuffled with ``seed`` and cut by count at 70 % and 80 %, as AtariARI does.
    """
    ep = np.asarray(episode)
    ids, lengths = np.unique(ep, return_counts=True)
    kept = ids[lengths > min_length]
    rng = np.random.default_rng(seed)
    order = kept[rng.permutation(len(kept))]
    # AtariARI's int(0.7 n) and int(0.8 n); the epsilon keeps 0.7 + 0.1 = 0.7999… from losing an episode.
    n_tr = int(fractions[0] * len(order) + 1e-9)
    n_va = int((fractions[0] + fractions[1]) * len(order) + 1e-9) - n_tr
    if n_tr < 1 or n_va < 1 or len(order) - n_tr - n_va < 1:
        raise UsageError(f"the frames hold {len(kept)} episodes longer than {min_length} frames, too few to split "
                         f"70/10/20 by episode (a split would be empty); use more --frames")
    parts = (order[:n_tr], order[n_tr:n_tr + n_va], order[n_tr + n_va:])
    return tuple(torch.from_numpy(np.flatnonzero(np.isin(ep, p))) for p in parts)  # type: ignore[return-value]


def frame_digests(frames: torch.Tensor, idx: torch.Tensor) -> list[bytes]:
    """A 128-bit hash of each indexed frame's bytes (collisions are negligible at this scale)."""
    return [hashlib.blake2b(frames[int(i)].numpy().tobytes(), digest_size=16).digest() for i in idx]


@dataclass
class ProbeData:
    """One game's probe data: frame indices per split, labels of the kept variables, and what was dropped."""

    game: str
    frames: torch.Tensor
    """uint8 (N, 1, 210, 160): every collected frame (indexed by the splits)."""
    variables: list[str]
    """the kept variables, in label-column order"""
    index: dict[str, torch.Tensor]
    """split → frame indices (test after de-duplication)"""
    labels: dict[str, torch.Tensor]
    """split → int64 (n, V) labels"""
    entropy: dict[str, float]
    """every variable's train label entropy (nats)"""
    dropped: list[str]
    """variables below the entropy threshold"""
    episodes: dict[str, int]
    test_duplicates: int
    """test frames removed for being byte-identical to a train or validation frame"""
    seconds: float


def prepare_probe_data(game: str, frames: int = 50_000, seed: int = 0, data_seed: int = 0,
                       min_episode_length: int = MIN_EPISODE_LENGTH, entropy_threshold: float = ENTROPY_THRESHOLD,
                       root: str | None = None, cache: bool = True) -> ProbeData:
    """Load ``frames`` frames of ``game`` (collection seed ``data_seed``) and build the probe splits (seed ``seed``)."""
    name = resolve_game(game)
    if frames < 1:
        raise UsageError(f"--frames {frames} must be positive")
    start = time.perf_counter()
    data = load_atari_frames(name, "train", n=frames, seed=data_seed, root=root, cache=cache)
    tr, va, te = split_episodes(data.episode, seed, min_episode_length)
    variables = variables_of(name)
    ram_index = torch.tensor(list(variables.values()))
    entropy = label_entropy(data.ram[tr][:, ram_index])
    keep = [i for i, h in enumerate(entropy.tolist()) if h >= entropy_threshold]
    names = list(variables)
    if not keep:
        raise UsageError(f"{name}: every variable's label entropy is below {entropy_threshold} nats on "
                         f"{len(tr)} train frames; use more --frames")
    seen = set(frame_digests(data.frames, torch.cat([tr, va])))
    unique = torch.tensor([d not in seen for d in frame_digests(data.frames, te)], dtype=torch.bool)
    if not unique.any():
        raise UsageError(f"{name}: every test frame duplicates a train or validation frame; use more --frames")
    te_kept = te[unique]
    cols = ram_index[keep]
    index = {"train": tr, "val": va, "test": te_kept}
    ep = data.episode
    return ProbeData(
        game=name, frames=data.frames, variables=[names[i] for i in keep], index=index,
        labels={k: data.ram[v][:, cols] for k, v in index.items()},
        entropy={n: round(float(h), 4) for n, h in zip(names, entropy.tolist())},
        dropped=[n for i, n in enumerate(names) if i not in keep],
        episodes={k: int(torch.unique(ep[v]).numel()) for k, v in index.items()},
        test_duplicates=int((~unique).sum()), seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Features and the batched linear probes
# ---------------------------------------------------------------------------------------------
def scale_frames(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames → float in [0, 1], the input every AtariARI encoder takes."""
    return x.float().div_(255.0)


@torch.no_grad()
def extract_features(net: nn.Module, frames: torch.Tensor, idx: torch.Tensor,
                     prepare: Callable[[torch.Tensor], torch.Tensor] | None = None, batch: int = 500) -> torch.Tensor:
    """Features (n, D) of the indexed uint8 frames, float32 on the CPU, with the net in eval mode.

    ``prepare`` maps uint8 frames already on the net's device to its input (default: scale to [0, 1]).
    """
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    # A channels-last copy: oneDNN's preferred layout halves the time of the conv stack on a CPU,
    # and the caller's module is left as it was.
    fast = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    prep = prepare or scale_frames
    out = []
    for chunk in idx.split(batch):
        x = prep(frames[chunk].to(device))
        out.append(fast(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


@dataclass
class ProbeFit:
    """Trained probes: weights (D, V, K) and biases (V, K) at each variable's best validation epoch."""

    weight: torch.Tensor
    bias: torch.Tensor
    best_val_acc: list[float]
    best_epoch: list[int]
    """epoch (1-based) of the kept weights"""
    stopped_epoch: list[int]
    """epochs trained before early stopping (or the epoch cap)"""

    def predict(self, feats: torch.Tensor, batch: int = 4096) -> torch.Tensor:
        """Predicted class per variable: (n, V)."""
        d, v, k = self.weight.shape
        w = self.weight.reshape(d, v * k)
        return torch.cat([(f @ w).view(len(f), v, k).add_(self.bias).argmax(-1) for f in feats.split(batch)])


def _accuracy(feats: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
              batch: int = 4096) -> torch.Tensor:
    d, v, k = w.shape
    flat = w.reshape(d, v * k)
    hits = torch.zeros(v)
    for f, y in zip(feats.split(batch), labels.split(batch)):
        hits += ((f @ flat).view(len(f), v, k).add_(b).argmax(-1) == y).sum(0)
    return hits / len(feats)


def train_probes(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                 lr: float = 3e-4, batch_size: int = 64, epochs: int = 100, patience: int = 15,
                 lr_plateau: bool = True, num_classes: int = NUM_CLASSES, seed: int = 0,
                 log: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> ProbeFit:
    """One linear classifier per label column, all trained at once; each stops on its own.

    The logits of every variable come from one matrix product with a (D, V·K) weight. The
    gradient of the mean cross-entropy is written out, (softmax − one-hot)/B per variable, so
    each variable's update is exactly that of its own ``nn.Linear`` under its own Adam (eps 1e-5,
    AtariARI's), which a test checks. Each epoch trains only the variables still running.
    ``log(epoch, val_acc, active)`` is called after each epoch.
    """
    n, d = train_x.shape
    v, k = train_y.shape[1], num_classes
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(d)  # nn.Linear's default initialisation
    weight = (torch.rand(d, v, k, generator=gen) * 2 - 1) * bound
    bias = (torch.rand(v, k, generator=gen) * 2 - 1) * bound
    m_w, s_w, m_b, s_b = (torch.zeros_like(t) for t in (weight, weight, bias, bias))
    beta1, beta2, eps = 0.9, 0.999, 1e-5
    lrs = torch.full((v,), float(lr))
    best_acc = torch.full((v,), -1.0)
    since_best = torch.zeros(v, dtype=torch.long)
    plateau_best = torch.full((v,), -math.inf)
    plateau_bad = torch.zeros(v, dtype=torch.long)
    running = torch.ones(v, dtype=torch.bool)
    best_w, best_b = weight.clone(), bias.clone()
    best_epoch = [0] * v
    stopped_epoch = [epochs] * v
    step = 0
    for epoch in range(1, epochs + 1):
        act = running.nonzero().squeeze(1)
        if len(act) == 0:
            break
        va = len(act)
        w, b = weight[:, act].contiguous(), bias[act].contiguous()
        mw, sw = m_w[:, act].contiguous(), s_w[:, act].contiguous()
        mb, sb = m_b[act].contiguous(), s_b[act].contiguous()
        step_lr = lrs[act]
        ys = train_y[:, act]
        rows = torch.arange(batch_size)
        cols = torch.arange(va)
        # Every running variable has stepped every step so far, so one step count serves them all.
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            x, y = train_x[idx], ys[idx]
            bsz = len(idx)
            logits = (x @ w.view(d, va * k)).view(bsz, va, k).add_(b)
            grad = torch.softmax(logits, -1)
            grad[rows[:bsz, None], cols[None, :], y] -= 1.0
            grad /= bsz
            g_w = (x.T @ grad.view(bsz, va * k)).view(d, va, k)
            g_b = grad.sum(0)
            step += 1
            c1, c2 = 1 - beta1 ** step, 1 - beta2 ** step
            for p, g, m, s, lr_shape in ((w, g_w, mw, sw, (1, va, 1)), (b, g_b, mb, sb, (va, 1))):
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                s.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (s.sqrt() / math.sqrt(c2)).add_(eps)
                p.sub_((step_lr / c1).view(lr_shape) * m / denom)
        weight[:, act], bias[act] = w, b
        m_w[:, act], s_w[:, act], m_b[act], s_b[act] = mw, sw, mb, sb
        acc = _accuracy(val_x, val_y[:, act], w, b)
        for j, var in enumerate(act.tolist()):
            a = float(acc[j])
            if a > best_acc[var]:  # AtariARI's EarlyStopping: ties do not count as progress
                best_acc[var], since_best[var], best_epoch[var] = a, 0, epoch
                best_w[:, var], best_b[var] = w[:, j], b[j]
            else:
                since_best[var] += 1
                if since_best[var] >= patience:
                    running[var] = False
                    stopped_epoch[var] = epoch
                    continue
            if lr_plateau:  # torch's ReduceLROnPlateau(mode="max", factor=0.2, patience=5, min_lr=1e-5)
                if a > plateau_best[var] * (1 + 1e-4):
                    plateau_best[var], plateau_bad[var] = a, 0
                else:
                    plateau_bad[var] += 1
                    if plateau_bad[var] > 5:
                        lrs[var] = max(float(lrs[var]) * 0.2, min(1e-5, float(lrs[var])))
                        plateau_bad[var] = 0
        if log is not None:
            log(epoch, acc, act)
    return ProbeFit(weight=best_w, bias=best_b, best_val_acc=[round(float(a), 6) for a in best_acc],
                    best_epoch=best_epoch, stopped_epoch=stopped_epoch)


# ---------------------------------------------------------------------------------------------
# The whole probe
# ---------------------------------------------------------------------------------------------
def _unpack_encoder(encoder: Any) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor] | None, tuple[int, ...]]:
    """A bare module, or a FrozenEncoder-like object with ``net``, ``prepare`` and ``input_shape``."""
    if hasattr(encoder, "net") and hasattr(encoder, "prepare"):
        shape = tuple(getattr(encoder, "input_shape", FRAME_SHAPE))
        return encoder.net, encoder.prepare, shape
    return encoder, None, tuple(getattr(encoder, "input_shape", FRAME_SHAPE))


def probe_encoder(encoder: Any, game: str, frames: int = 50_000, seed: int = 0, *, data_seed: int = 0,
                  lr: float = 3e-4, batch_size: int = 64, epochs: int = 100,
                  patience: int = 15, lr_plateau: bool = True, min_episode_length: int = MIN_EPISODE_LENGTH,
                  data: ProbeData | None = None, root: str | None = None,
                  log: Callable[[str], None] | None = None, bar: Any = None) -> dict[str, Any]:
    """Run the AtariARI probe on a frozen encoder; returns per-variable, per-category and game F1.

    ``encoder`` is an ``nn.Module`` taking float frames in [0, 1] of shape (N, 1, 210, 160) and
    returning (N, D), or a FrozenEncoder (its ``prepare`` turns uint8 frames into the net's input);
    features are computed on the device the encoder's weights are on.
    Pass ``data`` (from :func:`prepare_probe_data`) to probe several encoders on the same split;
    ``bar`` (a progress bar of ``epochs`` steps) advances once per probe epoch.
    """
    start = time.perf_counter()
    net, prepare, shape = _unpack_encoder(encoder)
    if shape != FRAME_SHAPE:
        raise UsageError(f"the encoder takes input shape {shape}; the Atari probes need {FRAME_SHAPE} "
                         f"(full 210×160 greyscale frames)")
    say = log or (lambda _msg: None)
    if data is None:
        data = prepare_probe_data(game, frames, seed, data_seed, min_episode_length, root=root)
    elif data.game != resolve_game(game):
        raise UsageError(f"probe data for {data.game} given for game {game}")
    say(f"{data.game}: {len(data.index['train'])}/{len(data.index['val'])}/{len(data.index['test'])} "
        f"train/val/test frames ({data.episodes['train']}/{data.episodes['val']}/{data.episodes['test']} episodes), "
        f"{data.test_duplicates} duplicate test frames removed; probing {', '.join(data.variables)}"
        + (f"; dropped for entropy < {ENTROPY_THRESHOLD}: {', '.join(data.dropped)}" if data.dropped else ""))
    tick = time.perf_counter()
    feats = {k: extract_features(net, data.frames, idx, prepare) for k, idx in data.index.items()}
    feature_seconds = time.perf_counter() - tick
    say(f"features {tuple(feats['train'].shape[1:])} of {sum(len(f) for f in feats.values())} frames "
        f"in {feature_seconds:.1f} s")

    tick = time.perf_counter()

    def epoch_log(epoch: int, acc: torch.Tensor, act: torch.Tensor) -> None:
        if bar is not None:
            bar.update(1)
        if epoch == 1 or epoch % 10 == 0:
            say(f"  epoch {epoch}: {len(act)} probes running, mean val acc {float(acc.mean()):.3f}")

    fit = train_probes(feats["train"], data.labels["train"], feats["val"], data.labels["val"], lr=lr,
                       batch_size=batch_size, epochs=epochs, patience=patience, lr_plateau=lr_plateau, seed=seed,
                       log=epoch_log)
    probe_seconds = time.perf_counter() - tick
    pred = fit.predict(feats["test"])
    y = data.labels["test"]
    f1 = {n: round(weighted_f1(y[:, j], pred[:, j]), 6) for j, n in enumerate(data.variables)}
    acc = {n: round(float((y[:, j] == pred[:, j]).float().mean()), 6) for j, n in enumerate(data.variables)}
    # The majority baseline (the published table's first row) on the same test frames.
    modes = torch.mode(data.labels["train"], dim=0).values
    majority = {n: round(weighted_f1(y[:, j], torch.full_like(y[:, j], int(modes[j]))), 6)
                for j, n in enumerate(data.variables)}
    cat = category_means(f1, data.game)
    maj_cat = category_means(majority, data.game)
    return {
        "game": data.game, "frames": len(data.frames), "seed": seed, "data_seed": data_seed,
        "variables": data.variables, "dropped": data.dropped, "entropy": data.entropy,
        "f1": f1, "acc": acc, "category_f1": cat, "mean_f1": float(np.mean(list(cat.values()))),
        "overall_f1": float(np.mean(list(f1.values()))),
        "majority_f1": majority, "majority_category_f1": maj_cat,
        "majority_mean_f1": float(np.mean(list(maj_cat.values()))),
        "best_val_acc": dict(zip(data.variables, fit.best_val_acc)),
        "best_epoch": dict(zip(data.variables, fit.best_epoch)),
        "stopped_epoch": dict(zip(data.variables, fit.stopped_epoch)),
        "counts": {**{f"{k}_frames": len(v) for k, v in data.index.items()},
                   **{f"{k}_episodes": v for k, v in data.episodes.items()},
                   "test_duplicates_removed": data.test_duplicates},
        "seconds": {"data": round(data.seconds, 2), "features": round(feature_seconds, 2),
                    "probes": round(probe_seconds, 2), "total": round(time.perf_counter() - start, 2)},
    }


def format_table(game: str, rows: dict[str, dict[str, Any]]) -> str:
    """Our rows (label → :func:`probe_encoder` result) per category, beside the published rows of ``game``."""
    name = resolve_game(game)
    head = f"{'':<26}" + "".join(f"{CATEGORY_SHORT[c]:>8}" for c in CATEGORIES) + f"{'mean':>8}"
    lines = [f"{name}: AtariARI probe, weighted F1 averaged within categories then across them", head]
    for label, res in rows.items():
        cats = res.get("category_f1", {})
        cells = "".join(f"{cats[c]:>8.3f}" if c in cats else f"{'-':>8}" for c in CATEGORIES)
        lines.append(f"{'ours: ' + label:<26}{cells}{res['mean_f1']:>8.3f}")
    for method, value in PUBLISHED.get(name, {}).items():
        lines.append(f"{'paper: ' + PUBLISHED_NAMES[method]:<26}{'':>{8 * len(CATEGORIES)}}{value:>8.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
@dataclass
class Args(RunArgs):
    game: str = "Breakout"
    """game with AtariARI RAM annotations: Breakout, Pong, SpaceInvaders, Boxing, MsPacman"""
    checkpoint: str | None = None
    """run folder (or checkpoint.pt) of a pretrained encoder to probe"""
    random_init: str | None = None
    """instead of --checkpoint: a freshly initialised backbone of this name, seeded with --seed (atari_cnn: the
    paper's 'random CNN' row)"""
    frames: int = 50_000
    """frames collected with a random agent (the paper's 50,000), split 70/10/20 by episode (shuffled with --seed,
    which also seeds the probes' initialisation and batch order)"""
    data_seed: int = 0
    """seed of the frame collection (atari-frames train split)"""
    epochs: int = 100
    """maximum probe epochs"""
    patience: int = 15
    """epochs without a better validation accuracy before a probe stops"""
    lr: float = 3e-4
    """probe Adam learning rate"""
    batch_size: int = 64
    """probe minibatch size"""
    lr_plateau: bool = True
    """AtariARI's ReduceLROnPlateau per probe (factor 0.2 after 5 epochs without progress)"""
    min_episode_length: int = MIN_EPISODE_LENGTH
    """episodes of at most this many frames are left out (AtariARI: 64)"""
    json: str | None = None
    """also write the summary to this JSON file"""
    resume: str | None = None
    """not supported here: a probe has no training state to continue (run it again)"""


def load_checkpoint_encoder(run_dir: str, device: torch.device) -> Any:
    """The frozen encoder of any rlgen checkpoint that holds one (:func:`rlgen.encoders.load_encoder`)."""

    return load_encoder(run_dir, device)


def held_out_unseen(run_dir: str, game: str, args: Args) -> bool | None:
    """Whether an ST-DIM checkpoint trained only on this probe's train episodes (None: not known for its algo)."""

    ckpt = checkpoint.load(run_dir)
    if ckpt.get("algo") != "stdim":
        return None
    a = ckpt["args"]
    if resolve_game(a["data"].partition(":")[2]) != game:
        return True  # another game's frames
    # The same collection and split seed give the same episode split; anything else may not.
    return bool(a["frames"] == args.frames and a["data_seed"] == args.data_seed and a["split_seed"] == args.seed)


def check(args: Args) -> Args:
    """The game and the choice of encoder; the numeric ranges are :func:`rlgen.cli.check_numbers`'s."""
    if args.checkpoint and args.random_init:
        raise UsageError("give either --checkpoint RUN_DIR or --random-init BACKBONE, not both")
    if not args.checkpoint and not args.random_init:
        raise UsageError("say which encoder to probe: --checkpoint RUN_DIR or --random-init BACKBONE "
                         "(atari_cnn: the paper's random CNN)")
    return dataclasses.replace(args, game=resolve_game(args.game))


def main(args: Args) -> dict[str, Any]:
    """Probe one encoder on one game; print the table, write summary.json; return the summary."""
    if args.resume:  # refused rather than ignored: an evaluation has nothing to continue
        raise UsageError(f"--resume is not supported by atari_probe (a probe has no training state to continue); "
                         f"run it again without --resume {args.resume}")
    run = Run(args, ALGO, what=resolve_game(args.game), check=check)
    args, device, game = run.args, run.device, run.args.game
    if args.random_init:

        torch.manual_seed(args.seed)
        net = make_backbone(args.random_init, FRAME_SHAPE).to(device).eval()
        encoder: Any = freeze(net, scale_frames, FRAME_SHAPE, net.out_dim, "random-init",
                              f"random-init {args.random_init} ({net.out_dim}-d)")
        label = "random-init" if args.random_init == "atari_cnn" else f"random-init {args.random_init}"
    else:
        assert args.checkpoint is not None
        encoder = load_checkpoint_encoder(args.checkpoint, device)
        label = encoder.algo
    shape = tuple(encoder.input_shape)
    if shape != FRAME_SHAPE:
        raise UsageError(f"{args.checkpoint}: the encoder takes input shape {shape}; the Atari probes need "
                         f"{FRAME_SHAPE} (full 210×160 greyscale frames)")
    unseen = None if args.random_init else held_out_unseen(args.checkpoint, game, args)  # type: ignore[arg-type]
    if unseen is False:
        print(f"warning: {args.checkpoint} was pretrained on frames of {game} that may include this probe's "
              f"validation and test episodes (different --frames, --data-seed or split seed)", flush=True)
    data = prepare_probe_data(game, args.frames, args.seed, args.data_seed, args.min_episode_length)
    with run.start() as tracker:
        with run.after_clock:  # all of a probe is evaluation
            bar = tracker.progress(args.epochs, unit="epoch", desc="probes")
            res = probe_encoder(encoder, game, data=data, seed=args.seed, data_seed=args.data_seed,
                                lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, patience=args.patience,
                                lr_plateau=args.lr_plateau, log=lambda m: print(m, flush=True), bar=bar)
            bar.close()
        print(format_table(game, {label: res}))
        summary = {"encoder": label, "encoder_algo": encoder.algo, "checkpoint": args.checkpoint,
                   "encoder_description": encoder.description,
                   "pretraining_saw_only_probe_train_episodes": unseen, **res, "published": PUBLISHED.get(game, {})}
        tracker.log({"eval/mean_f1": res["mean_f1"], **{f"eval/f1/{k}": v for k, v in res["f1"].items()}}, step=0)
        summary = run.finish(summary, results=[
            f"{label} on {game}: mean weighted F1 {res['mean_f1']:.3f} (the mean over {len(res['category_f1'])} "
            f"categories of {len(res['f1'])} RAM variables, test episodes)"])
        if args.json:
            write_json(args.json, summary)
        return summary


if __name__ == "__main__":
    cli.run(main, Args, description="AtariARI linear state probes of a frozen encoder (Anand et al. 2019).")
