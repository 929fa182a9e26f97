"""One run tracker: a local run folder always, Weights & Biases and TensorBoard when asked, live progress.

The run folder holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged row),
``summary.json`` and whatever images and videos the algorithm saves; with ``--tensorboard`` also
``tensorboard/``, event files holding the same scalars and the pictures. Every metric's name has one of the
sections of :data:`SECTIONS` in front (``train/loss``, ``rollout/episode_return``), the same in every sink;
the summary keeps flat keys. W&B runs offline by
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
import math
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
from rlgen.machine import describe

WANDB_MODES = ("offline", "online", "disabled")
SECTIONS = ("rollout", "train", "eval", "time")
"""The namespaces of metric names: what the acting policy met (episodes, exploration), what the update did
(losses, gradients, learning rate), held-out evaluation (returns of the greedy policy, probes, FID, NLL) and the
clock (rates, training time)."""
TENSORBOARD_DIR = "tensorboard"
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
    """Torch CPU threads; 0: every CPU this process may use (default: the command's own, shown below)."""

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
    tensorboard: bool = False
    """Also write TensorBoard event files to RUN_DIR/tensorboard (needs pip install 'rlgen[tensorboard]'); view them
    with: tensorboard --logdir runs."""
    progress_every: float = 30.0
    """Seconds between plain progress lines (step, rate, time left, live metrics) when stderr is not a terminal,
    as under nohup, SLURM or CI; 0: none."""

    @classmethod
    def help_defaults(cls) -> dict[str, str]:
        """``--help``'s text for defaults filled in after parsing."""
        return {"threads": f"{cls.THREADS}{' (every CPU this process may use)' if cls.THREADS == 0 else ''}"}


def resolve_wandb_mode(mode: str | None) -> str:
    """The flag wins; else ``WANDB_MODE``; else offline. An unknown mode is a :class:`UsageError`."""
    chosen = mode if mode is not None else os.environ.get("WANDB_MODE", "offline")
    if chosen == "dryrun":
        chosen = "offline"
    if chosen not in WANDB_MODES:
        where = "--wandb" if mode is not None else "$WANDB_MODE"
        raise UsageError(f"{where} {chosen!r} is not one of {', '.join(WANDB_MODES)}")
    return chosen


def check_tensorboard() -> None:
    """``--tensorboard`` needs the ``tensorboard`` package: a :class:`UsageError` naming the extra if it is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard needs the tensorboard package, which is not installed: "
                         "pip install 'rlgen[tensorboard]'")


def short_name(key: str) -> str:
    """What the progress bar shows of a metric's name: ``train/loss`` → ``loss``."""
    return key.rsplit("/", 1)[-1]


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
        device: Any = "cpu",
        wandb_id: str | None = None,
        progress_every: float = 30.0,
        tensorboard: bool = False,
    ) -> None:
        # Every check first: a bad mode must leave no run folder behind (nothing written on bad input).
        self.wandb_mode = resolve_wandb_mode(wandb_mode)
        if tensorboard:
            check_tensorboard()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        self.algo = algo
        self.bar_keys = tuple(bar_keys)
        self._bar: Any = None
        self._postfix: dict[str, str] = {}
        self.start_time = time.time()
        self._last_step = resume_step or 0  # pictures logged without a step go here: W&B's step never runs ahead
        self.progress_every = progress_every
        self._warned: set[str] = set()
        # where the run ran: results depend on the CPU kind and the library versions
        self.machine = describe(device)
        write_json(self.run_dir / "config.json", {"algo": algo, **self.config, "machine": self.machine})
        metrics_path = self.run_dir / "metrics.jsonl"
        # W&B already holds what the interrupted run logged up to here; a resumed run (which repeats those steps
        # exactly) sends it only what comes after, so no step is there twice
        self._wandb_after = -1
        if resume_step is not None and metrics_path.exists():
            self._wandb_after = _trim_metrics(metrics_path, resume_step)
        self._metrics = open(metrics_path, "a", encoding="utf-8")
        self._wandb: Any = None
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events the interrupted run wrote after its checkpoint
            self._tb = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), flush_secs=30,
                                     purge_step=None if resume_step is None else resume_step + 1)
        _OPEN.add(self)
        if self.wandb_mode != "disabled":
            self._wandb = _init_wandb(self.wandb_mode, self.run_dir, project, entity,
                                      name or self.run_dir.name, {"algo": algo, **self.config,
                                                                  "machine": self.machine}, wandb_id)

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike, args: RunArgs, *, algo: str, resume_step: int | None = None,
                bar_keys: Iterable[str] = (), device: Any = "cpu", wandb_id: str | None = None) -> Tracker:
        """A tracker configured by the shared :class:`RunArgs` flags of ``args``."""
        return cls(run_dir, args, algo=algo, wandb_mode=args.wandb, project=args.wandb_project,
                   entity=args.wandb_entity, name=args.wandb_name, resume_step=resume_step, bar_keys=bar_keys,
                   device=device, wandb_id=wandb_id, progress_every=getattr(args, "progress_every", 30.0),
                   tensorboard=getattr(args, "tensorboard", False))

    @property
    def wandb_id(self) -> str | None:
        """The W&B run's id (kept in checkpoints, so a resumed run continues the same W&B run)."""
        return getattr(self._wandb, "id", None) if self._wandb is not None else None

    def _clean(self, key: str, value: Any) -> Any:
        """A value strict JSON readers accept: NaN and infinities become null, an array its mean (each key
        named in one warning)."""
        value = _plain(value)
        if hasattr(value, "shape") or isinstance(value, (list, tuple)):
            try:
                import numpy as np

                arr = np.asarray(value, dtype=np.float64)
                value = float(arr.mean()) if arr.size else None
            except (TypeError, ValueError):
                return str(value)
            self._warn_once(key, f"metric {key!r} is an array; its mean is logged")
        if isinstance(value, float) and not math.isfinite(value):
            self._warn_once(key, f"metric {key!r} is {value}; written as null")
            return None
        return value

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=4)

    # -- metrics ---------------------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record ``metrics`` at ``step`` (environment steps, optimizer steps or epochs) as one row, in every sink.

        Names carry a section of :data:`SECTIONS` (``train/loss``); one without is logged and named in a warning.
        Several rows may share a step (episodes of several environments that end together): each stays a row of
        its own, in W&B too, which charts them against ``step`` rather than its own row counter.
        """
        step = int(step)
        self._last_step = step
        row = {"step": step, "time": round(time.time() - self.start_time, 3)}
        clean = {k: self._clean(k, v) for k, v in metrics.items()}
        for key in clean:
            if "/" not in key or key.split("/", 1)[0] not in SECTIONS:
                self._warn_once(key, f"metric {key!r} has no section; name it "
                                     f"{' or '.join(s + '/...' for s in SECTIONS)}")
        row.update(clean)
        self._metrics.write(json.dumps(row, allow_nan=False) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, float(v), step)
        if self._wandb is not None and step > self._wandb_after:
            values = {k: v for k, v in clean.items() if v is not None}
            self._safe(lambda: self._wandb.log({"step": step, **values}))
        shown = {k: metrics[k] for k in self.bar_keys if k in metrics}
        if shown and self._bar is not None:
            self._postfix.update({short_name(k): f"{_plain(v):.4g}" if isinstance(_plain(v), float) else str(v)
                                  for k, v in shown.items()})
            self._bar.set_postfix(self._postfix, refresh=False)

    def log_image(self, key: str, path: str | os.PathLike, step: int | None = None) -> None:
        """Log a PNG already saved in the run folder, at ``step`` (default: the last step :meth:`log` used), to
        W&B and TensorBoard."""
        at = self._last_step if step is None else int(step)
        if self._tb is not None:
            import numpy as np
            from PIL import Image

            with Image.open(path) as picture:
                pixels = np.asarray(picture.convert("RGB"))
            self._tb.add_image(key, pixels, at, dataformats="HWC")
        if self._wandb is not None and at > self._wandb_after:
            import wandb

            self._safe(lambda: self._wandb.log({"step": at, key: wandb.Image(str(path))}))

    def log_video(self, key: str, path: str | os.PathLike, step: int | None = None) -> None:
        """Log a GIF or MP4 already saved in the run folder, at ``step`` (default: as :meth:`log_image`), to W&B
        (TensorBoard's video panel needs moviepy and takes frames, not files: the recording stays in the folder)."""
        at = self._last_step if step is None else int(step)
        if self._wandb is not None and at > self._wandb_after:
            import wandb

            fmt = Path(path).suffix.lstrip(".")
            self._safe(lambda: self._wandb.log({"step": at, key: wandb.Video(str(path), format=fmt)}))

    # -- progress bar ----------------------------------------------------------------------
    def progress(self, total: int | None, initial: int = 0, unit: str = "step", desc: str | None = None,
                 hint: str | None = None) -> Progress:
        """The run's progress (:class:`Progress`): a tqdm bar that shows the ``bar_keys`` metrics as they are logged
        on a terminal, plain lines every ``--progress-every`` seconds elsewhere.

        ``desc`` labels it (default: the algorithm; a labelled one, such as the work after training, prints no
        estimate of the duration); ``hint`` follows the estimate when that is over two hours (a shorter recipe).
        """
        self._bar = Progress(total, initial, unit, desc or self.algo, self._postfix, self.progress_every,
                             estimate=desc is None, hint=hint)
        return self._bar

    # -- the end ---------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any], results: Iterable[str] = ()) -> Path:
        """Write ``summary.json``, close W&B and the bar; print ``results`` (the run's key numbers in
        words with units, one line each; also kept as ``results.txt``), then the run folder, and return it."""
        path = self.run_dir / "summary.json"
        write_json(path, {k: _plain(v) for k, v in summary.items()})  # strict JSON: NaN and infinities as null
        results = list(results)
        atomic_write_bytes(self.run_dir / "results.txt", "".join(f"{line}\n" for line in results).encode())
        if self._wandb is not None:
            def _sum() -> None:
                for k, v in summary.items():
                    self._wandb.summary[k] = _plain(v) if not isinstance(v, (list, tuple)) else v
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
        if self._tb is not None:
            self._tb.close()
            self._tb = None
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


def _duration(seconds: float) -> str:
    """``42 s``, ``7 min 5 s``, ``3 h 20 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


class Progress:
    """A run's progress: a tqdm bar on a terminal; where stderr is not one (nohup, SLURM, CI), one plain line every
    ``every`` seconds with the count, rate, elapsed and remaining time and the live metrics. Either way, once the
    rate is known (300 units, or 30 s), one line says how long the rest will take at that rate (where that is a
    minute or more)."""

    ESTIMATE_AFTER = (300, 30.0)
    WORTH_SAYING = 60.0  # a run about to end needs no estimate
    LONG = 2 * 3600.0

    def __init__(self, total: int | None, initial: int, unit: str, desc: str, postfix: dict[str, str],
                 every: float, estimate: bool = True, hint: str | None = None) -> None:
        from tqdm.auto import tqdm

        self.total, self.n, self.unit, self.desc, self.every = total, initial, unit, desc, every
        self._postfix, self._estimate, self._hint = postfix, estimate, hint
        self._tty = sys.stderr.isatty()
        self._bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, mininterval=0.5, desc=desc,
                         file=sys.stderr) if self._tty else None
        self._t0: float | None = None
        self._n0 = initial
        self._last_line = time.time()

    def _rate(self, now: float) -> float:
        return (self.n - self._n0) / max(1e-9, now - (self._t0 or now))

    def _left(self, now: float) -> float | None:
        rate = self._rate(now)
        return (self.total - self.n) / rate if self.total and rate > 0 else None

    def update(self, k: int = 1) -> None:
        now = time.time()
        if self._t0 is None:  # the rate counts from the first unit done: start-up is not training
            self._t0, self._n0 = now, self.n
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        done, elapsed = self.n - self._n0, now - self._t0
        if self._estimate and done > 0 and (done >= self.ESTIMATE_AFTER[0] or elapsed >= self.ESTIMATE_AFTER[1]):
            self._estimate = False
            left = self._left(now)
            if left is not None and left >= self.WORTH_SAYING and elapsed > 0:
                line = (f"{self.desc}: about {_duration(left)} to go at {self._rate(now):,.3g} {self.unit}/s "
                        f"({self.n:,} of {self.total:,})")
                if self._hint and left > self.LONG:
                    line += f"; {self._hint}"
                self._print(line)
        if not self._tty and self.every and now - self._last_line >= self.every:
            self._last_line = now
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain progress line: count, share, rate, elapsed, remaining, live metrics."""
        now = time.time() if now is None else now
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        left = self._left(now)
        metrics = " ".join(f"{k}={v}" for k, v in self._postfix.items())
        return (f"{self.desc} {self.unit}={self.n:,}{f'/{self.total:,}' if self.total else ''}{share} "
                f"{self._rate(now):,.3g} {self.unit}/s elapsed {_duration(now - (self._t0 or now))}"
                + (f" left {_duration(left)}" if left is not None else "") + (f" | {metrics}" if metrics else ""))

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def set_postfix(self, postfix: dict[str, str], refresh: bool = False) -> None:
        if self._bar is not None:
            self._bar.set_postfix(postfix, refresh=refresh)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _init_wandb(mode: str, run_dir: Path, project: str, entity: str | None, name: str,
                config: dict[str, Any], run_id: str | None) -> Any:
    version = ""
    try:
        import wandb

        version = str(getattr(wandb, "__version__", ""))
        timeout = float(os.environ.get("RLGEN_WANDB_INIT_TIMEOUT", "30"))
        settings = wandb.Settings(init_timeout=timeout, console="off", silent=True, x_disable_stats=True)
        # a resumed run continues its own W&B run (the id its checkpoint keeps), so its charts do not split
        run = wandb.init(mode=mode, dir=str(run_dir), project=project, entity=entity, name=name, config=config,
                         group=name, settings=settings, reinit="create_new", id=run_id,
                         resume="allow" if run_id else None)
        # Every chart's x axis is the run's own step, logged in each row: W&B's row counter would merge the rows
        # that share a step (the episodes of several environments ending together), keeping only the last.
        run.define_metric("step")
        run.define_metric("*", step_metric="step")
        return run
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
            return _init_wandb("offline", run_dir, project, entity, name, config, run_id)
        warnings.warn(f"W&B init failed ({first}); logging to the local run folder only", stacklevel=3)
        return None


def _trim_metrics(path: Path, last_step: int) -> int:
    """Drop the rows after ``last_step``; return the last step the file held before (-1 for none)."""
    kept, last_held = [], -1
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError):
            continue  # a line cut short by a kill
        last_held = max(last_held, step)
        if step <= last_step:
            kept.append(line)
    atomic_write_bytes(path, ("\n".join(kept) + ("\n" if kept else "")).encode())
    return last_held


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
