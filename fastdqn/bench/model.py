"""The bench data model: cases to time, measured rows, tables, the report.

A `Case` is one workload (a zero-argument callable made by `setup()`); the
same cases feed the pytest-benchmark files in bench/ and the CLI timer, so
the work being measured is defined once. Tables serialise to JSON and Markdown.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

SCHEMA_VERSION = 1


@dataclass
class Case:
    """One row to time. `setup()` builds inputs once and returns the callable;
    one call of it does `items` units of work (frames, samples, steps)."""

    name: str
    setup: Callable[[], Callable[[], Any]] | None
    items: int = 1
    role: str = "fastdqn"  # "baseline" | "fastdqn" | "reference"
    note: str = ""
    skip: str | None = None  # why this row is not available here
    # Filled after setup by cases that compare outputs (e.g. "max |diff|").
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Short id for pytest parametrisation."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:48]

    @classmethod
    def unavailable(cls, name: str, why: str, role: str = "fastdqn") -> "Case":
        return cls(name, None, role=role, skip=why)


@dataclass
class TableSpec:
    """A comparison: rows measured side by side against one baseline row."""

    id: str
    group: str
    title: str
    unit: str  # what one item is, e.g. "frame", "sample(32)", "step"
    cases: list[Case]
    notes: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Case:
        for case in self.cases:
            if case.role == "baseline":
                return case
        raise ValueError(f"table {self.id!r} has no baseline row")


@dataclass
class ValuesSpec:
    """A table of computed values (no timing), e.g. bytes per transition."""

    id: str
    group: str
    title: str
    build: Callable[[], "Table"]


@dataclass
class Row:
    name: str
    role: str
    median_s: float | None = None  # seconds per item
    q1_s: float | None = None
    q3_s: float | None = None
    # Speed-up vs the baseline (baseline time / this time; > 1 is faster),
    # median and IQR of the per-round paired ratios.
    ratio: float | None = None
    ratio_q1: float | None = None
    ratio_q3: float | None = None
    rounds: int = 0
    calls_per_round: int = 0
    note: str = ""
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    id: str
    group: str
    title: str
    kind: str  # "timing" (rows of Row) or "values" (free-form cells)
    unit: str = ""
    baseline: str = ""
    rows: list[Row] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # for "values" tables
    formats: list[str] = field(default_factory=list)  # per column: "text" | "bytes" | "int"
    cells: list[list[Any]] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    elapsed_s: float = 0.0
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)
