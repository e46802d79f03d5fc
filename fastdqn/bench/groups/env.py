"""Env steps/s. One item = one agent step of one env (4 emulator frames, max-pooled and
preprocessed).

env-wrappers: the book chapter's wrapper chain against fastdqn's ``make_env``, one env.
env: the vector path into the replay buffer, ale-py's AtariVectorEnv (its own 84x84 output)
against fastdqn's AleVectorEnv (ale-py's threads, raw RGB through the fused kernel) and VectorEnv
(same frame skip, max-pool, 84x84 grey, into the same buffer).
"""

from __future__ import annotations

import os

import numpy as np

from fastdqn.env.ale_vector import AleVectorEnv
from fastdqn.env.spec import EnvSpec, make_env
from fastdqn.env.vector import VectorEnv
from fastdqn.replay.buffer import ReplayBuffer

from .. import baselines as bl
from ..config import BenchConfig
from ..model import Case, TableSpec

GROUP = "env"


def _stepper(env_step, n_actions: int, n: int, seed: int):
    """A run() that steps with pre-drawn random actions (an int for one env, an array for N)."""
    actions = np.random.default_rng(seed).integers(0, n_actions, size=(4096, n))
    state = {"i": 0}

    def run():
        i = state["i"] = (state["i"] + 1) % len(actions)
        env_step(actions[i] if n > 1 else int(actions[i, 0]))
    return run


def wrappers_spec(cfg: BenchConfig) -> TableSpec:
    def chapter_setup():
        env = bl.ChapterPongEnv(seed=cfg.seed)
        return _stepper(env.step, 6, 1, cfg.seed)

    def fast_single():
        env = make_env(seed=cfg.seed, frame_stack=4)

        def step(a):
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        return _stepper(step, env.action_space.n, 1, cfg.seed)

    cases = [Case("the book chapter's wrappers, 1 env (float32 stacks)", chapter_setup, role="baseline"),
             Case("fastdqn make_env, 1 env (uint8 stack)", fast_single)]
    return TableSpec("env-wrappers", GROUP, "Env steps/s: the book chapter's wrappers vs fastdqn's, one env",
                     unit="env step", cases=cases,
                     notes=["Pong, random actions, frame skip 4 with max-pool, 84x84 grey; time per env step. "
                            "Env stepping only, no replay insert."])


def _into_replay(n: int, seed: int):
    """A ReplayBuffer fed with add_many (and start_many on episode ends)."""
    buf = ReplayBuffer(10_000, num_envs=n, seed=seed)

    def feed(actions, rewards, frames, term, trunc, reset_frames):
        buf.add_many(actions, rewards, frames, term, trunc)
        done = term | trunc
        if done.any():
            buf.start_many(reset_frames[done], envs=np.flatnonzero(done).tolist())
    return buf, feed


def vector_spec(cfg: BenchConfig, live: list) -> TableSpec:
    """``live`` keeps the envs alive while they are timed (workers exit with the process)."""
    n, cores = cfg.num_envs, os.cpu_count() or 1

    def ours(make_venv, num_envs):
        """fastdqn's vector env ``make_venv()`` feeding the replay (both backends: one interface)."""
        def setup():
            venv = make_venv()
            live.append(venv)
            buf, feed = _into_replay(num_envs, cfg.seed)
            buf.start_many(venv.reset())

            def step(a):
                a = np.atleast_1d(a)  # _stepper hands one env an int
                r = venv.step(a)
                feed(a, r.rewards, r.frames, r.terminated, r.truncated, r.reset_frames)
            return _stepper(step, 6, num_envs, cfg.seed)
        return setup

    def fast(num_envs, workers):
        return ours(lambda: VectorEnv(EnvSpec(), num_envs, num_workers=workers, seed=cfg.seed), num_envs)

    def ale(num_envs, threads):
        def setup():
            from ale_py.vector_env import AtariVectorEnv

            # Same work as ours: frame skip 4, max-pool, no FIRE reset, no noops, 84x84 grey,
            # one frame per env per step (the buffer stacks), rewards unclipped.
            venv = AtariVectorEnv("pong", num_envs, num_threads=threads, stack_num=1, img_height=84,
                                  img_width=84, noop_max=0, use_fire_reset=False, reward_clipping=False,
                                  autoreset_mode="SameStep")
            live.append(venv)
            buf, feed = _into_replay(num_envs, cfg.seed)
            obs, _ = venv.reset(seed=cfg.seed)
            buf.start_many(np.ascontiguousarray(obs[:, -1]))

            def step(a):
                obs, rew, term, trunc, info = venv.step(a)
                frames = np.ascontiguousarray(obs[:, -1])
                # SameStep autoreset returns the reset frame in place of the final one.
                feed(a, rew.astype(np.float32), frames, term, trunc, frames)
            return _stepper(step, 6, num_envs, cfg.seed)
        return setup

    def threaded(num_envs, threads):
        return ours(lambda: AleVectorEnv(EnvSpec(), num_envs, num_threads=threads, seed=cfg.seed), num_envs)

    workers = min(n, cores)
    cases = [
        Case(f"ale-py AtariVectorEnv, {n} envs, {cores} threads -> add_many", ale(n, cores), role="baseline", items=n),
        Case(f"fastdqn AleVectorEnv (ale-py threads + fused kernel), {n} envs, {cores} threads -> add_many",
             threaded(n, cores), items=n),
        Case("fastdqn VectorEnv, 1 env in-process -> add_many", fast(1, 0), items=1),
        Case(f"fastdqn VectorEnv, {n} envs in-process -> add_many", fast(n, 0), items=n),
        Case(f"fastdqn VectorEnv, {n} envs, {workers} worker processes -> add_many", fast(n, workers), items=n),
    ]
    return TableSpec("env", GROUP, "Env steps/s into the replay buffer: ale-py AtariVectorEnv vs fastdqn",
                     unit="env step", cases=cases,
                     notes=["Pong, random actions, frame skip 4 with max-pool, 84x84 grey (AtariVectorEnv: its "
                            "grey-then-max order, 'full' layout; fastdqn: max on RGB then luma, 'crop' layout), "
                            "each step written to a ReplayBuffer with add_many. AleVectorEnv is the 'ale' env "
                            "backend of fastdqn train; VectorEnv the 'process' one."])


def specs(cfg: BenchConfig) -> list[TableSpec]:
    return [wrappers_spec(cfg), vector_spec(cfg, live=[])]
