"""`fastdqn train | eval | play | info | bench`: help, one-line user errors, real runs through the CLI."""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from fastdqn.cli import main
from fastdqn.errors import is_user_error, user_input
from fastdqn.run import supervisor
from fastdqn.run.trainer import Trainer

TRAIN_FLAGS = ["--env", "--device", "--seed", "--frames", "--num-envs", "--out", "--batch-size", "--replay-size",
               "--replay-start", "--lr", "--gamma", "--sync-target", "--eps-start", "--eps-final",
               "--eps-decay-frames", "--reward-bound", "--loss", "--double", "--preset", "--compile", "--resume",
               "--save-replay", "--checkpoint-every", "--sticky-actions", "--max-episode-frames", "--gym-packages",
               "--eval-every", "--eval-episodes"]


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
    (["eval", "--checkpoint", "x.pt", "--json", "TMP"], "json: expected a file path, got"),  # before any episode
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


# A short CartPole run: two envs, learning from the 32nd agent step on.
CARTPOLE = ["train", "--preset", "cartpole", "--num-envs", "2", "--frames", "64", "--replay-start", "32",
            "--batch-size", "8", "--no-progress", "--no-tensorboard", "--threads", "1"]


def test_the_user_input_phase_marks_its_errors_and_nothing_else():
    with pytest.raises(ValueError, match="^bad$") as inside:
        with user_input():
            raise ValueError("bad")
    assert is_user_error(inside.value)  # the same ValueError, marked
    with pytest.raises(RuntimeError) as other:
        with user_input():
            raise RuntimeError("not the user's")
    assert not is_user_error(other.value) and not is_user_error(ValueError("raised elsewhere"))


def test_a_damaged_file_in_the_run_directory_is_the_users_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*CARTPOLE, "--save-replay", "--out", str(out)]) == 0
    (out / "replay.npz").write_bytes(b"not a zip file")  # read while the resumed Trainer is put back
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--frames", "128", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"fastdqn train: error: replay file '.*replay\.npz': expected a ReplayBuffer\.save\(\) "
                        r"\.npz, got unreadable data \(.*\)", err), err


def _lose_one_action(monkeypatch):
    """The bug: the training loop stores one action fewer than it has envs (the replay refuses it)."""
    store = Trainer._store
    monkeypatch.setattr(Trainer, "_store", lambda self, got: store(self, _one_action_fewer(got)))


def _one_action_fewer(got):
    return got._replace(steps=got.steps._replace(actions=got.steps.actions[:, :-1]))


BUG = r"actions: expected shape \(2,\), got \(1,\)"


def test_a_bug_inside_the_training_loop_is_not_reported_as_a_usage_error(tmp_path, monkeypatch, capsys):
    _lose_one_action(monkeypatch)
    reports = []
    monkeypatch.setattr(supervisor, "report", lambda key, value: reports.append((key, value)))
    with pytest.raises(ValueError, match=BUG):  # the trainer's own ValueError, out of main as it was raised
        main([*CARTPOLE, "--out", str(tmp_path / "run")])
    assert "error:" not in capsys.readouterr().err
    assert reports[-1] == ("code", 1)  # what a supervised Ray learner tells the CLI's process


