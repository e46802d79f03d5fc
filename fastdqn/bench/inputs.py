"""Shared bench inputs, built once per process: real Pong frames and a
synthetic episode stream of preprocessed frames for the replay buffers."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=16)
def game_frames(game: str = "PongNoFrameskip-v4", n: int = 256, seed: int = 0, warmup: int = 60,
                every: int = 1, grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` raw frames of ``game`` (uint8 [n, 210, 160, 3], or ALE's grey screens [n, 210, 160]
    with ``grey``) and the frame just before each (the max-pool pair), from ale-py with seeded
    random actions: ``warmup`` frames first (past the blank start of a game), then one pair every
    ``every`` frames. The one frame capture of the bench, the tests and bench/gpu_micro.py."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make(game, obs_type="grayscale" if grey else "rgb")
    rng = np.random.default_rng(seed)

    def step(obs):
        obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
        return env.reset()[0] if term or trunc else obs

    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(warmup):
            obs = step(obs)
        frames, prevs = [], []
        while len(frames) < n:
            prevs.append(obs)
            obs = step(obs)
            frames.append(obs)
            for _ in range(every - 1):
                obs = step(obs)
    finally:
        env.close()
    return np.ascontiguousarray(np.stack(frames)), np.ascontiguousarray(np.stack(prevs))


def pong_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` consecutive raw Pong frames and the frame before each one."""
    return game_frames("PongNoFrameskip-v4", n, seed)


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
