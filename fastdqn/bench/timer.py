"""Side-by-side timing of one TableSpec.

Rows of a table are timed in interleaved rounds (every row once per round,
in rotating order) so that machine noise hits all of them alike; the ratio
of a row is the median of its per-round ratios to the baseline.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .model import Case, Row, Table, TableSpec


@dataclass
class Budget:
    rounds: int = 15  # timed rounds per row
    round_s: float = 0.05  # target time per row per round
    max_calls: int = 10_000


def settle_allocator() -> None:
    """Put glibc's malloc in the state a training process reaches after its first large free.

    glibc serves blocks above its mmap threshold (128 KiB at start) with fresh mmaps, so every
    such allocation page-faults; freeing one raises the threshold to its size (up to 32 MiB) and
    later ones come from the heap. The book chapter's baselines allocate MBs per call (np.array of
    float32 stacks: 3.6 MB per sample(32)), so their time swung 7x with whatever an earlier
    table happened to free (measured: 4.6 ms cold, 0.66 ms warm). Freeing one 30 MiB block
    first makes every table start from the warm state, as a real training loop runs.
    """
    block = np.ones(30 << 20, np.uint8)  # under glibc's 32 MiB cap on the dynamic threshold
    del block


def cuda_sync() -> None:
    """Wait for the GPU work queued so far, so that each row pays for its own kernels (CUDA runs
    asynchronously: unsynced, a row's backlog is timed in the next row). A no-op unless this
    process has initialised CUDA."""
    torch = sys.modules.get("torch")  # never import torch only to find out it is not in use
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _calls_for(fn: Callable[[], Any], budget: Budget) -> int:
    """Calls per round so that a round lasts about `round_s` (at least 1)."""
    cuda_sync()
    t0 = time.perf_counter()
    fn()
    cuda_sync()
    dt = time.perf_counter() - t0
    if dt <= 0:
        return budget.max_calls
    return int(max(1, min(budget.max_calls, budget.round_s // dt)))


def _quartiles(x: np.ndarray) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return float(med), float(q1), float(q3)


def measure(spec: TableSpec, budget: Budget, log: Callable[[str], None] = lambda s: None) -> Table:
    t_start = time.perf_counter()
    table = Table(
        id=spec.id, group=spec.group, title=spec.title, kind="timing", unit=spec.unit,
        baseline=spec.baseline.name, notes=list(spec.notes), extra_columns=list(spec.extra_columns),
    )
    live: list[tuple[Case, Callable[[], Any], int]] = []
    rows: dict[str, Row] = {}
    for case in spec.cases:
        row = Row(case.name, case.role, note=case.note, skipped=case.skip)
        rows[case.name] = row
        if case.skip is not None:
            continue
        log(f"{spec.id}: setting up {case.name}")
        try:
            fn = case.setup()
            fn()  # warm-up: JIT, caches, lazy allocations
            calls = _calls_for(fn, budget)
        except Exception as exc:  # a broken row must not sink the whole report
            row.skipped = f"failed: {type(exc).__name__}: {exc}"
            continue
        row.extra = dict(case.extra)
        row.calls_per_round = calls
        live.append((case, fn, calls))

    times = {case.name: [] for case, _, _ in live}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # collections would land in random rows
    try:
        for r in range(budget.rounds):
            shift = r % max(1, len(live))
            for case, fn, calls in live[shift:] + live[:shift]:
                cuda_sync()
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                cuda_sync()
                times[case.name].append((time.perf_counter() - t0) / (calls * case.items))
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()

    base = np.asarray(times.get(spec.baseline.name, []), dtype=float)
    for case, _, calls in live:
        row = rows[case.name]
        t = np.asarray(times[case.name], dtype=float)
        row.median_s, row.q1_s, row.q3_s = _quartiles(t)
        row.rounds = len(t)
        if base.size == t.size and base.size:
            row.ratio, row.ratio_q1, row.ratio_q3 = _quartiles(base / t)
    table.rows = [rows[c.name] for c in spec.cases]
    table.elapsed_s = time.perf_counter() - t_start
    return table
