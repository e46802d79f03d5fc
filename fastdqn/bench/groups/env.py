"""Env steps/s over the trainer's public API (used when fastdqn.vecenv/envs
provide no `bench_specs` hook of their own). One item = one agent step of one
env (4 emulator frames, max-pooled and preprocessed)."""

from __future__ import annotations

import os

import numpy as np

from .. import baselines as bl
from ..config import BenchConfig
from ..model import Case, TableSpec

GROUP = "env"


def _stepper(env_step, n_actions: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, n_actions, size=(4096, n))
    state = {"i": 0}

    def run():
        i = state["i"] = (state["i"] + 1) % len(actions)
        env_step(actions[i] if n > 1 else int(actions[i, 0]))
    return run


def specs(cfg: BenchConfig, vector: bool = True) -> list[TableSpec]:
    cores = os.cpu_count() or 1
    n = cfg.num_envs
    workers = min(n, cores) if cfg.env_workers is None else cfg.env_workers

    def seed_setup():
        env = bl.SeedPongEnv(seed=cfg.seed)
        return _stepper(env.step, 6, 1, cfg.seed)

    cases = [Case("seed wrappers, 1 env (float32 stacks)", seed_setup, role="baseline")]
    try:
        from fastdqn import envs, vecenv
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        why = f"fastdqn.envs/vecenv not importable ({type(exc).__name__})"
        cases += [Case.unavailable("fastdqn env, 1 env", why),
                  Case.unavailable(f"fastdqn VectorEnv, {n} envs", why)]
    else:
        def fast_single():
            env = envs.make_env(seed=cfg.seed, frame_stack=4)

            def step(a):
                _, _, term, trunc, _ = env.step(a)
                if term or trunc:
                    env.reset()
            return _stepper(step, env.action_space.n, 1, cfg.seed)

        def fast_vector():
            venv = vecenv.VectorEnv(envs.EnvSpec(), n, num_workers=workers, seed=cfg.seed)
            venv.reset()
            return _stepper(venv.step, 6, n, cfg.seed)

        cases.append(Case("fastdqn make_env, 1 env (uint8 stack)", fast_single))
        if vector:
            cases.append(Case(f"fastdqn VectorEnv, {n} envs, {workers} worker processes", fast_vector, items=n))

    def ale_vector():
        from ale_py.vector_env import AtariVectorEnv

        venv = AtariVectorEnv("pong", n, num_threads=cores, stack_num=4, reward_clipping=False,
                              noop_max=0, use_fire_reset=True, img_height=84, img_width=84)
        venv.reset(seed=cfg.seed)
        return _stepper(venv.step, 6, n, cfg.seed)

    if vector:
        cases.append(Case(f"ale-py AtariVectorEnv, {n} envs, {cores} threads (84x84 full layout)", ale_vector,
                          role="alternative", items=n))
    return [TableSpec("env-wrappers", GROUP, "Env steps/s: the seeds' wrappers vs fastdqn's, one env"
                      + (" (and vector paths)" if vector else ""),
                      unit="env step", cases=cases,
                      notes=["Pong, random actions, frame skip 4 with max-pool, 84x84 grey; time per env step "
                             "(vector rows: call time / envs). Env stepping only, no replay insert."])]
