"""`fastdqn bench` plumbing: runs the CLI on tiny sizes and checks the JSON and
Markdown structure. Timings are never asserted here (they live in bench/)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

GROUPS = ("e2e", "preprocess", "replay", "loss", "env", "train", "scale")
TIMING_TABLES = {"preprocess", "replay-sample", "env-wrappers", "train", "overlap", "loss-transfer", "loss-copy", "loss-loop", "loss-compile"}
ROLES = {"baseline", "alternative", "fastdqn", "floor"}


def _launcher() -> list[str]:
    """`fastdqn bench` through the package CLI when it is there, else `python -m fastdqn.bench`."""
    if importlib.util.find_spec("fastdqn.cli") is not None:
        return [sys.executable, "-c", "import sys; from fastdqn.cli import main; sys.exit(main(sys.argv[1:]))",
                "bench"]
    return [sys.executable, "-m", "fastdqn.bench"]


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*_launcher(), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    js, md = out / "bench.json", out / "bench.md"
    proc = _bench("--quick", "--tiny", "--quiet", "--json", str(js), "--markdown", str(md), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(js.read_text()), md.read_text(), proc.stdout


def test_report_header(report):
    data, _, _ = report
    assert data["schema"] == 1
    assert data["config"]["mode"] == "tiny"
    m = data["machine"]
    for key in ("cpu", "cores", "gpu", "torch", "numpy", "python"):
        assert key in m
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert data["elapsed_s"] > 0


def test_every_group_has_a_table(report):
    data, _, _ = report
    assert {t["group"] for t in data["tables"]} == set(GROUPS)
    ids = {t["id"] for t in data["tables"]}
    assert TIMING_TABLES | {"replay-memory", "scale"} <= ids


def test_timing_tables(report):
    data, _, _ = report
    for t in (t for t in data["tables"] if t["kind"] == "timing"):
        roles = [r["role"] for r in t["rows"]]
        assert roles.count("baseline") == 1, t["id"]
        assert set(roles) <= ROLES, t["id"]
        for r in t["rows"]:
            if r["skipped"] is not None:
                assert isinstance(r["skipped"], str) and r["skipped"], (t["id"], r["name"])
                assert r["median_s"] is None
                continue
            assert 0 < r["q1_s"] <= r["median_s"] <= r["q3_s"], (t["id"], r["name"])
            assert r["rounds"] == data["config"]["rounds"] and r["calls_per_round"] >= 1
            base = next(b for b in t["rows"] if b["role"] == "baseline")
            if base["skipped"] is None:
                assert r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"], (t["id"], r["name"])
            for col in t["extra_columns"]:
                assert col in r["extra"], (t["id"], r["name"], col)


def test_chapter_baselines_always_run(report):
    """The baselines need no compiled code (the replay table's, the plain copy, only fastdqn's
    core), so they are measured on any machine."""
    data, _, _ = report
    tables = {t["id"]: t for t in data["tables"]}
    for tid in TIMING_TABLES - {"loss-compile"}:
        base = next(r for r in tables[tid]["rows"] if r["role"] == "baseline")
        assert base["skipped"] is None, (tid, base["skipped"])


def test_memory_table(report):
    data, _, _ = report
    mem = next(t for t in data["tables"] if t["id"] == "replay-memory")
    assert mem["kind"] == "values"
    assert len(mem["formats"]) == len(mem["columns"])
    assert all(len(row) == len(mem["columns"]) for row in mem["cells"])
    chapter = mem["cells"][0]
    assert chapter[1] > 4 * 84 * 84 * 4  # a float32 stack per transition at least


def test_scale_table(report):
    """--tiny: one Ray actor against the local Trainer, without and with learning: rates, each
    mode's ratio to its own local baseline, and who waited."""
    data, _, _ = report
    scale = next(t for t in data["tables"] if t["id"] == "scale")
    assert scale["kind"] == "values" and len(scale["formats"]) == len(scale["columns"])
    names = [row[0] for row in scale["cells"]]
    assert len(names) == 4 and [n.split(":")[1].split(",")[0].strip() for n in names] == [
        "local Trainer.step", "--ray Trainer.step", "local Trainer.step", "--ray Trainer.step"]
    assert names[0].startswith("no learning") and names[2].startswith("learning")
    for row in scale["cells"]:
        assert row[1] > 0 and row[2].endswith("x") and len(row) == len(scale["columns"])
    for base, ray_row in ((scale["cells"][0], scale["cells"][1]), (scale["cells"][2], scale["cells"][3])):
        assert base[2] == "1.00x" and base[4] == "—"
        assert ray_row[4].endswith("%") and ray_row[5].endswith("%")


def test_the_end_to_end_tables_come_first_and_run_the_cli(report):
    """The first tables time ``fastdqn train`` itself (in its own process) against the
    alternatives; a row that cannot run here says why (SB3 missing) instead of a rate."""
    data, _, _ = report
    assert [t["id"] for t in data["tables"][:3]] == ["e2e-env", "e2e-learn", "e2e-cartpole"]
    for t in data["tables"][:3]:
        assert t["kind"] == "values" and t["columns"][:3] == ["command", "agent steps/s (median)", "vs baseline"]
        assert any("fastdqn train" in row[0] for row in t["cells"])
        for name, rate, ratio, note in t["cells"]:
            assert (rate is not None and rate > 0 and (ratio.endswith("x") or ratio == "—")) or (rate is None and note), name
    env = data["tables"][0]["cells"]
    assert env[0][0].startswith("AtariVectorEnv plain loop") and env[1][0] == "fastdqn train (default threads)"
    sb3 = importlib.util.find_spec("stable_baselines3") is not None
    for row in data["tables"][1]["cells"]:
        if "SB3" in row[0] or "CleanRL" in row[0]:
            assert sb3 or "stable-baselines3" in row[3]


