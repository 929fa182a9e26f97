"""Property test over every command's command line (hypothesis): bad values are refused before anything runs.

For every numeric flag of every command, values outside the flag's accepted range (``rlgen.cli.LIMITS`` and
the command's own ``Args.LIMITS``), NaN, ±inf, huge numbers and text that is no number end in exit code 2,
one line beginning ``error:``, no traceback and no file written; unknown choices likewise. Values inside the
range parse and pass the range check.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlgen import cli

COMMANDS = ["rlgen.rl.dqn", "rlgen.rl.qlearning", "rlgen.rl.reinforce", "rlgen.gen.vae", "rlgen.gen.gan",
            "rlgen.gen.pixelcnn", "rlgen.gen.generate", "rlgen.selfsup.simclr", "rlgen.selfsup.moco",
            "rlgen.selfsup.stdim", "rlgen.selfsup.supervised", "rlgen.selfsup.probe", "rlgen.selfsup.atari_probe",
            "rlgen.data.show"]
# String flags whose value must name something that exists (a bogus one is refused before any work).
NAMED = {"rlgen.rl.dqn": ["env"], "rlgen.rl.qlearning": ["env"], "rlgen.rl.reinforce": ["env"],
         "rlgen.gen.vae": ["data"], "rlgen.gen.gan": ["data"], "rlgen.gen.pixelcnn": ["data"],
         "rlgen.selfsup.simclr": ["data", "backbone"], "rlgen.selfsup.moco": ["data", "backbone"],
         "rlgen.selfsup.supervised": ["data", "backbone"], "rlgen.selfsup.stdim": ["data"],
         "rlgen.selfsup.atari_probe": ["game"], "rlgen.data.show": ["name"]}
CASES = {"bad": 0, "valid": 0, "choice": 0}


def _numeric_fields(mod_name: str) -> list[tuple[str, type, cli.Range]]:
    cls = importlib.import_module(mod_name).Args
    hints = typing.get_type_hints(cls)
    own = getattr(cls, "LIMITS", {})
    out = []
    for f in dataclasses.fields(cls):
        base, _ = cli._unwrap_optional(hints[f.name])
        if base in (int, float):
            default = cli._COUNT if base is int else cli._POSITIVE
            out.append((f.name, base, own.get(f.name) or cli.LIMITS.get(f.name) or default))
    return out


FIELDS = [(m, *f) for m in COMMANDS for f in _numeric_fields(m)]


def _bad_values(base: type, rng: cli.Range) -> list[str]:
    """Values outside ``rng`` (or no number at all) for a flag of type ``base``."""
    vals = ["nan", "inf", "-inf", "1e400", "abc", "", "0x10"] if base is float else ["1.5", "abc", "", "nan", "1e5"]
    if base is int:
        vals += [str(10**30), str(-(10**30)), str(2**63)]
        if rng.lo > -cli.BIG:
            vals.append(str(int(math.ceil(rng.lo)) - (0 if rng.open_lo else 1)))
        if rng.hi < cli.BIG:
            vals.append(str(int(rng.hi) + 1))
    else:
        vals += ["1e300", "-1e300"]
        if rng.lo > -cli.BIG:
            vals += [repr(rng.lo) if rng.open_lo else repr(rng.lo - max(1e-3, abs(rng.lo) * 1e-3)), "-1e9"]
        if rng.hi < cli.BIG:
            vals.append(repr(rng.hi) if rng.open_hi else repr(rng.hi + max(1e-3, abs(rng.hi) * 1e-3)))
    return vals


def _expect_refused(mod_name: str, argv: list[str], tmp_path, capsys, monkeypatch) -> str:
    mod = importlib.import_module(mod_name)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    before = sorted(p.name for p in work.rglob("*"))
    with pytest.raises(SystemExit) as exc:
        cli.run(mod.main, mod.Args, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2, (argv, exc.value.code, err)
    assert len(err) == 1 and err[0].startswith("error:"), (argv, err)
    assert "Traceback" not in err[0]
    assert sorted(p.name for p in work.rglob("*")) == before, argv
    return err[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_numbers_exit_2_one_line_nothing_written(data, tmp_path, capsys, monkeypatch):
    mod_name, name, base, rng = data.draw(st.sampled_from(FIELDS), label="field")
    value = data.draw(st.sampled_from(_bad_values(base, rng)), label="value")
    flag = "--" + name.replace("_", "-")
    line = _expect_refused(mod_name, [f"{flag}={value}"], tmp_path, capsys, monkeypatch)
    assert flag in line, line
    CASES["bad"] += 1


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_values_in_range_are_accepted(data):
    mod_name, name, base, rng = data.draw(st.sampled_from(FIELDS), label="field")
    lo, hi = max(rng.lo, -1e6), min(rng.hi, 1e6)
    if base is int:
        value = data.draw(st.integers(int(math.ceil(lo)) + (1 if rng.open_lo else 0),
                                      int(math.floor(hi)) - (1 if rng.open_hi else 0)))
    else:
        value = data.draw(st.floats(lo, hi, exclude_min=rng.open_lo, exclude_max=rng.open_hi,
                                    allow_nan=False, allow_infinity=False))
    mod = importlib.import_module(mod_name)
    args = cli.parse(mod.Args, [f"--{name.replace('_', '-')}={value}"])
    assert getattr(args, name) == value
    cli.check_numbers(args)
    CASES["valid"] += 1


CHOICES = [(m, f.name) for m in COMMANDS for f in dataclasses.fields(importlib.import_module(m).Args)
           if typing.get_origin(cli._unwrap_optional(typing.get_type_hints(importlib.import_module(m).Args)[f.name])[0])
           is typing.Literal] + [(m, n) for m, names in NAMED.items() for n in names]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_unknown_choices_exit_2_one_line_nothing_written(data, tmp_path, capsys, monkeypatch):
    mod_name, name = data.draw(st.sampled_from(CHOICES), label="flag")
    word = data.draw(st.from_regex(r"\Abogus[a-z]{1,8}\Z"), label="value")
    flag = "--" + name.replace("_", "-")
    _expect_refused(mod_name, [flag, word], tmp_path, capsys, monkeypatch)
    CASES["choice"] += 1


def test_the_named_flags_exist():
    for mod_name, names in NAMED.items():
        fields = {f.name for f in dataclasses.fields(importlib.import_module(mod_name).Args)}
        assert set(names) <= fields, (mod_name, set(names) - fields)


def test_every_command_has_numeric_flags_checked():
    """The tables cover every numeric flag: none falls through to a default that contradicts its default value."""
    for mod_name in COMMANDS:
        cls = importlib.import_module(mod_name).Args
        for name, _base, rng in _numeric_fields(mod_name):
            default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
            if default is not None and not isinstance(default, bool):
                assert default in rng, f"{mod_name} --{name} default {default} outside {rng}"
