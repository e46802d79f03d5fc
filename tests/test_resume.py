"""Runs survive interruption: --resume continues exactly, Ctrl-C/SIGTERM save last.pt, and a
SIGKILL during a checkpoint save never leaves an unloadable file.

All on real Pong, CPU, small replay so that learning, target syncs and periodic checkpoints
happen on both sides of the interruption.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastdqn.run.checkpoint import load_checkpoint
from fastdqn.run import TrainConfig, Trainer, train

# The process env backend: its emulators snapshot, so a resumed run continues exactly.
SMALL = dict(replay_size=2000, replay_start=300, batch_size=8, replay_ratio=0.25, sync_target=100,
             eps_decay_frames=1000, progress=False, torch_threads=1, checkpoint_every=250, seed=3,
             env_backend="process")


def _metrics(run_dir):
    """metrics.jsonl without the wall-clock fields."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("fps", "time")} for line in lines]


def _assert_same_learner(a, b):
    for part in ("online", "target"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for key in sa[i]:
            assert torch.equal(sa[i][key], sb[i][key]), f"optimizer state {i}.{key}"


# (envs, total frames, split): a random Pong game lasts ~850 agent steps per env, so the split is
# mid-episode and mid-learning, and an episode ends after it.
@pytest.mark.parametrize("envs, total, split, resumed", [
    (dict(num_envs=1, num_workers=0), 1200, 610, {}),
    (dict(num_envs=2, num_workers=1), 2000, 1010, {}),
    (dict(num_envs=2, num_workers=1), 2000, 1010, dict(num_workers=0)),  # emulators move into the process
], ids=["1env-inprocess", "2envs-worker", "2envs-worker-then-inprocess"])
def test_resumed_run_matches_uninterrupted(tmp_path, envs, total, split, resumed):
    cfg = dict(SMALL, save_replay=True, **envs)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), frames=total, **cfg))
    first = train(TrainConfig(out=str(tmp_path / "split"), frames=split, **cfg))
    assert first.frames == split and first.episodes == 0
    rest = train(resume=str(tmp_path / "split"), frames=total, **resumed)

    assert rest.frames == whole.frames == total
    assert rest.rewards == whole.rewards and whole.rewards  # an episode ended after the split
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    _assert_same_learner(a, b)
    assert a["trainer"]["rng"] == b["trainer"]["rng"]
    assert torch.equal(a["trainer"]["obs"], b["trainer"]["obs"])
    assert [s["ale"] for s in a["trainer"]["envs"]] == [s["ale"] for s in b["trainer"]["envs"]]
    assert _metrics(tmp_path / "whole") == _metrics(tmp_path / "split")
    assert (tmp_path / "whole" / "replay.npz").read_bytes() == (tmp_path / "split" / "replay.npz").read_bytes()


@pytest.mark.parametrize("env", [dict(env_id="CartPole-v1"), dict(env_id="PixelCatch-v0", gym_packages=("pixel_catch",))],
                         ids=["vector-obs", "rgb-game"])
def test_a_non_atari_run_resumes_exactly(tmp_path, env):
    """Vector and RGB families snapshot their envs' plain state: split runs equal whole ones."""
    # no reward bound: Pong's 19 would stop a CartPole run at its first game, before the split
    cfg = dict(SMALL, save_replay=True, num_envs=2, num_workers=1, reward_bound=None, **env)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), frames=900, **cfg))
    train(TrainConfig(out=str(tmp_path / "split"), frames=410, **cfg))
    rest = train(resume=str(tmp_path / "split"), frames=900)
    assert rest.frames == whole.frames == 900
    assert rest.rewards == whole.rewards and whole.rewards
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    _assert_same_learner(a, b)
    assert torch.equal(a["trainer"]["obs"], b["trainer"]["obs"])
    assert _metrics(tmp_path / "whole") == _metrics(tmp_path / "split")


