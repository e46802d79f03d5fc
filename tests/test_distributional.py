"""C51's projection and loss (fastdqn.learn.distributional) against plain references: the
projection against Algorithm 1 of Bellemare et al. 2017 written as a loop over atoms, the loss
against a hand computation; and the Learner's distributional update (priorities, Double DQN,
bf16 autocast, batch slots)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastdqn.learn.distributional import distributional_loss, project_distribution
from fastdqn.learn.learner import Learner, td_loss
from fastdqn.learn.model import QNetSpec
from fastdqn.replay.buffer import ReplayBuffer


def reference_projection(probs, reward, discount, done, v_min, v_max):
    """Algorithm 1 of the C51 paper, one sample at a time, one atom at a time (float64); when
    b_j is an integer (l == u) the whole mass goes to that atom (the paper's two weights are 0)."""
    atoms = len(probs[0])
    dz = (v_max - v_min) / (atoms - 1)
    z = [v_min + i * dz for i in range(atoms)]
    out = []
    for p, r, g, d in zip(probs, reward, discount, done):
        m = [0.0] * atoms
        for j in range(atoms):
            tz = min(v_max, max(v_min, r + (1.0 - d) * g * z[j]))
            b = min(atoms - 1.0, max(0.0, (tz - v_min) / dz))  # rounding may step past the ends
            lo, up = math.floor(b), math.ceil(b)
            if lo == up:
                m[lo] += p[j]
            else:
                m[lo] += p[j] * (up - b)
                m[up] += p[j] * (b - lo)
        out.append(m)
    return out


@st.composite
def projection_cases(draw):
    atoms = draw(st.integers(2, 64))
    v_min = draw(st.floats(-50, 20, allow_nan=False))
    v_max = v_min + draw(st.floats(0.1, 60))
    n = draw(st.integers(1, 6))
    reward = draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n))  # also far outside the support
    discount = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    done = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = rng.random((n, atoms)) * (rng.random((n, atoms)) < 0.8)  # some atoms without mass
    weights[:, rng.integers(atoms)] += 1e-3
    probs = (weights / weights.sum(1, keepdims=True)).tolist()
    return atoms, v_min, v_max, probs, reward, discount, done


def check_against_reference(atoms, v_min, v_max, probs, reward, discount, done, atol=1e-5):
    support = torch.linspace(v_min, v_max, atoms, dtype=torch.float64)
    got = project_distribution(torch.tensor(probs, dtype=torch.float64), torch.tensor(reward, dtype=torch.float64),
                               torch.tensor(discount, dtype=torch.float64), torch.tensor(done, dtype=torch.float64),
                               support)
    want = torch.tensor(reference_projection(probs, reward, discount, done, v_min, v_max), dtype=torch.float64)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=atol)
    assert (got >= 0).all()
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(projection_cases())
# b_j integers (l == u): the support shifted by whole atoms, every atom on the support, a terminal
@example((5, -2.0, 2.0, [[0.1, 0.2, 0.3, 0.25, 0.15]], [1.0], [1.0], [0.0]))
@example((5, -2.0, 2.0, [[0.1, 0.2, 0.3, 0.25, 0.15]], [0.0], [1.0], [0.0]))
@example((11, 0.0, 10.0, [[1 / 11] * 11], [3.0], [0.5], [1.0]))
def test_the_projection_is_algorithm_1(case):
    check_against_reference(*case)


def test_the_projection_keeps_the_whole_mass_when_atoms_land_on_the_support():
    """l == u everywhere: a shift by two whole atoms moves each probability two atoms up, the top
    ones piling onto v_max (Algorithm 1 as printed would lose all of it)."""
    support = torch.linspace(-2, 2, 5)
    p = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])
    m = project_distribution(p, torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.0]), support)
    torch.testing.assert_close(m, torch.tensor([[0.0, 0.0, 0.1, 0.2, 0.7]]))
    # a termination: all the mass on the reward's atom, whatever the next distribution
    m = project_distribution(p, torch.tensor([-1.0]), torch.tensor([0.99]), torch.tensor([1.0]), support)
    torch.testing.assert_close(m, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]]))


def test_the_projection_runs_in_fp32_on_fp32_inputs():
    support = torch.linspace(-10, 10, 51)
    p = torch.softmax(torch.randn(4, 51), -1)
    m = project_distribution(p, torch.randn(4), torch.full((4,), 0.97), torch.zeros(4), support)
    assert m.dtype == torch.float32
    torch.testing.assert_close(m.sum(1), torch.ones(4))


class TableNet(torch.nn.Module):
    """A distributional 'net' whose logits for observation i are row i of a fixed table [N, A, atoms]."""

    def __init__(self, table, v_min, v_max):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32))
        self.atoms = self.table.shape[2]
        self.register_buffer("support", torch.linspace(v_min, v_max, self.atoms))

    def logits(self, x):
        return self.table[x.long().view(-1)]

    def forward(self, x):
        return (torch.softmax(self.logits(x), -1) * self.support).sum(-1)


