"""What a run will cost here: on a machine without CUDA, an Atari run is said once, before it
starts, to take hours, from the update rate measured on this CPU."""

from __future__ import annotations

import time

import torch

from fastdqn.devices import resolve_device
from fastdqn.env.spec import is_atari_id
from fastdqn.learn.learner import Learner
from fastdqn.run.config import TrainConfig

SOLVE_FRAMES = 1_000_000  # agent steps the book chapter's Pong preset takes to reach reward_100 > 19, roughly
# agent steps/s of one core stepping Pong with preprocessing: docs/performance.md, 2026-11-21's env
# table (VectorEnv, 8 envs in-process, into the replay: 2,451)
ENV_STEPS_PER_S = 2_500


def cpu_notice(cfg: TrainConfig) -> str | None:
    """The line to print before an Atari run on the CPU, None otherwise."""
    if resolve_device(cfg.device).type != "cpu" or not is_atari_id(cfg.env_id):
        return None
    b, replay_ratio, _ = cfg.learning_schedule()
    start = cfg.replay_start
    if cfg.algo == "pqn":  # epochs x minibatches steps per rollout, from its first (an Adam step stands for RAdam's)
        b, start = cfg.rollout_steps * cfg.num_envs // cfg.minibatches, 0
        replay_ratio = cfg.epochs * cfg.minibatches / (cfg.rollout_steps * cfg.num_envs)
    batch = (torch.zeros((b, 4, 84, 84), dtype=torch.uint8), torch.zeros(b, dtype=torch.int64), torch.zeros(b),
             torch.zeros((b, 4, 84, 84), dtype=torch.uint8), torch.zeros(b))
    threads = torch.get_num_threads()
    with torch.random.fork_rng():  # the run's own seeding is untouched
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        learner = Learner(cfg.net_spec(6, (84, 84)), device="cpu", loss=cfg.loss, double=cfg.double, compile=False)
        learner.update(batch)  # the first one builds Adam's state
        t0 = time.perf_counter()
        for _ in range(3):
            learner.update(batch)
        per_update = (time.perf_counter() - t0) / 3
        torch.set_num_threads(threads)
    frames = cfg.frames or SOLVE_FRAMES
    seconds = max(0, frames - start) * replay_ratio * per_update + frames / ENV_STEPS_PER_S
    budget = f"{frames:,} agent steps" if cfg.frames else f"solving (about {SOLVE_FRAMES:,} agent steps)"
    took = (f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes" if seconds >= 60
            else f"{seconds:.0f} seconds")
    return (f"note: no CUDA device; on this CPU one update of batch {b} takes {per_update * 1000:.0f} ms, so "
            f"{budget} will take about {took} here. For a quick check that fastdqn learns, "
            "try: fastdqn train --preset cartpole (about a minute)")
