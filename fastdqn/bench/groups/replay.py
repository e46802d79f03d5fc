"""Replay: sample(batch) time side by side, and bytes per transition."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import torch

from fastdqn import _native
from fastdqn.frames.stack import FrameStacker
from fastdqn.replay.buffer import ReplayBuffer

from .. import baselines as bl
from ..config import BenchConfig
from ..inputs import episode_stream
from ..model import Case, Table, TableSpec, ValuesSpec

GROUP = "replay"


# ------------------------------------------------------------------ filling
def fill_chapter(n: int, seed: int = 0) -> bl.ChapterReplayBuffer:
    """The book chapter's pipeline end to end: float32 stacks from ChapterFrameStack."""
    frames, actions, rewards, dones = episode_stream(n, seed=seed)
    buf, stacker, state = bl.ChapterReplayBuffer(n), bl.ChapterFrameStack(), None
    for t in range(n):
        if state is None:
            state = stacker.reset(frames[t])
        new_state = stacker.observe(frames[t + 1])
        buf.append(bl.Experience(state, int(actions[t]), float(rewards[t]), bool(dones[t]), new_state))
        state = None if dones[t] else new_state
    return buf


def fill_numpy(n: int, seed: int = 0) -> bl.NumpyStackedBuffer:
    frames, actions, rewards, dones = episode_stream(n, seed=seed)
    buf, stacker = bl.NumpyStackedBuffer(n, seed=seed), None
    for t in range(n):
        if stacker is None:
            stacker = FrameStacker(frames[t][None], 4)
        obs = stacker.host[0].copy()  # push() shifts the stack in place
        stacker.push(frames[t + 1][None])
        buf.add(obs, actions[t], rewards[t], stacker.host[0], dones[t])
        if dones[t]:
            stacker = None
    return buf


def fill_fastdqn(n: int, seed: int = 0, **kw) -> ReplayBuffer:
    frames, actions, rewards, dones = episode_stream(n, seed=seed)
    buf, fresh = ReplayBuffer(n, seed=seed, **kw), True
    for t in range(n):
        if fresh:
            buf.start(frames[t])
        buf.add(int(actions[t]), float(rewards[t]), frames[t + 1], bool(dones[t]))
        fresh = bool(dones[t])
    return buf


# ------------------------------------------------------------------ sample(B)
def plain_copy(buf: ReplayBuffer, batch: int, batches: int = 256):
    """A plain copy of the windows `buf` draws, from its own ring: one memcpy per window into a
    preallocated output (C++, `copy_windows`), no Python around it. The floor a sample can reach."""
    core = buf._core
    ring, width = core.arrays()["frames"], core.window
    starts = []
    for _ in range(batches):  # draws only: the window of a row ends at its last frame's slot
        slots = np.empty((batch, width), np.int64)
        fields = [np.empty(batch, np.int64)] + [np.empty(batch, np.float32) for _ in range(3)]
        core.sample_into(batch, slots, *fields, None)
        starts.append(np.clip(slots[:, -1] - (width - 1), 0, len(ring) - width))  # a wrapped one: moved in
    out = np.empty((batch, width, *ring.shape[1:]), ring.dtype)
    copy, calls = _native.core().copy_windows, iter(range(1 << 62))
    return lambda: copy(ring, starts[next(calls) % batches], out)


def sample_spec(cfg: BenchConfig) -> TableSpec:
    n, b = cfg.replay_fill, cfg.batch_size
    frames = b * 5 * 84 * 84
    window = frames + b * (8 + 4 + 4 + 4)  # what fastdqn's sample writes
    shared: dict[str, ReplayBuffer] = {}

    def fast_buffer() -> ReplayBuffer:  # the plain copy reads the ring fastdqn's row samples
        if "buf" not in shared:
            shared["buf"] = fill_fastdqn(n, cfg.seed)
        return shared["buf"]

    def chapter_setup():
        buf = fill_chapter(n, cfg.seed)
        return lambda: buf.sample(b)

    def numpy_setup():
        buf = fill_numpy(n, cfg.seed)
        return lambda: buf.sample(b)

    def memcpy_setup():
        src, dst = np.ones(window, np.uint8), np.empty(window, np.uint8)
        return lambda: np.copyto(dst, src)

    def fast_setup():
        buf = fast_buffer()
        return lambda: buf.sample(b)

    pinned = "pinned" if torch.cuda.is_available() else "not pinned: no CUDA"
    cases = [
        Case(f"plain copy of the same {b} windows from the same ring, one memcpy each (C++)",
             lambda: plain_copy(fast_buffer(), b), role="baseline", extra={"bytes out": frames}),
        Case("the book chapter's: deque of float32 stacks, np.array repack", chapter_setup, role="alternative",
             extra={"bytes out": b * (2 * 4 * 84 * 84 * 4 + 8 + 4 + 1)}),
        Case("numpy uint8 stacked obs + next_obs, fancy indexing", numpy_setup, role="alternative",
             extra={"bytes out": b * (2 * 4 * 84 * 84 + 8 + 4 + 4)}),
        Case(f"fastdqn CPU ReplayBuffer ({pinned})", fast_setup, extra={"bytes out": window}),
        _gpu_case(cfg),
        Case("plain memcpy of the same bytes, hot source (floor)", memcpy_setup, role="floor",
             extra={"bytes out": window}),
    ]
    return TableSpec(
        id="replay-sample", group=GROUP, title=f"Replay: sample({b}) from {n:,} transitions",
        unit=f"sample({b})", cases=cases, extra_columns=["bytes out"],
        notes=["Same synthetic episode stream (900-step episodes) in every buffer. Baseline: the windows "
               "fastdqn's buffer draws (5 frames each), copied from its ring with one memcpy per window "
               "and nothing else; fastdqn's sample also draws them, writes action/reward/done/discount "
               "and builds the Batch's tensors. Target: its speed-up >= 0.77x (time <= 1.3x the copy)."],
    )


