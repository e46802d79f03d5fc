"""Env snapshots for ``fastdqn train --resume``: everything that decides an env's future, as
plain bytes, ints and dicts (``torch.load(weights_only=True)`` reads them back)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from fastdqn.env.wrappers import EpisodicLife, FrameStack


def env_state(env: gym.Env) -> dict:
    """Everything that decides an env's future: the emulator with its RNG, the np_random that
    NoopReset draws from, and the wrappers' counters. Plain bytes/ints/dicts (weights_only-safe)."""
    base = env.unwrapped
    state = {"ale": base.ale.cloneState(include_rng=True).serialize(), "np_random": base.np_random.bit_generator.state}
    for w in _wrappers(env):
        if isinstance(w, EpisodicLife):
            state["lives"], state["game_over"] = int(w.lives), bool(w.game_over)
        elif isinstance(w, FrameStack):
            state["stack"] = w.stacker.obs.numpy().tobytes()
        elif hasattr(w, "_elapsed_steps"):  # gymnasium TimeLimit
            state["elapsed_steps"] = w._elapsed_steps
    return state


def set_env_state(env: gym.Env, state: dict) -> None:
    """Restore ``env_state`` output into an env built from the same EnvSpec (and reset once)."""
    import ale_py

    base = env.unwrapped
    if not isinstance(state, dict) or not isinstance(state.get("ale"), bytes):
        got = f"keys {sorted(map(str, state))}" if isinstance(state, dict) else type(state).__name__
        raise TypeError(f"env state: expected a dict from env_state() with 'ale' bytes, got {got}")
    rng_state = state.get("np_random")
    if not isinstance(rng_state, dict) or rng_state.get("bit_generator") != type(base.np_random.bit_generator).__name__:
        raise ValueError(f"env state: expected a {type(base.np_random.bit_generator).__name__} np_random state, "
                         f"got {rng_state!r:.80}")
    base.ale.restoreState(ale_py.ALEState(state["ale"]))
    base.np_random.bit_generator.state = rng_state
    for w in _wrappers(env):
        if isinstance(w, EpisodicLife):
            w.lives, w.game_over = state["lives"], state["game_over"]
        elif isinstance(w, FrameStack):
            saved = np.frombuffer(state["stack"], np.uint8).reshape(w.stacker.obs.shape)
            w.stacker.load(torch.from_numpy(saved.copy()))
        elif hasattr(w, "_elapsed_steps"):
            w._elapsed_steps = state["elapsed_steps"]


def _wrappers(env: gym.Env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env