def test_an_ale_backend_run_resumes_with_new_episodes(tmp_path, capsys):
    """ale-py's vector env cannot snapshot emulators: the learner, counters, RNGs and the replay
    come back; the envs start new games, and each stream's cut episode ends where it was cut."""
    cfg = dict(SMALL, env_backend="ale", save_replay=True, num_envs=2, num_workers=1)
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), frames=610, **cfg))
    saved = load_checkpoint(out / "last.pt")
    assert saved["trainer"]["envs"] is None and saved["config"]["env_backend_resolved"] == "ale"
    from fastdqn.run.resume import resume_config

    conf, ckpt = resume_config(str(out), {"frames": 1200}, TrainConfig)
    t = Trainer(conf, resume=ckpt)
    try:
        assert "the episodes in flight start over" in capsys.readouterr().out
        assert t.frame == 610 and t.learner.updates == 0
        _assert_same_learner(t.learner.state_dict(), saved)
        written = saved["trainer"]["replay_written"]
        assert t.buf.frames_written() == written
        obs = t.collector.obs
        assert torch.equal(obs[:, :-1], torch.zeros_like(obs[:, :-1]))  # new games on the acting stacks
        t.step()
        assert t.buf.frames_written() == [w + 2 for w in written]  # the new games' first frames, one step
        for env in range(2):
            last = written[env] - 1  # the cut episode's last frame: no transition out of it
            with pytest.raises(ValueError):
                t.buf.transition(env, last)
            t.buf.transition(env, last - 1)  # the one before it still samples
            t.buf.transition(env, last + 1)  # the new game's first transition
        updates = t.learner.updates
        for _ in range(20):
            t.step()
        assert t.learner.updates > updates  # learning goes on from the restored replay, no refill
    finally:
        t.close()
    rest = train(resume=str(out), frames=1200)
    assert rest.frames == 1200


def test_resume_without_saved_replay_refills_before_learning(tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), frames=500, **(SMALL | dict(replay_ratio=1.0))))
    saved = load_checkpoint(out / "last.pt")["trainer"]
    assert saved["replay_written"] is None and saved["due"] == 1  # a gradient step owed to the lost buffer
    from fastdqn.run.resume import resume_config

    cfg, ckpt = resume_config(str(out), {"frames": 1000}, TrainConfig)
    t = Trainer(cfg, resume=ckpt)
    try:
        assert "refilling 300 frames" in capsys.readouterr().out
        assert t.frame == 500 and len(t.buf) == 0
        updates = t.learner.updates
        while t.frame < 500 + SMALL["replay_start"]:
            t.step()
            assert t.learner.updates == updates  # no learning from a near-empty buffer
        for _ in range(8):
            t.step()
        assert t.learner.updates > updates
    finally:
        t.close()


def test_resume_rejects_changing_the_run(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), frames=300, **SMALL))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"lr cannot change when resuming \(expected the run's 0.0001, got 0.5\)"):
        train(resume=str(out), lr=0.5)
    with pytest.raises(ValueError, match=r"frames: expected more than the 300 frames the run has played, got 300"):
        train(resume=str(out))  # the run is complete: nothing to continue
    from fastdqn.run.resume import resume_config

    assert resume_config(str(out), {"frames": None}, TrainConfig)[0].frames is None  # until solved
    with pytest.raises(FileNotFoundError, match="expected a run directory, got .*nope"):
        train(resume=str(tmp_path / "nope"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_rejects_a_replay_from_another_point_of_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), frames=300, save_replay=True, **SMALL))
    stale = (out / "replay.npz").read_bytes()
    train(resume=str(out), frames=400)
    (out / "replay.npz").write_bytes(stale)  # as if killed between replay.npz and last.pt
    metrics = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"saved with last.pt \(frames per env \[401\]\), got \[301\]"):
        train(resume=str(out), frames=500)
    assert (out / "metrics.jsonl").read_bytes() == metrics
    # The message's advice works: without the file the run goes on and the buffer refills.
    (out / "replay.npz").unlink()
    assert train(resume=str(out), frames=500).frames == 500
    assert "replay.npz not found: refilling 300 frames" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt")["trainer"]["replay_written"] == [101]  # a new buffer: first frame + 100 steps
    assert (out / "replay.npz").is_file()


