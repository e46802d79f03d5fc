"""fastdqn.learn.graphed: a CUDA-graph-captured update must train exactly like the eager one."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fastdqn.learn.graphed import make_graphed_update

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_rejects_bad_static_inputs():
    with pytest.raises(TypeError, match="sequence"):
        make_graphed_update(lambda x: x, torch.zeros(2))
    with pytest.raises(TypeError, match="Tensor"):
        make_graphed_update(lambda x: x, [1.0])
    with pytest.raises(ValueError, match="CUDA"):
        make_graphed_update(lambda x: x, [torch.zeros(2)])
    with pytest.raises(ValueError, match="warmup"):
        make_graphed_update(lambda x: x, [torch.zeros(2)], warmup=0)
    with pytest.raises(TypeError, match="callable"):
        make_graphed_update(None, [torch.zeros(2)])


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).cuda()


def _update_fn(net, opt):
    def update(x, y):
        loss = F.mse_loss(net(x), y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        return loss.detach()

    return update


@pytest.mark.gpu
@cuda_only
def test_graphed_update_matches_eager():
    eager_net = _net()
    graph_net = copy.deepcopy(eager_net)
    eager_opt = torch.optim.Adam(eager_net.parameters(), lr=1e-3, capturable=True)
    graph_opt = torch.optim.Adam(graph_net.parameters(), lr=1e-3, capturable=True)
    eager = _update_fn(eager_net, eager_opt)
    static = (torch.zeros(8, 16, device="cuda"), torch.zeros(8, 4, device="cuda"))
    graphed = make_graphed_update(_update_fn(graph_net, graph_opt), static,
                                  modules=[graph_net], optimizers=[graph_opt])
    for a, b in zip(eager_net.parameters(), graph_net.parameters()):
        assert torch.equal(a, b)  # warm-up undone
    g = torch.Generator(device="cuda").manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 16, device="cuda", generator=g)
        y = torch.randn(8, 4, device="cuda", generator=g)
        want = eager(x, y)
        got = graphed(x, y)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(eager_net.parameters(), graph_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@cuda_only
def test_graphed_update_checks_call_inputs():
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=True)
    static = (torch.zeros(8, 16, device="cuda"), torch.zeros(8, 4, device="cuda"))
    graphed = make_graphed_update(_update_fn(net, opt), static)
    with pytest.raises(ValueError, match="shape"):
        graphed(torch.zeros(4, 16, device="cuda"), static[1])
    with pytest.raises(ValueError, match="inputs"):
        graphed(static[0])
    assert graphed(*static) is graphed.static_output  # in-place filled buffers are not copied


@pytest.mark.gpu
@cuda_only
def test_graphed_dqn_learner_update_matches_eager():
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec

    eager = Learner(QNetSpec(6), device="cuda", compile=False)
    graph = Learner(QNetSpec(6), device="cuda", compile=False)
    graph.load_state_dict(eager.state_dict())
    b = 32
    static = (torch.zeros(b, 4, 84, 84, dtype=torch.uint8, device="cuda"),
              torch.zeros(b, dtype=torch.int64, device="cuda"),
              torch.zeros(b, device="cuda"),
              torch.zeros(b, 4, 84, 84, dtype=torch.uint8, device="cuda"),
              torch.zeros(b, device="cuda"))
    graphed = make_graphed_update(graph._update, static, modules=[graph.online],
                                  optimizers=[graph.optimizer])
    g = torch.Generator(device="cuda").manual_seed(2)
    for _ in range(3):
        window = torch.randint(0, 256, (b, 5, 84, 84), dtype=torch.uint8, device="cuda", generator=g)
        batch = (window[:, :4].contiguous(), torch.randint(0, 6, (b,), device="cuda", generator=g),
                 torch.randn(b, device="cuda", generator=g), window[:, 1:].contiguous(),
                 (torch.rand(b, device="cuda", generator=g) < 0.1).float())
        torch.testing.assert_close(graphed(*batch), eager._update(*batch), rtol=1e-4, atol=1e-5)
    for a, p in zip(eager.online.parameters(), graph.online.parameters()):
        torch.testing.assert_close(a, p, rtol=1e-4, atol=1e-5)
