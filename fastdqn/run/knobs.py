"""Knobs: a config field that declares, in one place, what the CLI and the validation read.

``field: int = knob(32, help="...", at_least=1)`` is a dataclass field whose metadata holds its
flag and help, its range or choices and whether a resumed run may change it. The annotation
gives its type (``int | None``: an int or None). ``fastdqn train``'s flags, ``validate()``'s
single-field checks, ``RESUMABLE`` and the ``--resume`` help are all made from these.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

METADATA_KEY = "fastdqn.knob"
NAME_FLAG = "--<name>"  # the default flag: the field's name with dashes
KINDS = {"bool": bool, "int": int, "float": float, "str": str, "tuple": tuple}


@dataclass(frozen=True)
class Knob:
    help: str | None  # the flag's help; "{default}" shows the field's default, "{default:,}" with separators
    flag: str | None  # a valued field's flag; None: set by no flag of its own
    switches: dict  # a bool's flags and their helps: "--no-x" sets False, any other True
    at_least: float | None
    above: float | None
    at_most: float | None
    below: float | None
    choices: tuple | None  # the values the config takes, and the flag's choices
    flag_choices: tuple | None  # the flag's choices where the config takes more (a torch.device, "cuda:1")
    accepts: tuple | None  # the types the config takes where the annotation says less (a PathLike path)
    expect: str | None  # what a wrong type is told to be, with ``accepts``
    metavar: str | None
    resumable: bool  # a resumed run may change it (it does not define the run)


def knob(default, help=None, *, flag=NAME_FLAG, switches=None, at_least=None, above=None, at_most=None, below=None,
         choices=None, flag_choices=None, accepts=None, expect=None, metavar=None, resumable=False):
    """A dataclass field with its knob in the metadata (see the module docstring)."""
    if (at_least is not None and above is not None) or (at_most is not None and below is not None):
        raise TypeError("knob: expected one lower and one upper bound at most, got both kinds of one")
    spec = Knob(help, flag, dict(switches or {}), at_least, above, at_most, below, choices, flag_choices, accepts,
                expect, metavar, resumable)
    return field(default=default, metadata={METADATA_KEY: spec})


def knob_of(f: dataclasses.Field) -> Knob:
    if METADATA_KEY not in f.metadata:
        raise LookupError(f"{f.name}: expected a field declared with knob(), got a plain field")
    return f.metadata[METADATA_KEY]


def kind_of(f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, whether None is allowed) from the annotation, a string under postponed annotations."""
    base, _, rest = str(f.type).partition(" | ")
    if base not in KINDS or rest not in ("", "None"):
        raise TypeError(f"{f.name}: expected an annotation of {sorted(KINDS)}, optionally '| None', got {f.type!r}")
    return KINDS[base], rest == "None"


def _show(bound) -> str:
    """2**63 reads as 2**63, other bounds as written."""
    if isinstance(bound, int) and bound > 2**32 and bound & (bound - 1) == 0:
        return f"2**{bound.bit_length() - 1}"
    return f"{bound:g}"


def expectation(f: dataclasses.Field) -> str:
    """What a wrong type is told: "an integer >= 1 or None", "a number in [0, 1]", "a str"."""
    k, (kind, optional) = knob_of(f), kind_of(f)
    if k.expect is not None:
        want = k.expect
    elif kind in (int, float):
        noun = "an integer" if kind is int else "a number"
        low = k.at_least if k.above is None else k.above
        high = k.at_most if k.below is None else k.below
        if low is not None and high is not None:
            opening, closing = "[" if k.above is None else "(", "]" if k.below is None else ")"
            want = f"{noun} in {opening}{_show(low)}, {_show(high)}{closing}"
        else:  # open-ended: a float says it must be finite (NaN and inf are never meant)
            want = noun if kind is int else "a finite number"
            if low is not None:
                want += f" {'>=' if k.above is None else '>'} {_show(low)}"
            elif high is not None:
                want += f" {'<=' if k.below is None else '<'} {_show(high)}"
    else:
        want = {bool: "a bool", str: "a str", tuple: "a tuple"}[kind]
    return want + (" or None" if optional else "")


def check_field(f: dataclasses.Field, value) -> None:
    """The field's own rule: TypeError for a wrong type, ValueError for a value out of its range or
    choices, each "name: expected ..., got ...". Rules across fields are the config's."""
    k, (kind, optional) = knob_of(f), kind_of(f)
    if value is None and optional:
        return
    if k.accepts is not None:
        right_type = isinstance(value, k.accepts)
    elif kind is float:
        right_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        right_type = isinstance(value, int) and not isinstance(value, bool)
    elif kind is tuple:  # a list of names: the config's own code reads and checks it
        right_type = True
    else:
        right_type = isinstance(value, kind)
    if not right_type:
        raise TypeError(f"{f.name}: expected {expectation(f)}, got {value!r}")
    if kind in (int, float) and not _in_range(k, value):
        raise ValueError(f"{f.name}: expected {expectation(f)}, got {value!r}")
    if k.choices is not None and value not in k.choices:
        raise ValueError(f"{f.name}: expected one of {k.choices}, got {value!r}")


def _in_range(k: Knob, value) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return not ((k.at_least is not None and value < k.at_least) or (k.above is not None and value <= k.above) or
                (k.at_most is not None and value > k.at_most) or (k.below is not None and value >= k.below))


def flags_of(f: dataclasses.Field) -> list[str]:
    """The field's own flags, in declaration order; [] for a field no flag of its own sets."""
    k, (kind, _) = knob_of(f), kind_of(f)
    if kind is bool:  # a bool's flags are its switches
        return list(k.switches)
    return [] if k.flag is None else [k.flag.replace("<name>", f.name.replace("_", "-"))]


def argparse_arguments(f: dataclasses.Field) -> list[tuple[str, dict]]:
    """(flag, keyword arguments of ``add_argument``) for each of the field's flags. Every default
    is None: the preset decides what a flag not given is."""
    k, (kind, _) = knob_of(f), kind_of(f)
    base = dict(dest=f.name, default=None)
    if kind is bool:
        return [(flag, base | dict(action="store_const", const=not flag.startswith("--no-"), help=text))
                for flag, text in k.switches.items()]
    if k.help is None and flags_of(f):
        raise TypeError(f"{f.name}: expected a help text for {flags_of(f)[0]}, got none")
    kw = base | dict(help=k.help.format(default=f.default) if k.help else None)
    kw |= dict(nargs="+") if kind is tuple else dict(type=kind)  # a list of str
    if k.flag_choices or k.choices:
        kw["choices"] = list(k.flag_choices or k.choices)
    if k.metavar:
        kw["metavar"] = k.metavar
    return [(flag, kw) for flag in flags_of(f)]