def test_a_new_run_refuses_a_directory_holding_a_run(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), frames=100, **SMALL))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"out: expected a new or empty run directory, got .* holding a run "
                                         r"\(last.pt, metrics.jsonl\); continue it with --resume"):
        train(TrainConfig(out=str(out), frames=100, **SMALL))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_failing_checkpoint_save_keeps_the_run_going(tmp_path, capsys):
    out = tmp_path / "run"
    t = Trainer(TrainConfig(out=str(out), frames=1000, **SMALL))  # the first game ends near frame 850
    try:
        (out / "best.pt").mkdir()  # a real OSError on every best.pt save: rename onto a directory
        result = t.run()
    finally:
        t.close()
    assert result.frames == 1000 and result.episodes == 1
    assert "warning: could not save best.pt at frame" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt")["stats"]["frame"] == 1000
    assert sorted(p.name for p in out.iterdir() if ".tmp-" in p.name) == []  # no temp file left


def _cli_train(out, *extra):
    args = [sys.executable, "-m", "fastdqn", "train", "--out", str(out), "--replay-size", "1000",
            "--replay-start", "200", "--batch-size", "8", "--threads", "1", "--no-progress", *extra]
    # Its own session and process group, as a shell's job is: a signal can then go to the whole
    # group (the trainer and its env workers), as a terminal's Ctrl-C or hangup does.
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("backend", ["process", "ale"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_saves_last_pt_and_exits_cleanly(tmp_path, sig, backend):
    out = tmp_path / "run"
    proc = _cli_train(out, "--frames", "1000000", "--num-envs", "2", "--num-workers", "1", "--save-replay",
                      "--checkpoint-every", "100", "--env-backend", backend)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and time.monotonic() < deadline:  # the loop is past frame 100
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, sig)  # to the group: the workers get it too, and must leave the stop to the trainer
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert f"interrupted by {sig.name}" in stdout and f"fastdqn train --resume {out}" in stdout
    ckpt = load_checkpoint(out / "last.pt")
    frame = ckpt["stats"]["frame"]
    assert frame > 0 and ckpt["trainer"]["frame"] == frame

    again = _cli_train(out, "--resume", str(out), "--frames", str(frame + 40))
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert f"resuming {out} at frame {frame:,}" in stdout
    assert load_checkpoint(out / "last.pt")["stats"]["frame"] == frame + 40


def test_a_run_directory_in_use_is_refused_until_its_run_ends(tmp_path):
    out = tmp_path / "run"
    proc = _cli_train(out, "--frames", "1000000", "--checkpoint-every", "100")
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    metrics = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match=rf"out: expected a run directory no other fastdqn process is using, got "
                                         rf"'.*run' in use by pid {proc.pid}"):
        train(resume=str(out), frames=10**6 + 1)  # e.g. a requeued job while the first still runs
    assert (out / "config.json").exists() and (out / "metrics.jsonl").read_bytes().startswith(metrics)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    frame = load_checkpoint(out / "last.pt")["stats"]["frame"]
    assert train(resume=str(out), frames=frame + 20).frames == frame + 20  # the lock went with its process


def _env_workers(pid):
    """Pids of the multiprocessing spawn children of ``pid`` (not its resource tracker)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in open(f"/proc/{pid}/task/{task}/children").read().split():
            cmdline = open(f"/proc/{child}/cmdline", "rb").read()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def test_a_killed_env_worker_ends_the_run_with_one_line_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    proc = _cli_train(out, "--frames", "1000000", "--num-envs", "2", "--num-workers", "1", "--checkpoint-every", "100",
                      "--env-backend", "process")  # the ale backend's emulators are threads of the trainer
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    (worker,) = _env_workers(proc.pid)
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert errors == [f"fastdqn train: error: vector env worker 0 (envs 0..1) was killed by SIGKILL (SIGKILL is often "
                      f"the out-of-memory killer); continue from last.pt with: fastdqn train --resume {out}"], stderr
    frame = load_checkpoint(out / "last.pt")["stats"]["frame"]
    again = _cli_train(out, "--resume", str(out), "--frames", str(frame + 40))
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr


_SAVER = """
import sys, torch
from fastdqn.run.checkpoint import save_checkpoint
from fastdqn.learn.learner import Learner
from fastdqn.learn.model import QNetSpec
learner = Learner(QNetSpec(6), device="cpu")
for i in range(1, 10**6):
    with torch.no_grad():
        for p in learner.online.parameters():
            p.fill_(i)
    save_checkpoint(sys.argv[1], learner, config={"i": i}, frame=i)
    print(i, flush=True)
