"""fastdqn's gymnasium wrappers: the DeepMind Atari ones (the book chapter's, Baselines') and the two that
bring other families to the same shape (ProcessFrame for RGB images, FloatObservation for vectors).

Atari order, as ``make_env_from_spec`` applies them: NoopReset -> MaxAndSkip -> EpisodicLife ->
FireReset -> ClipReward -> FrameStack. MaxAndSkip max-pools the last two raw RGB frames and
preprocesses them in the same call (``fastdqn.frames.process_frame(frame, prev)``), so frames
leave it as uint8 [84, 84] and nothing is ever converted to float. Every wrapper records its
constructor arguments (gymnasium's RecordConstructorArgs), so ``env.spec`` can rebuild the env.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np

from fastdqn.frames.geometry import LAYOUTS, OUT_SHAPE
from fastdqn.frames.preprocess import process_any, process_frame
from fastdqn.frames.stack import FrameStacker
from fastdqn.frames.video import Mp4Writer

Record = gym.utils.RecordConstructorArgs


class NoopReset(gym.Wrapper, Record):
    """On reset, take a random number (1..noop_max) of NOOP actions."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        Record.__init__(self, noop_max=noop_max)
        super().__init__(env)
        if noop_max < 1:
            raise ValueError(f"noop_max: expected >= 1, got {noop_max}")
        self.noop_max = noop_max

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gym.Wrapper, Record):
    """Repeat the action `skip` times; observe the max of the last two raw frames: RGB screens,
    or ALE's grey ones when the env observes grey (``obs_type="grayscale"``: the "grey" pool).

    With ``layout`` ("crop" or "full") the max-pooled frame is preprocessed in the same
    kernel call and the observation is uint8 [84, 84]; with ``layout=None`` it stays RGB.
    On a bare ale-py env it drives the emulator directly and reads only the two screens it
    needs (the generic path copies a screen on every raw frame).

    ``max_frames`` truncates an episode at the end of the agent step in which the emulator's
    episode frame count reaches it (ALE's own cap would stop mid-step, on a frame that is not
    the step's observation).
    """

    def __init__(self, env: gym.Env, skip: int = 4, layout: str | None = "crop", max_frames: int | None = None):
        Record.__init__(self, skip=skip, layout=layout, max_frames=max_frames)
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"skip: expected >= 1, got {skip}")
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout: expected 'crop', 'full' or None, got {layout!r}")
        self.skip, self.layout, self.max_frames = skip, layout, max_frames
        raw_shape = env.observation_space.shape
        self._frames = np.zeros((2, *raw_shape), np.uint8)
        base = env.unwrapped
        self._ale = base.ale if _is_fast_ale(base) else None
        self._read_screen = None if self._ale is None else \
            self._ale.getScreenGrayscale if len(raw_shape) == 2 else self._ale.getScreenRGB
        if layout is not None:
            self.observation_space = gym.spaces.Box(0, 255, OUT_SHAPE, np.uint8)

    def _out(self, last: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        if self.layout is None:
            return last.copy() if prev is None else np.maximum(last, prev)
        return process_frame(last, prev, layout=self.layout)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._out(obs, None), info

    def step(self, action):
        if self._ale is not None:
            return self._step_ale(int(action))
        total, n = 0.0, 0
        for n in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self._frames[n % 2] = obs
            total += float(reward)
            if terminated or truncated:
                break
        prev = self._frames[(n + 1) % 2] if n > 0 else None
        return self._out(self._frames[n % 2], prev), total, terminated, truncated or self._capped(terminated), info

    def _capped(self, terminated: bool) -> bool:
        ale = getattr(self.unwrapped, "ale", None)
        return (not terminated and self.max_frames is not None and ale is not None
                and ale.getEpisodeFrameNumber() >= self.max_frames)

    def _step_ale(self, action: int):
        ale, base = self._ale, self.env.unwrapped
        a = base._action_set[action]
        total, last = 0.0, None
        for n in range(self.skip):
            total += ale.act(a)
            over = ale.game_over(with_truncation=True)
            if n >= self.skip - 2 or over:
                last = self._frames[n % 2]
                self._read_screen(last)
            if over:
                break
        # An episode that ends early has only its final screen read: no max for it.
        prev = self._frames[(n + 1) % 2] if n == self.skip - 1 and self.skip > 1 else None
        terminated = ale.game_over(with_truncation=False)
        truncated = ale.game_truncated() or self._capped(terminated)
        return self._out(last, prev), total, terminated, truncated, {"lives": ale.lives()}


def _is_fast_ale(base) -> bool:
    """True for an ale-py AtariEnv that steps one raw RGB or grey frame per call."""
    return (
        hasattr(base, "ale")
        and getattr(base, "_frameskip", None) == 1
        and getattr(base, "_obs_type", None) in ("rgb", "grayscale")
        and not getattr(base, "continuous", False)
    )


class FireReset(gym.Wrapper, Record):
    """Press FIRE (1) then action 2 on reset: games that wait for FIRE start playing."""

    def __init__(self, env: gym.Env):
        Record.__init__(self)
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset: expected action 1 to be FIRE, got actions {meanings}")

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class EpisodicLife(gym.Wrapper, Record):
    """A lost life ends the episode for learning; reset restarts only on real game over.

    ``info["game_over"]`` tells whether the game really ended (for episode statistics).
    """

    def __init__(self, env: gym.Env):
        Record.__init__(self)
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        info["game_over"] = self.game_over
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over or kwargs.get("seed") is not None:  # a seeded reset always starts a new game
            obs, info = self.env.reset(**kwargs)
        else:  # a no-op step moves on from the lost-life state
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class ClipReward(gym.RewardWrapper, Record):
    """Reward -> sign(reward) in {-1, 0, 1}; the raw reward goes to ``info["raw_reward"]``."""

    def __init__(self, env: gym.Env):
        Record.__init__(self)
        super().__init__(env)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = reward
        return obs, self.reward(reward), terminated, truncated, info

    def reward(self, reward):
        return float(np.sign(reward))


class ProcessFrame(gym.ObservationWrapper, Record):
    """An RGB image env (H, W, 3) uint8 -> uint8 [84, 84] grey frames: the fused kernel for
    Atari-sized screens, OpenCV's INTER_AREA for other sizes (fastdqn.frames.process_any).
    ``pool="grey"``: each frame to ALE's grey levels first, then resized as grey screens are."""

    def __init__(self, env: gym.Env, layout: str = "full", pool: str = "rgb"):
        Record.__init__(self, layout=layout, pool=pool)
        super().__init__(env)
        self.layout, self.pool = layout, pool
        self.observation_space = gym.spaces.Box(0, 255, OUT_SHAPE, np.uint8)

    def observation(self, obs):
        return process_any(np.ascontiguousarray(obs), layout=self.layout, pool=self.pool)


class FloatObservation(gym.ObservationWrapper, Record):
    """A vector-observation env's observations as float32 (what the replay stores)."""

    def __init__(self, env: gym.Env):
        Record.__init__(self)
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32),
                                                space.shape, np.float32)

    def observation(self, obs):
        return np.asarray(obs, np.float32)


