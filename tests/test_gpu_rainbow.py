"""C51 with noisy nets on the CUDA-graph path, each test in two halves as tests/test_gpu_path.py:
the CUDA half (marked gpu) runs the graphed update, the CPU half the same check on the eager
CPU update, so the check itself runs everywhere.

A graph draws its noise inside the replay (from the CUDA generator's graph-safe offsets), so its
draws are not an eager run's. The comparison therefore hands each update's noise, which stays in
the nets' noise buffers after the update, to a reference learner that does not draw its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastdqn.learn.learner import Learner
from fastdqn.learn.model import NoisyLinear, QNetSpec

CUDA_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
# (device, graphed): the graphed CUDA update, or the eager CPU one
PATHS = [pytest.param("cpu", False, id="cpu-eager"), pytest.param("cuda", True, id="cuda-graphed", marks=CUDA_MARKS)]
SPEC = QNetSpec(3, (4, 84, 84), "dueling", atoms=51, noisy=True)


def noise_of(net) -> list[torch.Tensor]:
    return [t for m in net.modules() if isinstance(m, NoisyLinear) for t in (m.eps_in, m.eps_out)]


def batches(device, n, b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        obs = torch.randint(0, 255, (b, 5, 84, 84), dtype=torch.uint8, generator=g)
        out.append(tuple(t.to(device) for t in (obs[:, :4], torch.randint(0, 3, (b,), generator=g),
                                                torch.randn(b, generator=g), obs[:, 1:],
                                                (torch.rand(b, generator=g) < 0.2).float(),
                                                torch.full((b,), 0.99 ** 3), torch.rand(b, generator=g) + 0.5)))
    return out


@pytest.mark.parametrize("device, graphed", PATHS)
def test_a_distributional_noisy_update_is_the_reference_update_given_its_noise(device, graphed, ieee_fp32):
    """Prioritized, Double, dueling C51 with noisy nets: the update under test (graphed on CUDA)
    against an eager learner on the same device fed the same noise: same losses, priorities
    and weights after 5 updates."""
    torch.manual_seed(0)
    tested = Learner(SPEC, device=device, double=True, graph=graphed, adam_eps=1.5e-4, lr=1e-3)
    reference = Learner(SPEC, device=device, double=True, graph=False, adam_eps=1.5e-4, lr=1e-3)
    reference.load_state_dict(tested.state_dict())
    reference.online.reset_noise = reference.target.reset_noise = lambda: None  # it takes tested's noise
    for b in batches(device, 5):
        loss, priorities = (t.clone() for t in tested.update(b))
        for net in ("online", "target"):
            for mine, theirs in zip(noise_of(getattr(reference, net)), noise_of(getattr(tested, net)), strict=True):
                mine.copy_(theirs)
        want_loss, want_priorities = reference.update(b)
        torch.testing.assert_close(loss, want_loss, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(priorities, want_priorities, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(tested.online.named_parameters(), reference.online.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("device, graphed", PATHS)
def test_each_noisy_update_and_each_act_draws_new_noise(device, graphed):
    """Graphed: the redraw is part of the replay, so every replay of the update (online and
    target nets) and of the greedy acting graph draws anew."""
    torch.manual_seed(0)
    learner = Learner(SPEC, device=device, double=True, graph=graphed)
    seen = []
    for b in batches(device, 3):
        learner.update(b)
        seen.append([t.clone() for t in noise_of(learner.online) + noise_of(learner.target)])
    for before, after in zip(seen, seen[1:]):
        assert all(not torch.equal(x, y) for x, y in zip(before, after))
    obs = batches(device, 1, b=4)[0][0]
    draws = []
    for _ in range(3):
        learner.act(obs, 0.0, np.random.default_rng(0))
        draws.append([t.clone() for t in noise_of(learner.online)])
    for before, after in zip(draws, draws[1:]):
        assert all(not torch.equal(x, y) for x, y in zip(before, after))
    if graphed:
        assert learner._graphs and learner._greedy._graphs  # the replays, not eager updates, drew them
