"""Prioritized replay in the C++ store (sum tree + min tree): draws follow priority^alpha over the
transitions that can be sampled, the importance weights follow the formula, priority updates
reject bad entries without changing anything, and the state survives save/restore and threads.
(The hypothesis model test in test_replay_props.py runs prioritized buffers too.)"""

import threading
import time

import numpy as np
import pytest
import torch

from fastdqn import ReplayBuffer

SHAPE = (1,)


def filled(n_transitions=40, episode=10, capacity=200, **kw):
    """One stream of float32 frames 0, 1, 2, ...; an episode ends every ``episode`` steps."""
    buf = ReplayBuffer(capacity, frame_shape=SHAPE, stack=1, dtype="float32", prioritized=True, seed=0, **kw)
    frame = 0.0
    buf.start(np.full(SHAPE, frame, np.float32))
    for i in range(n_transitions):
        frame += 1
        end = i % episode == episode - 1
        buf.add(0, 0.0, np.full(SHAPE, frame, np.float32), end)
        if end:
            frame += 1
            buf.start(np.full(SHAPE, frame, np.float32))
    return buf


def index_of_every_transition(buf):
    """{index: obs value} over every sampleable transition (many draws at equal priorities)."""
    seen = {}
    for _ in range(40):
        b = buf.sample(len(buf))
        seen.update(zip(b.indices.tolist(), b.obs[:, -1, 0].tolist()))
    assert len(seen) == len(buf)
    return seen


def test_a_new_transition_gets_the_largest_priority_and_weights_start_equal():
    buf = filled(alpha=0.6)
    assert torch.equal(buf.sample(8).weights, torch.ones(8))
    idx = sorted(index_of_every_transition(buf))
    buf.update_priorities(idx[:3], [5.0, 0.5, 2.0])
    assert buf._core.priorities()[1] == pytest.approx(5.0 + 1e-6)  # the largest priority so far
    buf.add(0, 0.0, np.full(SHAPE, 999.0, np.float32), False)  # the open episode's next transition
    newest = next(i for i, v in index_of_every_transition(buf).items() if v == 998.0 or i not in idx)
    leaves = buf._core.priorities()[0]
    assert np.sort(leaves)[-2:] == pytest.approx([(5.0 + 1e-6) ** 0.6] * 2)  # the 5.0 one and the new one
    assert newest not in idx


def test_draws_follow_priority_to_the_alpha_chi_square():
    alpha = 0.7
    buf = filled(n_transitions=30, episode=10, alpha=alpha)
    idx = sorted(index_of_every_transition(buf))
    rng = np.random.default_rng(0)
    pri = rng.uniform(0.01, 3.0, len(idx))
    buf.update_priorities(idx, pri)
    p = (pri + 1e-6) ** alpha
    expected_share = dict(zip(idx, p / p.sum()))
    counts = dict.fromkeys(idx, 0)
    draws = 0
    for _ in range(800):
        b = buf.sample(len(idx))
        for i in b.indices.tolist():
            counts[i] += 1
        draws += len(idx)
    n = len(idx)
    expected = np.array([expected_share[i] * draws for i in idx])
    observed = np.array([counts[i] for i in idx])
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < n + 6 * np.sqrt(2 * n), f"chi2 {chi2:.1f} over {n} transitions: not proportional to p^alpha"


def test_importance_weights_follow_the_formula():
    alpha, beta = 0.6, 0.5
    buf = filled(alpha=alpha)
    idx = sorted(index_of_every_transition(buf))
    pri = np.linspace(0.1, 4.0, len(idx))
    buf.update_priorities(idx, pri)
    p = dict(zip(idx, (pri + 1e-6) ** alpha))
    total, n = sum(p.values()), len(idx)
    w_max = (n * min(p.values()) / total) ** -beta
    b = buf.sample(len(idx), beta=beta)
    want = [(n * p[i] / total) ** -beta / w_max for i in b.indices.tolist()]
    np.testing.assert_allclose(b.weights.numpy(), want, rtol=1e-5)
    assert b.weights.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(buf.sample(16, beta=0.0).weights.numpy(), 1.0)


