"""Sample quality without Inception weights: a Fréchet distance in a domain classifier's feature space.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium") compares the Gaussian fitted to a network's features of generated images with the
one fitted to real images:

    FD = ‖μ_g − μ_r‖² + Tr(Σ_g + Σ_r − 2 (Σ_r^½ Σ_g Σ_r^½)^½)

Inception weights cannot be downloaded here, so the feature network is a small CNN trained on the
same dataset's labels (the penultimate 128-d layer), as done for MNIST by e.g. Lucic et al. 2018.
Its values only compare on the same extractor and sample count, so every report carries the
**floor**: the same distance between real training and real test images at the same count.
The classifier's predicted-class histogram of the samples gives a mode-coverage check: its entropy
is log(#classes) (2.30 for 10 digits) when every class is generated equally often.

Classifiers are trained once per (dataset, image size), deterministically, and cached under the
data root as ordinary rlgen checkpoints. For ``folder:PATH`` the cache also records a fingerprint of
the folder's files (names, sizes, modification times), so a changed folder trains a new classifier.
Training one leaves the caller's random state as it was.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlgen import checkpoint
from rlgen.data import data_root
from rlgen.data.folder import fingerprint
from rlgen.errors import UsageError
from rlgen.gen.common import class_balanced_subset, load_images, to_unit
from rlgen.nets import ConvEncoder

FEATURES = 128
CLASSIFIER_VERSION = 1
FLOOR_DRAWS = 5


class FeatureClassifier(nn.Module):
    """A conv encoder (k4 s2 convs, 32-64-128) → 128-d features → linear classes; input in [0, 1]."""

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int) -> None:
        super().__init__()
        self.encoder = ConvEncoder(input_shape, channels=(32, 64, 128), features=FEATURES)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x * 2.0 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½), in float64 via symmetric eigendecompositions.

    Tr((Σ1 Σ2)^½) equals Tr((Σ1^½ Σ2 Σ1^½)^½) and the latter is symmetric PSD, so eigh is
    stable where a general matrix square root would need scipy.
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    w, v = torch.linalg.eigh(cov1)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = root1 @ cov2 @ root1
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    # Rounding can leave identical distributions a hair below zero.
    return max(0.0, float((mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt))


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of (N, D) features."""
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / max(1, len(f) - 1)


def class_entropy(predicted: torch.Tensor, n_classes: int) -> float:
    """Entropy (nats) of the histogram of predicted classes; log(n_classes) is perfect coverage."""
    p = torch.bincount(predicted, minlength=n_classes).double() / max(1, len(predicted))
    p = p[p > 0]
    return abs(float(-(p * p.log()).sum()))  # abs: no '-0.0' for a single class


def _train_classifier(images: torch.Tensor, labels: torch.Tensor, n_classes: int, epochs: int,
                      seed: int = 0) -> FeatureClassifier:
    """Train the feature classifier deterministically from ``seed``, leaving the global RNG as it was.

    Initialisation and dropout draw from the global generator, seeded here as before (so cached and
    freshly trained classifiers, and the distances measured with them, stay the same); ``fork_rng``
    restores the caller's state afterwards instead of leaving it reseeded.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = FeatureClassifier(tuple(images.shape[1:]), n_classes)  # type: ignore[arg-type]
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        steps = epochs * math.ceil(len(images) / 128)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            for idx in order.split(128):
                x = to_unit(images[idx])
                # A random shift of up to two pixels each way (one shift per batch, wrapping around the
                # edges, which are blank on digits) keeps a 4,000-image classifier from memorising its inputs.
                dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                loss = F.cross_entropy(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return model.eval()


def dataset_fingerprint(data: str) -> str | None:
    """For ``folder:PATH``, a digest of its files' names, sizes and modification times (the one the data cache
    keys on); None for the built-in datasets, whose contents are fixed by name."""
    if not data.startswith("folder:"):
        return None

    return fingerprint(data.partition(":")[2])


def classifier_for(data: str, image_size: int | None, epochs: int | None = None) -> tuple[FeatureClassifier, dict]:
    """The cached feature classifier of a labelled dataset at ``image_size`` (trained on first use)."""
    train_x, train_y, classes = load_images(data, "train", image_size)
    if train_y is None or train_y.dim() != 1:
        raise UsageError(f"dataset {data!r} has no class labels, so no classifier-based Fréchet distance exists")
    n_classes = len(classes) if classes else int(train_y.max()) + 1
    size = train_x.shape[-1]
    safe = data.replace("/", "_").replace(":", "_")
    path = data_root() / "classifiers" / f"{safe}-{size}px-v{CLASSIFIER_VERSION}.pt"
    fingerprint = dataset_fingerprint(data)
    if path.exists():
        try:
            ckpt = checkpoint.load(path, algo="feature-classifier")
            # A folder whose files changed since the classifier was trained needs a new one.
            if ckpt["info"].get("fingerprint") != fingerprint:
                raise KeyError("fingerprint")
            model = FeatureClassifier(tuple(train_x.shape[1:]), n_classes)  # type: ignore[arg-type]
            model.load_state_dict(ckpt["model"])
            return model.eval(), ckpt["info"]
        except (UsageError, RuntimeError, KeyError):
            pass  # a stale or foreign file: train a fresh one below
    epochs = epochs or max(5, min(20, 60_000 // len(train_x)))
    model = _train_classifier(train_x, train_y, n_classes, epochs)
    test_x, test_y, _ = load_images(data, "test", image_size)
    acc = float((predict(model, to_unit(test_x)) == test_y).float().mean()) if test_y is not None else float("nan")
    info = {"data": data, "image_size": size, "n_classes": n_classes, "epochs": epochs, "test_accuracy": acc}
    if fingerprint is not None:  # only where it matters, so the built-in datasets' cached files stay valid
        info["fingerprint"] = fingerprint
    checkpoint.save(path, algo="feature-classifier", args=info, step=0, model=model.state_dict(), info=info)
    return model, info


@torch.no_grad()
def extract(model: FeatureClassifier, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and predicted classes of [0, 1] float images."""
    feats, preds = [], []
    for chunk in images.split(batch):
        f = model.features(chunk.float())
        feats.append(f)
        preds.append(model.head(f).argmax(1))
    return torch.cat(feats), torch.cat(preds)


