"""pytest-benchmark glue for the bench suite (not part of the plain test run).

    pytest bench/ --benchmark-only [--bench-mode quick|full|tiny] [--benchmark-json out.json]

Files are named bench_*.py; this conftest collects them itself, so no
`-o python_files=...` is needed (passing it anyway does not duplicate them).
Each file sets GROUP; its test takes a `case` fixture parametrised with that
group's cases from fastdqn.bench.groups, i.e. the same workloads that
`fastdqn bench` times.
"""

from __future__ import annotations

import fnmatch

import pytest

from fastdqn.bench import groups
from fastdqn.bench.config import make_config
from fastdqn.bench.model import Case, TableSpec, ValuesSpec
from fastdqn.bench.timer import settle_allocator


def pytest_addoption(parser):
    parser.addoption("--bench-mode", default="quick", choices=("tiny", "quick", "full"),
                     help="fastdqn bench sizes (default: quick)")


def pytest_collect_file(file_path, parent):
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    patterns = parent.config.getini("python_files")
    if any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        return None  # the default collector already takes it
    return pytest.Module.from_parent(parent, path=file_path)


def pytest_configure(config):
    settle_allocator()  # the same malloc state as `fastdqn bench` (see its docstring)


def _config(config):
    return make_config(config.getoption("--bench-mode"))


def pytest_generate_tests(metafunc):
    group = getattr(metafunc.module, "GROUP", None)
    if group is None:
        return
    specs = groups.specs(group, _config(metafunc.config))
    if "case" in metafunc.fixturenames:
        pairs = [(s, c) for s in specs if isinstance(s, TableSpec) for c in s.cases]
        metafunc.parametrize("spec,case", pairs, ids=[f"{s.id}:{c.key}" for s, c in pairs])
    elif "values_spec" in metafunc.fixturenames:
        vals = [s for s in specs if isinstance(s, ValuesSpec)]
        metafunc.parametrize("values_spec", vals, ids=[s.id for s in vals])


@pytest.fixture
def run_case(benchmark):
    """Time one Case with pytest-benchmark, grouped by its table."""

    def run(spec: TableSpec, case: Case):
        if case.skip is not None:
            pytest.skip(case.skip)
        fn = case.setup()
        benchmark.group = spec.id
        benchmark.extra_info.update(role=case.role, items=case.items, unit=spec.unit, **case.extra)
        benchmark(fn)
        benchmark.extra_info.update(case.extra)  # cases that check outputs fill this in setup
    return run


@pytest.fixture
def record_values(benchmark):
    """Build a values table once and store its cells in the benchmark JSON."""

    def run(spec: ValuesSpec):
        benchmark.group = spec.id
        table = benchmark.pedantic(spec.build, rounds=1, iterations=1)
        benchmark.extra_info.update(columns=table.columns, cells=table.cells)
        return table
    return run
