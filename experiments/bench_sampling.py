"""Naive versus fast PixelCNN sampling: same seed, same images, how much faster.

The naive sampler runs the whole network once per pixel; the fast one recomputes only the current
row of each layer from cached rows (see :mod:`rlgen.gen.pixelcnn`). For each model this times both
on the same weights and seed, asserts the images are identical, and prints samples per second and
the speedup. Weights are untrained models of the default size unless ``--checkpoint`` gives runs
(untrained weights cost the same to sample from).

    python experiments/bench_sampling.py --n 16 --json bench_sampling.json
    python experiments/bench_sampling.py --checkpoint runs/pixelcnn-mnist5k-... --checkpoint runs/...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rlgen.gen import pixelcnn as pc
from rlgen.gen.common import load_sampler


def default_model(gated: bool, seed: int) -> tuple[str, pc.AutoregressiveModel]:
    args, _ = pc.resolve(pc.Args(gated=gated))
    torch.manual_seed(seed)
    model = pc.build_model(args, (1, 28, 28), "bernoulli", 0)
    name = "Gated PixelCNN" if gated else "PixelCNN"
    return f"{name} ({args.layers} layers x {args.channels} ch, untrained)", model.eval()


def timed(fn, *a, **kw) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - start


def bench(name: str, model: pc.AutoregressiveModel, n: int, seed: int) -> dict:
    c, h, w = model.image_shape
    x = torch.zeros(n, c, h, w)
    with torch.no_grad():  # one full forward pass: what the naive sampler pays per pixel and channel
        model.logits(x)
        _, forward_s = timed(model.logits, x)
    naive, naive_s = timed(model.sample_naive, n, torch.Generator().manual_seed(seed))
    fast, fast_s = timed(model.sample, n, torch.Generator().manual_seed(seed))
    identical = torch.equal(naive, fast)
    # For reference: the naive loop with PyTorch's default convolution backends (which it picks by
    # tensor size, so this one is not guaranteed to match bit for bit and is not asserted).
    pc.MaskedConv.exact = False
    try:
        _, default_s = timed(model.sample_naive, n, torch.Generator().manual_seed(seed))
    finally:
        pc.MaskedConv.exact = True
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "n": n, "seed": seed,
            "image_shape": [c, h, w], "forward_ms": round(1000 * forward_s, 2), "naive_seconds": round(naive_s, 3),
            "fast_seconds": round(fast_s, 3),
            "naive_default_backends_seconds": round(default_s, 3),
            "speedup_vs_default_naive": round(default_s / fast_s, 2),
            "naive_samples_per_second": round(n / naive_s, 3),
            "fast_samples_per_second": round(n / fast_s, 3), "speedup": round(naive_s / fast_s, 2),
            "identical": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="images per sampler call")
    parser.add_argument("--seed", type=int, default=0, help="generator seed of both samplers")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="run folder or checkpoint of a pixelcnn run (repeatable); default: untrained models "
                             "of the default size, PixelCNN and Gated PixelCNN")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)

    models = []
    for path in opts.checkpoint:
        model, ckpt = load_sampler(path)
        a = ckpt["args"]
        models.append((f"{'Gated PixelCNN' if a['gated'] else 'PixelCNN'} ({a['layers']} layers x "
                       f"{a['channels']} ch, {Path(path).name})", model))
    if not models:
        models = [default_model(False, opts.seed), default_model(True, opts.seed)]

    rows = [bench(name, model, opts.n, opts.seed) for name, model in models]
    print(f"{opts.n} images per call, {opts.threads} thread(s), torch {torch.__version__}")
    print(f"{'model':<52} {'forward ms':>10} {'naive s':>9} {'fast s':>8} {'naive img/s':>11} {'fast img/s':>10} "
          f"{'speedup':>8} {'identical':>9} {'naive s (default convs)':>23} {'speedup':>8}")
    for r in rows:
        print(f"{r['model']:<52} {r['forward_ms']:>10.1f} {r['naive_seconds']:>9.2f} {r['fast_seconds']:>8.2f} "
              f"{r['naive_samples_per_second']:>11.2f} {r['fast_samples_per_second']:>10.2f} "
              f"{r['speedup']:>7.1f}x {str(r['identical']):>9} {r['naive_default_backends_seconds']:>23.2f} "
              f"{r['speedup_vs_default_naive']:>7.1f}x")
    if opts.json:
        opts.json.write_text(json.dumps({"threads": opts.threads, "torch": torch.__version__, "results": rows},
                                        indent=2) + "\n")
    if not all(r["identical"] for r in rows):
        raise SystemExit("fast and naive samples differ")


if __name__ == "__main__":
    main()
