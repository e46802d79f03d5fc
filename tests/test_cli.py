"""`fastdqn train | play | info | bench`: help, one-line user errors, a real run through the CLI."""

import subprocess
import sys

import pytest

from fastdqn.cli import main

TRAIN_FLAGS = ["--env", "--device", "--seed", "--frames", "--num-envs", "--out", "--batch-size", "--replay-size",
               "--replay-start", "--lr", "--gamma", "--sync-target", "--eps-start", "--eps-final",
               "--eps-decay-frames", "--reward-bound", "--loss", "--double", "--preset", "--compile", "--resume",
               "--save-replay", "--checkpoint-every"]


def test_train_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in TRAIN_FLAGS:
        assert flag in out, flag
    assert "default: 32" in out and "150,000" in out


@pytest.mark.parametrize("argv, needle", [
    (["train", "--lr", "-1", "--no-progress"], "lr: expected"),
    (["train", "--batch-size", "0"], "batch_size: expected"),
    (["train", "--env", "NoSuchEnv-v0", "--frames", "10"], "env_id: expected"),
    (["train", "--env", "NoSuchGameNoFrameskip-v4", "--frames", "10"], "NoSuchGame"),
    (["play", "--checkpoint", "/nonexistent/best.pt"], "no such file"),
    (["play", "--checkpoint", "x.pt", "--episodes", "0"], "episodes: expected"),
    (["train", "--resume", "/nonexistent/run"], "resume: expected a run directory"),
    (["train", "--resume", "TMP"], "no such file"),  # TMP: an empty directory, no last.pt
    (["train", "--resume", "TMP", "--preset", "breakout"], "--preset: expected no preset with --resume"),
])
def test_user_mistakes_are_one_line_errors(argv, needle, capsys, tmp_path):
    argv = [a.replace("x.pt", str(tmp_path / "x.pt")).replace("TMP", str(tmp_path)) for a in argv]
    if "x.pt" in " ".join(argv):
        (tmp_path / "x.pt").write_bytes(b"junk")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_process_error_has_no_traceback():
    p = subprocess.run([sys.executable, "-m", "fastdqn", "train", "--gamma", "2"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "gamma: expected" in p.stderr and "Traceback" not in p.stderr


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("fastdqn", "torch", "ale_py", "preprocess backends", "cuda device", "cuda kernels"):
        assert key in out


def test_bench_is_dispatched_lazily(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    assert "fastdqn bench" in capsys.readouterr().out


def test_train_then_play_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--frames", "300", "--replay-start", "200", "--replay-size", "1000", "--batch-size", "4",
               "--replay-ratio", "0.1", "--seed", "3", "--out", str(out), "--no-progress", "--no-tensorboard",
               "--threads", "1"])
    assert rc == 0
    assert "stopped after 300 frames" in capsys.readouterr().out
    video = tmp_path / "v.mp4"
    assert main(["play", "--checkpoint", str(out / "last.pt"), "--episodes", "1", "--max-steps", "10",
                 "--video", str(video), "--epsilon", "0.05"]) == 0
    assert "episode 1: reward" in capsys.readouterr().out
    assert video.stat().st_size > 1000
