"""A short real Pong training run: output files, finite loss, reproducibility, play -> mp4."""

import json
import math

import cv2
import numpy as np
import pytest

from fastdqn.run.checkpoint import load_checkpoint
from fastdqn.play import play
from fastdqn.run import TrainConfig, preset, train

# Tiny but real: learning starts at frame 600, the first random Pong game ends near frame 900.
TINY = dict(frames=1300, replay_size=2000, replay_start=600, batch_size=8, replay_ratio=0.25,
            sync_target=100, eps_decay_frames=1000, progress=False, torch_threads=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "pong"
    result = train(TrainConfig(out=str(out), seed=1, **TINY))
    assert result.frames == TINY["frames"] and result.episodes >= 1
    return out


def test_run_writes_every_output(run_dir):
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "reward_curve.png"):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*"))
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["env_id"] == "PongNoFrameskip-v4" and cfg["gamma"] == 0.99 and cfg["lr"] == 1e-4
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert recs
    for key in ("frame", "episode", "reward", "reward_100", "epsilon", "fps", "loss"):
        assert key in recs[0]
    losses = [r["loss"] for r in recs if r["loss"] is not None]
    assert losses and all(math.isfinite(v) for v in losses)
    assert all(-21 <= r["reward"] <= 21 for r in recs)
    assert cv2.imread(str(run_dir / "reward_curve.png")) is not None


@pytest.mark.parametrize("backend, curve", [("ale", False), ("process", True)])
def test_config_json_records_the_pool_order_and_the_curve_is_optional(tmp_path, backend, curve):
    out = tmp_path / backend
    result = train(TrainConfig(out=str(out), pool="grey", env_backend=backend, frames=32, replay_start=1_000,
                               num_envs=2, max_episode_frames=40, progress=False, tensorboard=False, torch_threads=1,
                               reward_curve=curve))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pool"] == "grey" and cfg["env_protocol"]["pool"] == "grey"
    assert cfg["env_backend_resolved"] == backend
    assert result.episodes >= 2 and (out / "reward_curve.png").is_file() == curve


def test_tensorboard_has_seed_and_cleanrl_keys(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"reward", "reward_100", "epsilon", "speed", "charts/episodic_return", "charts/SPS",
            "losses/td_loss"} <= tags


def test_checkpoints_load(run_dir):
    last = load_checkpoint(run_dir / "last.pt")
    assert last["stats"]["frame"] == TINY["frames"] and last["net"]["n_actions"] == 6
    assert "exp_avg" in str(last["optimizer"]["state"].get(0, {}).keys()) or last["optimizer"]["state"]


def test_same_seed_same_metrics(run_dir, tmp_path):
    again = tmp_path / "again"
    train(TrainConfig(out=str(again), seed=1, **TINY))
    strip = ("fps", "time")
    a, b = ([{k: v for k, v in json.loads(x).items() if k not in strip} for x in p.read_text().splitlines()]
            for p in (run_dir / "metrics.jsonl", again / "metrics.jsonl"))
    assert a == b


def test_play_writes_a_playable_mp4(run_dir, tmp_path, capsys):
    video = tmp_path / "play.mp4"
    scores = play(str(run_dir / "best.pt"), episodes=1, video=str(video), max_steps=60, seed=0)
    assert len(scores) == 1
    assert "episode 1: reward" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 60
    assert frames[0].shape == (420, 320, 3)  # 210x160 screens, upscaled 2x
    assert np.mean([f.std() for f in frames]) > 5  # real game pictures, not blank frames


def test_config_validation_names_expected_and_got():
    with pytest.raises(ValueError, match=r"batch_size: expected an integer >= 1, got 0"):
        train(TrainConfig(batch_size=0))
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0).validate()
    with pytest.raises(ValueError, match="preset"):
        preset("tetris")
    b = preset("breakout")
    assert b.episodic_life and b.clip_rewards and b.noop_max == 30 and b.env_id.startswith("Breakout")
    r = preset("pong-rainbow-lite")
    r.validate()
    assert (r.n_step, r.prioritized, r.dueling, r.double, r.per_alpha) == (3, True, True, True, 0.5)


def test_vector_envs_feed_one_buffer(tmp_path):
    r = train(TrainConfig(out=str(tmp_path / "v"), num_envs=2, num_workers=0, frames=400, replay_size=1000,
                          replay_start=200, batch_size=4, replay_ratio=0.1, progress=False, tensorboard=False,
                          torch_threads=1))
    assert r.frames == 400
    assert json.loads((tmp_path / "v" / "config.json").read_text())["num_envs"] == 2
