"""Prioritized replay: sample(B) + update_priorities(B) against a uniform sample(B), and against
cpprb's PrioritizedReplayBuffer (when installed: pip install cpprb), at two capacities.

Pixels (84x84 frames, stack 4) at the small capacity; at the large one 4-float vector
observations (CartPole's), so that a million transitions fit in memory for both libraries:
the trees' cost does not depend on what a transition holds."""

from __future__ import annotations

import importlib.util

import numpy as np

from fastdqn.replay.buffer import ReplayBuffer

from ..config import BenchConfig
from ..inputs import episode_stream
from ..model import Case, TableSpec

GROUP = "replay"
EPISODE = 900  # steps per synthetic episode


def _fill(buf_add, buf_start, n: int, obs_of) -> None:
    for t in range(n):
        if t % EPISODE == 0:
            buf_start(obs_of(t))
        buf_add(t, obs_of(t + 1), t % EPISODE == EPISODE - 1)


def _fastdqn(capacity: int, pixels: bool, prioritized: bool, seed: int):
    kw = dict(frame_shape=(84, 84), stack=4) if pixels else dict(frame_shape=(4,), stack=1, dtype="float32")
    buf = ReplayBuffer(capacity, seed=seed, prioritized=prioritized, **kw)
    frames = episode_stream(capacity, seed=seed)[0] if pixels else None
    obs_of = (lambda t: frames[t]) if pixels else (lambda t: np.full(4, t % 997, np.float32))
    _fill(lambda t, nxt, end: buf.add(t % 6, 0.0, nxt, end), lambda o: buf.start(o), capacity, obs_of)
    return buf


def _cpprb(capacity: int, pixels: bool, seed: int):
    from cpprb import PrioritizedReplayBuffer

    np.random.seed(seed)
    if pixels:  # cpprb's own frame deduplication: next_of and stack_compress
        env_dict = {"obs": {"shape": (84, 84, 4), "dtype": np.uint8}, "act": {}, "rew": {}, "done": {}}
        buf = PrioritizedReplayBuffer(capacity, env_dict, next_of="obs", stack_compress="obs", alpha=0.6)
        frames = episode_stream(capacity, seed=seed)[0]
        stack = np.zeros((84, 84, 4), np.uint8)

        def obs_of(t):
            stack[..., :-1] = stack[..., 1:]
            stack[..., -1] = frames[t]
            return stack.copy()
    else:
        env_dict = {"obs": {"shape": (4,), "dtype": np.float32}, "act": {}, "rew": {}, "done": {}}
        buf = PrioritizedReplayBuffer(capacity, env_dict, next_of="obs", alpha=0.6)

        def obs_of(t):
            return np.full(4, t % 997, np.float32)
    state = {"obs": None}

    def start(o):
        state["obs"] = o

    def add(t, nxt, end):
        buf.add(obs=state["obs"], act=t % 6, rew=0.0, next_obs=nxt, done=float(end))
        state["obs"] = nxt
        if end:
            buf.on_episode_end()
    _fill(add, start, capacity, obs_of)
    return buf


def spec_for(cfg: BenchConfig, capacity: int, pixels: bool) -> TableSpec:
    b = cfg.batch_size
    rng = np.random.default_rng(cfg.seed)

    def uniform():
        buf = _fastdqn(capacity, pixels, False, cfg.seed)
        return lambda: buf.sample(b)

    def prioritized():
        buf = _fastdqn(capacity, pixels, True, cfg.seed)

        def step():
            batch = buf.sample(b, beta=0.4)
            buf.update_priorities(batch.indices, rng.random(b))
        return step

    def cpprb():
        buf = _cpprb(capacity, pixels, cfg.seed)

        def step():
            batch = buf.sample(b, beta=0.4)
            buf.update_priorities(batch["indexes"], rng.random(b) + 1e-6)
        return step

    what = "84x84 frames, stack 4" if pixels else "4-float vector observations"
    cases = [Case(f"fastdqn uniform sample({b})", uniform, role="baseline"),
             Case(f"fastdqn prioritized sample({b}) + update_priorities({b})", prioritized)]
    label = f"cpprb PrioritizedReplayBuffer sample({b}) + update_priorities({b})"
    cases.append(Case(label, cpprb, role="alternative") if importlib.util.find_spec("cpprb")
                 else Case.unavailable(label, "cpprb not installed (pip install cpprb)", role="alternative"))
    return TableSpec(f"replay-prioritized-{capacity}", GROUP,
                     f"Prioritized replay at {capacity:,} transitions ({what})", unit=f"sample({b})", cases=cases,
                     notes=[f"Full buffers of {EPISODE}-step episodes; new random priorities every call. cpprb "
                            "stores pixel stacks with its own deduplication (next_of, stack_compress)."])


def specs(cfg: BenchConfig) -> list[TableSpec]:
    small, large = min(cfg.capacities), max(cfg.capacities)
    return [spec_for(cfg, small, pixels=True), spec_for(cfg, large, pixels=False)]