"""


def test_sigkill_during_checkpoint_save_never_corrupts(tmp_path):
    """Kill a process that saves checkpoints back to back at random moments, many times: last.pt
    always loads, holds one whole save (weights agree with its frame) and is never older than the
    last save the process reported done."""
    path = tmp_path / "last.pt"
    rng = random.Random(0)
    torn = 0
    for _ in range(16):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        done = [int(proc.stdout.readline())]  # past start-up: from here on it is (almost) always saving
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        done += [int(line) for line in proc.stdout.read().split()]
        torn += any(name.startswith(".last.pt.tmp-") for name in os.listdir(tmp_path))  # killed mid-write
        ckpt = load_checkpoint(path)
        i = ckpt["stats"]["frame"]
        assert ckpt["config"] == {"i": i}
        assert all(bool((t == i).all()) for t in ckpt["online"].values())
        assert i >= max(done)
    assert torn >= 5  # most kills land inside a save, not between two
    # Temp files of killed writers are swept by the next save.
    from fastdqn.run.checkpoint import save_checkpoint
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec

    save_checkpoint(path, Learner(QNetSpec(6), device="cpu"), config={}, frame=0)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def _rec(frame, reward):
    return dict(frame=frame, episode=frame // 100, reward=reward, reward_100=reward, epsilon=0.5, fps=100.0,
                length=50, loss=None, time=0.0)


def test_resume_drops_episodes_logged_after_last_pt(tmp_path):
    """A run killed after logging episodes past its last.pt (and mid-line) plays them again on
    resume: metrics.jsonl keeps only the episodes up to last.pt, and TensorBoard hides the rest."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fastdqn.run.runlog import RunLog

    log = RunLog(str(tmp_path), {}, tensorboard=True)
    for frame, reward in ((100, -21.0), (200, -20.0), (300, -19.0)):
        log.episode(_rec(frame, reward))
    log._tb.close()  # SIGKILLed: no close(), and a line cut short; the kernel drops its lock
    log._jsonl.write('{"frame": 350, "rew')
    log._jsonl.close()
    log._lock.close()

    log = RunLog(str(tmp_path), {}, tensorboard=True, resume_frame=250)  # last.pt was saved at frame 250
    assert [r["frame"] for r in log.records] == [100, 200]
    log.episode(_rec(400, -18.0))
    log.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [100, 200, 400]
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("reward")] == [(100, -21.0), (200, -20.0), (400, -18.0)]


def test_a_diverged_run_stops_with_one_line_and_keeps_the_last_finite_checkpoint(tmp_path, capsys):
    from fastdqn.cli import main

    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--frames", "2000", "--replay-size", "1000", "--replay-start", "200",
                 "--batch-size", "8", "--threads", "1", "--no-progress", "--checkpoint-every", "100",
                 "--lr", "1e6"])  # Adam steps of ~1e6: the weights overflow within a few updates
    err = capsys.readouterr().err.strip()
    assert code == 1 and "Traceback" not in err
    assert re.fullmatch(r"fastdqn train: error: training diverged at frame ([\d,]+): the online net's weights are no "
                        r"longer finite \(a lower --lr may help\); .*last\.pt is the last good checkpoint", err), err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["stats"]["frame"] < int(re.search(r"frame ([\d,]+)", err)[1].replace(",", ""))
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["online"].values())
