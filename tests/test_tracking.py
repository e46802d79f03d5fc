"""--track (Weights & Biases, offline here) and --capture-video: real wandb files read back."""

from __future__ import annotations

import glob
import struct
import sys

import pytest

from fastdqn.cli import main

RUN = ["train", "--env", "PixelCatch-v0", "--gym-packages", "pixel_catch", "--frames", "600", "--replay-start", "200",
       "--replay-size", "1000", "--batch-size", "4", "--replay-ratio", "0.1", "--eval-every", "300",
       "--eval-episodes", "1", "--seed", "1", "--threads", "1", "--no-progress"]


def wandb_records(path: str) -> list:
    """The records of an offline .wandb file (LevelDB-log framing: 32 KiB blocks of records with a
    7-byte header: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, out, part = open(path, "rb").read(), 7, 32768, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:  # zero padding to the block's end
            pos += left - 7
            continue
        part += data[pos:pos + length]
        pos += length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b""
    return out


def test_track_logs_scalars_evaluations_and_videos_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out), "--track", "--wandb-project", "fastdqn-test", "--capture-video", "3"]) == 0

    videos = sorted(glob.glob(str(out / "videos" / "*")))
    assert videos and all(v.endswith(".mp4") for v in videos)  # complete files only, no .part left
    import imageio_ffmpeg

    meta = next(imageio_ffmpeg.read_frames(videos[0]))
    assert meta["codec"] == "h264" and meta["size"] == (160, 210)

    (run_file,) = glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))
    history = [{(i.key or "/".join(i.nested_key)): i.value_json for i in r.history.item}
               for r in wandb_records(run_file) if r.WhichOneof("record_type") == "history"]
    keys = set().union(*history)
    for key in ("charts/episodic_return", "charts/SPS", "losses/td_loss", "eval/episodic_return", "global_step"):
        assert key in keys, key
    assert any(k.startswith("videos") for k in keys)
    logged = glob.glob(str(out / "wandb" / "offline-run-*" / "files" / "media" / "videos" / "*.mp4"))
    assert len(logged) == len(videos)
    steps = [int(h["global_step"]) for h in history if "eval/episodic_return" in h]
    assert steps == [300, 600]


def test_track_without_wandb_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if the extra were not installed
    assert main([*RUN, "--out", str(tmp_path / "run"), "--track"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'fastdqn train: error: --track: expected the wandb extra to be installed: pip install "fastdqn[wandb]"'
