"""Stage 5, the run: its config and presets, the training loop, checkpoints, resume, signals and
the run directory's logs. Imports every stage below it (env, frames, replay, learn)."""

from fastdqn.run.config import PRESETS, TrainConfig, preset
from fastdqn.run.trainer import Trainer, TrainResult, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "Trainer", "preset", "train"]
