"""Resuming a run (``fastdqn train --resume DIR``): what last.pt holds and how a Trainer is put back.

``last.pt`` holds, besides the nets and the optimizer, everything that decides the run's
future: frame and episode counters, the epsilon-greedy RNG, torch's RNG, every env's emulator
and RNG (fastdqn.env.snapshot), the acting frame stacks and the pending gradient steps. With
``--save-replay`` the buffer (with its sampling RNG) goes to ``replay.npz`` just before
``last.pt``, and a resumed run continues exactly as the uninterrupted one would have
(tests/test_resume.py). Without it the buffer refills for ``replay_start`` frames first.

The ``ale`` env backend cannot snapshot its emulators: a run on it resumes everything else, and
its envs start new games (the stored episodes end where they were cut, unsampled past the cut).
A PQN run (no replay) resumes everything but the rollout in progress, which starts over.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from fastdqn.replay.state import load_file as load_replay_file
from fastdqn.run.checkpoint import load_checkpoint
from fastdqn.run.state import RunState

from fastdqn.run.config import RESUMABLE  # settings a resumed run may change: each field's knob() says
REPLAY_FILE = "replay.npz"
_STATE_KEYS = frozenset(RunState.KEYS + ("rng", "torch_rng", "obs", "envs", "replay_written"))


def resume_config(run_dir: str, overrides: dict, config_type):
    """(config, checkpoint) to continue the run in ``run_dir``; overrides may change RESUMABLE only."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"resume: expected a run directory path, got {type(run_dir).__name__}")
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"resume: expected a run directory, got {run_dir!r} (no such directory)")
    path = os.path.join(run_dir, "last.pt")
    ckpt = load_checkpoint(path)
    state = ckpt.get("trainer")
    if not isinstance(state, dict) or not isinstance(ckpt.get("config"), dict):
        raise ValueError(f"resume: expected a last.pt with trainer state (fastdqn train writes it), got none in {path!r}")
    missing = sorted(_STATE_KEYS - state.keys())
    if missing:
        raise ValueError(f"resume: expected trainer state keys {sorted(_STATE_KEYS)}, got {path!r} missing {missing}")
    fields = {f.name for f in dataclasses.fields(config_type)}
    saved = {k: v for k, v in ckpt["config"].items() if k in fields}
    for name, value in overrides.items():
        if name not in fields:
            raise TypeError(f"resume: expected TrainConfig fields, got {name!r}")
        if name not in RESUMABLE and value != saved.get(name):
            raise ValueError(f"resume: {name} cannot change when resuming (expected the run's "
                             f"{saved.get(name)!r}, got {value!r}); changeable: {', '.join(RESUMABLE)}")
    config = config_type(**(saved | overrides | {"out": run_dir}))
    if config.frames is not None and config.frames <= state["frame"]:  # nothing would run, and last.pt would be saved again
        raise ValueError(f"resume: frames: expected more than the {state['frame']:,} frames the run has played, "
                         f"got {config.frames:,} (pass --frames N)")
    return config, ckpt


def trainer_state(t, replay_saved: bool) -> dict:
    """The Trainer's part of last.pt (tensors and plain values only: weights_only loads it)."""
    return t.state.to_dict() | t.collector.state_dict() | {
        "torch_rng": torch.get_rng_state(), "replay_written": t.buf.frames_written() if replay_saved else None}


def restore_trainer(t, ckpt: dict) -> None:
    """Put a freshly built Trainer (envs reset, buffer empty) where ``ckpt`` left the run."""
    s = ckpt["trainer"]
    # Emulators that were snapshotted, into envs that restore snapshots, continue exactly; else
    # (the 'ale' backend on either side, Ray actors) the envs keep the new episodes they were just reset to.
    exact = t.collector.load_state_dict(s)
    t.learner.load_state_dict(ckpt)
    restored = s["replay_written"] is not None and _load_replay(t, s["replay_written"])
    t.state.load_dict(s)
    if restored and exact:
        t.collector.continue_streams()  # else the stored episodes end where they were cut
    if restored:
        replay = "replay restored"
    elif not t.stores_replay:  # PQN: a rollout is not saved
        replay = "the rollout in progress starts over"
    else:
        t.state.replay_frames = 0
        t.state.due = 0  # gradient steps owed to the lost buffer: learning starts again after the refill
        why = "not saved (--save-replay)" if s["replay_written"] is None else f"{REPLAY_FILE} not found"
        replay = f"replay {why}: refilling {t.cfg.replay_start:,} frames before learning goes on"
    torch.set_rng_state(s["torch_rng"])
    eps = t.cfg.epsilon_at(t.state.frame)
    episodes = "" if exact else f"; the episodes in flight start over ({t.collector.fresh_episodes_why})"
    t.prog.print(f"resuming {t.out} at frame {t.state.frame:,} ({t.state.episodes} episodes, epsilon {eps:.3f}); "
                 f"{replay}{episodes}")


def save_replay(t) -> None:
    t.buf.save(os.path.join(t.out, REPLAY_FILE))


def _load_replay(t, written) -> bool:
    """Restore replay.npz into t.buf; False if there is none (deleted: the buffer refills)."""
    path = os.path.join(t.out, REPLAY_FILE)
    if not os.path.lexists(path):
        return False
    state = load_replay_file(path)
    got = [int(w) for w in np.asarray(state.get("written", []))]
    if got != list(written):
        raise ValueError(f"resume: expected {path!r} saved with last.pt (frames per env {list(written)}), got "
                         f"{got}: the run stopped between the two saves; delete it to resume with an empty replay")
    t.buf.load_state_dict(state)
    return True
