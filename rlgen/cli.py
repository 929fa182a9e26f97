"""Turn an ``Args`` dataclass into a command line.

Each field becomes ``--field-name``; the string literal written right under a field
(its attribute docstring) becomes its ``--help`` text. Booleans get ``--flag/--no-flag``,
``Literal[...]`` fields get choices. :func:`run` parses, calls ``main(args)`` and maps
:class:`~rlgen.errors.UsageError` to one line on stderr and exit code 2; a run tracker that an
exception leaves open is failed with the command's exit code (:func:`rlgen.track.fail_open_trackers`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rlgen.errors import Stopped, UsageError
from rlgen.track import GIVEN, exit_code_for, fail_open_trackers, resolve_wandb_mode
from rlgen.version import __version__

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (and its bases), read from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric flag accepts: ``lo``..``hi``, each end closed unless marked open."""

    lo: float
    hi: float
    open_lo: bool = False
    open_hi: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.lo if self.open_lo else value >= self.lo
        below = value < self.hi if self.open_hi else value <= self.hi
        return above and below

    def describe(self, integer: bool) -> str:
        kind = "integer" if integer else "number"
        if self.hi >= BIG and self.lo == 0:
            return f"a positive {kind}" if self.open_lo else f"{'an' if integer else 'a'} {kind} ≥ 0"
        if self.hi >= BIG and self.lo == 1 and integer:
            return f"a positive {kind}"
        article = "an" if integer else "a"
        if self.hi >= BIG:
            return f"{article} {kind} {'>' if self.open_lo else '≥'} {self.lo:g}"
        left, right = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
        return f"{article} {kind} in {left}{self.lo:g}, {self.hi:g}{right}"


# Ceiling of every count and size: larger values only ever mean a typo (and overflow int32 indices).
BIG = 2**31 - 1
_COUNT, _COUNT0 = Range(1, BIG), Range(0, BIG)
_POSITIVE, _NONNEG = Range(0, BIG, open_lo=True), Range(0, BIG)
_UNIT, _UNIT_OPEN = Range(0, 1), Range(0, 1, open_hi=True)
# One accepted range per flag name, the same in every command (one name, one concept). Integers not listed
# count something and must be ≥ 1; floats not listed must be finite and > 0. A command's ``Args.LIMITS``
# may override a name where its meaning is narrower.
LIMITS: dict[str, Range] = {
    **{n: _COUNT0 for n in ("seed", "data_seed", "split_seed", "checkpoint_every", "learning_starts", "threads",
                            "iwae_k", "fid_every", "fid_samples", "inception_samples", "val_size", "interpolate",
                            "kl_warmup", "shift", "samples", "completions", "nrow")},
    **{n: _NONNEG for n in ("weight_decay", "lr_end", "entropy_coef", "collapse_threshold", "max_grad_norm",
                            "lr_power", "r1", "progress_every")},
    **{n: _UNIT for n in ("gamma", "eps_start", "eps_end", "eps_decay", "exploration_fraction", "eval_epsilon")},
    **{n: _UNIT_OPEN for n in ("momentum", "ema", "warmup", "beta1", "beta2")},
    "seed": Range(0, 2**32 - 1),
    "tau": Range(0, 1, open_lo=True),
    "label_smoothing": Range(0, 1, open_lo=True),
    "solve_threshold": Range(-BIG, BIG),
}


