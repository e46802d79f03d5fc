"""Building one environment of any gymnasium family from an ``EnvSpec`` (picklable, so vector
workers rebuild it, importing the spec's ``gym_packages`` first).

Families, told apart by the id and the observation space:
- ``atari``: the book chapter's v4 ``NoFrameskip`` ids and ``ALE/...-v5`` ids, through the DeepMind wrappers
  (fastdqn.env.wrappers) and the fused kernel. Each id family keeps its protocol unless the spec
  says otherwise: v5 plays with sticky actions 0.25 and a 108,000-frame episode cap, v4 without
  sticky actions (and ale-py's default cap). The frame skip (4) is MaxAndSkip's, which also
  max-pools the last two frames; ALE itself steps one frame per call.
- ``vector``: a Box of floats (CartPole, Acrobot, LunarLander): float32 observations as they come.
- ``rgb``: an RGB image (H, W, 3) uint8: preprocessed to 84x84 grey (the ``full`` layout; the
  ``crop`` layout is the book chapter's Atari crop), stacked like Atari frames.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from fastdqn.env.wrappers import (ClipReward, EpisodicLife, FireReset, FloatObservation, FrameStack, MaxAndSkip,
                                  NoopReset, ProcessFrame)
from fastdqn.frames.geometry import LAYOUTS, POOLS

FAMILIES = ("atari", "vector", "rgb")
V5_STICKY, V5_MAX_FRAMES = 0.25, 108_000  # the ALE v5 protocol (Machado et al. 2018)

_registered = False


def _register_ale() -> None:
    global _registered
    if not _registered:
        import ale_py

        gym.register_envs(ale_py)
        _registered = True


def is_atari_id(env_id: str) -> bool:
    return "NoFrameskip" in env_id or env_id.startswith("ALE/")


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment. The Atari fields (skip .. fire_reset, episodic_life,
    sticky_actions, max_episode_frames) apply to Atari ids only; ``pool`` is the order of max-pool
    and grey ("rgb": max of RGB screens, then luma; "grey": ALE's grey screens, then max; for
    other RGB envs, "grey" takes the luma of each frame first)."""

    env_id: str = "PongNoFrameskip-v4"
    layout: str = "crop"
    skip: int = 4
    noop_max: int = 0
    fire_reset: bool | None = False  # press FIRE, then 2, after every reset (None: when FIRE is action 1)
    episodic_life: bool = False
    clip_rewards: bool = False
    frame_stack: int = 0  # 0: single frames (the trainer stacks in the replay buffer)
    sticky_actions: float | None = None  # None: the id's protocol (v5: 0.25, v4: 0)
    max_episode_frames: int | None = None  # emulator frames per episode (None: the id's, 108,000 in ale-py)
    gym_packages: tuple = ()  # modules to import first: they register the env id
    pool: str = "rgb"

    def __post_init__(self):
        """Reject a bad spec here, before any emulator starts (workers rebuild envs from it)."""
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id: expected a gymnasium id (a str), got {self.env_id!r}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError(f"layout: expected 'crop', 'full' or None, got {self.layout!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool: expected one of {POOLS}, got {self.pool!r}")
        for name, lo in (("skip", 1), ("noop_max", 0), ("frame_stack", 0), ("max_episode_frames", 1)):
            v = getattr(self, name)
            if v is None and name == "max_episode_frames":
                continue
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name}: expected an int >= {lo}, got {v!r}")
            if v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
        for name in ("fire_reset", "episodic_life", "clip_rewards"):
            v = getattr(self, name)
            if not isinstance(v, bool) and not (v is None and name == "fire_reset"):
                raise TypeError(f"{name}: expected a bool{' or None' if name == 'fire_reset' else ''}, got {v!r}")
        p = self.sticky_actions
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1):
            raise ValueError(f"sticky_actions: expected a probability in [0, 1] or None, got {p!r}")
        if not isinstance(self.gym_packages, tuple) or not all(isinstance(m, str) for m in self.gym_packages):
            raise TypeError(f"gym_packages: expected a tuple of module names, got {self.gym_packages!r}")

    @property
    def atari(self) -> bool:
        return is_atari_id(self.env_id)

    def protocol(self) -> dict:
        """What an Atari env plays ({} for other families); config.json records it. An episode is
        truncated at the end of the agent step in which its emulator frame count reaches
        ``max_episode_frames`` (both env backends: an agent step is never cut)."""
        if not self.atari:
            return {}
        v5 = self.env_id.startswith("ALE/")
        sticky = (V5_STICKY if v5 else 0.0) if self.sticky_actions is None else float(self.sticky_actions)
        frames = registered_max_frames(self.env_id) if self.max_episode_frames is None else self.max_episode_frames
        return {"frameskip": self.skip, "sticky_actions": sticky, "max_episode_frames": frames,
                "noop_max": self.noop_max, "episodic_life": self.episodic_life, "pool": self.pool}


