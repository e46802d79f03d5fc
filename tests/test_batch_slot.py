"""Sampling into a batch slot (ReplayBuffer.batch_slot, sample(out=)): the same batches as a
fresh sample, written where the slot's tensors are, with no torch op at all from the host store
on the CPU and one block copy from a device store; bad slots are refused and consume nothing.
The Trainer samples into one slot and sets prioritized replay's priorities one update late."""

import collections

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from fastdqn import ReplayBuffer
from fastdqn.run import TrainConfig, Trainer

STORES = [dict(), dict(device="cpu")]  # the host store (C++ frames) and the device store's code path
KINDS = [dict(), dict(n_step=3), dict(prioritized=True, n_step=3)]


def filled(seed=0, **kw):
    """Two streams of random 84x84 frames; stream 1's episodes end every 37 steps."""
    buf = ReplayBuffer(900, num_envs=2, seed=3, **kw)
    rng = np.random.default_rng(seed)
    buf.start_many(rng.integers(0, 256, (2, 84, 84), dtype=np.uint8))
    for t in range(400):
        end = t % 37 == 36
        buf.add_many(rng.integers(0, 6, 2), rng.standard_normal(2).astype(np.float32),
                     rng.integers(0, 256, (2, 84, 84), dtype=np.uint8), np.array([False, end]))
        if end:
            buf.start_many(rng.integers(0, 256, (1, 84, 84), dtype=np.uint8), envs=[1])
    return buf


def assert_same_batch(a, b):
    for name, x, y in zip(a._fields, a, b):
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_slot_gets_the_batches_a_fresh_sample_gets_in_place(store, kind):
    fresh, slotted = filled(**store, **kind), filled(**store, **kind)
    slot = slotted.batch_slot(32)
    for _ in range(4):
        want, got = fresh.sample(32, 0.5), slotted.sample(32, 0.5, out=slot)
        assert_same_batch(want, got)
        assert got.obs.data_ptr() == slot.batch.obs.data_ptr() and got.action.data_ptr() == slot.batch.action.data_ptr()
        if got.indices is not None:  # the host's own copy: it outlives the next sample into the slot
            kept = got.indices.clone()
            fresh.sample(32, 0.5), slotted.sample(32, 0.5, out=slot)
            assert torch.equal(got.indices, kept)