def _gpu_case(cfg: BenchConfig) -> Case:
    label = "fastdqn GPU-resident ReplayBuffer"
    if not torch.cuda.is_available():
        return Case.unavailable(label, "no CUDA device")

    def setup():
        buf = fill_fastdqn(cfg.replay_fill, cfg.seed, device="cuda")

        def run():
            out = buf.sample(cfg.batch_size)
            torch.cuda.synchronize()
            return out
        return run
    return Case(label, setup)


# ------------------------------------------------------------------ memory
def _chapter_bytes_per_transition(n: int) -> float:
    """Traced allocations of the book chapter's pipeline per stored transition."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        buf = fill_chapter(n, seed=1)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del buf
    return used / n


def memory_spec(cfg: BenchConfig) -> ValuesSpec:
    def build() -> Table:
        caps = cfg.capacities
        cols = ["buffer", "bytes/transition"] + [f"{c:,}" for c in caps] + ["how"]
        rows = []
        chapter_bpt = _chapter_bytes_per_transition(min(cfg.replay_fill, 500))
        rows.append(["the book chapter's deque of float32 stacks", chapter_bpt] + [chapter_bpt * c for c in caps]
                    + ["tracemalloc while filling 500, times capacity"])
        np_bpt = bl.NumpyStackedBuffer.bytes_per_transition()
        small = bl.NumpyStackedBuffer(min(caps))
        assert_msg = "allocation formula" if small.nbytes == np_bpt * min(caps) else "formula (allocation differs!)"
        rows.append(["numpy uint8 stacked obs + next_obs", np_bpt] + [np_bpt * c for c in caps] + [assert_msg])
        del small
        built = {c: ReplayBuffer(c).nbytes for c in cfg.built_capacities}
        gc.collect()
        c_hi = max(built)
        bpt = built[c_hi] / c_hi
        if len(built) > 1:  # linear fit: fixed overhead + per-transition bytes
            c_lo = min(built)
            bpt = (built[c_hi] - built[c_lo]) / (c_hi - c_lo)
        base = built[c_hi] - bpt * c_hi
        vals = [built.get(c, base + bpt * c) for c in caps]
        how = ("buf.nbytes at " + ", ".join(f"{c:,}" for c in built)
               + ("; larger capacities extrapolated linearly" if set(caps) - set(built) else ""))
        rows.append(["fastdqn ReplayBuffer (frames stored once)", bpt] + vals + [how])
        # Prioritized: the same plus a sum tree and a min tree of doubles over capacity rounded up
        # to a power of two (2 trees x 2 x leaves x 8 bytes); measured where built, the formula beyond.
        trees = {c: 32 * (1 << max(0, (c - 1).bit_length())) for c in caps}
        per_built = {c: ReplayBuffer(c, prioritized=True).nbytes for c in cfg.built_capacities}
        gc.collect()
        pvals = [per_built.get(c, vals[i] + trees[c]) for i, c in enumerate(caps)]
        rows.append(["fastdqn ReplayBuffer, prioritized (+ sum and min trees)", pvals[-1] / caps[-1]] + pvals
                    + ["buf.nbytes where built, else the row above + the trees' bytes; bytes/transition at "
                       f"{caps[-1]:,}"])
        rows.append(["the book chapter's claim for 1M (\"~20 GB\")", None]
                    + [20e9 if c == 1_000_000 else None for c in caps] + ["quoted, not measured"])
        return Table(
            id="replay-memory", group=GROUP, title="Replay: memory per transition and at capacity",
            kind="values", columns=cols, formats=["text", "int"] + ["bytes"] * len(caps) + ["text"],
            cells=rows,
            notes=["Decimal units (1 GB = 1e9 bytes). The book chapter's stacks are shared between "
                   "consecutive transitions (state of t+1 is new_state of t), as in its Agent."],
        )
    return ValuesSpec("replay-memory", GROUP, "Replay: memory per transition", build)


def specs(cfg: BenchConfig):
    from . import prioritized

    return [sample_spec(cfg), memory_spec(cfg), *prioritized.specs(cfg)]
