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
from rlgen.files import atomic_open
from rlgen.track import given_flags

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
        # mmap: tensors are read from the file when used, so a caller that needs a few (an encoder from a DQN
        # checkpoint that also holds a 0.7 GB replay) never reads the rest
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
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


# Flags a continued run may change in every command: where and how it runs and is logged, never what it learns.
ALWAYS_CHANGEABLE = frozenset({"run_dir", "resume", "wandb", "wandb_project", "wandb_entity", "wandb_name",
                               "tensorboard", "device", "threads", "progress_every"})


def resume_args(cls: type[T], args: T, algo: str, changeable: frozenset[str] = frozenset()) -> tuple[T, dict[str, Any]]:
    """For ``--resume RUN_DIR`` (a run folder or its checkpoint file): the run's own args and the checkpoint.

    Everything comes from the checkpoint except the flags given among :data:`ALWAYS_CHANGEABLE` and
    ``changeable`` (the command's budget and cadence flags, which it honours when continuing). Any other flag
    given with a value different from the run's is a :class:`UsageError`, so nothing is silently ignored and
    the checkpoint stays untouched. On the command line a flag counts as given whatever its value (a flag set
    back to its default is compared too); for args built in Python, a value other than the class default does.
    ``--run-dir`` may only name the run's own folder: a resumed run continues where it is.
    """
    path = checkpoint_path(args.resume)  # type: ignore[attr-defined]
    folder = path.parent
    ckpt = load(path, algo=algo)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    saved = {k: v for k, v in ckpt["args"].items() if k in fields}
    restored = cls(**saved)
    run_dir = getattr(args, "run_dir", None)
    if run_dir and Path(run_dir).resolve() != folder.resolve():
        raise UsageError(f"--run-dir {run_dir} with --resume {args.resume}: a resumed run continues in its own "  # type: ignore[attr-defined]
                         f"folder ({folder}); leave out --run-dir")
    allowed = ALWAYS_CHANGEABLE | changeable
    on_line = given_flags(args)
    for name, f in fields.items():
        value = getattr(args, name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        given = name in on_line if on_line is not None else value != default
        if not given or name in ("resume", "run_dir"):
            continue
        if name in allowed:
            setattr(restored, name, value)
        elif name in saved and value != saved[name]:
            flag = "--" + name.replace("_", "-")
            can = ", ".join("--" + n.replace("_", "-") for n in sorted(changeable)) or "none of its training flags"
            raise UsageError(f"{flag} {value} differs from the run being resumed ({saved[name]}); a resumed run "
                             f"may change only {can}")
    restored = dataclasses.replace(restored, resume=str(folder), run_dir=str(folder))  # type: ignore
    return restored, ckpt
