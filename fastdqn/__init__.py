"""fastdqn: DQN on Atari at the speed the hardware allows.

``import fastdqn`` is light: the names below load their stage on first use, and the replay
buffer never pulls in OpenCV or Numba.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Batch": "fastdqn.replay.buffer",
    "ReplayBuffer": "fastdqn.replay.buffer",
    "TrainConfig": "fastdqn.run.config",
    "preset": "fastdqn.run.config",
    "Trainer": "fastdqn.run.trainer",
    "train": "fastdqn.run.trainer",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fastdqn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
