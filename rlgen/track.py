"""One run tracker: a local run folder always, Weights & Biases when asked, a live progress bar.

The run folder holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged step),
``summary.json`` and whatever images and videos the algorithm saves. W&B runs offline by
default (``--wandb offline``), or as the ``WANDB_MODE`` environment variable says when the
flag is not given. An online run that cannot reach its server within
``$RLGEN_WANDB_INIT_TIMEOUT`` seconds (default 30) falls back to offline with one warning; any
later W&B failure drops W&B and keeps the local folder, so W&B never hangs or crashes a run.

A tracker is a context manager: an exception that escapes ``with tracker:`` closes the bar and
the metrics file and finishes the W&B run with a non-zero exit code (:func:`exit_code_for`), so
W&B shows the run as failed rather than leaving it open. :func:`fail_open_trackers` does the same
for every tracker still open; :func:`rlgen.cli.run` calls it when ``main`` raises.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
import warnings
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from rlgen.errors import Stopped, UsageError
from rlgen.files import atomic_write_bytes, write_json

WANDB_MODES = ("offline", "online", "disabled")
# The oldest wandb that takes ``reinit="create_new"`` (several runs in one process); keep in step with pyproject.
WANDB_MIN_VERSION = (0, 19, 10)


@dataclasses.dataclass
class RunArgs:
    """Where a run lives and how it is logged: the flags every training command shares.

    Each algorithm's ``Args`` extends this (one level), so the flag names cannot drift apart. A command sets
    ``THREADS``, its default number of torch threads, where one is not fastest.
    """

    THREADS: ClassVar[int] = 1

    seed: int = 0
    """Seed of every random draw: initialisation, data order, exploration, augmentation, environment resets."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int | None = None
    """Torch CPU threads; 0: all cores (default: the command's own, shown below)."""

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

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        """``--help``'s text for defaults filled in after parsing."""
        return {"threads": f"{cls.THREADS}{' (all cores)' if cls.THREADS == 0 else ''}"}


def resolve_wandb_mode(mode: str | None) -> str:
    """The flag wins; else ``WANDB_MODE``; else offline. An unknown mode is a :class:`UsageError`."""
    chosen = mode if mode is not None else os.environ.get("WANDB_MODE", "offline")
    if chosen == "dryrun":
        chosen = "offline"
    if chosen not in WANDB_MODES:
        where = "--wandb" if mode is not None else "$WANDB_MODE"
        raise UsageError(f"{where} {chosen!r} is not one of {', '.join(WANDB_MODES)}")
    return chosen


def exit_code_for(err: BaseException | None) -> int:
    """The exit code a command ends with for ``err``, as :func:`rlgen.cli.run` maps it: 0 for none, 2 for bad
    input, 130 for Ctrl-C (a signal-stopped run: 128 plus the signal's number), a ``SystemExit``'s own code, else 1."""
    if err is None:
        return 0
    if isinstance(err, UsageError):
        return 2
    if isinstance(err, Stopped):
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        return 130
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    return 1


# Trackers not yet finished or closed, so a failure anywhere can close them (weak: a dropped tracker goes away).
_OPEN: weakref.WeakSet[Tracker] = weakref.WeakSet()


def fail_open_trackers(exit_code: int = 1) -> None:
    """:meth:`Tracker.fail` every tracker of this process that is still open (the safety net of ``cli.run``)."""
    for tracker in list(_OPEN):
        tracker.fail(exit_code)


GIVEN = "_given_flags"
"""The attribute :func:`rlgen.cli.parse` sets on the args it parses: the fields given on the command line."""


def given_flags(args: Any) -> frozenset[str] | None:
    """The fields given on the command line (whatever their value) when ``args`` came from the command line;
    None for args built in Python, where a value different from the class default counts as given."""
    return getattr(args, GIVEN, None)


def default_run_dir(algo: str, what: str, seed: int | None = None) -> Path:
    """``runs/<algo>-<env or data>-s<seed>-<time>``: where a run goes when no ``--run-dir`` is given. Runs that
    start in the same second with the same seed get ``-1``, ``-2``, ... when they claim it (:func:`claim_dir`)."""
    safe = what.replace("/", "_").replace(":", "_")
    seeded = f"-s{seed}" if seed is not None else ""
    return Path("runs") / f"{algo}-{safe}{seeded}-{time.strftime('%Y%m%d-%H%M%S')}"


def claim_dir(base: Path) -> Path:
    """Create ``base`` (or ``base-1``, ``base-2``, ... where it exists) and return it. ``mkdir`` either creates a
    folder or fails, so two processes never claim the same one."""
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, k = Path(f"{base}-{k}"), k + 1


RUN_FILES = ("checkpoint.pt", "summary.json", "config.json", "metrics.jsonl")
"""Files that mark a folder as holding a run."""


def holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


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
        # Every check first: a bad mode must leave no run folder behind (nothing written on bad input).
        self.wandb_mode = resolve_wandb_mode(wandb_mode)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        self.algo = algo
        self.bar_keys = tuple(bar_keys)
        self._bar: Any = None
        self._postfix: dict[str, str] = {}
        self.start_time = time.time()
        self._last_step = resume_step or 0  # pictures logged without a step go here: W&B's step never runs ahead
        write_json(self.run_dir / "config.json", {"algo": algo, **self.config})
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume_step is not None and metrics_path.exists():
            _trim_metrics(metrics_path, resume_step)
        self._metrics = open(metrics_path, "a", encoding="utf-8")
        self._wandb: Any = None
        _OPEN.add(self)
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
        self._last_step = int(step)
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
        """Log a PNG already saved in the run folder, at ``step`` (default: the last step :meth:`log` used).

        Never W&B's own next step: that would run ahead of the run's steps, and W&B drops every later
        metric logged at the last training step ("Tried to log to step N that is less than the current step").
        """
        if self._wandb is not None:
            import wandb

            at = self._last_step if step is None else int(step)
            self._safe(lambda: self._wandb.log({key: wandb.Image(str(path))}, step=at))

    def log_video(self, key: str, path: str | os.PathLike, step: int | None = None) -> None:
        """Log a GIF or MP4 already saved in the run folder, at ``step`` (default: as :meth:`log_image`)."""
        if self._wandb is not None:
            import wandb

            fmt = Path(path).suffix.lstrip(".")
            at = self._last_step if step is None else int(step)
            self._safe(lambda: self._wandb.log({key: wandb.Video(str(path), format=fmt)}, step=at))

    # -- progress bar ----------------------------------------------------------------------
    def progress(self, total: int, initial: int = 0, unit: str = "step", desc: str | None = None) -> Any:
        """A tqdm bar that shows the ``bar_keys`` metrics as they are logged (hidden off a TTY).

        ``desc`` labels it (default: the algorithm), e.g. a separate bar for the work after training.
        """
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, mininterval=0.5,
                         desc=desc or self.algo, disable=None, file=sys.stderr)
        return self._bar

    # -- the end ---------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any], results: Iterable[str] = ()) -> Path:
        """Write ``summary.json``, close W&B and the bar; print ``results`` (the run's key numbers in
        words with units, one line each; also kept as ``results.txt``), then the run folder, and return it."""
        path = self.run_dir / "summary.json"
        write_json(path, {k: _plain(v) for k, v in summary.items()})
        results = list(results)
        atomic_write_bytes(self.run_dir / "results.txt", "".join(f"{line}\n" for line in results).encode())
        if self._wandb is not None:
            def _sum() -> None:
                for k, v in summary.items():
                    self._wandb.summary[k] = _plain(v)
                self._wandb.finish()
            self._safe(_sum)
            self._wandb = None
        self.close()
        for line in results:
            print(line, flush=True)
        print(f"run folder: {self.run_dir}", flush=True)
        return self.run_dir

    def close(self, exit_code: int = 1) -> None:
        """Close the bar and the metrics file; a W&B run not yet finished ends with ``exit_code`` (a run closed
        without :meth:`finish` did not complete). Safe to call again."""
        _OPEN.discard(self)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self._metrics.closed:
            self._metrics.close()
        if self._wandb is not None:
            self._safe(lambda: self._wandb.finish(exit_code=exit_code))
            self._wandb = None

    def fail(self, exit_code: int = 1) -> None:
        """End a run that failed: W&B records ``exit_code`` (non-zero; 1 if given 0); no summary is written."""
        self.close(exit_code=exit_code or 1)

    # -- ``with tracker:`` --------------------------------------------------------------------
    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        """An escaping exception fails the run with its exit code; the exception itself goes on."""
        if exc is not None:
            self.fail(exit_code_for(exc))
        else:
            self.close()  # a no-op after finish(); without it the block ended before the run did
        return False

    def _safe(self, fn: Any) -> None:
        try:
            fn()
        except Exception as err:  # W&B must never take a training run down with it
            warnings.warn(f"W&B logging failed, continuing with the local run folder only: {err}", stacklevel=3)
            self._wandb = None


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"0.19.10rc1"`` → ``(0, 19, 10)``: the leading release numbers, enough to compare with a floor."""
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])


def _init_wandb(mode: str, run_dir: Path, project: str, entity: str | None, name: str,
                config: dict[str, Any], resumed: bool) -> Any:
    version = ""
    try:
        import wandb

        version = str(getattr(wandb, "__version__", ""))
        timeout = float(os.environ.get("RLGEN_WANDB_INIT_TIMEOUT", "30"))
        settings = wandb.Settings(init_timeout=timeout, console="off", silent=True, x_disable_stats=True)
        return wandb.init(mode=mode, dir=str(run_dir), project=project, entity=entity,
                          name=name + ("-resumed" if resumed else ""), config=config,
                          group=name, settings=settings, reinit="create_new")
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if version and _version_tuple(version) < WANDB_MIN_VERSION:
            # An old wandb fails on arguments it does not know; retrying offline would fail the same way, and a
            # generic message would hide that an upgrade is the fix.
            need = ".".join(map(str, WANDB_MIN_VERSION))
            warnings.warn(f"W&B is off for this run: wandb {version} is installed and rlgen needs wandb>={need} "
                          f"(pip install -U 'wandb>={need}'); logging to the local run folder only ({first})",
                          stacklevel=3)
            return None
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
