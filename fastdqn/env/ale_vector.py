"""Atari envs stepped on ale-py's C++ thread pool, asynchronously: ``send(actions)`` returns at
once, ``recv()`` waits for the frames. The trainer learns in between.

ale-py's ``AtariVectorEnv`` steps the emulators (frame skip, max-pool of the last two RGB
frames, or of ALE's grey screens with ``pool="grey"``, sticky actions) on its own threads,
without the GIL. Its raw 210x160 output then goes through fastdqn's fused kernel ((luma,)
INTER_AREA resize, crop) on C++ threads, straight into the frame array the replay copies from:
the same frames the process backend's wrappers make from the same screens
(tests/test_atari_parity.py compares every stored transition).

It plays only what it plays exactly as the process backend does (``ale_backend_problem``
names the rest, and ``auto`` then picks the process backend):
- no FIRE reset, no random no-ops and no episodic life: the DeepMind wrappers take those steps
  for one env at a time (FIRE then 2 after every reset, a no-op after each lost life), and
  ale-py's vector env steps all envs or none (it presses FIRE for one frame at game start, and
  draws 0..N-1 no-ops from its own RNG);
- the episode cap is fastdqn's, as on the process backend: truncation at the end of the agent
  step that reaches it, then a partial reset (ale-py's own cap stops mid-step and misses the
  step's last screen);
- ale-py reads no screen on the frame that ends a game: its ``final_obs`` there is a blend of
  older frames. The next frame of a game-over transition is stored blank (zeros) here, a
  frame no screen could be; terminal transitions never bootstrap from it.
Also: emulators cannot be snapshotted (``get_state()`` is None: a resumed run restarts the
episodes in flight), and no videos (``--capture-video`` uses the process backend).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from fastdqn import _native
from fastdqn.env.spec import EnvSpec, fires_on_reset, make_env_from_spec, played_protocol

ALE_PY_NEEDED = (0, 12, 1)  # AtariVectorEnv with autoreset_mode and working partial resets (reset_mask)
NO_CAP = 2**31 - 1  # ale-py's own episode cap, off: fastdqn truncates at step ends
from fastdqn.env.vector import ClosedOnExit, StepResult, check_actions
from fastdqn.frames.geometry import OUT_SHAPE, RAW_HEIGHTS, RAW_WIDTH


def ale_backend_problem(spec: EnvSpec, video: bool = False) -> str | None:
    """Why this backend cannot run ``spec`` exactly as the process backend does (None: it can)."""
    if not spec.atari:
        return f"{spec.env_id} is not an Atari id"
    if spec.layout not in ("crop", "full") or spec.frame_stack != 0:
        return "it makes single 84x84 frames only (layout 'crop' or 'full', frame_stack 0)"
    if video:
        return "it cannot record videos (--capture-video)"
    if spec.episodic_life:
        return "episodic life: the wrappers take a no-op after each lost life, one env alone"
    if spec.noop_max > 0:
        return "no-op resets: the wrappers draw 1..noop_max no-ops, one env alone"
    if spec.fire_reset is not False and _fires(spec):
        return "FIRE reset: the wrappers press FIRE then 2 after every reset, one env alone"
    version = _ale_py_version()
    if version < ALE_PY_NEEDED:
        return (f"it needs ale-py >= {'.'.join(map(str, ALE_PY_NEEDED))}, found "
                f"{'.'.join(map(str, version))}")
    if _native.core_or_none() is None:
        return _native.why_missing("_core")
    return None


def _fires(spec: EnvSpec) -> bool:
    if spec.fire_reset is not None:
        return spec.fire_reset
    env = make_env_from_spec(dataclasses.replace(spec, fire_reset=False))
    try:
        return fires_on_reset(spec, env.unwrapped.get_action_meanings())
    finally:
        env.close()


def _ale_py_version() -> tuple:
    from importlib.metadata import version

    return tuple(int(p) for p in re.findall(r"\d+", version("ale-py"))[:3])


def default_threads(num_envs: int) -> int:
    """Emulator threads: one per core, at most one per env. No core idles while the learner has
    nothing to do (before replay start), and while it learns the emulators sleep between steps:
    on 2 cores, 2 threads stepped 1.14-1.26x faster than 1 with no learning and as fast at replay
    ratios 1 and 0.25 (docs/performance.md)."""
    return max(1, min(num_envs, os.cpu_count() or 1))


class AleVectorEnv(ClosedOnExit):
    """``num_envs`` copies of an Atari EnvSpec on ``num_threads`` C++ threads; uint8 [84, 84]
    frames out. ``step(a)`` is ``send(a)`` then ``recv()``."""

    snapshots = False  # get_state() is None: ale-py's vector env exposes no emulator states
    sends_ahead = True  # recv(send_next=) starts the next step before this one's frames are made
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
        finally:
            probe.close()
        if self._raw_height not in RAW_HEIGHTS or game is None:
            raise ValueError(f"env backend 'ale': cannot run {spec.env_id}: a {self._raw_height}-row screen")
        from ale_py.vector_env import AtariVectorEnv

        self._env = AtariVectorEnv(
            game, num_envs, num_threads=threads, autoreset_mode="SameStep",
            img_height=self._raw_height, img_width=RAW_WIDTH, grayscale=spec.pool == "grey", stack_num=1, maxpool=True,
            frameskip=spec.skip, noop_max=0, use_fire_reset=False, episodic_life=False, life_loss_info=False,
            reward_clipping=False,  # raw scores for the statistics; clipped here when the spec clips
            repeat_action_probability=self.protocol["sticky_actions"], max_num_frames_per_episode=NO_CAP,
        )
        self._max_frames = self.protocol["max_episode_frames"] or NO_CAP
        self._raw_shape = (self._raw_height, RAW_WIDTH) + ((3,) if spec.pool == "rgb" else ())
        n = num_envs
        self._frames = np.zeros((n, *OUT_SHAPE), np.uint8)
        self._reset_frames = np.zeros((n, *OUT_SHAPE), np.uint8)
        self._rewards = np.zeros(n, np.float32)
        self._terminated, self._truncated = np.zeros(n, bool), np.zeros(n, bool)
        self._episode_end = np.zeros(n, bool)
        self._episode_return, self._episode_length = np.zeros(n), np.zeros(n, np.int64)
        self._ret, self._len = np.zeros(n), np.zeros(n, np.int64)
        self._actions = np.zeros(n, np.int64)
        self._sent = False

    def _preprocess(self, raw: np.ndarray, out: np.ndarray) -> None:
        self._core.preprocess_batch(raw.reshape(-1, *self._raw_shape), None, out, self.spec.layout, self.num_threads)

    def reset(self) -> np.ndarray:
        """Reset every env (seeded seed+i); returns the first frames, uint8 [N,84,84] (a view)."""
        if self._sent:
            self._env.recv()  # a step in flight: finish it first
            self._sent = False
        obs, info = self._env.reset(seed=self.seed)
        self._preprocess(obs, self._frames)
        self._ret[:], self._len[:] = 0.0, 0
        return self._frames

    def send(self, actions) -> None:
        """Start one agent step of every env; the emulators run while the caller does other work."""
        if self._sent:
            raise RuntimeError("send: the previous step was not received yet (call recv() first)")
        self._start(check_actions(actions, self.num_envs, self.n_actions))

    def _start(self, actions: np.ndarray) -> None:
        self._actions[:] = actions
        self._env.send(self._actions)
        self._sent = True

    def recv(self, send_next=None) -> StepResult:
        """Wait for the step ``send`` started; its frames and flags (views valid until the next step).

        ``send_next``: the next step's actions, known already (every env explores): that step
        starts as soon as the emulators are free, before this one's frames are made (after any
        truncation's reset, which needs them idle). ale-py hands out a new screen array per step,
        so the next step cannot overwrite the screens being read."""
        if not self._sent:
            raise RuntimeError("recv: no step in flight (call send(actions) first)")
        if send_next is not None:  # checked first: bad actions lose no step
            send_next = check_actions(send_next, self.num_envs, self.n_actions)
        obs, reward, terminated, truncated, info = self._env.recv()
        self._sent = False
        if not np.array_equal(info["env_id"], np.arange(self.num_envs)):  # batch_size == num_envs: all, in order
            raise RuntimeError(f"ale-py returned envs {info['env_id']}, expected all {self.num_envs} in order")
        self._terminated[:] = terminated  # a game over: no lives in play, so exactly the game's end
        np.greater_equal(info["episode_frame_number"], self._max_frames, out=self._truncated)
        self._truncated &= ~self._terminated
        self._ret += reward  # raw scores (ale-py's clipping is off)
        self._len += 1
        if self.spec.clip_rewards:
            np.sign(reward, out=self._rewards, casting="unsafe")
        else:
            self._rewards[:] = reward
        if send_next is not None and not self._truncated.any():
            self._start(send_next)
            send_next = None
        self._preprocess(obs, self._frames)  # where a game ended: the next game's first frame
        end = np.logical_or(self._terminated, self._truncated, out=self._episode_end)
        if end.any():
            self._episode_ended(end)
        if send_next is not None:
            self._start(send_next)
        return self._result()

    def _episode_ended(self, end: np.ndarray) -> None:
        """The returns of the games that ended; the next episodes' first frames (a truncation
        resets its env here, with no step in flight)."""
        self._episode_return[end], self._episode_length[end] = self._ret[end], self._len[end]
        self._ret[end], self._len[end] = 0.0, 0
        over = self._terminated
        self._reset_frames[over] = self._frames[over]
        self._frames[over] = 0  # ale-py read no screen on the game's last frame (module docstring)
        if self._truncated.any():  # the real last frame is in obs; now start the next episode
            first, _ = self._env.reset(options={"reset_mask": self._truncated.copy()})
            idx = np.flatnonzero(self._truncated)
            starts = np.empty((len(idx), *OUT_SHAPE), np.uint8)
            self._preprocess(np.ascontiguousarray(first[idx]), starts)
            self._reset_frames[idx] = starts

    def _result(self) -> StepResult:
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
