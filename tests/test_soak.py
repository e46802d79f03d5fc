"""Soak: 10M frames through a 1,000-slot ring, every sampled transition checked, RSS flat.

Frames are stamps (tests/replay_stamps.py) so each sample is checked against the validity rules.
FASTDQN_SOAK_FRAMES overrides the 10M total (.ci/sanitize runs a shorter soak under ASan).
"""

import os
import time

import numpy as np

from fastdqn import ReplayBuffer
from fastdqn.replay.state import check_state
from replay_stamps import StampWriter, check_batch

ENVS, CAPACITY, STACK, BATCH = 50, 1_000, 4, 256
FRAMES = int(os.environ.get("FASTDQN_SOAK_FRAMES", 10_000_000))
SAMPLE_EVERY = 64  # add_many calls between checked samples


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_soak_10m_frames_flat_rss_every_sample_valid():
    """10M frames through capacity 1,000 (20 slots per stream): 50 envs per add_many call, about
    195,000 calls plus the episode starts (3% of steps end an episode); a batch of 256 is sampled
    and checked every 64 calls (about 3,000 batches), the whole store's metadata every 640."""
    buf = ReplayBuffer(CAPACITY, num_envs=ENVS, frame_shape=(4, 8), stack=STACK, seed=1)
    caps = np.array([CAPACITY // ENVS + (e < CAPACITY % ENVS) for e in range(ENVS)])
    w = StampWriter(buf)
    samples, rss_after_wrap = 0, None
    began = time.perf_counter()
    while w.pushed < FRAMES:
        w.step()
        if w.calls % SAMPLE_EVERY == 0:
            check_batch(buf.sample(BATCH), STACK, w.t, caps)
            samples += 1
            if samples % 10 == 0:  # the metadata is still what start/add could write, and len is exact
                check_state(buf, buf.state_dict())
            if rss_after_wrap is None and w.pushed > 3 * CAPACITY:
                rss_after_wrap = rss_bytes()
    elapsed = time.perf_counter() - began
    growth = rss_bytes() - rss_after_wrap
    print(f"\nsoak: {w.pushed:,} frames, {w.calls:,} add_many calls x {ENVS} envs, {samples:,} batches of {BATCH} "
          f"checked, {elapsed:.1f} s, RSS {rss_after_wrap / 2**20:.1f} -> {(rss_after_wrap + growth) / 2**20:.1f} MiB")
    assert (w.t >= caps * (FRAMES // CAPACITY // 2)).all(), "every ring wrapped many times"
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan's quarantine keeps up to 256 MB of freed blocks
        assert growth < 4 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB after the first wrap"
