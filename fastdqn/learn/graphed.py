"""Capture a whole training update (forward, backward, optimizer step) in one CUDA graph.

At batch 32 the Nature DQN update is a few hundred small kernels; launched one by one from
Python the GPU idles between them. Replaying a captured graph launches them all at once. The
update then reads its inputs from fixed ("static") tensors, so each call copies the new batch
into them first; everything else (weights, Adam state, grads) already lives at fixed addresses.

Requirements on update_fn (the usual CUDA-graph rules): no host syncs (.item(), printing,
data-dependent Python branches), no new tensors kept across calls except its return value, and
an optimizer built with capturable=True (Adam keeps its step count on the device then).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["GraphedUpdate", "make_graphed_update"]


class GraphedUpdate:
    """Callable: copies the inputs into the static buffers, replays the graph and returns the
    captured output (the same tensors every call: read or clone them before the next call)."""

    def __init__(self, graph: torch.cuda.CUDAGraph, static_inputs: tuple, static_output):
        self.graph = graph
        self.static_inputs = static_inputs
        self.static_output = static_output

    def __call__(self, *inputs):
        if len(inputs) != len(self.static_inputs):
            raise ValueError(f"expected {len(self.static_inputs)} inputs, got {len(inputs)}")
        for k, (dst, src) in enumerate(zip(self.static_inputs, inputs)):
            if not isinstance(src, torch.Tensor):
                raise TypeError(f"input {k}: expected a torch.Tensor, got {type(src).__name__}")
            if _same_view(src, dst):
                continue  # the caller filled the static buffer in place (e.g. gather_windows(out=))
            if src.shape != dst.shape:
                raise ValueError(f"input {k}: expected shape {list(dst.shape)}, got {list(src.shape)}")
            if src.dtype != dst.dtype:
                raise TypeError(f"input {k}: expected dtype {dst.dtype}, got {src.dtype}")
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.static_output


def _check_static(static_inputs) -> tuple:
    if isinstance(static_inputs, torch.Tensor) or not isinstance(static_inputs, Sequence):
        raise TypeError(f"static_inputs: expected a sequence of tensors, got {type(static_inputs).__name__}")
    device = None
    for k, t in enumerate(static_inputs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"static_inputs[{k}]: expected a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cuda":
            raise ValueError(f"static_inputs[{k}]: expected a CUDA tensor, got device {t.device}")
        if device is not None and t.device != device:
            raise ValueError(f"static_inputs[{k}]: expected device {device}, got {t.device}")
        device = t.device
    if device is None:
        raise ValueError("static_inputs: expected at least one tensor, got none")
    return tuple(static_inputs)


def make_graphed_update(
    update_fn: Callable,
    static_inputs: Sequence[torch.Tensor],
    *,
    warmup: int = 3,
    modules: Sequence[torch.nn.Module] = (),
    optimizers: Sequence[torch.optim.Optimizer] = (),
    pool=None,
) -> GraphedUpdate:
    """Warm update_fn up on a side stream, capture update_fn(*static_inputs), return a replayer.

    Warm-up runs are real updates (they build the optimizer state, pick cuBLAS/cuDNN algorithms
    and allocate grads). Pass the trained ``modules`` and ``optimizers`` to undo them: their
    parameters and buffers are restored in place afterwards and every optimizer state tensor is
    zeroed (which is exactly a fresh Adam: step 0, zero moments), so the first replay is the
    first update, as in an eager run.
    """
    if not callable(update_fn):
        raise TypeError(f"update_fn: expected a callable, got {type(update_fn).__name__}")
    if not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup: expected an integer >= 1, got {warmup!r}")
    static = _check_static(static_inputs)
    device = static[0].device
    with torch.no_grad():
        saved = [t.detach().clone() for m in modules for t in _module_tensors(m)]

    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                update_fn(*static)
        torch.cuda.current_stream(device).wait_stream(side)

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            out = update_fn(*static)
    finally:  # capture ran nothing; only the warm-up steps need undoing, also when the capture raised
        with torch.no_grad():
            for dst, src in zip((t for m in modules for t in _module_tensors(m)), saved):
                dst.copy_(src)
            for opt in optimizers:
                for state in opt.state.values():
                    for v in state.values():
                        if isinstance(v, torch.Tensor):
                            v.zero_()
    return GraphedUpdate(graph, static, out)


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a.device == b.device)


def _module_tensors(m: torch.nn.Module):
    yield from m.parameters()
    yield from m.buffers()
