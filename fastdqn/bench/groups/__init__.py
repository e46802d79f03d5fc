"""Bench groups: each module's ``specs(cfg)`` returns its TableSpecs / ValuesSpecs."""

from __future__ import annotations

import importlib

from ..config import GROUPS, BenchConfig


def specs(group: str, cfg: BenchConfig) -> list:
    """All tables of one group (imported on demand: a group costs nothing until asked). A group
    whose module fails to import raises: a broken module must never read as "not available"."""
    if group not in GROUPS:
        raise ValueError(f"group: expected one of {', '.join(GROUPS)}, got {group!r}")
    return list(importlib.import_module(f"{__name__}.{group}").specs(cfg))
