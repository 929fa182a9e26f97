"""One run tracker: a local run folder always, Weights & Biases when asked, a live progress bar.

The run folder holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged step),
``summary.json`` and whatever images and videos the algorithm saves. W&B runs offline by
default (``--wandb offline``), or as the ``WANDB_MODE`` environment variable says when the
flag is not given. An online run that cannot reach its server within
``$RLGEN_WANDB_INIT_TIMEOUT`` seconds (default 30) falls back to offline with one warning; any
later W&B failure drops W&B and keeps the local folder, so W&B never hangs or crashes a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlgen.errors import UsageError
from rlgen.utils import atomic_write_bytes, write_json

WANDB_MODES = ("offline", "online", "disabled")


@dataclasses.dataclass
class RunArgs:
    """Where a run lives and how it is logged: the flags every training command shares.

    Each algorithm's ``Args`` extends this (one level), so the flag names cannot drift apart.
    """

    run_dir: str | None = None
    """Run folder (default runs/<algo>-<env or data>-<time>)."""
    resume: str | None = None
    """Continue the run in this folder from its checkpoint, with its saved settings."""
    wandb: str | None = None
    """W&B mode: offline, online or disabled (default: $WANDB_MODE, else offline)."""
    wandb_project: str = "rlgen"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (team or user)."""
    wandb_name: str | None = None
    """W&B run name (default: the run folder's name)."""


def resolve_wandb_mode(mode: str | None) -> str:
    """The flag wins; else ``WANDB_MODE``; else offline."""
    chosen = mode if mode is not None else os.environ.get("WANDB_MODE", "offline")
    if chosen == "dryrun":
        chosen = "offline"
    if chosen not in WANDB_MODES:
        raise UsageError(f"--wandb {chosen!r} is not one of {', '.join(WANDB_MODES)}")
    return chosen


def default_run_dir(algo: str, what: str) -> Path:
    """``runs/<algo>-<env or data>-<time>``, made unique if that folder exists."""
    safe = what.replace("/", "_").replace(":", "_")
    base = Path("runs") / f"{algo}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path


class Tracker:
    """Logs metrics to ``metrics.jsonl`` and W&B and shows them on a progress bar.

    ``resume_step`` trims metrics logged after the checkpoint being resumed from, so a
    resumed run's file reads as if the run had never stopped.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: Any,
        *,
        algo: str,
        wandb_mode: str | None = None,
        project: str = "rlgen",
        entity: str | None = None,
        name: str | None = None,
        resume_step: int | None = None,
        bar_keys: Iterable[str] = (),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        self.algo = algo
        self.bar_keys = tuple(bar_keys)
        self._bar: Any = None
        self._postfix: dict[str, str] = {}
        self.start_time = time.time()
        write_json(self.run_dir / "config.json", {"algo": algo, **self.config})
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume_step is not None and metrics_path.exists():
            _trim_metrics(metrics_path, resume_step)
        self._metrics = open(metrics_path, "a", encoding="utf-8")
        self.wandb_mode = resolve_wandb_mode(wandb_mode)
        self._wandb: Any = None
        if self.wandb_mode != "disabled":
            self._wandb = _init_wandb(self.wandb_mode, self.run_dir, project, entity,
                                      name or self.run_dir.name, {"algo": algo, **self.config},
                                      resumed=resume_step is not None)

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike, args: RunArgs, *, algo: str, resume_step: int | None = None,
                bar_keys: Iterable[str] = ()) -> Tracker:
        """A tracker configured by the shared :class:`RunArgs` flags of ``args``."""
        return cls(run_dir, args, algo=algo, wandb_mode=args.wandb, project=args.wandb_project,
                   entity=args.wandb_entity, name=args.wandb_name, resume_step=resume_step, bar_keys=bar_keys)

    # -- metrics ---------------------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record ``metrics`` at ``step`` (environment steps, optimizer steps or epochs)."""
        row = {"step": int(step), "time": round(time.time() - self.start_time, 3)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self._wandb is not None:
            self._safe(lambda: self._wandb.log(dict(metrics), step=int(step)))
        shown = {k: metrics[k] for k in self.bar_keys if k in metrics}
        if shown and self._bar is not None:
            self._postfix.update({k: f"{_plain(v):.4g}" if isinstance(_plain(v), float) else str(v)
                                  for k, v in shown.items()})
            self._bar.set_postfix(self._postfix, refresh=False)

    def log_image(self, key: str, path: str | os.PathLike, step: int | None = None) -> None:
        """Log a PNG already saved in the run folder."""
        if self._wandb is not None:
            import wandb

            self._safe(lambda: self._wandb.log({key: wandb.Image(str(path))}, step=step))

    def log_video(self, key: str, path: str | os.PathLike, step: int | None = None) -> None:
        """Log a GIF or MP4 already saved in the run folder."""
        if self._wandb is not None:
            import wandb

            fmt = Path(path).suffix.lstrip(".")
            self._safe(lambda: self._wandb.log({key: wandb.Video(str(path), format=fmt)}, step=step))

    # -- progress bar ----------------------------------------------------------------------
    def progress(self, total: int, initial: int = 0, unit: str = "step") -> Any:
        """A tqdm bar that shows the ``bar_keys`` metrics as they are logged (hidden off a TTY)."""
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, mininterval=0.5,
                         desc=self.algo, disable=None, file=sys.stderr)
        return self._bar

    # -- the end ---------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any]) -> Path:
        """Write ``summary.json``, close W&B and the bar; print and return the run folder."""
        path = self.run_dir / "summary.json"
        write_json(path, {k: _plain(v) for k, v in summary.items()})
        if self._wandb is not None:
            def _sum() -> None:
                for k, v in summary.items():
                    self._wandb.summary[k] = _plain(v)
                self._wandb.finish()
            self._safe(_sum)
            self._wandb = None
        self.close()
        print(f"run folder: {self.run_dir}", flush=True)
        return self.run_dir

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self._metrics.closed:
            self._metrics.close()
        if self._wandb is not None:
            self._safe(lambda: self._wandb.finish(exit_code=1))
            self._wandb = None

    def _safe(self, fn: Any) -> None:
        try:
            fn()
        except Exception as err:  # W&B must never take a training run down with it
            warnings.warn(f"W&B logging failed, continuing with the local run folder only: {err}", stacklevel=3)
            self._wandb = None


def _init_wandb(mode: str, run_dir: Path, project: str, entity: str | None, name: str,
                config: dict[str, Any], resumed: bool) -> Any:
    try:
        import wandb

        timeout = float(os.environ.get("RLGEN_WANDB_INIT_TIMEOUT", "30"))
        settings = wandb.Settings(init_timeout=timeout, console="off", silent=True, x_disable_stats=True)
        return wandb.init(mode=mode, dir=str(run_dir), project=project, entity=entity,
                          name=name + ("-resumed" if resumed else ""), config=config,
                          group=name, settings=settings, reinit="create_new")
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if mode == "online":
            warnings.warn(f"W&B online init failed ({first}); logging offline instead", stacklevel=3)
            return _init_wandb("offline", run_dir, project, entity, name, config, resumed)
        warnings.warn(f"W&B init failed ({first}); logging to the local run folder only", stacklevel=3)
        return None


def _trim_metrics(path: Path, last_step: int) -> None:
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError):
            continue  # a line cut short by a kill
    atomic_write_bytes(path, ("\n".join(kept) + ("\n" if kept else "")).encode())


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        try:
            return v.item()
        except (ValueError, RuntimeError):
            return v
    return v


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a run's ``metrics.jsonl``."""
    with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
