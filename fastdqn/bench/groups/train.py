"""Training loop agent steps/s after replay start, the book chapter's hyperparameters (batch 32,
one update per agent step, epsilon at its final 0.01): the book chapter's loop against fastdqn's
``Trainer.step``."""

from __future__ import annotations

import os

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
    start = cfg.train_fill

    def chapter_setup():
        loop = bl.ChapterTrainLoop(replay_size=start, device=dev, seed=cfg.seed, batch_size=cfg.batch_size)
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

    cases = [Case("the book chapter's loop (float32 deque, np.array repack, torch.tensor().to)", chapter_setup,
                  role="baseline"),
             Case("fastdqn Trainer.step, 1 env", fast_setup)]
    return [TableSpec("train", GROUP,
                      "Training loop: the book chapter's loop vs fastdqn, agent steps/s after replay start",
                      unit="agent step", cases=cases,
                      notes=[f"Pong, {dev}, batch {cfg.batch_size}, one update per agent step, epsilon 0.01, "
                             f"replay filled with {start:,} random steps first; torch threads "
                             f"{torch.get_num_threads()}."]),
            overlap_spec(cfg, dev)]


# One update of batch 32 per step of 64 envs: on a 2-core CPU the envs (with acting) and the learner
# then cost about the same, each on its own core. --quick: 16 envs (64 emulators take ~10 s to start
# per row), so the learner's half weighs more there.
OVERLAP_ENVS = {"full": 64, "quick": 16, "tiny": 8}


def overlap_spec(cfg: BenchConfig, dev: str) -> TableSpec:
    """fastdqn train's loop with the envs stepping while the learner learns, against the same
    loop one after the other; plus each half alone, to show max(env, learn) against their sum."""
    n, start = OVERLAP_ENVS[cfg.mode], cfg.train_fill
    ratio = 1 / n  # one update per vector step
    threads = max(1, (os.cpu_count() or 2) - 1)

    def trainer(overlap: bool, learn: bool = True) -> Trainer:
        tc = TrainConfig(device=dev, seed=cfg.seed, num_envs=n, batch_size=cfg.batch_size,
                         replay_size=max(start, 8 * n) + 1024, replay_start=start if learn else 10**9,
                         replay_ratio=ratio, eps_start=0.01, eps_final=0.01, overlap=overlap,
                         env_backend="ale", num_workers=threads, progress=False, tensorboard=False)
        tr = Trainer(tc, log=False)
        while tr.frame < start + n:
            tr.step()
        return tr

    def step_setup(overlap: bool, learn: bool = True):
        return lambda: trainer(overlap, learn).step

    def learn_only():
        tr = trainer(False)
        updates = round(n * ratio)
        return lambda: tr.learn(updates)

    cases = [Case(f"Trainer.step, {n} envs, envs then learner (--no-overlap)", step_setup(False), role="baseline",
                  items=n),
             Case(f"Trainer.step, {n} envs, envs step while the learner learns", step_setup(True), items=n),
             Case("the envs alone: step and store, no updates", step_setup(True, learn=False), items=n,
                  role="floor"),
             Case(f"the learner alone: {round(n * ratio)} update(s) of batch {cfg.batch_size}", learn_only,
                  items=n, role="floor")]
    return TableSpec("overlap", GROUP, "fastdqn train's loop: envs and learner overlapped vs one after the other",
                     unit="agent step", cases=cases,
                     notes=[f"Pong, {dev}, 'ale' env backend on {threads} emulator thread(s), replay ratio "
                            f"1/{n} (one update of batch {cfg.batch_size} per step of {n} envs), epsilon "
                            f"0.01, torch threads {torch.get_num_threads()}. Overlapped, a step should cost about "
                            "the larger of the two halves, not their sum."])
