"""Checkpoint save/load, the one place model files are written and read.

Writes are crash-safe (fastdqn.atomic: temp file, fsync, rename); reads use
``torch.load(weights_only=True)``, so a checkpoint can hold only tensors and plain values and
loading one never runs code. ``last.pt`` also carries the trainer's state for ``--resume``.
"""

from __future__ import annotations

import os

import torch

from fastdqn.atomic import atomic_write
from fastdqn.learn.model import QNetSpec

FORMAT = 2  # bumped whenever the layout changes (2: the net as one entry); other versions are refused
REQUIRED = ("config", "net", "online")


def save_checkpoint(path: str | os.PathLike, learner, *, config: dict, trainer: dict | None = None,
                    **stats) -> None:
    """Write the online/target nets, the optimizer, the run config (plain dict), stats (frame,
    episode, reward_100, ...) and, for resumable checkpoints, the trainer state to path,
    atomically: a crash or SIGKILL mid-save leaves the previous file intact."""
    write_checkpoint(path, checkpoint_state(learner, config=config, trainer=trainer, **stats))


def checkpoint_state(learner, *, config: dict, trainer: dict | None = None, **stats) -> dict:
    """What save_checkpoint writes, holding the learner's live tensors (``host_copy`` keeps it)."""
    state = {"format": FORMAT, "net": learner.net.to_dict(), "config": dict(config), "stats": stats}
    state.update(learner.state_dict())
    if trainer is not None:
        state["trainer"] = trainer
    return state


def write_checkpoint(path: str | os.PathLike, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(state, f), what="checkpoint")


def host_copy(obj):
    """``obj`` with every tensor in it copied to host memory (dicts, lists and tuples walked)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v) for v in obj)
    return obj


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint (no code execution: weights_only). Anything
    else (missing, a folder, empty, torn, foreign, malicious, weights that do not fit) raises
    FileNotFoundError/ValueError naming the file and what is wrong, in one line."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"checkpoint: expected a file, got a directory {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint: expected a fastdqn checkpoint, got an empty file {path!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torn file, not a torch file, unpickling refused
        raise ValueError(f"checkpoint: {path!r} is not a readable fastdqn checkpoint ({_reason(e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "online" not in state:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint: expected a fastdqn checkpoint of format {FORMAT}, got {got!r} in {path!r}")
    missing = sorted(set(REQUIRED) - state.keys())
    if missing:
        raise ValueError(f"checkpoint: expected keys {list(REQUIRED)} in {path!r}, got missing {missing}")
    try:
        net = QNetSpec.from_dict(state["net"])
    except ValueError as e:
        raise ValueError(f"checkpoint: {e} in {path!r}") from None
    n, config, online = net.n_actions, state["config"], state["online"]
    if not isinstance(config, dict) or not isinstance(online, dict):
        raise ValueError(f"checkpoint: expected a config dict and an online state dict in {path!r}, "
                         f"got {type(config).__name__}, {type(online).__name__}")
    weights = [k for k in online if isinstance(k, str) and k.endswith((".weight", ".weight_mu"))]  # noisy: _mu
    head_key = weights[-1] if weights else "the output layer's weight"
    head = online.get(head_key)  # the Q-network's output layer: [n_actions * atoms, hidden]
    if not isinstance(head, torch.Tensor) or head.ndim != 2 or head.shape[0] != n * net.atoms:
        shape = tuple(head.shape) if isinstance(head, torch.Tensor) else type(head).__name__
        per = f" x {net.atoms} atoms" if net.atoms > 1 else ""
        raise ValueError(f"checkpoint: expected an online net with {n} actions{per}, got {head_key} of shape "
                         f"{shape} in {path!r}")
    return state


def _reason(e: Exception) -> str:
    """The informative line of a torch.load error: for a refused pickle, which global it wanted
    (torch's first line suggests weights_only=False, the one thing not to do with such a file)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return f"refused to unpickle: {line}"
    return lines[0] if lines else type(e).__name__