def registered_max_frames(env_id: str) -> int | None:
    """The episode cap (emulator frames) ale-py registers for an Atari id (108,000 for v4 and v5)."""
    _register_ale()
    try:
        return gym.spec(env_id).kwargs.get("max_num_frames_per_episode")
    except gym.error.Error:
        return None  # an unknown id: making the env names it


def played_protocol(env: gym.Env, spec: EnvSpec) -> dict:
    """The Atari protocol the emulator of ``env`` really plays ({} for other families): the
    spec's, with the sticky-action probability read back from the emulator and whether resets
    press FIRE (then action 2, after every reset: the DeepMind wrappers)."""
    ale = getattr(env.unwrapped, "ale", None)
    if ale is None:
        return {}
    return spec.protocol() | {"sticky_actions": round(float(ale.getFloat("repeat_action_probability")), 6),
                              "fire_reset": fires_on_reset(spec, env.unwrapped.get_action_meanings())}


def import_gym_packages(modules) -> None:
    """Import the modules that register environments (rl-baselines3-zoo's --gym-packages)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"gym_packages: expected importable modules, got {name!r} ({e})") from None


def make_env(env_id: str = "PongNoFrameskip-v4", *, seed: int | None = None, **kwargs) -> gym.Env:
    """Build an env with fastdqn's wrappers for its family; keyword arguments are EnvSpec fields."""
    return make_env_from_spec(EnvSpec(env_id=env_id, **kwargs), seed=seed)


def make_env_from_spec(spec: EnvSpec, seed: int | None = None) -> gym.Env:
    if not isinstance(spec, EnvSpec):  # EnvSpec checked its own fields
        raise TypeError(f"spec: expected an EnvSpec, got {type(spec).__name__}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"seed: expected an int >= 0 or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed: expected an int >= 0 or None, got {seed!r}")
    import_gym_packages(spec.gym_packages)
    env = _make_atari(spec) if spec.atari else _make_other(spec)
    if spec.clip_rewards:
        env = ClipReward(env)
    if spec.frame_stack:
        env = FrameStack(env, spec.frame_stack)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _gym_make(env_id: str, what: str, **kw) -> gym.Env:
    try:
        return gym.make(env_id, **kw)
    except gym.error.DependencyNotInstalled as e:  # e.g. LunarLander without box2d
        raise ValueError(f"env_id: {env_id!r} needs a package that is not installed ({e})") from None
    except gym.error.Error as e:  # a typo in the id (or a package not imported): one ValueError
        raise ValueError(f"env_id: expected a registered {what} id, got {env_id!r} ({e})") from None


def _make_atari(spec: EnvSpec) -> gym.Env:
    _register_ale()
    proto = spec.protocol()
    # ALE's own cap (0: none) would cut an agent step; MaxAndSkip truncates at the step's end.
    kw = {"repeat_action_probability": proto["sticky_actions"], "max_num_frames_per_episode": 0,
          "obs_type": "grayscale" if spec.pool == "grey" else "rgb"}
    if spec.env_id.startswith("ALE/"):
        kw["frameskip"] = 1  # MaxAndSkip skips (and max-pools)
    env = _gym_make(spec.env_id, "Atari", **kw)
    if spec.noop_max > 0:
        env = NoopReset(env, spec.noop_max)
    env = MaxAndSkip(env, spec.skip, spec.layout, max_frames=proto["max_episode_frames"])
    if spec.episodic_life:
        env = EpisodicLife(env)
    if fires_on_reset(spec, env.unwrapped.get_action_meanings()):
        env = FireReset(env)
    return env


def fires_on_reset(spec: EnvSpec, action_meanings: list) -> bool:
    """Whether a reset presses FIRE: as the spec says, or (None) when FIRE is action 1."""
    if spec.fire_reset is not None:
        return spec.fire_reset
    return len(action_meanings) >= 3 and action_meanings[1] == "FIRE"


def family_of(env: gym.Env) -> str:
    """'vector' or 'rgb' for a non-Atari env; ValueError for spaces fastdqn cannot learn from."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(act, gym.spaces.Discrete):
        raise ValueError(f"env_id: expected an env with a Discrete action space (DQN), got {act}")
    if isinstance(obs, gym.spaces.Box) and obs.dtype == np.uint8 and len(obs.shape) == 3 and obs.shape[2] == 3:
        return "rgb"
    if isinstance(obs, gym.spaces.Box) and np.issubdtype(obs.dtype, np.floating):
        return "vector"
    raise ValueError(f"env_id: expected an observation that is a Box of floats or an RGB image (H, W, 3) uint8, "
                     f"got {obs}")


def _make_other(spec: EnvSpec) -> gym.Env:
    env = _gym_make(spec.env_id, "gymnasium")
    try:
        family = family_of(env)
    except ValueError:
        env.close()
        raise
    return ProcessFrame(env, pool=spec.pool) if family == "rgb" else FloatObservation(env)
