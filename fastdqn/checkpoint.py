"""Checkpoint save/load: one function pair, so it can be hardened (atomic writes, resume) in one place."""

from __future__ import annotations

import os

import torch

FORMAT = 1


def save_checkpoint(path: str | os.PathLike, learner, *, config: dict, **stats) -> None:
    """Write the online/target nets, the optimizer, the run config (plain dict) and stats
    (frame, episode, reward_100, ...) to path. Only tensors and plain Python values, so
    load_checkpoint can use torch.load(weights_only=True)."""
    state = {"format": FORMAT, "n_actions": learner.n_actions, "config": dict(config), "stats": stats}
    state.update(learner.state_dict())
    torch.save(state, os.fspath(path))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint (no code execution: weights_only)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, not a torch file, unpickling refused
        raise ValueError(f"checkpoint: {path!r} is not a readable fastdqn checkpoint ({e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "online" not in state:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint: expected a fastdqn checkpoint of format {FORMAT}, got {got!r} in {path!r}")
    return state
