"""Shared helpers for the replay tests: uniquely numbered frames and full-state snapshots."""

from __future__ import annotations

import numpy as np
import pytest


class Frames:
    """Frames whose pixels encode a unique running number, so any frame can be identified:
    uint8 frames hold its bytes, float32 frames (vector observations) the number plus a fraction."""

    def __init__(self, shape=(2, 3), dtype="uint8"):
        self.shape, self.dtype, self.n = shape, np.dtype(dtype), 0

    def __call__(self):
        self.n += 1
        size = int(np.prod(self.shape))
        if self.dtype == np.float32:  # exact in float32: n < 2^16, fractions in 1/64ths
            return (self.n + np.arange(size, dtype=np.float32) / 64).reshape(self.shape).astype(np.float32)
        return np.frombuffer(self.n.to_bytes(size, "little"), np.uint8).reshape(self.shape).copy()


def snapshot(buf):
    """Everything a rejected call must leave alone: storage, streams, len and the sampling RNG."""
    arrays = {k: v.copy() for k, v in buf._core.arrays().items()}
    if buf._frames is not None:
        arrays["frames"] = buf._frames.cpu().numpy().copy()
    return arrays, buf._core.streams(), len(buf), list(buf._core.rng_state)


def assert_same_state(a, b):
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k], err_msg=k)
    assert a[1:] == b[1:]


def fill(buf, steps, rng, frame=None, end_p=0.1):
    """Run ``steps`` add_many calls with random episode ends (restarting ended streams)."""
    frame = frame or Frames(buf.frame_shape, buf.dtype)
    n = buf.num_envs
    if not any(o for _, o in buf._core.streams()):
        buf.start_many(np.stack([frame() for _ in range(n)]))
    for _ in range(steps):
        ends = rng.random((2, n)) < end_p / 2
        ends[1] &= ~ends[0]
        buf.add_many(rng.integers(0, 6, n), rng.standard_normal(n).astype(np.float32),
                     np.stack([frame() for _ in range(n)]), ends[0], ends[1])
        done = np.flatnonzero(ends.any(0))
        if done.size:
            buf.start_many(np.stack([frame() for _ in done]), envs=done)
    return frame


def check_indexed(buf, model):
    """transition(env, t) is the model's transition t of that stream, and refuses the others."""
    for env, stream in enumerate(model.streams):
        for t in range(len(stream.frames) + 1):
            want = model.transition(env, t)
            if want is None:
                with pytest.raises(ValueError, match="t: expected a transition stream"):
                    buf.transition(env, t)
                continue
            got = buf.transition(env, t)
            np.testing.assert_array_equal(got.obs[0].cpu().numpy(), want[0])
            np.testing.assert_array_equal(got.next_obs[0].cpu().numpy(), want[3])
            assert (got.action.item(), got.reward.item(), got.done.item(), got.discount.item()) == want[1:3] + want[4:]


def stored_after(trainer, frames: int) -> dict:
    """Step ``trainer`` to ``frames`` agent steps; then every sampleable transition its replay
    holds, by (env, index in the env's stream)."""
    while trainer.state.frame < frames:
        trainer.step()
    stored = {}
    for env, written in enumerate(trainer.buf.frames_written()):
        for i in range(written):
            try:
                stored[env, i] = trainer.buf.transition(env, i)
            except ValueError:  # not a transition: the last frame of a stream or episode
                pass
    return stored