class FrameStack(gym.Wrapper, Record):
    """Stack the last k frames as [k, *frame]; zeros before the episode's first frame."""

    def __init__(self, env: gym.Env, k: int = 4):
        Record.__init__(self, k=k)
        super().__init__(env)
        self.k = k
        space = env.observation_space
        self.stacker = FrameStacker(np.zeros((1, *space.shape), space.dtype), k)
        low = np.broadcast_to(np.minimum(space.low, 0), (k, *space.shape))
        high = np.broadcast_to(space.high, (k, *space.shape))
        self.observation_space = gym.spaces.Box(low, high, (k, *space.shape), space.dtype)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.stacker.restart([0], obs[None])
        return self.stacker.host[0].copy(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.stacker.push(obs[None])
        return self.stacker.host[0].copy(), reward, terminated, truncated, info


def rgb_screen(env) -> np.ndarray:
    """The env's screen as RGB: ALE's full screen for Atari, the env's own RGB observation
    (or its rgb_array render) otherwise."""
    base = env.unwrapped
    if hasattr(base, "ale"):
        return base.ale.getScreenRGB()
    if hasattr(base, "screen_rgb"):
        return base.screen_rgb()
    frame = base.render() if getattr(base, "render_mode", None) == "rgb_array" else None
    if frame is None:
        raise ValueError(f"video: expected an env with a screen (Atari, or an RGB env), got "
                         f"{type(base).__name__}, which renders none here")
    return np.asarray(frame)


class RecordEpisodes(gym.Wrapper, Record):
    """Record every ``every``-th game of this env (from the first) to ``folder``/game-<n>-<time>.mp4,
    one frame per agent step (--capture-video). A game is a real one: lives lost under EpisodicLife
    do not cut it. A game is written to a ``.part`` file and renamed when it ends, so every .mp4 in
    the folder is complete (and a resumed run's files never overwrite earlier ones)."""

    def __init__(self, env: gym.Env, folder: str, every: int, fps: float = 15.0):
        Record.__init__(self, folder=folder, every=every, fps=fps)
        super().__init__(env)
        self.folder, self.every, self.fps = folder, every, fps
        self.games, self._writer, self._game_over = 0, None, True

    def path(self, game: int) -> str:
        return os.path.join(self.folder, f"game-{game:06d}-{time.strftime('%Y%m%d-%H%M%S')}.mp4")

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self._game_over:  # a new game (not a life lost)
            self.games += 1
            self._game_over = False
            if (self.games - 1) % self.every == 0:
                shot = rgb_screen(self.env)
                self._final = self.path(self.games)
                self._writer = Mp4Writer(self._final + ".part", self.fps, (shot.shape[1], shot.shape[0]),
                                         format="mp4")
        if self._writer is not None:
            self._writer.write(rgb_screen(self.env))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._writer is not None:
            self._writer.write(rgb_screen(self.env))
        if (terminated or truncated) and info.get("game_over", True):
            self._game_over = True
            self._finish()
        return obs, reward, terminated, truncated, info

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            os.replace(self._final + ".part", self._final)

    def close(self):
        self._finish()  # the game in progress when the run ends, cut there
        super().close()
