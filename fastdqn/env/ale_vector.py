"""Atari envs stepped on ale-py's C++ thread pool, asynchronously: ``send(actions)`` returns at
once, ``recv()`` waits for the frames. The trainer learns in between.

ale-py's ``AtariVectorEnv`` steps the emulators (frame skip, max-pool of the last two RGB
frames, sticky actions, no-op and FIRE resets, the episode cap) on its own threads, without the
GIL. Its raw 210x160 RGB output then goes through fastdqn's fused kernel (luma, INTER_AREA
resize, crop) on C++ threads, straight into the frame array the replay copies from: the same
frames the process backend's wrappers make from the same screens.

Same interface as ``fastdqn.env.vector.VectorEnv`` (``StepResult``, auto-reset), with these
differences, all from what ale-py's vector env exposes:
- emulators cannot be snapshotted: ``get_state()`` is None, and a resumed run restarts the
  episodes that were in flight (``fastdqn.run.resume``);
- with ``episodic_life`` a lost life ends the episode for learning and the game goes on from the
  frame after the loss; the seeds' wrappers also take a no-op and FIRE there (ale-py fires only
  when a game starts);
- no videos (``--capture-video`` uses the process backend).
"""

from __future__ import annotations

import os

import numpy as np

from fastdqn import _native
from fastdqn.env.spec import EnvSpec, fires_on_reset, make_env_from_spec, played_protocol
from fastdqn.env.vector import ClosedOnExit, StepResult, check_actions
from fastdqn.frames.geometry import OUT_SHAPE, RAW_HEIGHTS, RAW_WIDTH


def ale_backend_problem(spec: EnvSpec, video: bool = False) -> str | None:
    """Why this backend cannot run ``spec`` (None: it can)."""
    if not spec.atari:
        return f"{spec.env_id} is not an Atari id"
    if spec.layout not in ("crop", "full") or spec.frame_stack != 0:
        return "it makes single 84x84 frames only (layout 'crop' or 'full', frame_stack 0)"
    if video:
        return "it cannot record videos (--capture-video)"
    if _native.core_or_none() is None:
        return _native.why_missing("_core")
    return None


def default_threads(num_envs: int) -> int:
    """Emulator threads: every core but one (the learner's), at least one, at most one per env."""
    return max(1, min(num_envs, (os.cpu_count() or 1) - 1))


