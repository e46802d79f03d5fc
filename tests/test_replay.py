"""ReplayBuffer: example-based tests of padding, truncation, uniformity, sizes and the device path."""

import numpy as np
import pytest
import torch

from fastdqn import ReplayBuffer

SHAPE = (2, 3)  # tiny frames keep the property tests fast; every frame's pixels are a unique id


class Frames:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return np.frombuffer(self.n.to_bytes(6, "little"), np.uint8).reshape(SHAPE).copy()


# Property tests against the plain-Python model: tests/test_replay_props.py.


def fill_episodes(buf, lengths, frame=None):
    frame = frame or Frames()
    for n in lengths:
        buf.start(frame())
        for i in range(n):
            buf.add(i % 3, 1.0, frame(), terminated=i == n - 1)
    return frame


def test_zero_padding_at_episode_start_and_views():
    buf = ReplayBuffer(50, frame_shape=SHAPE, stack=4, seed=0)
    fill_episodes(buf, [1])  # one transition: f0 -> f1, terminal
    b = buf.sample(1)
    assert b.obs.data_ptr() + SHAPE[0] * SHAPE[1] == b.next_obs.data_ptr(), "obs/next_obs share one window"
    assert (b.obs[0, :3] == 0).all() and (b.next_obs[0, :2] == 0).all()
    assert torch.equal(b.obs[0, 3], b.next_obs[0, 2])
    assert b.done.item() == 1.0


def test_repeat_padding():
    buf = ReplayBuffer(50, frame_shape=SHAPE, stack=4, pad="repeat", seed=0)
    fill_episodes(buf, [1])
    b = buf.sample(1)
    assert all(torch.equal(b.obs[0, i], b.obs[0, 3]) for i in range(3))
    assert all(torch.equal(b.next_obs[0, i], b.obs[0, 3]) for i in range(3))


def test_truncation_bootstraps():
    buf = ReplayBuffer(50, frame_shape=SHAPE, seed=0)
    f = Frames()
    buf.start(f())
    buf.add(1, 0.5, f(), terminated=False, truncated=True)
    assert buf.sample(1).done.item() == 0.0
    with pytest.raises(ValueError, match="before start"):
        buf.add(1, 0.5, f(), False)


def test_sampling_is_uniform_over_valid_transitions():
    buf = ReplayBuffer(40, num_envs=2, frame_shape=SHAPE, stack=4, seed=123)
    f = Frames()
    buf.start_many(np.stack([f(), f()]))
    for i in range(60):  # wraps both rings; episodes of 7 steps leave terminal frames to skip
        term = np.array([i % 7 == 6, i % 5 == 4])
        buf.add_many(np.zeros(2, np.int64), np.zeros(2, np.float32), np.stack([f(), f()]), term, None)
        if term.any():
            buf.start_many(np.stack([f() for _ in np.flatnonzero(term)]), envs=np.flatnonzero(term))
    n = len(buf)
    counts = {}
    for _ in range(1000):
        b = buf.sample(20)
        for i in range(20):
            key = b.obs[i].numpy().tobytes()
            counts[key] = counts.get(key, 0) + 1
    assert len(counts) == n, "every valid transition is drawn"
    draws = np.array(list(counts.values()))
    expected = 20000 / n
    chi2 = ((draws - expected) ** 2 / expected).sum()
    assert chi2 < n + 6 * np.sqrt(2 * n), f"chi2 {chi2:.1f} for {n} cells: not uniform"


@pytest.mark.parametrize("prioritized", [False, True])
def test_batch_never_changes_after_return(prioritized):
    buf = ReplayBuffer(30, frame_shape=SHAPE, seed=0, prioritized=prioritized)
    frame = fill_episodes(buf, [10])
    b = buf.sample(8)
    kept = [t.clone() for t in b if t is not None]  # weights, indices: None unless prioritized
    fill_episodes(buf, [40], frame)  # overwrites the whole ring
    buf.sample(8)
    for x, y in zip(b, kept):
        assert torch.equal(x, y)


def test_sizes_and_bytes_per_transition():
    buf = ReplayBuffer(100_000)
    assert buf.capacity == 100_000 and buf.num_envs == 1 and len(buf) == 0
    assert 84 * 84 <= buf.nbytes / buf.capacity <= 7_100


def test_remainder_spread_over_streams():
    buf = ReplayBuffer(23, num_envs=3, frame_shape=SHAPE, stack=2)
    assert buf.capacity == 23


# Bad input (shapes, dtypes, ranges, constructor arguments): tests/test_bad_input_core.py.


def test_device_resident_path_matches_host(device="cpu"):
    """The device-resident code path (frames in a torch tensor) samples exactly what the host store does."""
    host = ReplayBuffer(60, num_envs=2, frame_shape=SHAPE, stack=4, seed=5)
    dev = ReplayBuffer(60, num_envs=2, frame_shape=SHAPE, stack=4, seed=5, device=device)
    f = Frames()
    firsts = np.stack([f(), f()])
    host.start_many(firsts)
    dev.start_many(firsts)
    for i in range(80):
        frames = np.stack([f(), f()])
        term = np.array([i % 9 == 8, False])
        for b in (host, dev):
            b.add_many(np.array([i % 4, 1]), np.array([0.5, -1.0], np.float32), frames, term, None)
        if term.any():
            nxt = f()[None]
            host.start(nxt[0], env=0)
            dev.start(torch.from_numpy(nxt[0]), env=0)
    assert len(host) == len(dev)
    for x, y in zip(host.sample(32)[:6], dev.sample(32)[:6]):  # weights, indices: prioritized only
        torch.testing.assert_close(x, y.cpu())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resident_matches_host():
    test_device_resident_path_matches_host("cuda")