def test_a_bug_inside_the_training_loop_is_a_traceback_and_exit_1(tmp_path):
    bugged = textwrap.dedent("""
        import sys
        from fastdqn.cli import main
        from fastdqn.run.trainer import Trainer
        store = Trainer._store
        fewer = lambda got: got._replace(steps=got.steps._replace(actions=got.steps.actions[:, :-1]))
        Trainer._store = lambda self, got: store(self, fewer(got))  # the bug of _lose_one_action
        sys.exit(main(sys.argv[1:]))
    """)
    p = subprocess.run([sys.executable, "-c", bugged, *CARTPOLE, "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert "Traceback (most recent call last)" in p.stderr and "fastdqn train: error" not in p.stderr
    assert re.fullmatch("ValueError: " + BUG, p.stderr.strip().splitlines()[-1]), p.stderr


def test_fastdqn_debug_shows_the_traceback_of_a_user_mistake(monkeypatch):
    monkeypatch.setenv("FASTDQN_DEBUG", "1")
    with pytest.raises(ValueError, match="gamma: expected"):
        main(["train", "--gamma", "2"])


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
    said = capsys.readouterr().out
    assert "stopped after 300 frames" in said
    if not torch.cuda.is_available():  # said once, before the run, with the rate measured here
        notice = said.splitlines()[0]
        assert notice.startswith("note: no CUDA device; on this CPU one update of batch 4 takes ")
        assert "300 agent steps will take about" in notice and "fastdqn train --preset cartpole" in notice
    video = tmp_path / "v.mp4"
    assert main(["play", "--checkpoint", str(out / "last.pt"), "--episodes", "1", "--max-steps", "10",
                 "--video", str(video), "--epsilon", "0.05"]) == 0
    assert "episode 1: reward" in capsys.readouterr().out
    assert video.stat().st_size > 1000
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)  # H.264 in yuv420p: what browsers and W&B play
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["size"] == (320, 420)
    assert sum(1 for _ in reader) == 10

    # the field's protocol: epsilon 0.05, mean/std/min/max, the Nature paper's human-normalised score
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--episodes", "2", "--max-steps", "20",
                 "--json", str(report)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("PongNoFrameskip-v4: 2 episodes at epsilon 0.05: mean ") and "human-normalised" in line
    got = json.loads(report.read_text())
    assert len(got["returns"]) == 2 and got["lengths"] == [20, 20] and got["epsilon"] == 0.05
    assert got["mean"] == pytest.approx(np.mean(got["returns"]))
    assert got["human_normalized"] == pytest.approx((got["mean"] + 20.7) / (9.3 + 20.7))
    assert got["protocol"] == {"frameskip": 4, "sticky_actions": 0.0, "max_episode_frames": 108_000, "noop_max": 0,
                               "episodic_life": False, "pool": "rgb"}


def test_eval_on_a_cartpole_checkpoint(tmp_path, capsys):
    out = tmp_path / "cartpole"
    assert main(["train", "--preset", "cartpole", "--frames", "3000", "--eval-every", "1500", "--seed", "0",
                 "--out", str(out), "--no-progress", "--no-tensorboard", "--threads", "1"]) == 0
    said = capsys.readouterr().out
    assert "eval at frame 1,500: mean" in said and "eval at frame 3,000: mean" in said
    evals = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in evals] == [1500, 3000] and all(len(e["returns"]) == 5 for e in evals)
    report = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--episodes", "4", "--epsilon", "0",
                 "--json", str(report)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("CartPole-v1: 4 episodes at epsilon 0: mean ") and "human" not in line
    got = json.loads(report.read_text())
    assert got["env_id"] == "CartPole-v1" and len(got["returns"]) == 4 and got["human_normalized"] is None
    # best.pt is the evaluation's best: its greedy mean is what the best evaluation measured
    best = max(evals, key=lambda e: e["mean"])
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--episodes", "5", "--epsilon", "0",
                 "--seed", "1000003"]) == 0
    assert f"mean {best['mean']:.2f}" in capsys.readouterr().out


def test_the_cpu_notice_estimates_a_solve_in_hours_and_stays_quiet_elsewhere():
    from fastdqn.run import TrainConfig
    from fastdqn.run.estimate import cpu_notice

    notice = cpu_notice(TrainConfig(device="cpu", torch_threads=1))  # the pong preset: until solved
    assert notice.startswith("note: no CUDA device; on this CPU one update of batch 32 takes ")
    assert "solving (about 1,000,000 agent steps) will take about " in notice and " hours here" in notice
    assert cpu_notice(TrainConfig(env_id="CartPole-v1", device="cpu")) is None  # not Atari: no notice


def test_the_resume_help_names_exactly_the_resumable_settings():
    """--resume's help is made from RESUMABLE: every flag of a resumable setting is in it, and no
    other flag is, so the help and what resume accepts cannot drift apart."""
    from fastdqn.cli import build_parser
    from fastdqn.run.resume import RESUMABLE

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    help_text = next(a.help for a in train._actions if "--resume" in a.option_strings)
    named = set(re.findall(r"--[a-z][a-z0-9-]*", help_text.split("; only ", 1)[1]))
    for action in train._actions:
        dest = "ray_address" if action.dest == "ray_cli" else action.dest
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--resume"):
                assert (flag in named) == (dest in RESUMABLE), (flag, dest)