def test_the_loss_is_the_cross_entropy_of_a_hand_computation():
    """3 atoms on [-1, 1], one sample: target p = (0.2, 0.5, 0.3), r = 0.5, gamma^k = 0.5:
    Tz = (0, 0.5, 1), b = (1, 1.5, 2), so m = (0, 0.2 + 0.25, 0.25 + 0.3) = (0, 0.45, 0.55)."""
    online_p = [0.5, 0.25, 0.25]
    online = TableNet(np.log([[online_p, online_p]]), -1, 1)  # obs 0: both actions alike
    target = TableNet(np.log([[[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]]), -1, 1)  # action 0 has the larger mean
    zero = torch.zeros(1, dtype=torch.long)
    loss, ce = distributional_loss(online, target, zero, zero, torch.tensor([0.5]), zero, torch.zeros(1),
                                   torch.tensor([0.5]), gamma=0.99)
    want = -(0.45 * math.log(0.25) + 0.55 * math.log(0.25))
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert ce.tolist() == pytest.approx([want], rel=1e-5)


def test_double_takes_the_online_nets_action_and_the_target_nets_distribution():
    """The online net prefers action 1 at s', the target net action 0: Double DQN scores action
    1's target distribution, plain C51 action 0's."""
    online = TableNet(np.log([[[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]]]), -1, 1)
    target = TableNet(np.log([[[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]]), -1, 1)
    zero = torch.zeros(1, dtype=torch.long)
    args = (online, target, zero, zero, torch.tensor([0.0]), zero, torch.zeros(1), torch.tensor([1.0]))
    log_p = torch.log_softmax(online.table[0, 0], -1)
    for double, next_p in ((False, [0.1, 0.1, 0.8]), (True, [0.8, 0.1, 0.1])):
        _, ce = distributional_loss(*args, gamma=1.0, double=double)
        assert ce.item() == pytest.approx(-(torch.tensor(next_p) * log_p).sum().item(), rel=1e-5)


def batch(spec, b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 3, (b, *spec.obs_shape), generator=g).float()
    return (obs, torch.randint(0, spec.n_actions, (b,), generator=g), torch.randn(b, generator=g) * 3, obs.flip(0),
            (torch.rand(b, generator=g) < 0.3).float(), torch.full((b,), 0.99 ** 3), torch.rand(b, generator=g))


def test_the_priorities_are_the_per_sample_cross_entropy_and_the_weights_multiply_it():
    torch.manual_seed(0)
    spec = QNetSpec(2, (1, 4), "dueling", atoms=11, v_min=-5, v_max=5)
    online, target = spec.build(), spec.build()
    obs, action, reward, next_obs, done, discount, weights = batch(spec)
    loss, ce = td_loss(online, target, obs, action, reward, next_obs, done, discount, weights, gamma=0.99,
                       double=True, errors=True)
    with torch.no_grad():  # by hand: the projected target of a* = online's argmax, then -sum m log p
        a_star = online(next_obs).argmax(1)
        next_p = torch.softmax(target.logits(next_obs), -1)[torch.arange(8), a_star]
        ref = reference_projection(next_p.tolist(), reward.tolist(), discount.tolist(), done.tolist(), -5.0, 5.0)
        log_p = torch.log_softmax(online.logits(obs), -1)[torch.arange(8), action]
        want = -(torch.tensor(ref) * log_p).sum(1)
    torch.testing.assert_close(ce, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, (weights * want).mean(), atol=1e-5, rtol=1e-5)
    assert not ce.requires_grad


def test_the_learners_update_returns_the_cross_entropy_as_priorities():
    torch.manual_seed(0)
    spec = QNetSpec(2, (1, 4), atoms=11, v_min=-5, v_max=5)
    learner = Learner(spec, device="cpu", double=True)
    b = batch(spec)
    loss_before, ce_before = td_loss(learner.online, learner.target, *b, gamma=0.99, double=True, errors=True)
    loss, priorities = learner.update(b)
    torch.testing.assert_close(loss, loss_before.detach())
    torch.testing.assert_close(priorities, ce_before)
    assert learner.update(b)[0] < loss  # one step on the same batch lowers its loss


def test_bf16_autocast_keeps_the_distributions_in_fp32():
    torch.manual_seed(0)
    spec = QNetSpec(2, (1, 4), atoms=21)
    online, target = spec.build(), spec.build()
    b = batch(spec)
    fp32_loss, fp32_ce = td_loss(online, target, *b, gamma=0.99, errors=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, ce = td_loss(online, target, *b, gamma=0.99, errors=True)
    assert loss.dtype == ce.dtype == torch.float32
    torch.testing.assert_close(ce, fp32_ce, atol=0.05, rtol=0.05)  # bf16 matmuls, fp32 softmax and projection


def test_a_prioritized_c51_update_reads_a_batch_slot_in_place():
    """The Trainer's path: sample(out=slot) into fixed tensors, update(in_place=True), the priorities back."""
    torch.manual_seed(0)
    buf = ReplayBuffer(500, frame_shape=(4,), stack=1, dtype="float32", n_step=3, gamma=0.99, prioritized=True,
                       alpha=0.5, seed=0)
    rng = np.random.default_rng(0)
    buf.start(rng.random(4, dtype=np.float32))
    for t in range(300):
        buf.add(int(rng.integers(2)), float(rng.normal()), rng.random(4, dtype=np.float32), t % 37 == 36, False)
        if t % 37 == 36:
            buf.start(rng.random(4, dtype=np.float32))
    learner = Learner(QNetSpec(2, (1, 4), "dueling", atoms=51, noisy=True), device="cpu", double=True)
    slot = buf.batch_slot(16, "cpu")
    for _ in range(3):
        b = buf.sample(16, beta=0.4, out=slot)
        loss, priorities = learner.update(b, in_place=True)
        assert priorities.shape == (16,) and torch.isfinite(priorities).all() and (priorities > 0).all()
        buf.update_priorities(b.indices, priorities.numpy())
    assert torch.isfinite(loss)
