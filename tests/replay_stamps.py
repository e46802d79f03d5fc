"""Stamped frames: each frame says which (env, index, episode) it is, so any sample can be checked.

A frame's first 32 bytes are four uint64 words (t + 1, first + 1, env + 1, end code), the rest zero:
t is the frame's index in its env stream, first the index of its episode's first frame, and the
end code says how the transition into this frame ended the episode (0 no, 1 terminated,
2 truncated). An all-zero frame is a pad. ``check_batch`` verifies the rules of csrc/replay.hpp:
one env and one episode per window, consecutive indices, pads exactly before the episode's first
frame, next_obs = obs shifted by one, no episode end inside obs, every frame still in its ring,
action and reward those recorded for t, done = terminated only.
"""

from __future__ import annotations

import numpy as np


def stamps(t, first, envs, code, shape):
    words = np.stack([t + 1, first + 1, envs + 1, code], axis=1).astype(np.uint64).view(np.uint8)
    out = np.zeros((len(t), int(np.prod(shape))), np.uint8)
    out[:, :32] = words
    return out.reshape(len(t), *shape)


def action_of(t, env):
    return (t * 7 + env) % 6


def reward_of(t, env):
    return ((t * 13 + env) % 11 - 5).astype(np.float32)


class StampWriter:
    """Drives a buffer with add_many over all envs; ends episodes at random (2% term, 1% trunc)."""

    def __init__(self, buf, seed=0):
        self.buf, n = buf, buf.num_envs
        self.envs, self.t, self.first = np.arange(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.ends = np.random.default_rng(seed).random((4096, n))  # reused rows keep the loop cheap
        self.calls = 0
        buf.start_many(self.frames(self.envs, np.zeros(n)))
        self.t += 1
        self.pushed = n

    def frames(self, envs, code):
        return stamps(self.t[envs], self.first[envs], envs, code, self.buf.frame_shape)

    def step(self):
        u = self.ends[self.calls % len(self.ends)]
        term, trunc = u < 0.02, (u >= 0.02) & (u < 0.03)
        last = self.t - 1
        code = term.astype(np.uint64) + 2 * trunc.astype(np.uint64)
        self.buf.add_many(action_of(last, self.envs), reward_of(last, self.envs), self.frames(self.envs, code),
                          term, trunc)
        self.t += 1
        self.pushed += len(self.envs)
        done = np.flatnonzero(term | trunc)
        if done.size:
            self.first[done] = self.t[done]
            self.buf.start_many(self.frames(done, np.zeros(done.size)), envs=done)
            self.t[done] += 1
            self.pushed += done.size
        self.calls += 1


def check_batch(batch, stack, written=None, caps=None):
    """Assert every transition of ``batch`` is valid; ``written``/``caps`` (per env) add the ring check."""
    window = np.concatenate([batch.obs.numpy(), batch.next_obs.numpy()[:, -1:]], axis=1)
    flat = window.reshape(len(window), stack + 1, -1)
    pad = ~flat.any(-1)
    s = np.ascontiguousarray(flat[..., :32]).view(np.uint64).astype(np.int64)  # [B, stack+1, 4]
    assert (flat[..., 32:] == 0).all(), "frames are copied whole, nothing else written into them"
    t, first, env, code = s[..., 0] - 1, s[..., 1] - 1, s[..., 2] - 1, s[..., 3]
    assert not pad[:, -2:].any(), "obs[-1] and next_obs[-1] are real frames"
    last, e0, f0 = t[:, -2], env[:, -1], first[:, -1]
    expect_t = last[:, None] + np.arange(-(stack - 1), 2)
    real = ~pad
    assert (t == expect_t)[real].all(), "consecutive frame indices, next_obs shifted by one"
    assert (env == e0[:, None])[real].all(), "one env per window"
    assert (first == f0[:, None])[real].all(), "one episode per window"
    assert (pad == (expect_t < f0[:, None])).all(), "pads exactly before the episode's first frame"
    assert (code[:, :-1][real[:, :-1]] == 0).all(), "no episode end inside obs"
    if written is not None:
        oldest = np.maximum(written[e0] - caps[e0], 0)
        assert (np.where(real, t, np.iinfo(np.int64).max) >= oldest[:, None]).all(), "every frame still in its ring"
    np.testing.assert_array_equal(batch.action.numpy(), action_of(last, e0))
    np.testing.assert_array_equal(batch.reward.numpy(), reward_of(last, e0))
    np.testing.assert_array_equal(batch.done.numpy(), (code[:, -1] == 1).astype(np.float32))