def test_unpickled_arrays_are_taken():
    """Arrays that crossed a process boundary (Ray, multiprocessing) carry their own dtype
    objects: equal to np.uint8, not the same object. The buffer takes them."""
    import pickle

    buf = ReplayBuffer(40, num_envs=2, frame_shape=SHAPE, stack=2, seed=0)
    first = pickle.loads(pickle.dumps(np.ones((2, *SHAPE), np.uint8)))
    assert first.dtype is not np.dtype(np.uint8)
    buf.start_many(first)
    buf.add_many(*pickle.loads(pickle.dumps((np.array([1, 2]), np.array([0.5, 1.0], np.float32),
                                             np.full((2, *SHAPE), 2, np.uint8), np.array([False, True])))))
    assert len(buf) == 2 and buf.transition(1, 0).action.item() == 2


def _twins(**kw):
    """Two buffers with the same seed and contents: they sample the same batches."""
    bufs = [ReplayBuffer(64, num_envs=2, stack=3, seed=1, **kw) for _ in range(2)]
    shape, dtype = bufs[0].frame_shape, bufs[0].dtype
    rng = np.random.default_rng(0)
    for buf in bufs:
        buf.start_many(np.zeros((2, *shape), dtype))
    for i in range(150):
        frames = (rng.random((2, *shape)) * 255).astype(dtype)
        term = np.array([i % 11 == 10, i % 17 == 16])
        for buf in bufs:
            buf.add_many(np.array([i % 4, 3]), np.array([0.5, -1.0], np.float32), frames, term)
            for env in np.flatnonzero(term):
                buf.start(frames[env], env=int(env))
    return bufs


@pytest.mark.parametrize("kw", [{}, {"n_step": 3}, {"prioritized": True}, {"frame_shape": (5,), "dtype": "float32"}],
                         ids=["1-step", "n-step", "prioritized", "float32"])
def test_pinned_views_match_the_numpy_path(monkeypatch, kw):
    """With CUDA a batch's tensors are torch views of one pinned block (the numpy path's
    from_numpy tensors would let the block be reused under a non_blocking copy). Pinning is
    faked here, so those views are checked on any machine against the numpy path's."""
    plain, pinned = _twins(**kw)
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: empty(*a, **k))
    pinned._pin = True
    for _ in range(3):
        x, y = plain.sample(16), pinned.sample(16)
        for name, u, v in zip(x._fields, x, y):
            if u is None:
                assert v is None, name
                continue
            assert u.dtype == v.dtype and u.shape == v.shape and u.stride() == v.stride(), name
            assert torch.equal(u, v), name
        storage = y.obs.untyped_storage().data_ptr()
        assert all(t.untyped_storage().data_ptr() == storage for t in y if t is not None), "one block"
        assert y.next_obs.data_ptr() - y.obs.data_ptr() == (y.obs.shape[1] if kw.get("n_step") else 1) * \
            y.obs[0, 0].nbytes, "obs and next_obs: two views of one window"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_batches_cross_to_cuda():
    from fastdqn.learn.learner import to_device

    buf, _ = _twins()
    b = buf.sample(16)
    assert all(t.is_pinned() for t in b if t is not None)
    on_gpu = to_device(b, torch.device("cuda"))
    del b  # the block must outlive the non_blocking copies
    buf.sample(16)
    again = _twins()[0].sample(16)
    for x, y in zip(on_gpu, again):
        torch.testing.assert_close(x.cpu(), y)


def test_copy_windows_is_a_plain_copy():
    """The replay bench's baseline: out[b] = frames[starts[b]:starts[b] + width], checked."""
    from fastdqn import _native

    copy = _native.core().copy_windows
    ring = np.arange(10 * 6, dtype=np.uint8).reshape(10, 2, 3)
    out = np.empty((3, 4, 2, 3), np.uint8)
    copy(ring, np.array([0, 6, 3]), out)
    for b, s in enumerate([0, 6, 3]):
        np.testing.assert_array_equal(out[b], ring[s:s + 4])
    for bad in (7, -1):
        with pytest.raises(ValueError, match=r"starts: expected window starts in \[0, 6\]"):
            copy(ring, np.array([bad]), out[:1])
    with pytest.raises(ValueError, match="out: expected shape"):
        copy(ring, np.array([0]), np.empty((1, 4, 3, 2), np.uint8))
    with pytest.raises(TypeError, match="out: expected dtype uint8"):
        copy(ring, np.array([0]), np.empty((1, 4, 2, 3), np.float32))
    readonly = np.empty((1, 4, 2, 3), np.uint8)
    readonly.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        copy(ring, np.array([0]), readonly)
