"""Atari environments: the DeepMind wrappers as gymnasium wrappers, and a vector path.

Wrapper order (seeds, baselines): NoopReset -> MaxAndSkip -> EpisodicLife -> FireReset
-> preprocessing -> ClipReward -> FrameStack. MaxAndSkip max-pools the last two raw RGB
frames and preprocesses them in the same call (``fastdqn.preprocess.process_frame(frame,
prev)``), so the frames leave it as uint8 [84, 84] and nothing is ever converted to float.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        import ale_py

        gym.register_envs(ale_py)
        _registered = True


class NoopReset(gym.Wrapper):
    """On reset, take a random number (1..noop_max) of NOOP actions."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
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


class MaxAndSkip(gym.Wrapper):
    """Repeat the action `skip` times; observe the max of the last two raw RGB frames.

    With ``layout`` ("crop" or "full") the max-pooled frame is preprocessed in the same
    kernel call and the observation is uint8 [84, 84]; with ``layout=None`` it stays RGB.
    On a bare ale-py env it drives the emulator directly and reads only the two screens it
    needs (the generic path copies a screen on every raw frame).
    """

    def __init__(self, env: gym.Env, skip: int = 4, layout: str | None = "crop"):
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"skip: expected >= 1, got {skip}")
        if layout not in (None, "crop", "full"):
            raise ValueError(f"layout: expected 'crop', 'full' or None, got {layout!r}")
        self.skip, self.layout = skip, layout
        raw_shape = env.observation_space.shape
        self._frames = np.zeros((2, *raw_shape), np.uint8)
        base = env.unwrapped
        self._ale = base.ale if _is_fast_ale(base) else None
        if layout is not None:
            self.observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)

    def _out(self, last: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        if self.layout is None:
            return last.copy() if prev is None else np.maximum(last, prev)
        from fastdqn.preprocess import process_frame

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
        return self._out(self._frames[n % 2], prev), total, terminated, truncated, info

    def _step_ale(self, action: int):
        ale, base = self._ale, self.env.unwrapped
        a = base._action_set[action]
        total, last = 0.0, None
        for n in range(self.skip):
            total += ale.act(a)
            over = ale.game_over(with_truncation=True)
            if n >= self.skip - 2 or over:
                last = self._frames[n % 2]
                ale.getScreenRGB(last)
            if over:
                break
        # An episode that ends early has only its final screen read: no max for it.
        prev = self._frames[(n + 1) % 2] if n == self.skip - 1 and self.skip > 1 else None
        terminated = ale.game_over(with_truncation=False)
        truncated = ale.game_truncated()
        return self._out(last, prev), total, terminated, truncated, {"lives": ale.lives()}


def _is_fast_ale(base) -> bool:
    """True for an ale-py AtariEnv that steps one raw RGB frame per call."""
    return (
        hasattr(base, "ale")
        and getattr(base, "_frameskip", None) == 1
        and getattr(base, "_obs_type", None) == "rgb"
        and not getattr(base, "continuous", False)
    )


class FireReset(gym.Wrapper):
    """Press FIRE (1) then action 2 on reset: games that wait for FIRE start playing."""

    def __init__(self, env: gym.Env):
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


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for learning; reset restarts only on real game over.

    ``info["game_over"]`` tells whether the game really ended (for episode statistics).
    """

    def __init__(self, env: gym.Env):
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
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # a no-op step moves on from the lost-life state
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class ClipReward(gym.RewardWrapper):
    """Reward -> sign(reward) in {-1, 0, 1}; the raw reward goes to ``info["raw_reward"]``."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = reward
        return obs, self.reward(reward), terminated, truncated, info

    def reward(self, reward):
        return float(np.sign(reward))


class ProcessFrame(gym.ObservationWrapper):
    """RGB [210,160,3] -> uint8 [84,84] with fastdqn.preprocess (for raw-RGB chains)."""

    def __init__(self, env: gym.Env, layout: str = "crop"):
        super().__init__(env)
        self.layout = layout
        self.observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)

    def observation(self, obs):
        from fastdqn.preprocess import process_frame

        return process_frame(obs, layout=self.layout)


