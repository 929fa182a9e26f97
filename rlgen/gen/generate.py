"""Sample from any rlgen generator checkpoint: GAN, VAE or PixelCNN.

    python -m rlgen.gen.generate --checkpoint runs/gan-faces-... --n 64 --out faces.png --seed 0
    python -m rlgen.gen.generate --checkpoint runs/gan-faces-... --interpolate 8 --gif walk.gif

The model is rebuilt from the args stored in its checkpoint (:func:`rlgen.gen.common.load_sampler`);
all randomness comes from ``--seed``, so the same seed gives the same image, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from rlgen import cli
from rlgen.data import save_grid
from rlgen.errors import UsageError
from rlgen.gen.common import latent_walk, load_sampler, to_uint8_frames, use_device
from rlgen.plots import save_gif


@dataclass
class Args:
    checkpoint: str = ""
    """run folder (or checkpoint.pt) of a trained GAN, VAE or PixelCNN"""
    n: int = 64
    """images in the grid"""
    out: str = "samples.png"
    """PNG to write the grid to"""
    seed: int = 0
    """seed of every random draw (same seed, same images)"""
    nrow: int | None = None
    """images per grid row (default: near-square)"""
    interpolate: int = 0
    """also walk a closed loop through this many random latent points (GAN and VAE)"""
    frames: int = 12
    """frames between two latent points of the walk"""
    gif: str = "walk.gif"
    """GIF to write the latent walk to (with --interpolate)"""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int | None = None
    """Torch CPU threads; 0: every CPU this process may use."""

    THREADS: ClassVar[int] = 2

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        return {"threads": str(cls.THREADS)}


def main(args: Args) -> dict[str, Any]:
    if not args.checkpoint:
        raise UsageError("--checkpoint RUN_DIR is required (the run folder of a GAN, VAE or PixelCNN)")
    if args.n < 1:
        raise UsageError(f"--n {args.n} must be at least 1")
    if args.interpolate and args.frames < 1:
        raise UsageError(f"--frames {args.frames} must be at least 1")
    if Path(args.out).suffix.lower() != ".png":
        raise UsageError(f"--out {args.out!r} must name a .png file")
    device = use_device(args.device, args.threads, Args.THREADS)
    model, ckpt = load_sampler(args.checkpoint, device)
    if args.interpolate and not hasattr(model, "decode"):
        raise UsageError(f"--interpolate: a {ckpt['algo']} model has no latent space to walk through; "
                         "it needs a GAN or a VAE checkpoint")
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        images = model.sample(args.n, generator=gen)  # on the CPU, as every sampler returns them
    title = f"{ckpt['algo']} {ckpt['args'].get('data', '')} · seed {args.seed}"
    out = save_grid(args.out, images, nrow=args.nrow, value_range=(0, 1), title=title)
    result: dict[str, Any] = {"algo": ckpt["algo"], "out": str(out), "n": args.n}
    print(f"wrote {out}")
    if args.interpolate:
        walk = latent_walk(model, args.interpolate, args.frames, torch.Generator().manual_seed(args.seed))
        gif = save_gif(args.gif, to_uint8_frames(walk), fps=12)
        result["gif"] = str(gif)
        print(f"wrote {gif}")
    return result


if __name__ == "__main__":
    cli.run(main, Args)
