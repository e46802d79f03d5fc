"""bench/gpu_pong.sh, the one command a lent GPU machine runs: its CPU dry-run mode (every stage at
tiny sizes, so the script cannot rot between the sessions that have a GPU), its time plan against
the device budget, and bench/gpu_micro.py's incremental JSON."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPT = BENCH / "gpu_pong.sh"
STAGES = ["install", "test_gpu", "micro", "train", "report"]
needs_bench = pytest.mark.skipif(not SCRIPT.exists(), reason="needs the source checkout's bench/")


def _run(env: dict, timeout: float) -> subprocess.CompletedProcess:
    # PYTHON: this interpreter, whose packages the stages need (a venv's python need not be on PATH).
    env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "PLAN", "STAGES")} | env
    return subprocess.run(["bash", str(SCRIPT)], env=dict(env, PYTHON=sys.executable), capture_output=True,
                          text=True, timeout=timeout)


@needs_bench
def test_gpu_script_fits_the_device_budget():
    """A device call may last 6 minutes: the stages' limits add up to at most 340 s, with 150 s of
    training at the GPU defaults and 15 s more for the trainer to stop and save."""
    proc = _run({"PLAN": "1"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert list(plan["limits"]) == STAGES
    assert plan["sum_s"] == sum(plan["limits"].values()) <= plan["budget_s"] == 340, plan
    assert plan["train_seconds"] == 150 and plan["limits"]["train"] >= 150 + 10, plan


@needs_bench
def test_gpu_script_with_pqn_keeps_the_budget_and_its_dry_run_trains_pqn(tmp_path):
    """PQN=1 adds the pqn stage (`--preset pqn-pong`) with time taken from train's, so the limits
    still add up to 340 s; its dry run trains PQN on the CPU (48 agent steps: no Pong game ends)
    and the report summarises the run."""
    proc = _run({"PLAN": "1", "PQN": "1"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert list(plan["limits"]) == STAGES[:-1] + ["pqn", "report"]
    assert plan["sum_s"] == sum(plan["limits"].values()) == plan["budget_s"] == 340, plan
    assert plan["limits"]["train"] + plan["limits"]["pqn"] == 150 + 15 and plan["pqn_seconds"] == 60, plan
    out = tmp_path / "out"
    proc = _run({"DRY_RUN": "1", "PQN": "1", "STAGES": "install,pqn,report", "OUT": str(out),
                 "TMPDIR": str(tmp_path), "PQN_SECONDS": "600"}, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((out / "pqn.json").read_text())["stage"]["rc"] == 0, proc.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert "episodes" in report["pqn_summary"] and "pqn" in report["stage_seconds"], report
    from fastdqn.run.checkpoint import load_checkpoint

    (work,) = tmp_path.glob("fastdqn-gpu.*")
    assert json.loads((work / "pqn" / "config.json").read_text())["algo"] == "pqn"
    assert load_checkpoint(work / "pqn" / "last.pt")["stats"]["frame"] == 48  # the pqn stage trained


@needs_bench
def test_gpu_script_rejects_an_unknown_stage():
    proc = _run({"PLAN": "1", "STAGES": "install,bench"}, timeout=60)
    assert proc.returncode == 2 and "unknown stage 'bench'" in proc.stderr


@needs_bench
def test_gpu_script_dry_run_runs_every_stage(tmp_path):
    # TRAIN_SECONDS: only a deadline, far off; the dry run's --frames 300 ends the training.
    # TMPDIR: the script's work folder (logs, the run) lands here, where the test can read it.
    out = tmp_path / "out"
    proc = _run({"DRY_RUN": "1", "OUT": str(out), "TMPDIR": str(tmp_path), "TRAIN_SECONDS": "600"}, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Each stage wrote its own JSON as it ended; at most 8 plain files come back from a device call.
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{s}.json" for s in STAGES] + ["logs.tar.gz"]), files
    assert all(p.is_file() and p.stat().st_size < 16 << 20 for p in out.iterdir())
    records = {s: json.loads((out / f"{s}.json").read_text())["stage"] for s in STAGES}
    failed = {s: r for s, r in records.items() if r["rc"] != 0 or r["timed_out"]}
    assert not failed, (failed, proc.stdout[-3000:])
    assert all(0 < r["limit_s"] for r in records.values()), records

    report = json.loads((out / "report.json").read_text())
    assert set(STAGES[:-1]) <= set(report) and report["stage_seconds"].keys() == set(STAGES[:-1])
    assert report["install"]["installed"]["how"] == "dry_run" and report["install"]["installed"]["core"]
    pytest_gpu = report["test_gpu"]["pytest"]
    assert pytest_gpu["failed"] == 0 and pytest_gpu["skipped"] > 0, pytest_gpu  # no GPU: all skip
    assert report["micro"]["dry_run"] is True
    assert report["train_summary"]["train_wall_s"] == records["train"]["seconds"]
    from fastdqn.run.checkpoint import load_checkpoint

    (work,) = tmp_path.glob("fastdqn-gpu.*")
    assert load_checkpoint(work / "train" / "last.pt")["stats"]["frame"] == 300  # the train stage trained


def test_gpu_micro_writes_its_json_after_every_row(tmp_path, monkeypatch):
    """A time limit that kills gpu_micro.py keeps the rows so far: the file holds each row as soon as
    it is measured, and a section that raises leaves its error and lets the next one run."""
    spec = importlib.util.spec_from_file_location("gpu_micro", BENCH / "gpu_micro.py")
    micro = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(micro)
    path = tmp_path / "micro.json"
    seen = []

    def preprocess(quick, res, flush):
        res["throughput"] = [{"n": 16}]
        flush()
        seen.append(json.loads(path.read_text())["preprocess"])  # on disk before the section ends
        raise RuntimeError("killed mid-section")

    def replay(quick, res, flush):
        res["kernel_rows"] = [{"capacity": 10}]

    monkeypatch.setattr(micro, "bench_preprocess", preprocess)
    monkeypatch.setattr(micro, "bench_replay", replay)
    monkeypatch.setattr(micro, "bench_update", lambda quick, compile_modes, res, flush: None)
    monkeypatch.setattr(micro.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(micro.torch.cuda, "get_device_properties", lambda i: type("P", (), {"name": "fake"}))
    assert micro.main(["--out", str(path)]) == 0
    assert seen == [{"throughput": [{"n": 16}]}]
    got = json.loads(path.read_text())
    assert got["preprocess"]["throughput"] == [{"n": 16}] and "killed mid-section" in got["preprocess"]["error"]
    assert got["replay_sample"] == {"kernel_rows": [{"capacity": 10}]} and got["device"] == "fake"
