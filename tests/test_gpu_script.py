"""bench/gpu_pong.sh, the one command a lent GPU machine runs, in its CPU dry-run mode: every
stage at tiny sizes, so the script cannot rot between the sessions that have a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_pong.sh"


@pytest.mark.skipif(not SCRIPT.exists(), reason="needs the source checkout's bench/")
def test_gpu_script_dry_run_runs_every_stage(tmp_path):
    # PYTHON: this interpreter, whose packages the stages need (a venv's python need not be on PATH).
    # TRAIN_SECONDS: only a deadline, far off; the dry run's --frames 400 ends the training.
    env = dict(os.environ, DRY_RUN="1", OUT=str(tmp_path), TRAIN_SECONDS="600", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = json.loads((tmp_path / "stages.json").read_text())
    assert stages["dry_run"] == 1
    ran = {k[3:] for k in stages if k.startswith("rc_")}
    assert ran == {"install", "test_gpu", "test_cuda_cpu", "micro", "bench", "train", "report"}, stages
    failed = {k: v for k, v in stages.items() if k.startswith("rc_") and v != 0}
    logs = {k: (tmp_path / "logs" / f"{k[3:]}.log").read_text()[-1500:] for k in failed}
    assert not failed, logs
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["micro"]["dry_run"] is True
    tables = {t["id"] for t in results["bench"]["tables"]}
    assert {"env", "overlap"} <= tables
    from fastdqn.run.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "train" / "last.pt")["stats"]["frame"] == 400  # the train stage trained
