"""N envs stepped together; their frames land in shared arrays for ReplayBuffer.add_many.

ALE's ``act`` holds the GIL, so threads do not scale: with ``num_workers > 0`` the envs are
split over worker processes that step, max-pool and preprocess their slice and write their
frames (uint8 [84, 84] pixels, or float32 vector observations) straight into one shared-memory
block. The parent only flips a byte per worker per step. ``num_workers=0`` steps everything
in-process (best for one env).
Episodes auto-reset: where an episode ended, ``frames`` holds its last frame and
``reset_frames`` the first frame of the next one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import threading
from multiprocessing import resource_tracker, shared_memory
from typing import NamedTuple

import numpy as np

from fastdqn.env.spec import EnvSpec, make_env_from_spec, played_protocol
from fastdqn.env.snapshot import check_state_form, env_state
from fastdqn.env.wrappers import rgb_screen
from fastdqn.env.vector_worker import EnvSlice, block_fields, block_layout, block_views, worker_main


class StepResult(NamedTuple):
    """Views into the shared block: valid until the next step() (copy what you keep)."""

    frames: np.ndarray  # [N, *frame_shape] of frame_dtype, frame after the action
    rewards: np.ndarray  # float32 [N] (clipped when the spec clips)
    terminated: np.ndarray  # bool [N]
    truncated: np.ndarray  # bool [N]
    reset_frames: np.ndarray  # [N, *frame_shape], valid where terminated | truncated
    episode_end: np.ndarray  # bool [N], a real game ended (not just a life)
    episode_return: np.ndarray  # float64 [N], raw game score, valid where episode_end
    episode_length: np.ndarray  # int64 [N], agent steps, valid where episode_end


def default_workers(num_envs: int) -> int:
    """Env worker processes: none for one env or on <= 2 cores (measured: in-process stepping
    beats worker processes there), else one per env up to cores - 1 (a core for the learner)."""
    cores = os.cpu_count() or 1
    return 0 if num_envs == 1 or cores <= 2 else min(num_envs, cores - 1)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (it unlinks the shared block if we die) with
    SIGHUP ignored, a disposition it inherits: it ignores SIGINT and SIGTERM itself but not
    SIGHUP, so a dropped SSH session would kill it along with the process group."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, old)


def check_actions(actions, num_envs: int, n_actions: int) -> np.ndarray:
    """``actions`` as an int array [num_envs] of values in 0..n_actions-1 (else TypeError/ValueError)."""
    a = np.asarray(actions)
    if a.dtype.kind not in "iu":
        raise TypeError(f"actions: expected int [{num_envs}], got {a.dtype} {list(a.shape)}")
    if a.shape != (num_envs,):
        raise ValueError(f"actions: expected int [{num_envs}], got {a.dtype} {list(a.shape)}")
    if a.size and (a.min() < 0 or a.max() >= n_actions):
        raise ValueError(f"actions: expected values in 0..{n_actions - 1}, got {a.min()}..{a.max()}")
    return a


class ClosedOnExit:
    """``with`` support and a close() on garbage collection, for the vector envs (they own
    threads, processes or shared memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class WorkerDied(RuntimeError):
    """A worker process of a VectorEnv ended (crashed, or was killed) while the env was in use."""


class VectorEnv(ClosedOnExit):
    """``num_envs`` copies of one EnvSpec; actions in, shared frames out (``frame_shape``,
    ``frame_dtype``: uint8 [84, 84] for Atari and RGB games, float32 vectors otherwise)."""

    snapshots = True  # get_state()/set_state() restore every emulator exactly

    def __init__(self, spec: EnvSpec, num_envs: int, *, num_workers: int = 0, seed: int = 0,
                 video: tuple | None = None):
        """``video=(folder, every)`` records every ``every``-th game of env 0 (RecordEpisodes)."""
        if not isinstance(spec, EnvSpec):
            raise TypeError(f"spec: expected an EnvSpec, got {type(spec).__name__}")
        if spec.layout not in ("crop", "full") or spec.frame_stack != 0:  # shared block: single frames
            raise ValueError("spec: expected layout 'crop' or 'full' and frame_stack 0 (single frames), "
                             f"got layout={spec.layout!r}, frame_stack={spec.frame_stack}")
        for name, value in (("num_envs", num_envs), ("num_workers", num_workers), ("seed", seed)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name}: expected an int, got {value!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs: expected >= 1, got {num_envs}")
        if not 0 <= num_workers <= num_envs:
            raise ValueError(f"num_workers: expected 0..num_envs={num_envs}, got {num_workers}")
        if seed < 0:
            raise ValueError(f"seed: expected >= 0, got {seed}")
        self.spec, self.num_envs, self.num_workers = spec, num_envs, num_workers
        self._shm, self._procs, self._conns, self._local = None, [], [], None
        self._in_flight = False  # a step sent and not yet received
        probe = make_env_from_spec(spec)
        try:
            self.n_actions = int(probe.action_space.n)
            meanings = getattr(probe.unwrapped, "get_action_meanings", None)
            self.action_meanings = meanings() if meanings else [str(a) for a in range(self.n_actions)]
            space = probe.observation_space
            self.frame_shape, self.frame_dtype = tuple(space.shape), np.dtype(space.dtype)
            self.protocol = played_protocol(probe, spec)  # Atari: sticky actions and episode cap in effect
            if video is not None:
                rgb_screen(probe)  # an env with no screen to record fails here, before any worker starts
            self._state_keys = frozenset(env_state(probe)) | {"return", "length"}  # what set_state needs per env
        finally:
            probe.close()
        fields = block_fields(self.frame_shape, self.frame_dtype)
        _, size = block_layout(num_envs, fields)
        if num_workers == 0:
            self._v = block_views(bytearray(size), num_envs, fields)
            self._local = EnvSlice(spec, 0, num_envs, seed, self._v, video)
            return
        _start_resource_tracker()
        self._shm = shared_memory.SharedMemory(create=True, size=size)
        self._v = block_views(self._shm.buf, num_envs, fields)
        ctx = mp.get_context("spawn")  # no fork: the parent holds torch/OpenMP threads
        bounds = np.linspace(0, num_envs, num_workers + 1).astype(int)
        self._slices = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))  # envs lo..hi per worker
        try:
            for lo, hi in self._slices:
                parent, child = ctx.Pipe()
                p = ctx.Process(
                    target=worker_main,
                    args=(child, spec, int(lo), int(hi), seed, self._shm.name, num_envs, fields, video),
                    daemon=True,
                )
                p.start()
                child.close()  # the worker holds the only other end: its death is EOF here, not a hang
                self._procs.append(p)
                self._conns.append(parent)
            self._wait()
        except BaseException:
            self.close()
            raise

    def _send(self, cmd: bytes, payloads: list | None = None) -> None:
        """Send ``cmd`` (and payloads[i] to worker i) to every worker; a dead worker is WorkerDied."""
        try:
            for i, c in enumerate(self._conns):
                c.send_bytes(cmd)
                if payloads is not None:
                    c.send(payloads[i])
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None

    def _wait(self, read=lambda c: c.recv_bytes()) -> list:
        """Read every worker's reply (an ack by default); a dead worker is WorkerDied."""
        try:
            return [read(c) for c in self._conns]
        except (EOFError, ConnectionResetError):
            raise self._died() from None

    def _died(self) -> "WorkerDied":
        gone, deadline = [], time.monotonic() + 2.0
        while not gone and time.monotonic() < deadline:  # the pipe can close just before the exit is seen
            gone = [(i, p.exitcode) for i, p in enumerate(self._procs) if not p.is_alive()]
            time.sleep(0.02)
        what = "; ".join(
            f"vector env worker {i} (envs {self._slices[i][0]}..{self._slices[i][1] - 1}) "
            + (f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
            for i, code in gone) or "a vector env worker died"
        notes = (["SIGKILL is often the out-of-memory killer"] * any(c == -signal.SIGKILL for _, c in gone)
                 + ["its Python error is printed above"] * any(c > 0 for _, c in gone))
        return WorkerDied(what + "".join(f" ({n})" for n in notes))

    def _drain(self) -> None:
        """Receive a step still in flight (its replies must not be read as another command's)."""
        if self._in_flight:
            self.recv()

    def reset(self) -> np.ndarray:
        """Reset every env (seeded seed+i); returns the first frames, uint8 [N,84,84] (a view)."""
        self._drain()
        if self._local is not None:
            self._local.reset()
        else:
            self._send(b"r")
            self._wait()
        return self._v["frames"]

    def step(self, actions) -> StepResult:
        self.send(actions)
        return self.recv()

    def send(self, actions) -> None:
        """Start one agent step: worker processes step while the caller does other work (the
        in-process slice steps here, at once). ``recv()`` returns the result."""
        if self._in_flight:
            raise RuntimeError("send: the previous step was not received yet (call recv() first)")
        self._v["actions"][:] = check_actions(actions, self.num_envs, self.n_actions)
        if self._local is not None:
            self._local.step()
        else:
            self._send(b"s")
        self._in_flight = True

    def recv(self) -> StepResult:
        """Wait for the step ``send`` started (a dead worker is WorkerDied)."""
        if not self._in_flight:
            raise RuntimeError("recv: no step in flight (call send(actions) first)")
        self._in_flight = False
        if self._local is None:
            self._wait()
        v = self._v
        return StepResult(
            v["frames"], v["rewards"], v["terminated"], v["truncated"], v["reset_frames"],
            v["episode_end"], v["episode_return"], v["episode_length"],
        )

    def get_state(self) -> list[dict]:
        """Every env's emulator, RNG, wrapper and episode-counter state (fastdqn.envs.env_state)."""
        self._drain()
        if self._local is not None:
            return self._local.get_state()
        self._send(b"g")
        return [s for part in self._wait(lambda c: c.recv()) for s in part]

    def set_state(self, states: list[dict]) -> None:
        """Restore ``get_state()`` output (from envs of the same spec and count)."""
        if not isinstance(states, list) or len(states) != self.num_envs:
            got = f"{len(states)} states" if isinstance(states, list) else type(states).__name__
            raise ValueError(f"env states: expected a list of {self.num_envs}, got {got}")
        for i, st in enumerate(states):  # checked here, before any env changes (or a worker chokes on it)
            check_state_form(st, self.spec.atari, f"env states[{i}]", "get_state()")
            missing = sorted(self._state_keys - st.keys())
            if missing:
                raise ValueError(f"env states[{i}]: expected the keys get_state() gives for {self.spec.env_id}, "
                                 f"got one missing {missing}")
        self._drain()
        if self._local is not None:
            self._local.set_state(states)
            return
        self._send(b"S", [states[lo:hi] for lo, hi in self._slices])
        self._wait()

    def close(self) -> None:
        for c in self._conns:
            try:
                c.send_bytes(b"q")
            except (BrokenPipeError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        self._procs, self._conns = [], []
        if self._local is not None:
            self._local.close()
            self._local = None
        if self._shm is not None:
            self._v = None
            try:
                self._shm.close()
            except BufferError:  # a caller still holds a StepResult view; unlink anyway
                pass
            self._shm.unlink()
            self._shm = None

