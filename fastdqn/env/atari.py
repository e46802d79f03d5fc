"""Building one Atari environment: ``EnvSpec`` (picklable, so vector workers rebuild it) and
``make_env_from_spec``, which applies the DeepMind wrappers (fastdqn.env.wrappers) in their order."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from fastdqn.env.wrappers import ClipReward, EpisodicLife, FireReset, FrameStack, MaxAndSkip, NoopReset
from fastdqn.frames.geometry import LAYOUTS

_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        import ale_py

        gym.register_envs(ale_py)
        _registered = True


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
        if self.layout is not None and self.layout not in LAYOUTS:
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
