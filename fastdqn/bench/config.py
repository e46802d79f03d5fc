"""Bench sizes: full (the figures of the docs), --quick (< 2 min on 2 cores), --tiny (smoke test)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .timer import Budget

GROUPS = ("e2e", "preprocess", "replay", "loss", "env", "train", "scale")


@dataclass(frozen=True)
class BenchConfig:
    mode: str = "full"  # "full" | "quick" | "tiny"
    rounds: int = 21
    round_s: float = 0.1
    frames: int = 256  # preprocessing batch (real Pong frames)
    replay_fill: int = 10_000  # transitions in the buffers (the book chapter's replay size)
    train_fill: int = 10_000  # agent steps the training-loop rows play before they are timed
    batch_size: int = 32
    capacities: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    built_capacities: tuple[int, ...] = (10_000, 100_000)  # larger ones are computed
    compile: bool = True  # torch.compile rows (slow to build on a CPU)
    num_envs: int = 8  # vector env rows
    device: str = "auto"
    # 1 by default: with more, one busy core stalls every OpenMP barrier and a batch-32
    # update swings 10x on a shared machine. 0 keeps torch's default (all cores).
    torch_threads: int = 1
    seed: int = 0

    @property
    def budget(self) -> Budget:
        return Budget(rounds=self.rounds, round_s=self.round_s)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_config(mode: str = "full", **overrides) -> BenchConfig:
    presets = {
        "full": {},
        "quick": dict(rounds=5, round_s=0.03, frames=128, compile=False, train_fill=1_000,
                      capacities=(10_000, 100_000), built_capacities=(10_000,)),
        "tiny": dict(rounds=3, round_s=0.005, frames=8, replay_fill=300, train_fill=300, batch_size=4, compile=False,
                     capacities=(1_000, 10_000), built_capacities=(1_000,), num_envs=2),
    }
    if mode not in presets:
        raise ValueError(f"mode: expected one of {sorted(presets)}, got {mode!r}")
    fields = {f.name for f in dataclasses.fields(BenchConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise TypeError(f"unknown BenchConfig fields: {bad}")
    kwargs = {**presets[mode], **{k: v for k, v in overrides.items() if v is not None}}
    return BenchConfig(mode=mode, **kwargs)
