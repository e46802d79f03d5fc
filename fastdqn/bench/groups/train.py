"""Training loop agent steps/s after replay start (used when fastdqn.train
provides no `bench_specs` hook). The seed-style loop is always measured; the
fastdqn row needs a per-step API from the trainer."""

from __future__ import annotations

from .. import baselines as bl
from ..config import BenchConfig, resolve_device
from ..model import Case, TableSpec

GROUP = "train"


def specs(cfg: BenchConfig) -> list[TableSpec]:
    start = cfg.train_start

    def seed_setup():
        loop = bl.SeedTrainLoop(replay_size=10_000, replay_start=start, device=resolve_device(cfg.device),
                                seed=cfg.seed, batch_size=cfg.batch_size)
        loop.prefill()
        return loop.step

    cases = [Case("seed-style loop (deque of float32 stacks, np.array repack, torch.tensor per field)",
                  seed_setup, role="baseline"),
             Case.unavailable("fastdqn train loop", "not available: fastdqn.train has no bench_specs hook "
                              "(a per-step callable) yet")]
    return [TableSpec("train", GROUP, "Training loop: seed-style loop vs fastdqn, agent steps/s after replay start",
                      unit="agent step", cases=cases,
                      notes=[f"Pong, seeds' hyperparameters (batch {cfg.batch_size}, replay 10k, Adam 1e-4, "
                             f"sync 1k), timed after {start:,} prefilled transitions; one update per step."])]