class FrameStack(gym.Wrapper):
    """Stack the last k uint8 frames as [k, 84, 84]; zeros before the episode's first frame."""

    def __init__(self, env: gym.Env, k: int = 4):
        super().__init__(env)
        shape = env.observation_space.shape
        self.stack = np.zeros((k, *shape), np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, (k, *shape), np.uint8)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.stack[:] = 0
        self.stack[-1] = obs
        return self.stack.copy(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.stack[:-1] = self.stack[1:].copy()
        self.stack[-1] = obs
        return self.stack.copy(), reward, terminated, truncated, info


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment (picklable, so vector workers can rebuild it)."""

    env_id: str = "PongNoFrameskip-v4"
    layout: str = "crop"
    skip: int = 4
    noop_max: int = 0
    fire_reset: bool | None = None  # None: when the game has FIRE as action 1
    episodic_life: bool = False
    clip_rewards: bool = False
    frame_stack: int = 0  # 0: single frames (the trainer stacks in the replay buffer)

    def __post_init__(self):
        """Reject a bad spec here, before any emulator starts (workers rebuild envs from it)."""
        if not isinstance(self.env_id, str):
            raise TypeError(f"env_id: expected a str, got {type(self.env_id).__name__}")
        if "NoFrameskip" not in self.env_id and not self.env_id.startswith("ALE/"):
            raise ValueError(f"env_id: expected an Atari id like 'PongNoFrameskip-v4', got {self.env_id!r}")
        if self.layout not in (None, "crop", "full"):
            raise ValueError(f"layout: expected 'crop', 'full' or None, got {self.layout!r}")
        for name, lo in (("skip", 1), ("noop_max", 0), ("frame_stack", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name}: expected an int >= {lo}, got {v!r}")
            if v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
        for name in ("fire_reset", "episodic_life", "clip_rewards"):
            v = getattr(self, name)
            if not isinstance(v, bool) and not (v is None and name == "fire_reset"):
                raise TypeError(f"{name}: expected a bool{' or None' if name == 'fire_reset' else ''}, got {v!r}")


def make_env(env_id: str = "PongNoFrameskip-v4", *, seed: int | None = None, **kwargs) -> gym.Env:
    """Build an Atari env with the DeepMind wrappers; keyword arguments are EnvSpec fields."""
    return make_env_from_spec(EnvSpec(env_id=env_id, **kwargs), seed=seed)


def make_env_from_spec(spec: EnvSpec, seed: int | None = None) -> gym.Env:
    if not isinstance(spec, EnvSpec):  # EnvSpec checked its own fields
        raise TypeError(f"spec: expected an EnvSpec, got {type(spec).__name__}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"seed: expected an int >= 0 or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed: expected an int >= 0 or None, got {seed!r}")
    _register()
    kw = {"frameskip": 1, "repeat_action_probability": 0.0} if spec.env_id.startswith("ALE/") else {}
    try:
        env = gym.make(spec.env_id, **kw)
    except gym.error.UnregisteredEnv as e:  # a typo in the game name: one ValueError, not gym's type
        raise ValueError(f"env_id: expected a registered Atari id, got {spec.env_id!r} ({e})") from None
    if spec.noop_max > 0:
        env = NoopReset(env, spec.noop_max)
    env = MaxAndSkip(env, spec.skip, spec.layout)
    if spec.episodic_life:
        env = EpisodicLife(env)
    fire = spec.fire_reset
    if fire is None:
        meanings = env.unwrapped.get_action_meanings()
        fire = len(meanings) >= 3 and meanings[1] == "FIRE"
    if fire:
        env = FireReset(env)
    if spec.clip_rewards:
        env = ClipReward(env)
    if spec.frame_stack:
        env = FrameStack(env, spec.frame_stack)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


# -- snapshots (``fastdqn train --resume``) ----------------------------------------------------
def env_state(env: gym.Env) -> dict:
    """Everything that decides an env's future: the emulator with its RNG, the np_random that
    NoopReset draws from, and the wrappers' counters. Plain bytes/ints/dicts (weights_only-safe)."""
    base = env.unwrapped
    state = {"ale": base.ale.cloneState(include_rng=True).serialize(), "np_random": base.np_random.bit_generator.state}
    for w in _wrappers(env):
        if isinstance(w, EpisodicLife):
            state["lives"], state["game_over"] = int(w.lives), bool(w.game_over)
        elif isinstance(w, FrameStack):
            state["stack"] = w.stack.tobytes()
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
            w.stack[:] = np.frombuffer(state["stack"], np.uint8).reshape(w.stack.shape)
        elif hasattr(w, "_elapsed_steps"):
            w._elapsed_steps = state["elapsed_steps"]


def _wrappers(env: gym.Env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env
