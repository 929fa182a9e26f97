"""Checkpoints: atomic save, safe load, and the args that rebuild the model.

A checkpoint is a dict saved with :func:`torch.save` holding ``format``, ``algo``,
``args`` (the run's ``Args`` as a plain dict), ``step`` and whatever state the algorithm
adds (state dicts, optimizer states, RNG states, replay contents as tensors). It is written
to a temporary file beside the target, fsynced and renamed over it, so a process killed
mid-write leaves the previous checkpoint in place. It is read back with
``torch.load(..., weights_only=True)``: no arbitrary code runs when a checkpoint is opened.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, TypeVar

import torch

from rlgen.errors import UsageError
from rlgen.utils import atomic_open

T = TypeVar("T")

FORMAT = "rlgen-checkpoint-v1"
FILENAME = "checkpoint.pt"


def checkpoint_path(run_dir_or_file: str | os.PathLike) -> Path:
    """``RUN_DIR/checkpoint.pt`` for a folder, the path itself for a file."""
    path = Path(run_dir_or_file)
    return path / FILENAME if path.is_dir() else path


def save(path: str | os.PathLike, *, algo: str, args: dict[str, Any], step: int, **state: Any) -> Path:
    """Atomically write a checkpoint; ``state`` must hold only tensors, containers and primitives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "algo": algo, "args": dict(args), "step": int(step), **state}
    with atomic_open(path) as fh:
        torch.save(payload, fh)
    return path


def load(run_dir_or_file: str | os.PathLike, *, algo: str | tuple[str, ...] | None = None,
         map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; a missing, truncated or foreign file is a :class:`UsageError`."""
    path = checkpoint_path(run_dir_or_file)
    if not path.exists():
        hint = " (the folder holds no checkpoint.pt)" if Path(run_dir_or_file).is_dir() else ""
        raise UsageError(f"no checkpoint at {path}{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{path} is not a readable checkpoint (truncated or corrupt: {first[:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"{path} is not an rlgen checkpoint (no '{FORMAT}' marker)")
    if algo is not None:
        wanted = (algo,) if isinstance(algo, str) else algo
        if ckpt.get("algo") not in wanted:
            raise UsageError(f"{path} holds a {ckpt.get('algo')!r} checkpoint; expected {' or '.join(wanted)}")
    return ckpt


def resume_args(cls: type[T], args: T, algo: str) -> tuple[T, dict[str, Any]]:
    """For ``--resume RUN_DIR``: the run's own args (from its checkpoint) and the checkpoint.

    Everything comes from the checkpoint except where the run continues (``run_dir``) and how it
    is logged (``wandb``, when given on the command line).
    """
    ckpt = load(args.resume, algo=algo)  # type: ignore[attr-defined]
    saved = {k: v for k, v in ckpt["args"].items() if k in {f.name for f in dataclasses.fields(cls)}}
    wandb = getattr(args, "wandb", None)
    restored = dataclasses.replace(cls(**saved), resume=args.resume, run_dir=args.resume,  # type: ignore
                                   **({"wandb": wandb} if wandb is not None else {}))
    return restored, ckpt
