"""Run groups of specs into a Report (the CLI's engine)."""

from __future__ import annotations

import gc
import time
from typing import Callable, Iterable

from . import groups
from .config import GROUPS, BenchConfig
from .machine import machine_info
from .model import Report, Table, TableSpec, ValuesSpec
from .timer import measure, settle_allocator


def run_spec(spec, cfg: BenchConfig, log: Callable[[str], None]) -> Table:
    if isinstance(spec, ValuesSpec):
        t0 = time.perf_counter()
        log(f"{spec.id}: computing")
        try:
            table = spec.build()
        except Exception as exc:  # noqa: BLE001 - one broken table must not sink the report
            table = Table(spec.id, spec.group, spec.title, kind="values", columns=["error"], formats=["text"],
                          cells=[[f"failed: {type(exc).__name__}: {exc}"]])
        table.elapsed_s = time.perf_counter() - t0
        return table
    if isinstance(spec, TableSpec):
        return measure(spec, cfg.budget, log)
    raise TypeError(f"expected TableSpec or ValuesSpec, got {type(spec).__name__}")


def run_groups(cfg: BenchConfig, names: Iterable[str] = GROUPS,
               log: Callable[[str], None] = lambda s: None) -> Report:
    t0 = time.perf_counter()
    if cfg.torch_threads > 0:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    settle_allocator()
    report = Report(machine=machine_info(), config=cfg.to_dict())
    for name in names:
        for spec in groups.specs(name, cfg):
            report.tables.append(run_spec(spec, cfg, log))
            gc.collect()  # drop the previous table's buffers before the next one
    report.elapsed_s = time.perf_counter() - t0
    return report