def _ops_while(fn) -> collections.Counter:
    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    return collections.Counter(e.name for e in p.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def test_sampling_into_a_cpu_slot_issues_no_torch_op():
    """The core writes the slot's block where it is: no tensor is made, nothing is copied
    (a fresh sample makes one tensor per field)."""
    buf = filled(prioritized=False)
    slot = buf.batch_slot(32)
    buf.sample(32, out=slot)
    assert sum(_ops_while(lambda: buf.sample(32, out=slot)).values()) == 0
    assert _ops_while(lambda: buf.sample(32))["aten::lift_fresh"] >= 6


def test_a_device_store_fills_a_slot_with_one_copy_and_one_gather():
    buf = filled(device="cpu")
    slot = buf.batch_slot(32)
    ops = _ops_while(lambda: buf.sample(32, out=slot))
    assert ops["aten::copy_"] == 1 and ops["aten::index_select"] == 1
    assert ops["aten::to"] + ops["aten::lift_fresh"] <= 2  # the host block's numpy view; no field uploads alone


def test_a_slot_that_does_not_fit_is_refused_and_draws_nothing():
    buf, twin, other = filled(), filled(), filled()
    for bad, why in ((buf.batch_slot(16), "a slot of batch size 16"), (other.batch_slot(32), "a slot of another buffer"),
                     (other.sample(32), "Batch")):
        with pytest.raises(ValueError, match=rf"out: expected this buffer's batch_slot\(32\), got {why}"):
            buf.sample(32, out=bad)
    assert_same_batch(buf.sample(32), twin.sample(32))  # the rejected calls drew no random numbers


def _learning_trainer(tmp_path, name, **kw):
    cfg = TrainConfig(env_id="CartPole-v1", out=str(tmp_path / name), num_envs=2, frames=10_000, replay_size=500,
                      replay_start=64, batch_size=16, prioritized=True, n_step=3, progress=False, tensorboard=False,
                      torch_threads=1, seed=7, device="cpu", **kw)
    t = Trainer(cfg, log=False)
    while t.state.frame < 80:
        t.step()
    return t


@pytest.mark.parametrize("chunk", [1, 2])
def test_the_trainer_sets_priorities_one_chunk_late(tmp_path, chunk):
    """learn(5) in chunks of --graph-updates: chunk c is drawn before chunk c-1's priorities are
    set, and all are set when it returns (the same learner and replay, replayed by hand in that
    order, agree exactly)."""
    a, b = (_learning_trainer(tmp_path, name, graph_updates=chunk) for name in "ab")
    try:
        assert np.array_equal(a.buf._core.priorities()[0], b.buf._core.priorities()[0])
        a.learn(5)
        pending, left = None, 5
        while left:
            batches = [b.buf.sample(16, b.cfg.per_beta_at(b.state.frame)) for _ in range(min(chunk, left))]
            left -= len(batches)
            priorities = [b.learner.update(batch)[1] for batch in batches]
            if pending is not None:
                b.buf.update_priorities(*pending)
            pending = (torch.cat([x.indices for x in batches]), torch.cat(priorities))
        b.buf.update_priorities(*pending)
        assert np.array_equal(a.buf._core.priorities()[0], b.buf._core.priorities()[0])
        for p, q in zip(a.learner.online.parameters(), b.learner.online.parameters()):
            assert torch.equal(p, q)
        assert a.learner.updates == b.learner.updates
    finally:
        a.close()
        b.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_k_captured_updates_are_k_eager_updates():
    """One graph replay of 3 updates on 3 slots against 3 eager updates of the same batches."""
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec

    buf = filled(device="cuda", prioritized=True, n_step=3)
    slots = [buf.batch_slot(32) for _ in range(3)]
    torch.manual_seed(0)
    graphed = Learner(QNetSpec(6), device="cuda", graph=True, double=True)
    eager = Learner(QNetSpec(6), device="cuda", graph=False, compile=False, double=True)
    eager.load_state_dict(graphed.state_dict())
    for _ in range(2):  # the first call captures
        batches = [buf.sample(32, 0.5, out=s) for s in slots]
        want = [eager.update(x) for x in batches]
        losses, priorities = graphed.update_many(batches, in_place=True)
        for (wl, wp), gl, gp in zip(want, losses, priorities):  # summation order alone: ~1e-6 at lr 1e-4
            torch.testing.assert_close(gl, wl, rtol=2e-4, atol=1e-6)
            torch.testing.assert_close(gp, wp, rtol=1e-3, atol=1e-5)
    assert set(graphed._graphs) == {3}
    for p, q in zip(graphed.online.parameters(), eager.online.parameters()):  # Adam moves a weight <= lr an update
        torch.testing.assert_close(p, q, rtol=0, atol=2 * 1e-4 * 6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("store", [dict(), dict(device="cuda")])
def test_a_cuda_slot_feeds_the_graph_with_one_upload_and_no_sync(store):
    """Host store: the core's block crosses in one copy. Device store: its small fields cross in
    one copy and one kernel gathers the window. The graph reads the slot where it is (no copy
    into static inputs), and neither sampling nor the update waits for the GPU."""
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec

    buf, ref = filled(prioritized=True, n_step=3, **store), filled(prioritized=True, n_step=3)
    slot = buf.batch_slot(32, "cuda")
    learner = Learner(QNetSpec(6), device="cuda", graph=True)
    learner.update(buf.sample(32, 0.5, out=slot), in_place=True)  # captures on the slot
    assert learner._graphs[1].static_inputs[0].data_ptr() == slot.batch.obs.data_ptr()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ops = _ops_while(lambda: learner.update(buf.sample(32, 0.5, out=slot), in_place=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert ops["aten::copy_"] == 1, ops
    ref.sample(32, 0.5), ref.sample(32, 0.5)  # as many draws as buf made
    got = buf.sample(32, 0.5, out=slot)
    assert_same_batch(ref.sample(32, 0.5), type(got)(*(None if t is None else t.cpu() for t in got)))
