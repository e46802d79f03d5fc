"""Each knob is declared once, on its TrainConfig field (fastdqn.run.knobs): the train flags, their
help, the validation and RESUMABLE are made from the declarations and cannot drift from them."""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import pytest

from fastdqn import cli
from fastdqn.run import resume
from fastdqn.run.config import RESUMABLE, TrainConfig
from fastdqn.run.knobs import argparse_arguments, check_field, expectation, flags_of, kind_of, knob, knob_of

FIELDS = dataclasses.fields(TrainConfig)
NOT_KNOBS = {"-h", "--help", "--preset", "--resume", "--ray"}  # the run's, not one field's


def train_parser():
    return next(a for a in cli.build_parser()._subparsers._group_actions[0].choices.values()
                if a.prog.endswith("train"))


def squeezed(text: str) -> str:
    """Without whitespace: argparse wraps the help at spaces and hyphens."""
    return "".join(text.split())


def test_every_field_is_a_knob_whose_default_passes_its_own_rule():
    for f in FIELDS:
        knob_of(f), kind_of(f)  # raise for a plain field or an annotation the checks do not know
        check_field(f, f.default)


def test_every_train_flag_is_a_declared_one_with_its_help_type_and_choices(capsys):
    actions = {flag: a for a in train_parser()._actions for flag in a.option_strings}
    declared = {}
    for f in FIELDS:
        for flag, kwargs in argparse_arguments(f):
            declared[flag] = f
            a = actions[flag]
            assert (a.dest, a.default, a.help) == (f.name, None, kwargs["help"]), flag  # None: the preset decides
            assert a.type == kwargs.get("type") and a.choices == kwargs.get("choices"), flag
            assert a.help and "{default" not in a.help, flag
    assert set(actions) - set(declared) == NOT_KNOBS
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    shown = squeezed(capsys.readouterr().out)
    for flag, f in declared.items():
        assert squeezed(actions[flag].help) in shown and flag in shown, flag
    assert "(default:10,000)" in shown and "(default:0.0001)" in shown  # the Pong preset's, formatted


def test_each_flag_sets_its_field_to_a_value_of_its_type():
    parser = cli.build_parser()
    for f in cli.KNOB_FIELDS:
        kind, k = kind_of(f)[0], knob_of(f)
        for flag, kwargs in argparse_arguments(f):
            if kind is bool:
                argv, want = [flag], kwargs["const"]
            elif kind is tuple:
                argv, want = [flag, "a", "b"], ["a", "b"]
            else:
                text = (k.flag_choices or k.choices or ["x"])[-1] if kind is str else "1"
                argv, want = [flag, text], kind(text)
            assert getattr(parser.parse_args(["train", *argv]), f.name) == want, flag


def test_flags_given_reach_the_config(monkeypatch):
    import fastdqn.run.estimate
    import fastdqn.run.trainer

    got = []  # the config main() would train, not trained
    monkeypatch.setattr(fastdqn.run.trainer, "train", lambda cfg: got.append(cfg) or SimpleNamespace(interrupted=None, frames=1))
    monkeypatch.setattr(fastdqn.run.estimate, "cpu_notice", lambda cfg: None)
    assert cli.main(["train", "--preset", "cartpole", "--lr", "0.5", "--threads", "2", "--pool", "grey",
                     "--no-progress", "--no-compile", "--gym-packages", "math", "json"]) == 0
    cfg, = got
    assert (cfg.lr, cfg.torch_threads, cfg.pool, cfg.progress, cfg.compile) == (0.5, 2, "grey", False, False)
    assert cfg.gym_packages == ["math", "json"] and cfg.env_id == "CartPole-v1"  # the rest: the preset's


def _outside_and_inside(f):
    """(value just outside, the bound itself or just inside) for each declared bound of a number field."""
    k, kind = knob_of(f), kind_of(f)[0]
    step = (lambda v, d: v + d) if kind is int else (lambda v, d: math.nextafter(v, d * math.inf))
    for bound, outward, closed in ((k.at_least, -1, True), (k.above, -1, False), (k.at_most, 1, True),
                                   (k.below, 1, False)):
        if bound is not None:
            yield (step(bound, outward), bound) if closed else (kind(bound), step(bound, -outward))


NUMBERS = [f for f in FIELDS if kind_of(f)[0] in (int, float)]