def test_markdown_and_console(report):
    """Every table's title names the CPU it ran on, in both renderings."""
    data, md, stdout = report
    assert md.startswith("## Performance")
    cpu = data["machine"]["cpu"]
    assert cpu
    for t in data["tables"]:
        assert f"### {t['title']} ({cpu})" in md
        assert f"{t['title']} ({cpu})" in stdout


def test_replay_sample_baseline_is_the_plain_copy(report):
    """sample(B) is measured against a plain copy of the same windows from the same ring."""
    data, _, _ = report
    table = next(t for t in data["tables"] if t["id"] == "replay-sample")
    base = next(r for r in table["rows"] if r["role"] == "baseline")
    assert base["name"].startswith("plain copy of the same") and base["skipped"] is None
    fast = next(r for r in table["rows"] if r["name"].startswith("fastdqn CPU ReplayBuffer"))
    assert fast["skipped"] is None and fast["ratio"] > 0


@pytest.mark.parametrize("args", [("--only", "nope"), ("--rounds", "0"), ("--device", "tpu"),
                                  ("--torch-threads", "-1")])
def test_bad_arguments_exit_nonzero(args, capsys):
    from fastdqn.bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--tiny", *args])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fastdqn bench: error:"), err


def test_unwritable_output_fails_before_measuring(tmp_path, capsys):
    from fastdqn.bench.cli import main

    assert main(["--tiny", "--json", str(tmp_path / "missing" / "out.json")]) == 2
    assert capsys.readouterr().err.startswith("fastdqn bench: error: --json: expected a writable file path, got ")
    assert main(["--tiny", "--markdown", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"fastdqn bench: error: --markdown: expected a writable file path, "
                                              f"got {str(tmp_path)!r}: Is a directory")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_group_is_reported_not_raised():
    """A group that raises becomes a one-cell 'failed: ...' table, and every rendering shows it."""
    from fastdqn.bench.config import BenchConfig
    from fastdqn.bench.machine import machine_info
    from fastdqn.bench.model import Report, ValuesSpec
    from fastdqn.bench.render import print_report, to_markdown
    from fastdqn.bench.runner import run_spec

    def broken():
        raise AttributeError("'Trainer' object has no attribute 'envs'")

    table = run_spec(ValuesSpec("x", "scale", "A table", broken), BenchConfig(mode="tiny"), lambda s: None)
    assert table.cells == [["failed: AttributeError: 'Trainer' object has no attribute 'envs'"]]
    report = Report(machine=machine_info(), config={"mode": "tiny"})
    report.tables.append(table)
    print_report(report)
    assert "failed: AttributeError" in to_markdown(report)


def test_the_timer_syncs_cuda_before_starting_and_stopping_the_clock(monkeypatch):
    """CUDA runs asynchronously: unless the timer syncs before it reads the clock, one row's queued
    kernels are timed in the next row. A fake CUDA records the order of syncs, clock reads and calls."""
    import types

    import torch

    from fastdqn.bench import timer
    from fastdqn.bench.model import Case, TableSpec

    log: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: log.append("sync"))
    monkeypatch.setattr(timer, "time", types.SimpleNamespace(perf_counter=lambda: log.append("clock") or len(log)))
    cases = [Case(name, lambda name=name: lambda: log.append(name), role=role)
             for name, role in (("a", "baseline"), ("b", "fastdqn"))]
    timer.measure(TableSpec("t", "g", "T", "call", cases), timer.Budget(rounds=3, round_s=0.0))

    clocks = [i for i, e in enumerate(log) if e == "clock"][1:-1]  # less the table's own start/stop
    assert len(clocks) == 2 * (2 + 3 * 2)  # a start and a stop per calibration and per timed round
    for start, stop in zip(clocks[::2], clocks[1::2]):
        assert log[start - 1] == "sync" and log[stop - 1] == "sync", log[start - 1:stop + 1]
        assert log[start + 1:stop - 1] in (["a"], ["b"]), log[start - 1:stop + 1]


def test_the_timer_cuda_sync_is_a_no_op_without_cuda(monkeypatch):
    import torch

    from fastdqn.bench import timer

    def fail(*a, **k):
        raise AssertionError("synchronize called")

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "synchronize", fail)
    timer.cuda_sync()


@pytest.mark.parametrize("pool", ["rgb", "grey"])
def test_the_ceiling_rows_make_the_screens_the_ale_backend_reads(pool):
    """The env-only table's ceilings: the bare AtariVectorEnv loop with --screens POOL makes the
    raw screens the 'ale' backend preprocesses with --pool POOL, and nothing else."""
    from ale_py.vector_env import AtariVectorEnv

    from fastdqn.bench.alternatives import SCREENS
    from fastdqn.env.ale_vector import AleVectorEnv
    from fastdqn.env.spec import EnvSpec

    with AleVectorEnv(EnvSpec("PongNoFrameskip-v4", pool=pool), 2, num_threads=1) as env:
        read = env._raw_shape
    bare = AtariVectorEnv("pong", 2, num_threads=1, stack_num=1, **SCREENS[pool])
    try:
        obs, _ = bare.reset(seed=0)
    finally:
        bare.close()
    assert obs.shape == (2, 1, *read) and obs.dtype == "uint8"
    out = subprocess.run([sys.executable, "-m", "fastdqn.bench.alternatives", "atari-vector", "--steps", "8",
                          "--envs", "2", "--screens", pool], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("loop_rate 8 "), out.stderr
