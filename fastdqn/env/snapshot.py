"""Env snapshots for ``fastdqn train --resume``: everything that decides an env's future, as
plain bytes, ints and dicts (``torch.load(weights_only=True)`` reads them back).

An Atari env is its emulator (with its RNG). Any other env is the plain attributes of its
unwrapped env (numbers, bools, None, numpy arrays: CartPole's ``state``, a pixel game's ball),
which covers the classic-control envs and fastdqn's test games; an env whose state lives in
other objects (Box2D bodies) raises when it is saved, so no resume pretends to be exact.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from fastdqn.env.wrappers import EpisodicLife, FrameStack


def env_state(env: gym.Env) -> dict:
    """Everything that decides an env's future: the emulator with its RNG, the np_random that
    NoopReset draws from, and the wrappers' counters. Plain bytes/ints/dicts (weights_only-safe)."""
    base = env.unwrapped
    state = {"np_random": base.np_random.bit_generator.state}
    if hasattr(base, "ale"):
        state["ale"] = base.ale.cloneState(include_rng=True).serialize()
    else:
        state["attrs"] = _plain_attributes(base)
    for w in _wrappers(env):
        if isinstance(w, EpisodicLife):
            state["lives"], state["game_over"] = int(w.lives), bool(w.game_over)
        elif isinstance(w, FrameStack):
            state["stack"] = w.stacker.obs.numpy().tobytes()
        elif hasattr(w, "_elapsed_steps"):  # gymnasium TimeLimit
            state["elapsed_steps"] = w._elapsed_steps
    return state


def check_state_form(state, atari: bool, where: str = "env state", source: str = "env_state()") -> str:
    """The key of an env_state() dict's emulator part ('ale' bytes, or 'attrs' for other envs);
    TypeError naming ``where`` when ``state`` is not such a dict."""
    key, kind = ("ale", bytes) if atari else ("attrs", dict)
    if not isinstance(state, dict) or not isinstance(state.get(key), kind):
        got = f"keys {sorted(map(str, state))}" if isinstance(state, dict) else type(state).__name__
        raise TypeError(f"{where}: expected a dict from {source} with {key!r} {kind.__name__}, got {got}")
    return key


def set_env_state(env: gym.Env, state: dict) -> None:
    """Restore ``env_state`` output into an env built from the same EnvSpec (and reset once)."""
    base = env.unwrapped
    key = check_state_form(state, hasattr(base, "ale"))
    rng_state = state.get("np_random")
    if not isinstance(rng_state, dict) or rng_state.get("bit_generator") != type(base.np_random.bit_generator).__name__:
        raise ValueError(f"env state: expected a {type(base.np_random.bit_generator).__name__} np_random state, "
                         f"got {rng_state!r:.80}")
    if key == "ale":
        import ale_py

        base.ale.restoreState(ale_py.ALEState(state["ale"]))
    else:
        for name, value in state["attrs"].items():  # arrays travel as tensors (weights_only loads those)
            setattr(base, name, value.numpy().copy() if isinstance(value, torch.Tensor) else value)
    base.np_random.bit_generator.state = rng_state
    for w in _wrappers(env):
        if isinstance(w, EpisodicLife):
            w.lives, w.game_over = state["lives"], state["game_over"]
        elif isinstance(w, FrameStack):
            saved = np.frombuffer(state["stack"], w.stacker.host.dtype).reshape(w.stacker.obs.shape)
            w.stacker.load(torch.from_numpy(saved.copy()))
        elif hasattr(w, "_elapsed_steps"):
            w._elapsed_steps = state["elapsed_steps"]


_PLAIN = (bool, int, float, str, type(None), np.ndarray, np.generic)


def _plain_attributes(base: gym.Env) -> dict:
    """The unwrapped env's own state: its public and private attributes that are plain values
    (spaces, the RNG, render handles and the spec are rebuilt with the env)."""
    skip = {"np_random", "_np_random", "_np_random_seed", "spec", "render_mode", "metadata", "observation_space",
            "action_space", "screen", "clock", "window"}
    out = {}
    for name, value in vars(base).items():
        if name in skip or callable(value) or isinstance(value, (gym.Space, np.random.Generator)):
            continue
        if not isinstance(value, _PLAIN) or (isinstance(value, np.ndarray) and value.dtype == object):
            raise ValueError(f"env state: {type(base).__name__}.{name} is a {type(value).__name__}, not a plain "
                             "value: this env cannot be snapshotted for --resume")
        out[name] = torch.from_numpy(value.copy()) if isinstance(value, np.ndarray) else \
            value.item() if isinstance(value, np.generic) else value
    return out


def _wrappers(env: gym.Env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env
