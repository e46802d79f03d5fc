"""The env side of a VectorEnv: a slice of envs stepped in one process, writing into a shared
block of per-env fields (frames, rewards, flags, episode statistics).

A worker process runs ``worker_main``: it steps its slice on "s", resets on "r", sends its env
states on "g", restores them on "S" and ends on anything else or a closed pipe.
"""

from __future__ import annotations

import signal
from multiprocessing import shared_memory

import numpy as np

from fastdqn.env.spec import EnvSpec, make_env_from_spec
from fastdqn.env.snapshot import env_state, set_env_state
from fastdqn.env.wrappers import RecordEpisodes

def block_fields(frame_shape: tuple, frame_dtype) -> tuple:
    """(name, dtype, per-env shape) of every field in the shared block."""
    return (
        ("frames", frame_dtype, frame_shape),
        ("reset_frames", frame_dtype, frame_shape),
        ("actions", np.int64, ()),
        ("rewards", np.float32, ()),
        ("terminated", np.bool_, ()),
        ("truncated", np.bool_, ()),
        ("episode_end", np.bool_, ()),
        ("episode_return", np.float64, ()),
        ("episode_length", np.int64, ()),
    )


def block_layout(n: int, fields: tuple) -> tuple[dict, int]:
    offsets, off = {}, 0
    for name, dtype, shape in fields:
        off = (off + 63) // 64 * 64  # cache-line aligned, no false sharing between fields
        offsets[name] = off
        off += n * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return offsets, off


def block_views(buf, n: int, fields: tuple) -> dict:
    offsets, _ = block_layout(n, fields)
    return {name: np.ndarray((n, *shape), dtype, buffer=buf, offset=offsets[name]) for name, dtype, shape in fields}


class EnvSlice:
    """Envs lo..hi of the vector, stepped in the calling process."""

    def __init__(self, spec: EnvSpec, lo: int, hi: int, seed: int, views: dict, video: tuple | None = None):
        self.envs = [make_env_from_spec(spec) for _ in range(lo, hi)]
        if video is not None and lo == 0:  # --capture-video: env 0's games, (folder, every)
            self.envs[0] = RecordEpisodes(self.envs[0], *video, fps=15.0 if spec.atari else 30.0)
        self.lo, self.hi, self.seed, self.v = lo, hi, seed, views
        self.ret = np.zeros(hi - lo)
        self.len = np.zeros(hi - lo, np.int64)

    def reset(self) -> None:
        v = self.v
        for j, env in enumerate(self.envs):
            i = self.lo + j
            obs, _ = env.reset(seed=self.seed + i)
            v["frames"][i] = obs
        self.ret[:] = 0
        self.len[:] = 0

    def step(self) -> None:
        v = self.v
        for j, env in enumerate(self.envs):
            i = self.lo + j
            obs, reward, term, trunc, info = env.step(int(v["actions"][i]))
            v["frames"][i] = obs
            v["rewards"][i] = reward
            v["terminated"][i], v["truncated"][i] = term, trunc
            self.ret[j] += info.get("raw_reward", reward)
            self.len[j] += 1
            end = (term or trunc) and info.get("game_over", True)
            v["episode_end"][i] = end
            if end:
                v["episode_return"][i], v["episode_length"][i] = self.ret[j], self.len[j]
                self.ret[j], self.len[j] = 0.0, 0
            if term or trunc:
                v["reset_frames"][i], _ = env.reset()

    def get_state(self) -> list[dict]:
        return [env_state(env) | {"return": float(self.ret[j]), "length": int(self.len[j])}
                for j, env in enumerate(self.envs)]

    def set_state(self, states: list[dict]) -> None:
        for j, (env, s) in enumerate(zip(self.envs, states)):
            set_env_state(env, s)
            self.ret[j], self.len[j] = s["return"], s["length"]

    def close(self) -> None:
        for env in self.envs:
            env.close()


def worker_main(conn, spec, lo, hi, seed, shm_name, n, fields, video) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when workers stop (it saves
    # last.pt first), so workers ignore SIGINT/SIGTERM/SIGHUP and end on "q" or a closed pipe.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    shm = shared_memory.SharedMemory(name=shm_name)
    part = None
    try:
        part = EnvSlice(spec, lo, hi, seed, block_views(shm.buf, n, fields), video)
        conn.send_bytes(b"k")
        while True:
            cmd = conn.recv_bytes()
            if cmd == b"s":
                part.step()
            elif cmd == b"r":
                part.reset()
            elif cmd == b"g":
                conn.send(part.get_state())
                continue
            elif cmd == b"S":
                part.set_state(conn.recv())
            else:
                break
            conn.send_bytes(b"k")
        part.close()
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        del part
        shm.close()