def check_numbers(args: Any) -> None:
    """Every numeric field of dataclass ``args`` that is set lies in its :class:`Range`; else a UsageError
    naming the flag, the value and the range. Booleans and ``None`` (filled in later) are not checked."""
    own: dict[str, Range] = getattr(type(args), "LIMITS", {})
    hints = typing.get_type_hints(type(args))
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        base, _ = _unwrap_optional(hints[f.name])
        if value is None or isinstance(value, bool) or base not in (int, float):
            continue
        rng = own.get(f.name) or LIMITS.get(f.name) or (_COUNT if base is int else _POSITIVE)
        if not isinstance(value, (int, float)) or value not in rng:
            flag = "--" + f.name.replace("_", "-")
            limit = f" no larger than {rng.hi:,g}" if isinstance(value, (int, float)) and value > rng.hi else ""
            raise UsageError(f"{flag} {value!r} must be {rng.describe(base is int)}{limit}")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parser_type(tp: Any, name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if text.lower() in ("none", "null") and optional:
            return None
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {base.__name__}, got {text!r}") from None

    base, optional = _unwrap_optional(tp)
    if base not in (int, float, str):
        raise TypeError(f"field {name}: unsupported type {tp!r}")
    return convert


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default, except where its help already says it or the default is only "not set"
    (``None``: the real default is filled in later, and the help names it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default is None:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Bad flags end in one line naming the flag and what it accepts (argparse's own error prints the whole usage)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser(cls: type, description: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser whose options are the fields of dataclass ``cls``.

    A class may define ``help_defaults()`` returning ``{field: text}`` for fields whose default is filled in
    after parsing (per environment or dataset); ``--help`` then shows that text as the default.
    """
    parser = _Parser(
        prog=prog,
        description=description,
        formatter_class=_DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rlgen {__version__}")
    positional = tuple(getattr(cls, "POSITIONAL", ()))
    docs = field_docs(cls)
    late = cls.help_defaults() if hasattr(cls, "help_defaults") else {}
    hints = typing.get_type_hints(cls)
    own = set(cls.__dict__.get("__annotations__", {}))
    shared = parser.add_argument_group("run folder and logging (shared by every training command)")
    # The algorithm's own flags first, then those it inherits from a shared base.
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        if not f.init:
            continue
        group = parser if f.name in own or not own else shared
        flag = "--" + f.name.replace("_", "-")
        if f.name in positional:  # optional on the line, so a missing one gets the command's own message
            parser.add_argument(f.name, nargs="?", default=f.default, help=docs.get(f.name, ""),
                                metavar=f.name.upper())
            continue
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        helptext = docs.get(f.name, "")
        if f.name in late:
            helptext = f"{helptext} (default: {late[f.name]})".strip()
        base, _ = _unwrap_optional(tp)
        if base is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                               help=helptext)
        elif typing.get_origin(base) is typing.Literal:
            choices = list(typing.get_args(base))
            group.add_argument(flag, dest=f.name, choices=choices, default=default, help=helptext,
                               type=type(choices[0]))
        else:
            group.add_argument(flag, dest=f.name, type=_parser_type(tp, f.name), default=default, help=helptext,
                               metavar=base.__name__.upper())
    return parser


def parse(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None,
          prog: str | None = None) -> T:
    """Parse ``argv`` into an instance of dataclass ``cls``; its ``given`` attribute (see :func:`given_flags`)
    names the fields given on the line, whatever their value (:func:`rlgen.track.given_flags`)."""
    parser = build_parser(cls, description, prog)
    ns = parser.parse_args(argv)
    parser.set_defaults(**dict.fromkeys(vars(ns), _NOT_GIVEN))
    given = frozenset(k for k, v in vars(parser.parse_args(argv)).items() if v is not _NOT_GIVEN)
    args = cls(**vars(ns))  # ranges are checked in run() and by the command's own validation
    object.__setattr__(args, GIVEN, given)
    return args


_NOT_GIVEN = object()


def run(main: Callable[[T], Any], cls: type[T], argv: Sequence[str] | None = None,
        description: str | None = None, prog: str | None = None) -> None:
    """Parse the command line, call ``main``, and exit 2 with one line on bad input.

    A ``--wandb`` mode is checked before ``main`` runs, so a typo costs no data loading and writes nothing.
    Whatever ``main`` raises, trackers it left open are failed with the exit code the command ends with,
    so W&B closes the run as failed.
    """

    args = parse(cls, argv, description, prog)
    try:
        check_numbers(args)
        if "wandb" in {f.name for f in dataclasses.fields(args)}:  # type: ignore[arg-type]
            resolve_wandb_mode(args.wandb)  # type: ignore[attr-defined]
        main(args)
    except BaseException as err:
        fail_open_trackers(exit_code_for(err))
        if isinstance(err, UsageError):
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        if isinstance(err, Stopped):
            print(err, file=sys.stderr)
            raise SystemExit(err.exit_code) from None
        if isinstance(err, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        raise


def describe_default(tables: dict[str, dict[str, Any]], name: str, generic: str = "default",
                     none: str = "none", labels: dict[str, str] | None = None) -> str:
    """A field's defaults from a per-environment (or per-dataset) table in words, for ``--help``: e.g.
    "75,000 for CartPole-v1; 10,000,000 for Atari; 100,000 otherwise". ``generic`` is the row that applies
    elsewhere; ``labels`` renames rows (``{"atari": "Atari"}``); ``none`` is what an unset value means."""
    def show(v: Any) -> str:
        if v is None or v == "":
            return none
        if isinstance(v, bool):
            return "on" if v else "off"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    labels = {"atari": "Atari", **(labels or {})}
    base = tables[generic].get(name)
    by_value: dict[str, list[str]] = {}
    for key, row in tables.items():
        if key != generic and name in row and row[name] != base:
            by_value.setdefault(show(row[name]), []).append(labels.get(key, key))
    parts = [f"{v} for {', '.join(keys)}" for v, keys in by_value.items()]
    if name not in tables[generic]:
        return "; ".join(parts) if parts else none
    return "; ".join([*parts, f"{show(base)} otherwise"]) if parts else show(base)


def int_list(text: str, flag: str, example: str = "128,128") -> tuple[int, ...]:
    """``"32,64"`` → ``(32, 64)``; anything else (empty, non-integer, < 1) is a UsageError naming ``--flag``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"--{flag} {text!r} must be comma-separated positive integers such as {example}")
    return values
