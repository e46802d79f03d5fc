"""Bench groups: each returns the TableSpecs / ValuesSpecs for a config."""

from __future__ import annotations

from ..config import GROUPS, BenchConfig


def specs(group: str, cfg: BenchConfig) -> list:
    """All tables of one group (imports lazily: a group costs nothing until asked)."""
    if group == "preprocess":
        from . import preprocess as mod
    elif group == "replay":
        from . import replay as mod
    elif group == "loss":
        from . import loss as mod
    elif group == "env":
        from . import env
        from .delegated import provided

        # Ours always (the seed-wrapper row is the baseline); vector rows only when
        # the trainer's hook does not bring its own.
        theirs = provided(group, cfg)
        return [*env.specs(cfg, vector=theirs is None), *(theirs or [])]
    elif group == "train":
        from . import train
        from .delegated import specs_for

        return specs_for(group, cfg, fallback=train.specs)
    else:
        raise ValueError(f"group: expected one of {', '.join(GROUPS)}, got {group!r}")
    return mod.specs(cfg)