class AleVectorEnv(ClosedOnExit):
    """``num_envs`` copies of an Atari EnvSpec on ``num_threads`` C++ threads; uint8 [84, 84]
    frames out. ``step(a)`` is ``send(a)`` then ``recv()``."""

    snapshots = False  # get_state() is None: ale-py's vector env exposes no emulator states
    frame_dtype = np.dtype(np.uint8)
    frame_shape = OUT_SHAPE

    def __init__(self, spec: EnvSpec, num_envs: int, *, num_threads: int | None = None, seed: int = 0):
        if not isinstance(spec, EnvSpec):
            raise TypeError(f"spec: expected an EnvSpec, got {type(spec).__name__}")
        problem = ale_backend_problem(spec)
        if problem:
            raise ValueError(f"env backend 'ale': cannot run {spec.env_id}: {problem}")
        for name, value in (("num_envs", num_envs), ("seed", seed)) + ((("num_threads", num_threads),)
                                                                        if num_threads is not None else ()):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name}: expected an int, got {value!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs: expected >= 1, got {num_envs}")
        if seed < 0:
            raise ValueError(f"seed: expected >= 0, got {seed}")
        threads = default_threads(num_envs) if num_threads is None else num_threads
        if not 1 <= threads <= num_envs:
            raise ValueError(f"num_threads: expected 1..num_envs={num_envs}, got {threads}")
        self.spec, self.num_envs, self.num_threads, self.seed = spec, num_envs, threads, seed
        self.num_workers = 0  # no processes: nothing to die apart from this one
        self._core = _native.core()
        probe = make_env_from_spec(spec)  # the same env the process backend builds: its facts
        try:
            ale_env = probe.unwrapped
            self.n_actions = int(probe.action_space.n)
            self.action_meanings = ale_env.get_action_meanings()
            self.protocol = played_protocol(probe, spec)
            self._raw_height = int(ale_env.observation_space.shape[0])
            game = probe.spec.kwargs["game"] if probe.spec is not None else None
            fire = fires_on_reset(spec, self.action_meanings)
        finally:
            probe.close()
        if self._raw_height not in RAW_HEIGHTS or game is None:
            raise ValueError(f"env backend 'ale': cannot run {spec.env_id}: a {self._raw_height}-row screen")
        from ale_py.vector_env import AtariVectorEnv

        self._env = AtariVectorEnv(
            game, num_envs, num_threads=threads, autoreset_mode="SameStep",
            img_height=self._raw_height, img_width=RAW_WIDTH, grayscale=False, stack_num=1, maxpool=True,
            frameskip=spec.skip, noop_max=spec.noop_max, use_fire_reset=bool(fire),
            episodic_life=False, life_loss_info=spec.episodic_life,  # terminal on a lost life, the game goes on
            reward_clipping=False,  # raw scores for the statistics; clipped here when the spec clips
            repeat_action_probability=self.protocol["sticky_actions"],
            max_num_frames_per_episode=self.protocol["max_episode_frames"] or 0,
        )
        n = num_envs
        self._frames = np.zeros((n, *OUT_SHAPE), np.uint8)
        self._reset_frames = np.zeros((n, *OUT_SHAPE), np.uint8)
        self._final = np.zeros((n, *OUT_SHAPE), np.uint8)
        self._rewards = np.zeros(n, np.float32)
        self._terminated, self._truncated = np.zeros(n, bool), np.zeros(n, bool)
        self._episode_end = np.zeros(n, bool)
        self._episode_return, self._episode_length = np.zeros(n), np.zeros(n, np.int64)
        self._ret, self._len = np.zeros(n), np.zeros(n, np.int64)
        self._lives = np.zeros(n, np.int64)
        self._actions = np.zeros(n, np.int64)
        self._sent = False

    def _preprocess(self, raw: np.ndarray, out: np.ndarray) -> None:
        self._core.preprocess_batch(raw.reshape(-1, self._raw_height, RAW_WIDTH, 3), None, out, self.spec.layout,
                                    self.num_threads)

    def reset(self) -> np.ndarray:
        """Reset every env (seeded seed+i); returns the first frames, uint8 [N,84,84] (a view)."""
        if self._sent:
            self._env.recv()  # a step in flight: finish it first
            self._sent = False
        obs, info = self._env.reset(seed=self.seed)
        self._preprocess(obs, self._frames)
        self._lives[:] = info["lives"]
        self._ret[:], self._len[:] = 0.0, 0
        return self._frames

    def send(self, actions) -> None:
        """Start one agent step of every env; the emulators run while the caller does other work."""
        if self._sent:
            raise RuntimeError("send: the previous step was not received yet (call recv() first)")
        self._actions[:] = check_actions(actions, self.num_envs, self.n_actions)
        self._env.send(self._actions)
        self._sent = True

    def recv(self) -> StepResult:
        """Wait for the step ``send`` started; its frames and flags (views valid until the next step)."""
        if not self._sent:
            raise RuntimeError("recv: no step in flight (call send(actions) first)")
        obs, reward, terminated, truncated, info = self._env.recv()
        self._sent = False
        if not np.array_equal(info["env_id"], np.arange(self.num_envs)):  # batch_size == num_envs: all, in order
            raise RuntimeError(f"ale-py returned envs {info['env_id']}, expected all {self.num_envs} in order")
        self._preprocess(obs, self._frames)  # where an episode ended: the next episode's first frame
        done = terminated | truncated
        self._ret += reward  # raw scores (ale-py's clipping is off)
        self._len += 1
        if self.spec.clip_rewards:
            np.sign(reward, out=self._rewards, casting="unsafe")
        else:
            self._rewards[:] = reward
        self._terminated[:], self._truncated[:] = terminated, truncated
        lives = info["lives"]
        # A lost life with the game going on leaves fewer lives; a new game (after a real end) as many or more.
        end = truncated | (terminated & (lives >= self._lives))
        self._episode_end[:] = end
        self._lives[:] = lives
        if end.any():
            self._episode_return[end], self._episode_length[end] = self._ret[end], self._len[end]
            self._ret[end], self._len[end] = 0.0, 0
        if done.any():
            idx = np.flatnonzero(done)
            self._reset_frames[idx] = self._frames[idx]
            final = np.ascontiguousarray(info["final_obs"][idx])
            self._preprocess(final, self._final[:len(idx)])
            self._frames[idx] = self._final[:len(idx)]
        return StepResult(self._frames, self._rewards, self._terminated, self._truncated, self._reset_frames,
                          self._episode_end, self._episode_return, self._episode_length)

    def step(self, actions) -> StepResult:
        self.send(actions)
        return self.recv()

    def get_state(self) -> None:
        """None: ale-py's vector env cannot snapshot its emulators (a resumed run restarts episodes)."""
        return None

    def set_state(self, states) -> None:
        raise ValueError("env states: the 'ale' env backend cannot restore emulator states "
                         "(a resumed run restarts the episodes in flight)")

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            if self._sent:
                env.recv()
                self._sent = False
            env.close()