BAD = [  # (id, (indices, priorities) from the good indices g, error, regex): g[0] comes first and must not change
    ("nan", lambda g: ([g[0], g[1]], [7.0, float("nan")]), ValueError, "priorities: expected finite values >= 0, got nan at 1"),
    ("negative", lambda g: ([g[0], g[1]], [7.0, -1.0]), ValueError, "priorities: expected finite values >= 0, got -1 at 1"),
    ("inf", lambda g: ([g[0], g[1]], [7.0, float("inf")]), ValueError, "expected finite values >= 0, got inf at 1"),
    ("negative index", lambda g: ([g[0], -1], [7.0, 1.0]), ValueError, "indices: expected indices from sample"),
    ("out of range", lambda g: ([g[0], 10**9], [7.0, 1.0]), ValueError, "expected transitions that can still be sampled"),
    ("lengths", lambda g: ([g[0], g[1]], [7.0]), ValueError, "expected indices and priorities of one length"),
    ("float indices", lambda g: ([0.5], [7.0]), TypeError, "indices: expected integer indices from sample"),
    ("str priorities", lambda g: ([g[0]], ["a"]), TypeError, "priorities: expected numbers"),
]


@pytest.mark.parametrize("make, error, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_priority_updates_change_nothing(make, error, match):
    buf = filled()
    before = buf._core.priorities()
    indices, priorities = make(sorted(index_of_every_transition(buf)))
    with pytest.raises(error, match=match):
        buf.update_priorities(np.array(indices), priorities)
    after = buf._core.priorities()
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1]


def test_a_stale_index_is_refused():
    buf = filled(n_transitions=20, capacity=25)
    old = buf.sample(4).indices
    for _ in range(30):  # the ring wraps: every sampled transition is overwritten
        buf.add(0, 0.0, np.zeros(SHAPE, np.float32), False)
    with pytest.raises(ValueError, match="stale: overwritten since it was sampled"):
        buf.update_priorities(old, torch.ones(4))
    with pytest.raises(ValueError, match="expected a prioritized buffer"):
        ReplayBuffer(10, frame_shape=SHAPE, stack=1).update_priorities([0], [1.0])


def test_prioritized_state_round_trips_exactly(tmp_path):
    buf = filled(alpha=0.5)
    idx = sorted(index_of_every_transition(buf))
    buf.update_priorities(idx, np.linspace(0.5, 3.0, len(idx)))
    buf.save(tmp_path / "r.npz")
    copy = ReplayBuffer.load(tmp_path / "r.npz")
    assert copy.prioritized and copy.alpha == 0.5
    np.testing.assert_array_equal(copy._core.priorities()[0], buf._core.priorities()[0])
    for _ in range(3):
        for x, y in zip(buf.sample(16, beta=0.3), copy.sample(16, beta=0.3)):
            assert torch.equal(x, y)
    uniform = ReplayBuffer(200, frame_shape=SHAPE, stack=1, dtype="float32")
    with pytest.raises(ValueError, match=r"replay state\['prioritized'\]: expected False"):
        uniform.load_state_dict(buf.state_dict())


def test_one_thread_samples_and_updates_while_another_adds():
    buf = filled(n_transitions=50, capacity=120)
    errors, stop = [], threading.Event()

    def learner():
        try:
            while not stop.is_set():
                b = buf.sample(16)
                try:
                    buf.update_priorities(b.indices, torch.rand(16))
                except ValueError as e:  # an index overwritten between the two calls is stale: refused, fine
                    if "stale" not in str(e):
                        raise
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)
    t = threading.Thread(target=learner)
    t.start()
    deadline = time.monotonic() + 3
    i = 0
    while time.monotonic() < deadline and i < 20_000:
        i += 1
        end = i % 15 == 0
        buf.add(0, 1.0, np.full(SHAPE, i, np.float32), end)
        if end:
            buf.start(np.zeros(SHAPE, np.float32))
    stop.set()
    t.join(timeout=10)
    assert not errors, errors
    assert np.count_nonzero(buf._core.priorities()[0]) == len(buf)  # the tree still matches the transitions


def test_device_store_samples_prioritized_too():
    buf = ReplayBuffer(100, frame_shape=(84, 84), prioritized=True, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    buf.start(rng.integers(0, 255, (84, 84), dtype=np.uint8))
    for _ in range(30):
        buf.add(1, 1.0, rng.integers(0, 255, (84, 84), dtype=np.uint8), False)
    b = buf.sample(8)
    assert b.obs.shape == (8, 4, 84, 84) and b.weights.shape == (8,) and b.indices.dtype == torch.int64
    buf.update_priorities(b.indices, torch.rand(8))


def test_a_bad_beta_is_refused_before_drawing():
    buf = filled()
    state = buf.state_dict()
    for beta, match in ((1.5, r"beta: expected a number in \[0, 1\], got 1.5"), (-0.1, "got -0.1"),
                        (float("nan"), "got nan"), ("0.4", "got '0.4'")):
        with pytest.raises(ValueError, match=match):
            buf.sample(4, beta=beta)
    assert buf.state_dict()["rng"].tolist() == state["rng"].tolist()  # nothing drawn