def predict(model: FeatureClassifier, images: torch.Tensor) -> torch.Tensor:
    return extract(model, images)[1]


def sample_quality(data: str, samples: torch.Tensor, image_size: int | None = None,
                   n: int | None = None, seed: int = 0) -> dict[str, Any] | None:
    """``fid``, ``fid_floor``, ``class_entropy`` and the classifier's real-test accuracy; None when there is
    nothing to score: ``n`` is 0, or ``data`` has no class labels to train the classifier on.

    ``samples`` are float (N, C, H, W) in [0, 1]. The reference is ``n`` images of the test split (``n`` ≤ its
    size), a seeded subset with every class equally often (:func:`rlgen.gen.common.class_balanced_subset`: test
    splits are sorted by class, so their first ``n`` images would be a few classes only); the floor compares
    ``n`` random training images with the same reference, so both numbers carry the same small-sample bias; it is
    the mean over ``FLOOR_DRAWS`` training subsets (their min and max are reported too). Any other problem (an
    unknown dataset, samples of the wrong shape) is an error.
    """
    if n == 0:
        return None
    train_x, train_y, _ = load_images(data, "train", image_size)
    if train_y is None or train_y.dim() != 1:
        return None
    model, info = classifier_for(data, image_size)
    test_x, test_y, _ = load_images(data, "test", image_size)
    if tuple(samples.shape[1:]) != tuple(test_x.shape[1:]):
        raise UsageError(f"samples of shape {tuple(samples.shape[1:])} do not match {data} images "
                         f"{tuple(test_x.shape[1:])}")
    n = min(n or len(samples), len(samples), len(test_x), len(train_x))
    if n < 2:
        raise UsageError(f"a Fréchet distance needs at least 2 samples (a covariance), got {n}")
    gen = torch.Generator().manual_seed(seed)
    f_test, _ = extract(model, to_unit(test_x[class_balanced_subset(test_y, len(test_x), n, seed)]))
    ref = gaussian_stats(f_test)
    # One training subset's distance varies about 2× at n = 1,000, so the floor averages several.
    floors = []
    for _ in range(FLOOR_DRAWS):
        f_train, _ = extract(model, to_unit(train_x[torch.randperm(len(train_x), generator=gen)[:n]]))
        floors.append(frechet_distance(*gaussian_stats(f_train), *ref))
    f_gen, pred_gen = extract(model, samples[:n].clamp(0, 1))
    return {
        "fid": frechet_distance(*gaussian_stats(f_gen), *ref),
        "fid_floor": sum(floors) / len(floors),
        "fid_floor_min": min(floors),
        "fid_floor_max": max(floors),
        "class_entropy": class_entropy(pred_gen, info["n_classes"]),
        "class_entropy_max": math.log(info["n_classes"]),
        "classifier_accuracy": info["test_accuracy"],
        "fid_samples": n,
    }