@pytest.mark.parametrize("f", NUMBERS, ids=[f.name for f in NUMBERS])
def test_each_declared_range_refuses_a_value_just_outside(f):
    pairs = list(_outside_and_inside(f))
    assert pairs or kind_of(f)[0] is float, f"{f.name}: an integer knob without a range"
    want = re.escape(f"{f.name}: expected {expectation(f)}, got ")
    for outside, inside in pairs:
        check_field(f, inside)
        with pytest.raises(ValueError, match="^" + want):
            TrainConfig(**{f.name: outside}).validate()  # the field's own rule before any rule across fields
    if kind_of(f)[0] is float:
        for never in (math.nan, math.inf):
            with pytest.raises(ValueError, match="^" + want):
                check_field(f, never)
    with pytest.raises(TypeError, match="^" + want):
        check_field(f, "1" if kind_of(f)[0] is float else 1.0)


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_none_and_wrong_types_follow_the_annotation(f):
    kind, optional = kind_of(f)
    if kind is tuple:  # gym_packages: EnvSpec checks it (env_spec())
        return
    if optional:
        check_field(f, None)
    else:
        with pytest.raises(TypeError, match=f"^{f.name}: expected .*, got None$"):
            check_field(f, None)
    wrong = 1 if kind is bool else object()
    with pytest.raises(TypeError, match=f"^{f.name}: expected .*, got "):
        check_field(f, wrong)
    if knob_of(f).choices:
        with pytest.raises(ValueError, match=rf"^{f.name}: expected one of \(.*\), got 'no-such-choice'$"):
            check_field(f, "no-such-choice")


def test_resumable_is_the_declared_set_and_resume_reads_it():
    assert RESUMABLE == tuple(f.name for f in FIELDS if knob_of(f).resumable)
    assert resume.RESUMABLE is RESUMABLE
    flagged = {f.name for f in FIELDS if flags_of(f)}
    assert set(RESUMABLE) - flagged == {"ray_address"}  # set by --ray ADDRESS
    assert cli.resumable_flags() == [flag for f in FIELDS if f.name in RESUMABLE
                                     for flag in (flags_of(f) or ["--ray ADDRESS"])]


@dataclasses.dataclass
class Probe:
    count: int | None = knob(None, at_least=2, at_most=5, help="a count (default: {default})")
    rate: float = knob(0.5, above=0, below=1, flag="--the-rate", help="a rate (default: {default:g})")
    name: str = knob("a", choices=("a", "b"), help="a name", resumable=True)
    on: bool = knob(True, switches={"--no-on": "turn it off", "--on": "turn it on"})  # "--no-" sets False
    quiet: bool = knob(False)
    limit: float = knob(1.0, below=2, help="a limit")


def test_a_declaration_makes_its_flags_help_and_checks():
    count, rate, name, on, quiet, limit = dataclasses.fields(Probe)
    assert [expectation(f) for f in (count, rate, name, on, limit)] == [
        "an integer in [2, 5] or None", "a number in (0, 1)", "a str", "a bool", "a finite number < 2"]
    assert [flags_of(f) for f in (count, rate, name, on, quiet)] == [["--count"], ["--the-rate"], ["--name"],
                                                                     ["--no-on", "--on"], []]
    assert argparse_arguments(count) == [("--count", dict(dest="count", default=None, help="a count (default: None)",
                                                          type=int))]
    assert argparse_arguments(rate)[0][1]["help"] == "a rate (default: 0.5)"
    assert argparse_arguments(name)[0][1]["choices"] == ["a", "b"] and knob_of(name).resumable
    assert [(flag, kw["const"]) for flag, kw in argparse_arguments(on)] == [("--no-on", False), ("--on", True)]
    for f, bad, error in ((count, 6, ValueError), (count, 1, ValueError), (count, True, TypeError),
                          (rate, 0, ValueError), (rate, 1.0, ValueError), (name, "c", ValueError),
                          (limit, 2, ValueError), (limit, -math.inf, ValueError)):
        with pytest.raises(error, match=f"^{f.name}: expected "):
            check_field(f, bad)


def test_declarations_that_cannot_be_checked_are_refused():
    with pytest.raises(TypeError, match="one lower and one upper bound"):
        knob(1, at_least=0, above=0)

    @dataclasses.dataclass
    class Wrong:
        plain: int = 0
        listed: list | None = knob(None)

    plain, listed = dataclasses.fields(Wrong)
    with pytest.raises(LookupError, match="plain: expected a field declared with knob()"):
        knob_of(plain)
    with pytest.raises(TypeError, match="listed: expected an annotation of"):
        kind_of(listed)
