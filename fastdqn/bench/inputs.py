"""Shared bench inputs, built once per process: real Pong frames and a
synthetic episode stream of preprocessed frames for the replay buffers."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def pong_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` consecutive raw Pong frames (uint8 [n,210,160,3]) and the frame
    before each one (for the max-pool), from ale-py with random actions."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make("PongNoFrameskip-v4")
    try:
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        raw = [obs]
        for _ in range(60):  # past the blank start of the game
            obs, *_ = env.step(int(rng.integers(env.action_space.n)))
        raw = [obs]
        while len(raw) < n + 1:
            obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            if term or trunc:
                obs, _ = env.reset()
            raw.append(obs)
    finally:
        env.close()
    stack = np.ascontiguousarray(np.stack(raw))
    return stack[1:].copy(), stack[:-1].copy()


@functools.lru_cache(maxsize=2)
def episode_stream(n: int, episode_len: int = 900, seed: int = 0):
    """`n` transitions of synthetic preprocessed frames: frames [n+1,84,84]
    uint8, actions, rewards, and `starts`/`dones` flags (an episode ends every
    `episode_len` steps; ~900 agent steps is a typical Pong game)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(n + 1, 84, 84), dtype=np.uint8)
    actions = rng.integers(0, 6, size=n)
    rewards = rng.choice(np.array([-1.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32), size=n)
    step = np.arange(n)
    dones = (step % episode_len) == episode_len - 1
    return frames, actions, rewards, dones
