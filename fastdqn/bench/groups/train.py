"""Training loop agent steps/s after replay start, the seeds' hyperparameters (batch 32, one
update per agent step, epsilon at its final 0.01): the seed-style loop against fastdqn's
``Trainer.step``."""

from __future__ import annotations

import torch

from fastdqn.devices import resolve_device
from fastdqn.run.config import TrainConfig
from fastdqn.run.trainer import Trainer

from .. import baselines as bl
from ..config import BenchConfig
from ..model import Case, TableSpec

GROUP = "train"


def specs(cfg: BenchConfig) -> list[TableSpec]:
    dev = str(resolve_device(cfg.device))
    start = cfg.replay_fill

    def seed_setup():
        loop = bl.SeedTrainLoop(replay_size=start, device=dev, seed=cfg.seed, batch_size=cfg.batch_size)
        loop.prefill(start)
        return loop.step

    def fast_setup(num_envs: int = 1):
        tc = TrainConfig(device=dev, seed=cfg.seed, num_envs=num_envs, batch_size=cfg.batch_size,
                         replay_size=max(start, 8 * num_envs), replay_start=start,
                         eps_start=0.01, eps_final=0.01, progress=False, tensorboard=False)
        tr = Trainer(tc, log=False)
        while tr.frame < start:
            tr.step()
        tr.step()
        return tr.step

    cases = [Case("seed-style loop (float32 deque, np.array repack, torch.tensor().to)", seed_setup,
                  role="baseline"),
             Case("fastdqn Trainer.step, 1 env", fast_setup)]
    return [TableSpec("train", GROUP, "Training loop: seed-style loop vs fastdqn, agent steps/s after replay start",
                      unit="agent step", cases=cases,
                      notes=[f"Pong, {dev}, batch {cfg.batch_size}, one update per agent step, epsilon 0.01, "
                             f"replay filled with {start:,} random steps first; torch threads "
                             f"{torch.get_num_threads()}."])]
