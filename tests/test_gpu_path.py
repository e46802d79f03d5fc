"""The CUDA path against the CPU one, each test in two halves: the CPU half runs everywhere, the
CUDA half (marked gpu) on a machine with a CUDA device. Devices are compared as torch compares
them: ``torch.device("cuda") != torch.device("cuda:0")``, so fastdqn always resolves an index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastdqn.devices import resolve_device
from fastdqn.frames.stack import FrameStacker

CUDA_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]


@CUDA_MARKS[0]
@CUDA_MARKS[1]
def test_cuda_without_an_index_is_the_current_device():
    dev = resolve_device("cuda")
    assert dev == torch.device("cuda", torch.cuda.current_device()) == resolve_device("auto")
    assert torch.zeros(1, device=dev).device == dev  # what FrameStacker and to_device compare against


def _stacks_model(first: np.ndarray, k: int, steps: list) -> list[np.ndarray]:
    """The acting stacks after each push, from the rule: the last k frames of the episode, zeros before it."""
    episodes = [[f] for f in first]
    out = []
    for frames, done, resets in steps:
        for e in range(len(episodes)):
            episodes[e] = [resets[e]] if done[e] else episodes[e] + [frames[e]]
        out.append(np.stack([np.stack(([np.zeros_like(first[0])] * k + ep)[-k:]) for ep in episodes]))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("frames_on_device", [False, True])
def test_frame_stacker_matches_the_stacking_rule(device, frames_on_device):
    """Host frames (copied up through pinned staging) or frames already on the stacker's device
    (the GPU preprocessing's), across episode restarts: the stacks are the rule's."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (3, 84, 84), dtype=np.uint8)
    steps = [(rng.integers(0, 255, (3, 84, 84), dtype=np.uint8), rng.random(3) < 0.2,
              rng.integers(0, 255, (3, 84, 84), dtype=np.uint8)) for _ in range(20)]
    stack = FrameStacker(first, 4, device)
    assert stack.device == resolve_device(device)
    for (frames, done, resets), want in zip(steps, _stacks_model(first, 4, steps)):
        stack.push(torch.from_numpy(frames).to(stack.device) if frames_on_device else frames, done, resets)
        np.testing.assert_array_equal(stack.obs.cpu().numpy(), want)


@CUDA_MARKS[0]
@CUDA_MARKS[1]
def test_a_capture_that_raises_leaves_no_warm_up_step_applied():
    """make_graphed_update's warm-up steps are real updates; when the capture itself fails they
    are undone all the same: the weights as they were, Adam's moments zero."""
    from fastdqn.learn.graphed import make_graphed_update

    net = torch.nn.Linear(4, 2).cuda()
    opt = torch.optim.Adam(net.parameters(), lr=0.1, capturable=True)
    before = [p.detach().clone() for p in net.parameters()]
    calls = []

    def update(x):
        calls.append(1)
        if len(calls) > 3:  # the capture, after three warm-up steps
            raise RuntimeError("capture failed")
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
        return x

    with pytest.raises(RuntimeError, match="capture failed"):
        make_graphed_update(update, [torch.ones(8, 4, device="cuda")], modules=[net], optimizers=[opt])
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(not v.any() for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor))
