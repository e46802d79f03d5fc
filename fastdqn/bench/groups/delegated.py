"""env and train groups: their cases belong to the trainer's modules.

A provider module exposes `bench_specs(cfg: BenchConfig) -> list[TableSpec]`
built from `fastdqn.bench.model` (Case/TableSpec); this file only finds it, so
the workloads stay next to the code they measure and are defined once.
"""

from __future__ import annotations

import importlib

from ..config import BenchConfig
from ..model import Case, TableSpec

PROVIDERS = {
    "env": ("fastdqn.vecenv", "fastdqn.envs"),
    "train": ("fastdqn.train", "fastdqn.learner"),
}
TITLES = {
    "env": "Env steps/s: seed wrappers vs fastdqn vector path vs ale-py AtariVectorEnv",
    "train": "Training loop: seed-style loop vs fastdqn, agent steps/s after replay start",
}


def provided(group: str, cfg: BenchConfig) -> list[TableSpec] | None:
    """The provider's tables, or None when no provider module has the hook."""
    for name in PROVIDERS[group]:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001
            continue
        hook = getattr(mod, "bench_specs", None)
        if callable(hook):
            return list(hook(cfg))
    return None


def specs_for(group: str, cfg: BenchConfig, fallback=None) -> list[TableSpec]:
    """The provider's tables, else `fallback(cfg)` (ours, over the public API), else a
    table whose only row says why the group is not available."""
    tried = []
    for name in PROVIDERS[group]:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing/broken module means "not available"
            tried.append(f"{name} ({type(exc).__name__})")
            continue
        hook = getattr(mod, "bench_specs", None)
        if callable(hook):
            return list(hook(cfg))
        tried.append(f"{name}.bench_specs missing")
    if fallback is not None:
        return list(fallback(cfg))
    why = "not available: no provider (" + "; ".join(tried) + ")"
    return [TableSpec(group, group, TITLES[group], unit="step",
                      cases=[Case.unavailable(f"{group} group", why, role="baseline")])]
